"""Saving the review session's edits: every accepted edit is written at once, based on the version it changed.

:meth:`SavingSession._save_labels` writes all instances through :meth:`annotate.store.ProjectStore.save_labels`
with the version they were based on, so two annotators on the same image never overwrite each other silently:
the second save raises :class:`EditConflict` (from the store's :class:`annotate.store.VersionConflict`) after
the session reloaded the newer labels, and nothing of the stale edit is written.
:meth:`SavingSession._save_or_roll_back` puts the in-memory state back when a save fails for another reason.

Conventions: masks (H, W) bool.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from annotate.confidence import edited_confidence
from annotate.review.refine import EditableInstance
from annotate.review.state import SessionState, saved_labels
from annotate.store import VersionConflict
from core.errors import UserError


class EditConflict(UserError, RuntimeError):
    """The image was changed elsewhere since it was opened; the session has reloaded the newer labels.

    Raised from the store's :class:`annotate.store.VersionConflict` (kept as ``__cause__``); nothing was saved.
    """


class SavingSession(SessionState):
    """A :class:`SessionState` whose edits are saved at once, each as a new version of the image's labels."""

    def _save_labels(self) -> int:
        """Save all instances as the image's new version; on a stale version reload and raise EditConflict.

        The first edit of a "new" or "pseudo" image puts it in "review" (work in progress: the bootstrap leaves
        it alone from then on). The image's confidence (the queue's order) follows the edit
        (:func:`annotate.confidence.edited_confidence`). Returns the new version.
        """
        self.require_image()
        status = "review" if self.status in ("new", "pseudo") else None
        # The store drops empty masks; drop them here too so the list matches what is saved.
        kept = [inst for inst in self.instances if inst.mask.any()]
        if len(kept) != len(self.instances):
            chosen = self.instances[self.selected] if self.selected is not None else None
            self.instances = kept
            self._select_instance(chosen)
        after = saved_labels(self.instances)
        confidence = edited_confidence(self.confidence, self._labels_as_saved, after, self.tag_ids)
        try:
            self.version = self.store.save_labels(
                self.image_id,
                [inst.to_new() for inst in self.instances],
                user=self.user,
                expected_version=self.version,
                status=status,
                confidence=confidence,
            )
        except VersionConflict as error:
            raise self._conflict(error, "your last edit was not saved") from error
        if status is not None:
            self.status = status
        self.confidence, self._labels_as_saved = confidence, after
        return self.version

    def _conflict(self, error: VersionConflict, outcome: str) -> EditConflict:
        """Reload the newer labels and say who changed the image (this user's other tab, or whom) and when."""
        self.reload()
        when = error.changed_at.replace("T", " ")[:19] + " UTC" if error.changed_at else "meanwhile"
        if error.changed_by == self.user:
            who = f"you ({self.user}) in another tab or window"
        else:
            who = repr(error.changed_by)
        return EditConflict(
            f"{Path(error.file_name).name} was changed by {who} at {when}, after you opened it; its latest "
            f"labels (version {self.version}) are now shown and {outcome}"
        )

    def _save_or_roll_back(self, save: Callable[[], Any], roll_back: Callable[[], Any]) -> None:
        """Run ``save`` (an edit's last steps, ending in :meth:`_save_labels`); if it fails, ``roll_back`` the
        in-memory state before re-raising. After an :class:`EditConflict` nothing is rolled back: the newer
        labels were reloaded."""
        try:
            save()
        except EditConflict:
            raise
        except Exception:
            roll_back()
            raise

    def _put_back(self, index: int, previous: EditableInstance | None) -> None:
        """Undo an unsaved edit of instance ``index``: put ``previous`` back, or drop the instance (and the
        selection) when it was new (``previous`` None)."""
        if previous is None:
            self.instances.pop(index)
            self.selected = None
        else:
            self.instances[index] = previous
