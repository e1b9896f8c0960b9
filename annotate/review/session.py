"""The review editor without a GUI: one annotator's view of a project, one image at a time.

A :class:`ReviewSession` holds the selected image, its instances, the selected instance and the tool state;
every accepted edit is saved at once through :meth:`annotate.store.ProjectStore.save_labels` with the version it
was based on, so two annotators on the same image never overwrite each other silently: the second save raises
:class:`EditConflict` (from the store's :class:`annotate.store.VersionConflict`) after the session reloaded the
newer labels, and nothing of the stale edit is written.

Opening an image checks its file against the SHA-256 recorded when it was added (a changed file is refused,
naming it). :meth:`ReviewSession.release` frees the pixels and masks of a session not in use (the GUI bounds its
memory so) and :meth:`ReviewSession.restore` reads them again.

Clicks refine the selected instance at once through :func:`annotate.review.refine.refine_instance`; the overlay is
drawn by :func:`annotate.review.overlay.render_overlay`; brush strokes come from :mod:`annotate.review.brush`.

Conventions: images HWC uint8 RGB; masks (H, W) bool; points XY pixels; boxes XYXY pixels; class id = index in
``store.classes`` + 1.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annotate.confidence import edited_confidence
from annotate.review.brush import stroke_mask
from annotate.review.cleanup import largest_piece, without_fragments
from annotate.review.overlay import render_overlay
from annotate.review.refine import EditableInstance, SharedSegmenter, refine_instance
from annotate.store import STATUSES, ProjectStore, VersionConflict
from core.errors import UserError
from models.segmenters import Segmenter

logger = logging.getLogger(__name__)

TOOLS = ("select", "positive", "negative", "box", "merge")
"""Click tools: pick an instance, add a positive / negative point, two clicks for a box (new instance), or pick
the instance to merge into the selected one."""
UNDO_KINDS = ("labels",)
"""What undo and redo move: label edits only. A status (accepted, rejected) is set by its own buttons and never
undone by Z; undoing a label edit leaves the status as it is."""


@dataclasses.dataclass(frozen=True)
class SavedLabel:
    """What the confidence reads of a saved instance (:func:`annotate.confidence.edited_confidence`)."""

    class_id: int
    needs_review: bool


class EditConflict(UserError, RuntimeError):
    """The image was changed elsewhere since it was opened; the session has reloaded the newer labels.

    Raised from the store's :class:`annotate.store.VersionConflict` (kept as ``__cause__``); nothing was saved.
    """


@dataclasses.dataclass(frozen=True)
class QueueRow:
    """One line of the image queue."""

    image_id: int
    file_name: str
    status: str
    confidence: float | None
    tags: tuple[str, ...]


class ReviewSession:
    """One annotator's editing state over a :class:`ProjectStore`.

    Args:
        store: the open project.
        segmenter: a :class:`SharedSegmenter` or a bare segmenter (wrapped).
        user: name written with every save.
    """

    def __init__(
        self, store: ProjectStore, segmenter: SharedSegmenter | Segmenter | None, *, user: str = "local"
    ) -> None:
        self.store = store
        self.segmenter = segmenter if isinstance(segmenter, SharedSegmenter) else SharedSegmenter(segmenter)
        self.user = user
        self.image_id: int | None = None
        self.image: np.ndarray | None = None
        self.image_key: str = ""
        self.version: int | None = None
        self.status: str = ""
        self.instances: list[EditableInstance] = []
        self.selected: int | None = None
        self.tool: str = "positive"
        self.new_class: int = 1
        self.pending_corner: tuple[float, float] | None = None
        self.released = False
        self.confidence: float | None = None
        self.tag_ids: list[int] = []
        self._saved: list[SavedLabel] = []  # the instances as last saved, for the confidence
        self._drawn: dict = {}  # the overlay's resized image and masks (render_overlay's cache)

    # ------------------------------------------------------------------ images
    @property
    def classes(self) -> list[str]:
        return list(self.store.classes)

    def class_id(self, name_or_id: str | int) -> int:
        """Class id of a class name (or a validated id)."""
        classes = self.classes
        if isinstance(name_or_id, str) and not name_or_id.isdigit():
            if name_or_id not in classes:
                raise ValueError(f"unknown class {name_or_id!r}; the project's classes are {classes}")
            return classes.index(name_or_id) + 1
        cid = int(name_or_id)
        if not 1 <= cid <= len(classes):
            raise ValueError(f"class id {cid} out of range 1..{len(classes)}")
        return cid

    def open_image(self, image_id: int) -> None:
        """Select an image: load it and its instances, clear the selection and pending clicks."""
        record = self.store.image(int(image_id))
        image = self.store.load_image(record.id)
        self.released = False
        self.image_id = record.id
        self.image = image
        self.image_key = record.sha256
        self._load_instances(record)
        tags = [t for t in record.tags if t in self.classes]
        if tags:
            self.new_class = self.classes.index(tags[0]) + 1

    def release(self) -> None:
        """Free the open image's pixels and masks (to bound memory); :meth:`restore` reads them again.

        Every edit is saved at once, so nothing is lost but the clicks of the selected instance and the pending
        box corner. The image stays the one the session works on.
        """
        if self.image_id is None or self.released:
            return
        self.released = True
        self._drawn = {}
        self.image = None
        self.instances = []
        self.selected = None
        self.pending_corner = None

    def restore(self) -> None:
        """Read the image and its labels again after :meth:`release` (nothing to do otherwise)."""
        if self.released and self.image_id is not None:
            self.released = False
            self.open_image(self.image_id)

    def close_image(self) -> None:
        """Leave the open image (e.g. after it was removed from the project): nothing is open afterwards."""
        self.released = False
        self.image_id = None
        self.image = None
        self.image_key = ""
        self.version = None
        self.status = ""
        self.instances = []
        self.selected = None
        self.pending_corner = None

    def reload(self) -> None:
        """Re-read the current image's instances and version from the store."""
        self.require_image()
        self._load_instances(self.store.image(self.image_id))

    def _load_instances(self, record: Any) -> None:
        self.version = record.version
        self.status = record.status
        self.confidence = record.confidence
        self.tag_ids = [self.classes.index(t) + 1 for t in record.tags if t in self.classes]
        self.instances = []
        for r in self.store.instances(record.id):
            mask = np.asarray(self.store.instance_mask(r), bool)
            self.instances.append(
                EditableInstance(
                    class_id=r.class_id,
                    mask=mask,
                    score=float(r.score),
                    source=r.source,
                    needs_review=bool(r.needs_review),
                    reason=r.reason or "",
                    iscrowd=bool(r.iscrowd),
                    predicted_iou=r.predicted_iou,
                    encoded=(mask, r.rle),
                )
            )
        self.selected = None
        self.pending_corner = None
        self._saved = self._labels()

    def _labels(self) -> list[SavedLabel]:
        return [SavedLabel(inst.class_id, bool(inst.needs_review)) for inst in self.instances]

    def require_image(self) -> np.ndarray:
        """The open image (H, W, 3) uint8 RGB; ValueError when none is open."""
        if self.image is None or self.image_id is None:
            raise ValueError("no image is open: pick one in the queue first")
        return self.image

    def prepare_segmenter(self) -> None:
        """Give the current image to the segmenter now (SAM encodes it once; later clicks are fast)."""
        self.segmenter.prepare(self.image_key, self.require_image())

    # ------------------------------------------------------------------ saving
    def _commit(self) -> int:
        """Save all instances as the image's new version; on a stale version reload and raise EditConflict.

        The first edit of a "new" or "pseudo" image puts it in "review" (work in progress: the bootstrap leaves
        it alone from then on). The image's confidence (the queue's order) follows the edit
        (:func:`annotate.confidence.edited_confidence`).
        """
        self.require_image()
        status = "review" if self.status in ("new", "pseudo") else None
        # The store drops empty masks; drop them here too so the list matches what is saved.
        kept = [inst for inst in self.instances if inst.mask.any()]
        if len(kept) != len(self.instances):
            chosen = self.instances[self.selected] if self.selected is not None else None
            self.instances = kept
            self.selected = next((i for i, inst in enumerate(kept) if inst is chosen), None)
        after = self._labels()
        confidence = edited_confidence(self.confidence, self._saved, after, self.tag_ids)
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
        self.confidence, self._saved = confidence, after
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

    def _edit(self, save: Callable[[], Any], restore: Callable[[], Any]) -> None:
        """Run ``save`` (an edit's last steps, ending in :meth:`_commit`); if it fails, ``restore`` the in-memory
        state before re-raising. After an :class:`EditConflict` nothing is restored: the newer labels were
        reloaded."""
        try:
            save()
        except EditConflict:
            raise
        except Exception:
            restore()
            raise

    def _put_back(self, index: int, previous: EditableInstance | None) -> None:
        """Undo an unsaved edit of instance ``index``: put ``previous`` back, or drop the instance (and the
        selection) when it was new (``previous`` None)."""
        if previous is None:
            self.instances.pop(index)
            self.selected = None
        else:
            self.instances[index] = previous

    # ------------------------------------------------------------------ selection
    def instance_at(self, x: float, y: float, *, exclude: int | None = None) -> int | None:
        """Index of the topmost instance covering pixel (x, y) (the smallest: the overlay draws small ones on
        top), leaving out instance ``exclude``; None if none does."""
        image = self.require_image()
        xi, yi = int(x), int(y)
        if not (0 <= xi < image.shape[1] and 0 <= yi < image.shape[0]):
            return None
        hits = [
            (inst.area, i) for i, inst in enumerate(self.instances) if i != exclude and inst.mask[yi, xi]
        ]
        return min(hits)[1] if hits else None

    def select(self, index: int | None) -> None:
        """Select an instance by index (None clears the selection)."""
        if index is not None and not 0 <= index < len(self.instances):
            raise ValueError(f"no instance #{index + 1}: the image has {len(self.instances)}")
        self.selected = index
        self.pending_corner = None

    def _target(self, index: int | None) -> int:
        index = self.selected if index is None else index
        if index is None:
            raise ValueError(
                "select an instance first (click it with the select tool or pick it in the list)"
            )
        if not 0 <= index < len(self.instances):
            raise ValueError(f"no instance #{index + 1}: the image has {len(self.instances)}")
        return index

    # ------------------------------------------------------------------ clicks
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

    def add_point(self, x: float, y: float, *, positive: bool = True, class_id: int | None = None) -> int:
        """Add a click to the selected instance and refine it at once; with no selection a positive click
        starts a new instance of ``class_id`` (default :attr:`new_class`). Returns the instance index."""
        image = self.require_image()
        if not (0 <= x < image.shape[1] and 0 <= y < image.shape[0]):
            raise ValueError(
                f"point ({x:.0f}, {y:.0f}) lies outside the {image.shape[1]}x{image.shape[0]} image"
            )
        if self.selected is None:
            if not positive:
                raise ValueError("a negative point needs a selected instance")
            cid = self.class_id(class_id if class_id is not None else self.new_class)
            inst = EditableInstance(class_id=cid, mask=np.zeros(image.shape[:2], bool), source="manual")
            self.instances.append(inst)
            index = len(self.instances) - 1
            created = True
        else:
            index, inst, created = self.selected, self.instances[self.selected], False
        previous = None if created else dataclasses.replace(inst)
        inst.points = np.concatenate([inst.points, np.array([[x, y]], np.float32)])
        inst.labels = np.concatenate([inst.labels, np.array([1 if positive else 0], np.int64)])

        def refine_and_save() -> None:
            refine_instance(self.segmenter, self.image_key, image, inst)
            self.selected = index
            self._commit()

        self._edit(refine_and_save, lambda: self._put_back(index, previous))
        return index

    def add_box(self, box: Sequence[float], class_id: int | None = None) -> int:
        """A new instance of ``class_id`` (default :attr:`new_class`) from an XYXY box; selected and saved."""
        image = self.require_image()
        h, w = image.shape[:2]
        x0, y0, x1, y1 = (float(v) for v in box)
        x0, x1 = sorted((min(max(x0, 0), w - 1), min(max(x1, 0), w - 1)))
        y0, y1 = sorted((min(max(y0, 0), h - 1), min(max(y1, 0), h - 1)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise ValueError(
                f"box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) is too small: drag at least 2 px each way"
            )
        cid = self.class_id(class_id if class_id is not None else self.new_class)
        inst = EditableInstance(
            class_id=cid, mask=np.zeros((h, w), bool), source="manual", box=(x0, y0, x1, y1)
        )
        refine_instance(self.segmenter, self.image_key, image, inst)
        self.instances.append(inst)
        self.selected = len(self.instances) - 1
        self._edit(self._commit, lambda: self._put_back(len(self.instances) - 1, None))
        return self.selected

    # ------------------------------------------------------------------ instance edits
    def set_class(self, class_id: int | str, index: int | None = None) -> None:
        """Change the class of the selected (or given) instance; saved at once (nothing saved if unchanged)."""
        index = self._target(index)
        inst = self.instances[index]
        old, new = inst.class_id, self.class_id(class_id)
        if new == old:
            return  # nothing to save (no empty step in the undo history)
        inst.class_id = new
        self._edit(self._commit, lambda: setattr(inst, "class_id", old))

    def delete(self, index: int | None = None) -> None:
        """Delete the selected (or given) instance; saved at once."""
        index = self._target(index)
        removed = self.instances.pop(index)
        self.selected = None
        self._edit(self._commit, lambda: self.instances.insert(index, removed))

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

        def restore() -> None:
            self.instances, self.selected = saved, a

        self._edit(self._commit, restore)
        return index

    # ------------------------------------------------------------------ bulk clean-up (one undo step each)
    def _bulk(self, change: Callable[[], str | None]) -> str:
        """Run ``change`` (edits :attr:`instances` in place; returns what it did, or None when nothing changed)
        and save it as one version (one undo step); nothing is saved when nothing changed."""
        self.require_image()
        saved, selected = list(self.instances), self.selected
        chosen = self.instances[selected] if selected is not None else None
        done = change()
        if done is None:
            return "nothing to change"
        self.selected = next((i for i, inst in enumerate(self.instances) if inst is chosen), None)

        def restore() -> None:
            self.instances, self.selected = saved, selected

        self._edit(self._commit, restore)
        self.selected = next((i for i, inst in enumerate(self.instances) if inst is chosen), None)
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
            return f"deleted {removed} {name} instance{'s' if removed != 1 else ''}"

        out = self._bulk(change)
        return out if out != "nothing to change" else f"no {name} instance to delete"

    def drop_fragments(self, min_area: int) -> str:
        """Remove every connected piece smaller than ``min_area`` px from every instance (an instance made only of
        such pieces is deleted); one undo step. Returns what was done."""
        min_area = int(min_area)

        def change() -> str | None:
            pieces, emptied = 0, 0
            for inst in self.instances:
                mask, removed = without_fragments(inst.mask, min_area)
                if removed:
                    self._reshaped(inst, mask)
                    pieces += removed
                    emptied += int(not mask.any())
            if not pieces:
                return None
            self.instances = [inst for inst in self.instances if inst.mask.any()]
            return (
                f"removed {pieces} piece{'s' if pieces != 1 else ''} under {min_area} px"
                + (f" ({emptied} instance{'s' if emptied != 1 else ''} deleted)" if emptied else "")
            )

        out = self._bulk(change)
        return out if out != "nothing to change" else f"no piece under {min_area} px"

    def keep_largest(self, index: int | None = None, *, every: bool = False) -> str:
        """Keep only the largest connected piece of the selected (or given) instance, or of every instance
        (``every``); one undo step. Returns what was done."""
        targets = range(len(self.instances)) if every else [self._target(index)]

        def change() -> str | None:
            removed, changed = 0, 0
            for i in targets:
                inst = self.instances[i]
                mask = largest_piece(inst.mask)
                if mask is not inst.mask:
                    removed += inst.area - int(np.count_nonzero(mask))
                    changed += 1
                    self._reshaped(inst, mask)
            if not changed:
                return None
            return f"kept the largest piece of {changed} instance{'s' if changed != 1 else ''} ({removed} px removed)"

        out = self._bulk(change)
        return out if out != "nothing to change" else "every instance is one piece already"

    @staticmethod
    def _reshaped(inst: EditableInstance, mask: np.ndarray) -> None:
        """Give ``inst`` a cleaned-up mask: it no longer is the segmenter's answer (no logits, no predicted IoU)."""
        inst.mask = mask
        inst.logits = None
        inst.predicted_iou = None

    def paint(
        self, add: np.ndarray | None = None, remove: np.ndarray | None = None, index: int | None = None
    ) -> int:
        """Brush (``add``) and eraser (``remove``) on the selected instance: (H, W) bool stroke masks.

        With no selection and a non-empty ``add``, the strokes become a new instance of :attr:`new_class`.
        Returns the signed change of the mask's pixel count.
        """
        image = self.require_image()
        shape = image.shape[:2]
        for name, stroke in (("brush", add), ("eraser", remove)):
            if stroke is not None and stroke.shape != shape:
                raise ValueError(f"{name} stroke has shape {stroke.shape}, the image is {shape}")
        add = np.zeros(shape, bool) if add is None else add.astype(bool)
        remove = np.zeros(shape, bool) if remove is None else remove.astype(bool)
        created = False  # a new instance started by the brush
        if index is None and self.selected is None:
            if not add.any():
                raise ValueError("select an instance first (or paint with the brush to start a new one)")
            self.instances.append(
                EditableInstance(class_id=self.class_id(self.new_class), mask=np.zeros(shape, bool))
            )
            self.selected = len(self.instances) - 1
            created = True
        index = self._target(index)
        inst = self.instances[index]
        previous = None if created else dataclasses.replace(inst)
        before = inst.area
        inst.mask = (inst.mask | add) & ~remove
        inst.logits = None
        inst.predicted_iou = None  # painted: no segmenter predicted this mask
        inst.source = "manual"
        inst.needs_review = False
        self._edit(self._commit, lambda: self._put_back(index, previous))
        return inst.area - before

    def brush(self, points: Sequence[tuple[float, float]], radius: float, *, erase: bool = False) -> int:
        """Paint (or erase) a stroke of ``radius`` px along ``points`` (XY) on the selected instance."""
        image = self.require_image()
        stroke = stroke_mask(image.shape[:2], points, radius)
        return self.paint(remove=stroke) if erase else self.paint(add=stroke)

    # ------------------------------------------------------------------ history and status
    def undo(self) -> str:
        """Undo the image's last label edit (through the store's history; see :data:`UNDO_KINDS`: the status
        stays). Returns what was undone."""
        self.require_image()
        return self._history("undo")

    def _history(self, direction: str) -> str:
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

    def redo(self) -> str:
        """Re-apply the label edit undone last (the status stays); returns what was redone."""
        self.require_image()
        return self._history("redo")

    def set_status(self, status: str) -> None:
        """Set the image's status (one of ``STATUSES``), saving at once."""
        self.require_image()
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; choose one of {STATUSES}")
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

    # ------------------------------------------------------------------ queue
    def queue(self, status: str | None = None, order: str = "confidence") -> list[QueueRow]:
        """Images of the project, filtered by status and sorted (``"confidence"``: least confident first)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; choose one of {STATUSES}")
        return [
            QueueRow(r.id, r.file_name, r.status, r.confidence, tuple(r.tags))
            for r in self.store.list_images(status=status, order=order)
        ]

    def progress(self) -> dict[str, int]:
        """Number of images per status (every status present, plus ``"total"``)."""
        counts = dict(self.store.status_counts())
        counts["total"] = sum(counts.values())
        return counts

    def instance_rows(self) -> list[list[Any]]:
        """Rows of the instance list: [#, class, score, source, area px]; "▶" marks the selected instance and
        "⚑" one flagged for review (its reason: :meth:`describe`)."""
        classes = self.classes
        rows = []
        for i, inst in enumerate(self.instances):
            name = classes[inst.class_id - 1] if 1 <= inst.class_id <= len(classes) else f"id {inst.class_id}"
            number = ("▶ " if i == self.selected else "") + str(i + 1) + (" ⚑" if inst.needs_review else "")
            rows.append([number, name, round(float(inst.score), 2), inst.source, inst.area])
        return rows

    def describe(self, index: int | None = None) -> str:
        """One line about the selected (or given) instance: class, size, source and any review note."""
        index = self._target(index)
        inst = self.instances[index]
        name = (
            self.classes[inst.class_id - 1]
            if 1 <= inst.class_id <= len(self.classes)
            else f"id {inst.class_id}"
        )
        text = f"instance #{index + 1}: {name}, {inst.area} px, score {inst.score:.3f}, from {inst.source}"
        if inst.iscrowd:
            text += " · crowd region (ignored in semantic masks)"
        if inst.needs_review:
            text += " · ⚑ to check" + (f": {inst.reason}" if inst.reason else "")
        return text

    # ------------------------------------------------------------------ rendering
    def render(
        self,
        *,
        opacity: float = 0.5,
        hidden_classes: Iterable[int] = (),
        show_points: bool = True,
        scale: float = 1.0,
    ) -> np.ndarray:
        """The open image with instance overlays (:func:`annotate.review.overlay.render_overlay`): HWC uint8 RGB.

        The selected instance is outlined in white with its clicks; a pending box corner is marked.
        """
        return render_overlay(
            self.require_image(),
            self.instances,
            selected=self.selected,
            pending_corner=self.pending_corner,
            opacity=opacity,
            hidden_classes=hidden_classes,
            show_points=show_points,
            scale=scale,
            cache=self._drawn,
        )
