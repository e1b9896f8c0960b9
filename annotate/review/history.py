"""Undo and redo in the review session, through the store's history of the image's label versions.

Conventions: one undo step = one saved version of the image's labels.
"""

from __future__ import annotations

from annotate.review.saving import SavingSession
from annotate.store import VersionConflict

UNDO_KINDS = ("labels",)
"""What undo and redo move: label edits only. A status (accepted, rejected) is set by its own buttons and never
undone by Z; undoing a label edit leaves the status as it is."""


class LabelHistory(SavingSession):
    """:meth:`undo` and :meth:`redo` of the open image's label edits (the status stays)."""

    def undo(self) -> str:
        """Undo the image's last label edit (through the store's history; see :data:`UNDO_KINDS`: the status
        stays). Returns what was undone."""
        self.require_image()
        return self._move_in_history("undo")

    def redo(self) -> str:
        """Re-apply the label edit undone last (the status stays); returns what was redone."""
        self.require_image()
        return self._move_in_history("redo")

    def _move_in_history(self, direction: str) -> str:
        """Undo (``direction`` "undo") or redo ("redo") one label edit and reload; returns what was done."""
        move = self.store.undo if direction == "undo" else self.store.redo
        before = len(self.instances)
        try:
            move(self.image_id, user=self.user, expected_version=self.version, kinds=UNDO_KINDS)
        except VersionConflict as error:
            raise self._conflict(error, f"nothing was {direction}ne") from error
        self.reload()
        text = f"{direction}ne: the last label edit ({before} → {len(self.instances)} instances)"
        if self.status in ("accepted", "rejected"):
            text += f"; the image stays {self.status}"
        return text
