"""The image queue of the review session and the decisions that move along it (accept, reject, any status).

Conventions: statuses are those of :data:`annotate.store.STATUSES`; confidence in [0, 1] or None.
"""

from __future__ import annotations

import dataclasses

from annotate.review.saving import SavingSession
from annotate.store import STATUSES, VersionConflict


@dataclasses.dataclass(frozen=True)
class QueueRow:
    """One line of the image queue."""

    image_id: int
    file_name: str
    status: str
    confidence: float | None
    tags: tuple[str, ...]


def _check_status(status: str) -> None:
    """ValueError unless ``status`` is one of :data:`annotate.store.STATUSES`."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; choose one of {STATUSES}")


class QueueDecisions(SavingSession):
    """The queue (:meth:`queue`, :meth:`progress`) and the image's status (:meth:`set_status`, accept or reject
    and open the next undecided image)."""

    def queue(self, status: str | None = None, order: str = "confidence") -> list[QueueRow]:
        """Images of the project, filtered by status and sorted (``"confidence"``: least confident first)."""
        if status is not None:
            _check_status(status)
        return [
            QueueRow(r.id, r.file_name, r.status, r.confidence, tuple(r.tags))
            for r in self.store.list_images(status=status, order=order)
        ]

    def progress(self) -> dict[str, int]:
        """Number of images per status (every status present, plus ``"total"``)."""
        counts = dict(self.store.status_counts())
        counts["total"] = sum(counts.values())
        return counts

    def set_status(self, status: str) -> None:
        """Set the image's status (one of ``STATUSES``), saving at once."""
        self.require_image()
        _check_status(status)
        try:
            self.version = self.store.set_status(
                self.image_id, status, user=self.user, expected_version=self.version
            )
        except VersionConflict as error:
            raise self._conflict(error, "the status was not changed") from error
        self.status = status

    def accept_and_next(self, *, status_filter: str | None = None, order: str = "confidence") -> int | None:
        """Mark the current image accepted, then open the next one in the queue not yet accepted or rejected.

        Returns the id of the image opened, or None when every image in the queue is decided (the current
        image stays open).
        """
        return self.decide_and_next("accepted", status_filter=status_filter, order=order)

    def reject_and_next(self, *, status_filter: str | None = None, order: str = "confidence") -> int | None:
        """Mark the current image rejected, then open the next undecided one (as :meth:`accept_and_next`)."""
        return self.decide_and_next("rejected", status_filter=status_filter, order=order)

    def decide_and_next(
        self, status: str, *, status_filter: str | None = None, order: str = "confidence"
    ) -> int | None:
        """Set the current image's ``status`` ("accepted" or "rejected"), then open the next image of the queue
        that is neither; returns its id, or None when there is none (the current image stays open)."""
        self.require_image()
        current = self.image_id
        self.set_status(status)
        rows = self.queue(status=status_filter, order=order)
        ids = [r.image_id for r in rows]
        start = ids.index(current) + 1 if current in ids else 0
        for row in rows[start:] + rows[:start]:
            if row.status not in ("accepted", "rejected") and row.image_id != current:
                self.open_image(row.image_id)
                return row.image_id
        return None
