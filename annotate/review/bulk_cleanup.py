"""Bulk clean-up in the review session: delete a class, drop small fragments, keep the largest piece.

Each action changes any number of instances and is saved as one version (one undo step); nothing is saved when
it changes nothing. The connected pieces come from :mod:`annotate.review.cleanup`.

Conventions: masks (H, W) bool; areas in pixels; class id = index in ``store.classes`` + 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from annotate.review.cleanup import largest_piece, without_fragments
from annotate.review.saving import SavingSession


def _plural(count: int, noun: str) -> str:
    """``"1 piece"``, ``"3 pieces"``."""
    return f"{count} {noun}{'s' if count != 1 else ''}"


class BulkCleanup(SavingSession):
    """:meth:`delete_class`, :meth:`drop_fragments` and :meth:`keep_largest`: one undo step each."""

    def _bulk_edit(self, change: Callable[[], str | None], unchanged: str) -> str:
        """Run ``change`` (edits :attr:`instances` in place; returns what it did, or None when nothing changed)
        and save it as one version (one undo step). Returns what it did, or ``unchanged`` (nothing saved)."""
        self.require_image()
        saved, selected = list(self.instances), self.selected
        chosen = self.instances[selected] if selected is not None else None
        done = change()
        if done is None:
            return unchanged
        self._select_instance(chosen)

        def roll_back() -> None:
            self.instances, self.selected = saved, selected

        self._save_or_roll_back(self._save_labels, roll_back)
        self._select_instance(chosen)
        return done

    def delete_class(self, class_id: int | str) -> str:
        """Delete every instance of a class; one undo step. Returns what was done."""
        cid = self.class_id(class_id)
        name = self.classes[cid - 1]

        def change() -> str | None:
            kept = [inst for inst in self.instances if inst.class_id != cid]
            removed = len(self.instances) - len(kept)
            if not removed:
                return None
            self.instances = kept
            return f"deleted {_plural(removed, name + ' instance')}"

        return self._bulk_edit(change, f"no {name} instance to delete")

    def drop_fragments(self, min_area: int) -> str:
        """Remove every connected piece smaller than ``min_area`` px from every instance (an instance made only of
        such pieces is deleted); one undo step. Returns what was done."""
        min_area = int(min_area)

        def change() -> str | None:
            pieces, emptied = 0, 0
            for inst in self.instances:
                mask, removed = without_fragments(inst.mask, min_area)
                if removed:
                    inst.reshape(mask)
                    pieces += removed
                    emptied += int(not mask.any())
            if not pieces:
                return None
            self.instances = [inst for inst in self.instances if inst.mask.any()]
            return f"removed {_plural(pieces, 'piece')} under {min_area} px" + (
                f" ({_plural(emptied, 'instance')} deleted)" if emptied else ""
            )

        return self._bulk_edit(change, f"no piece under {min_area} px")

    def keep_largest(self, index: int | None = None, *, every: bool = False) -> str:
        """Keep only the largest connected piece of the selected (or given) instance, or of every instance
        (``every``); one undo step. Returns what was done."""
        targets = range(len(self.instances)) if every else [self._selected_or(index)]

        def change() -> str | None:
            removed, changed = 0, 0
            for i in targets:
                inst = self.instances[i]
                mask = largest_piece(inst.mask)
                if mask is not inst.mask:
                    removed += inst.area - int(np.count_nonzero(mask))
                    changed += 1
                    inst.reshape(mask)
            if not changed:
                return None
            return f"kept the largest piece of {_plural(changed, 'instance')} ({removed} px removed)"

        return self._bulk_edit(change, "every instance is one piece already")
