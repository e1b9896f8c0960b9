"""The review editor without a GUI: one annotator's view of a project, one image at a time.

A :class:`ReviewSession` holds the selected image, its instances, the selected instance and the tool state;
every accepted edit is saved at once with the version it was based on, so two annotators on the same image
never overwrite each other silently (:class:`EditConflict`). Its parts, one job each:

- :mod:`annotate.review.state`: the open image, its instances, classes and the selection;
- :mod:`annotate.review.saving`: saving each edit, conflicts, putting the state back when a save fails;
- :mod:`annotate.review.prompting`: points and boxes refined by the segmenter;
- :mod:`annotate.review.painting`: brush and eraser strokes;
- :mod:`annotate.review.instance_edits`: class changes, deletion and merging of instances;
- :mod:`annotate.review.bulk_cleanup`: clean-up of many instances in one undo step;
- :mod:`annotate.review.history`: undo and redo;
- :mod:`annotate.review.decisions`: the image queue, statuses, accept / reject and next;
- :mod:`annotate.review.display`: the instance list, descriptions and the overlay.

This module puts them together and maps a click of the current tool (:data:`TOOLS`) to its edit.

Conventions: images HWC uint8 RGB; masks (H, W) bool; points XY pixels; boxes XYXY pixels; class id = index in
``store.classes`` + 1.
"""

from __future__ import annotations

from annotate.review.bulk_cleanup import BulkCleanup
from annotate.review.decisions import QueueDecisions, QueueRow
from annotate.review.display import SessionDisplay
from annotate.review.history import UNDO_KINDS, LabelHistory
from annotate.review.instance_edits import InstanceEdits
from annotate.review.painting import PaintEdits
from annotate.review.prompting import PromptEdits
from annotate.review.saving import EditConflict
from annotate.review.state import SavedLabel

__all__ = ["TOOLS", "UNDO_KINDS", "EditConflict", "QueueRow", "ReviewSession", "SavedLabel"]

TOOLS = ("select", "positive", "negative", "box", "merge")
"""Click tools: pick an instance, add a positive / negative point, two clicks for a box (new instance), or pick
the instance to merge into the selected one."""


class ReviewSession(
    PromptEdits, PaintEdits, InstanceEdits, BulkCleanup, LabelHistory, QueueDecisions, SessionDisplay
):
    """One annotator's editing state over a :class:`annotate.store.ProjectStore`.

    Args:
        store: the open project.
        segmenter: a :class:`annotate.review.refine.SharedSegmenter` or a bare segmenter (wrapped).
        user: name written with every save.
    """

    def click(self, x: float, y: float) -> str:
        """Apply the current tool at pixel (x, y); returns a short description of what happened."""
        if self.tool == "select":
            index = self.instance_at(x, y)
            self.select(index)
            return "nothing here" if index is None else f"selected instance #{index + 1}"
        if self.tool in ("positive", "negative"):
            positive = self.tool == "positive"
            if self.selected is None and not positive:
                raise ValueError("a negative point needs a selected instance")
            index = self.add_point(x, y, positive=positive)
            return f"instance #{index + 1}: {self.instances[index].area} px"
        if self.tool == "merge":
            if self.selected is None:
                raise ValueError("select the instance to keep first, then click the one to merge into it")
            other = self.instance_at(x, y, exclude=self.selected)
            if other is None:
                return "no other instance here: click inside the instance to merge in"
            keep, gone = self.selected + 1, other + 1
            index = self.merge(self.selected, other)
            return f"merged instance #{gone} into #{keep} (now #{index + 1}: {self.instances[index].area} px)"
        if self.tool == "box":
            if self.pending_corner is None:
                self.pending_corner = (float(x), float(y))
                return "box: click the opposite corner"
            (x0, y0), self.pending_corner = self.pending_corner, None
            index = self.add_box((min(x0, x), min(y0, y), max(x0, x), max(y0, y)))
            return f"new instance #{index + 1}: {self.instances[index].area} px"
        raise ValueError(f"unknown tool {self.tool!r}; choose one of {TOOLS}")
