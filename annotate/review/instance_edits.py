"""Whole-instance edits in the review session: change a class, delete an instance, merge two; each saved at once.

Conventions: masks (H, W) bool; class id = index in ``store.classes`` + 1.
"""

from __future__ import annotations

from annotate.review.refine import EditableInstance
from annotate.review.saving import SavingSession


class InstanceEdits(SavingSession):
    """:meth:`set_class`, :meth:`delete` and :meth:`merge`: one undo step each."""

    def set_class(self, class_id: int | str, index: int | None = None) -> None:
        """Change the class of the selected (or given) instance; saved at once (nothing saved if unchanged)."""
        index = self._selected_or(index)
        inst = self.instances[index]
        old, new = inst.class_id, self.class_id(class_id)
        if new == old:
            return  # nothing to save (no empty step in the undo history)
        inst.class_id = new
        self._save_or_roll_back(self._save_labels, lambda: setattr(inst, "class_id", old))

    def delete(self, index: int | None = None) -> None:
        """Delete the selected (or given) instance; saved at once."""
        index = self._selected_or(index)
        removed = self.instances.pop(index)
        self.selected = None
        self._save_or_roll_back(self._save_labels, lambda: self.instances.insert(index, removed))

    def merge(self, a: int, b: int) -> int:
        """Merge instance ``b`` into ``a`` (union of masks, ``a``'s class, higher score); returns the merged index."""
        n = len(self.instances)
        if not (0 <= a < n and 0 <= b < n):
            raise ValueError(f"cannot merge #{a + 1} and #{b + 1}: the image has {n} instances")
        if a == b:
            raise ValueError(f"cannot merge instance #{a + 1} with itself")
        first, second = self.instances[a], self.instances[b]
        merged = EditableInstance(
            class_id=first.class_id,
            mask=first.mask | second.mask,
            score=max(first.score, second.score),
            source="manual",
            needs_review=first.needs_review or second.needs_review,
            reason="; ".join(r for r in (first.reason, second.reason) if r),
            iscrowd=first.iscrowd,
        )
        saved = list(self.instances)
        self.instances[a] = merged
        self.instances.pop(b)
        index = a if a < b else a - 1
        self.selected = index

        def roll_back() -> None:
            self.instances, self.selected = saved, a

        self._save_or_roll_back(self._save_labels, roll_back)
        return index
