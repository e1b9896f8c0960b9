"""The review editor without a GUI: one annotator's view of a project, one image at a time.

A :class:`ReviewSession` holds the selected image, its instances, the selected instance and the tool state;
every accepted edit is saved at once through :meth:`annotate.store.ProjectStore.save_labels` with the version it
was based on, so two annotators on the same image never overwrite each other silently: the second save raises
:class:`EditConflict` (a :class:`annotate.store.VersionConflict`) after the session reloaded the newer labels.

Clicks refine the selected instance at once: the segmenter receives all the instance's clicks, its box (if it
was drawn as one) and its previous low-resolution logits (SAM's ``mask_input``), as Segment Anything's own
interactive loop does. The segmenter is shared between sessions through :class:`SharedSegmenter`, which
re-targets it when another image is asked for (cheap with the embedding cache).

Conventions: images HWC uint8 RGB; masks (H, W) bool; points XY pixels; boxes XYXY pixels; class id = index in
``store.classes`` + 1.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from annotate.store import STATUSES, NewInstance, ProjectStore, VersionConflict

logger = logging.getLogger(__name__)

TOOLS = ("select", "positive", "negative", "box")
"""Click tools: pick an instance, add a positive / negative point, or two clicks for a box (new instance)."""

PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 190),
        (0, 128, 128),
        (170, 110, 40),
        (128, 0, 0),
        (170, 255, 195),
        (128, 128, 0),
        (0, 0, 128),
    ],
    dtype=np.uint8,
)
"""RGB colours of classes 1, 2, ... (cycled); class ``c`` uses ``PALETTE[(c - 1) % len(PALETTE)]``."""

ProgressFn = Callable[[float, str], None]
"""Progress callback: fraction done in [0, 1] and a short description."""


class EditConflict(VersionConflict):
    """The image was changed elsewhere since it was opened; the session has reloaded the newer labels."""


def class_color(class_id: int) -> tuple[int, int, int]:
    """RGB colour (uint8 values) of a class id >= 1."""
    if class_id < 1:
        raise ValueError(f"class id {class_id} has no colour: classes start at 1 (0 is background)")
    r, g, b = PALETTE[(class_id - 1) % len(PALETTE)]
    return int(r), int(g), int(b)


@dataclasses.dataclass
class EditableInstance:
    """One instance being edited.

    ``mask`` (H, W) bool; ``points`` (N, 2) float XY pixels with ``labels`` (N,) int 1 = positive, 0 = negative;
    ``box`` XYXY pixels or None; ``logits`` (256, 256) float low-res logits of the segmenter's last answer for
    this instance, or None when the mask did not come from the segmenter (loaded, painted, merged).
    """

    class_id: int
    mask: np.ndarray
    score: float = 1.0
    source: str = "manual"
    needs_review: bool = False
    reason: str = ""
    points: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0,), np.int64))
    box: tuple[float, float, float, float] | None = None
    logits: np.ndarray | None = None

    @property
    def area(self) -> int:
        """Number of mask pixels."""
        return int(np.count_nonzero(self.mask))

    def to_new(self) -> NewInstance:
        """The store's form of this instance."""
        return NewInstance(
            class_id=self.class_id,
            mask=self.mask,
            score=float(self.score),
            source=self.source,
            needs_review=bool(self.needs_review),
            reason=self.reason,
        )


@dataclasses.dataclass(frozen=True)
class QueueRow:
    """One line of the image queue."""

    image_id: int
    file_name: str
    status: str
    confidence: float | None
    tags: tuple[str, ...]


class SharedSegmenter:
    """A segmenter shared by several sessions: a lock, and the image it currently holds.

    ``segmenter`` follows the ``annotate.segmenters`` interface (``set_image``, ``predict``, ``model_id``,
    ``is_fallback``). ``key`` names an image (its sha256); the segmenter is re-targeted only when it changes.
    """

    def __init__(self, segmenter: Any):
        self.segmenter = segmenter
        self._lock = threading.Lock()
        self._key: str | None = None

    @property
    def model_id(self) -> str:
        return str(getattr(self.segmenter, "model_id", type(self.segmenter).__name__))

    @property
    def is_fallback(self) -> bool:
        return bool(getattr(self.segmenter, "is_fallback", False))

    def prepare(self, key: str, image: np.ndarray) -> None:
        """Make ``image`` (HWC uint8 RGB) the current image (computes or loads its embedding)."""
        with self._lock:
            self._set(key, image)

    def predict(self, key: str, image: np.ndarray, **prompts: Any):
        """``segmenter.predict(**prompts)`` on ``image``; returns its ``SegmenterOutput``."""
        with self._lock:
            self._set(key, image)
            return self.segmenter.predict(**prompts)

    def _set(self, key: str, image: np.ndarray) -> None:
        if self._key != key:
            self.segmenter.set_image(image)
            self._key = key


def mask_to_logits(mask: np.ndarray, size: int = 256, magnitude: float = 8.0) -> np.ndarray:
    """A binary mask as SAM low-res logits: (size, size) float32, ``+magnitude`` inside, ``-magnitude`` outside.

    SAM's low-res frame is the image scaled so its longest side fills ``size``, anchored top-left and padded,
    the layout of ``SegmenterOutput.low_res_logits``.
    """
    import cv2

    h, w = mask.shape
    scale = size / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    small = cv2.resize(mask.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.full((size, size), -magnitude, np.float32)
    out[:nh, :nw] = np.where(small >= 0.5, magnitude, -magnitude)
    return out


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight XYXY box of a (H, W) bool mask (pixel edges, x2/y2 exclusive), None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def stroke_mask(
    shape: tuple[int, int], points: Sequence[tuple[float, float]], radius: float
) -> np.ndarray:
    """(H, W) bool mask of a brush stroke: discs of ``radius`` pixels along the polyline through ``points`` (XY)."""
    import cv2

    if radius <= 0:
        raise ValueError(f"brush radius must be positive, got {radius}")
    canvas = np.zeros(shape, np.uint8)
    pts = [(int(round(x)), int(round(y))) for x, y in points]
    r = int(round(radius))
    for p in pts:
        cv2.circle(canvas, p, r, 1, thickness=-1)
    for a, b in zip(pts[:-1], pts[1:], strict=False):
        cv2.line(canvas, a, b, 1, thickness=2 * r + 1)
    return canvas.astype(bool)


class ReviewSession:
    """One annotator's editing state over a :class:`ProjectStore`.

    Args:
        store: the open project.
        segmenter: a :class:`SharedSegmenter` or a bare segmenter (wrapped).
        user: name written with every save.
    """

    def __init__(self, store: ProjectStore, segmenter: Any, *, user: str = "local"):
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
        self.image_id = record.id
        self.image = image
        self.image_key = record.sha256
        self._load_instances(record)
        tags = [t for t in record.tags if t in self.classes]
        if tags:
            self.new_class = self.classes.index(tags[0]) + 1

    def reload(self) -> None:
        """Re-read the current image's instances and version from the store."""
        self._require_image()
        self._load_instances(self.store.image(self.image_id))

    def _load_instances(self, record: Any) -> None:
        self.version = record.version
        self.status = record.status
        self.instances = [
            EditableInstance(
                class_id=r.class_id,
                mask=np.asarray(self.store.instance_mask(r), bool),
                score=float(r.score),
                source=r.source,
                needs_review=bool(r.needs_review),
                reason=r.reason or "",
            )
            for r in self.store.instances(record.id)
        ]
        self.selected = None
        self.pending_corner = None

    def _require_image(self) -> np.ndarray:
        if self.image is None or self.image_id is None:
            raise ValueError("no image is open: pick one in the queue first")
        return self.image

    def prepare_segmenter(self) -> None:
        """Give the current image to the segmenter now (SAM encodes it once; later clicks are fast)."""
        self.segmenter.prepare(self.image_key, self._require_image())

    # ------------------------------------------------------------------ saving
    def _commit(self, status: str | None = None) -> int:
        """Save all instances as the image's new version; on a stale version reload and raise EditConflict."""
        self._require_image()
        try:
            self.version = self.store.save_labels(
                self.image_id,
                [inst.to_new() for inst in self.instances],
                user=self.user,
                expected_version=self.version,
                status=status,
            )
        except VersionConflict as error:
            self.reload()
            raise EditConflict(
                f"image {self.image_id} was changed by someone else since you opened it; the latest labels "
                f"(version {self.version}) are now shown and your last edit was not saved ({error})"
            ) from error
        if status is not None:
            self.status = status
        return self.version

    # ------------------------------------------------------------------ selection
    def instance_at(self, x: float, y: float) -> int | None:
        """Index of the smallest instance covering pixel (x, y), None if none does."""
        image = self._require_image()
        xi, yi = int(x), int(y)
        if not (0 <= xi < image.shape[1] and 0 <= yi < image.shape[0]):
            return None
        hits = [(inst.area, i) for i, inst in enumerate(self.instances) if inst.mask[yi, xi]]
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
            raise ValueError("select an instance first (click it with the select tool or pick it in the list)")
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
        image = self._require_image()
        if not (0 <= x < image.shape[1] and 0 <= y < image.shape[0]):
            raise ValueError(f"point ({x:.0f}, {y:.0f}) lies outside the {image.shape[1]}x{image.shape[0]} image")
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
        previous = dataclasses.replace(inst)
        inst.points = np.concatenate([inst.points, np.array([[x, y]], np.float32)])
        inst.labels = np.concatenate([inst.labels, np.array([1 if positive else 0], np.int64)])
        try:
            self._refine(inst)
            self.selected = index
            self._commit()
        except Exception:
            if created:
                self.instances.pop(index)
                self.selected = None
            else:
                self.instances[index] = previous
            raise
        return index

    def add_box(self, box: Sequence[float], class_id: int | None = None) -> int:
        """A new instance of ``class_id`` (default :attr:`new_class`) from an XYXY box; selected and saved."""
        image = self._require_image()
        h, w = image.shape[:2]
        x0, y0, x1, y1 = (float(v) for v in box)
        x0, x1 = sorted((min(max(x0, 0), w - 1), min(max(x1, 0), w - 1)))
        y0, y1 = sorted((min(max(y0, 0), h - 1), min(max(y1, 0), h - 1)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise ValueError(f"box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) is too small: drag at least 2 px each way")
        cid = self.class_id(class_id if class_id is not None else self.new_class)
        inst = EditableInstance(class_id=cid, mask=np.zeros((h, w), bool), source="manual", box=(x0, y0, x1, y1))
        self._refine(inst)
        self.instances.append(inst)
        self.selected = len(self.instances) - 1
        try:
            self._commit()
        except Exception:
            self.instances.pop()
            self.selected = None
            raise
        return self.selected

    def _refine(self, inst: EditableInstance) -> None:
        """Run the segmenter on the instance's prompts and replace its mask, score and logits."""
        image = self._require_image()
        prompts: dict[str, Any] = {}
        if len(inst.points):
            prompts["point_coords"] = inst.points.astype(np.float32)
            prompts["point_labels"] = inst.labels.astype(np.int64)
        box = inst.box
        if inst.logits is not None:
            prompts["mask_input"] = inst.logits[None].astype(np.float32)
        elif inst.mask.any():
            # A mask that did not come from the segmenter (loaded, painted, merged): its logits guide the refinement.
            prompts["mask_input"] = mask_to_logits(inst.mask)[None]
        if box is not None:
            prompts["box"] = np.asarray(box, np.float32)
        single_click = len(inst.points) == 1 and box is None and "mask_input" not in prompts
        out = self.segmenter.predict(self.image_key, image, multimask=single_click, **prompts)
        masks = np.asarray(out.masks, bool)
        scores = np.asarray(out.scores, np.float32)
        if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
            raise ValueError(f"segmenter returned masks of shape {masks.shape}, expected (M, {image.shape[0]}, {image.shape[1]})")
        best = int(np.argmax(scores)) if len(scores) else 0
        inst.mask = masks[best].copy()
        inst.score = float(scores[best]) if len(scores) else 1.0
        inst.logits = np.asarray(out.low_res_logits[best], np.float32).copy()
        seg = self.segmenter
        inst.source = "grabcut" if seg.is_fallback else "sam"
        inst.needs_review = False
        inst.reason = ""

    # ------------------------------------------------------------------ instance edits
    def set_class(self, class_id: int | str, index: int | None = None) -> None:
        """Change the class of the selected (or given) instance; saved at once."""
        index = self._target(index)
        inst = self.instances[index]
        old = inst.class_id
        inst.class_id = self.class_id(class_id)
        try:
            self._commit()
        except EditConflict:
            raise
        except Exception:
            inst.class_id = old
            raise

    def delete(self, index: int | None = None) -> None:
        """Delete the selected (or given) instance; saved at once."""
        index = self._target(index)
        removed = self.instances.pop(index)
        self.selected = None
        try:
            self._commit()
        except EditConflict:
            raise
        except Exception:
            self.instances.insert(index, removed)
            raise

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
        )
        saved = list(self.instances)
        self.instances[a] = merged
        self.instances.pop(b)
        index = a if a < b else a - 1
        self.selected = index
        try:
            self._commit()
        except EditConflict:
            raise
        except Exception:
            self.instances = saved
            self.selected = a
            raise
        return index

    def paint(self, add: np.ndarray | None = None, remove: np.ndarray | None = None, index: int | None = None) -> int:
        """Brush (``add``) and eraser (``remove``) on the selected instance: (H, W) bool stroke masks.

        With no selection and a non-empty ``add``, the strokes become a new instance of :attr:`new_class`.
        Returns the signed change of the mask's pixel count.
        """
        image = self._require_image()
        shape = image.shape[:2]
        for name, stroke in (("brush", add), ("eraser", remove)):
            if stroke is not None and stroke.shape != shape:
                raise ValueError(f"{name} stroke has shape {stroke.shape}, the image is {shape}")
        add = np.zeros(shape, bool) if add is None else add.astype(bool)
        remove = np.zeros(shape, bool) if remove is None else remove.astype(bool)
        created = False
        if index is None and self.selected is None:
            if not add.any():
                raise ValueError("select an instance first (or paint with the brush to start a new one)")
            self.instances.append(EditableInstance(class_id=self.class_id(self.new_class), mask=np.zeros(shape, bool)))
            self.selected = len(self.instances) - 1
            created = True
        index = self._target(index)
        inst = self.instances[index]
        previous = dataclasses.replace(inst)
        before = inst.area
        inst.mask = (inst.mask | add) & ~remove
        inst.logits = None
        inst.source = "manual"
        inst.needs_review = False
        try:
            self._commit()
        except EditConflict:
            raise
        except Exception:
            if created:
                self.instances.pop(index)
                self.selected = None
            else:
                self.instances[index] = previous
            raise
        return inst.area - before

    def brush(self, points: Sequence[tuple[float, float]], radius: float, *, erase: bool = False) -> int:
        """Paint (or erase) a stroke of ``radius`` px along ``points`` (XY) on the selected instance."""
        image = self._require_image()
        stroke = stroke_mask(image.shape[:2], points, radius)
        return self.paint(remove=stroke) if erase else self.paint(add=stroke)

    # ------------------------------------------------------------------ history and status
    def undo(self) -> None:
        """Go back to the image's previous saved version (through the store's history)."""
        self._require_image()
        self.store.undo(self.image_id, user=self.user)
        self.reload()

    def redo(self) -> None:
        """Re-apply the version undone last."""
        self._require_image()
        self.store.redo(self.image_id, user=self.user)
        self.reload()

    def set_status(self, status: str) -> None:
        """Set the image's status (one of ``STATUSES``), saving at once."""
        self._require_image()
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; choose one of {STATUSES}")
        try:
            self.version = self.store.set_status(
                self.image_id, status, user=self.user, expected_version=self.version
            )
        except VersionConflict as error:
            self.reload()
            raise EditConflict(
                f"image {self.image_id} was changed by someone else; the latest labels are shown, "
                f"status not changed ({error})"
            ) from error
        self.status = status

    def accept_and_next(self, *, status_filter: str | None = None, order: str = "confidence") -> int | None:
        """Mark the current image accepted, then open the next one in the queue that is not accepted.

        Returns the id of the image opened, or None when every image in the queue is accepted (the current
        image stays open).
        """
        self._require_image()
        current = self.image_id
        self.set_status("accepted")
        rows = self.queue(status=status_filter, order=order)
        ids = [r.image_id for r in rows]
        start = ids.index(current) + 1 if current in ids else 0
        for row in rows[start:] + rows[:start]:
            if row.status != "accepted" and row.image_id != current:
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
        counts = dict.fromkeys(STATUSES, 0)
        for r in self.store.list_images():
            counts[r.status] = counts.get(r.status, 0) + 1
        counts["total"] = sum(counts.values())
        return counts

    def instance_rows(self) -> list[list[Any]]:
        """Rows of the instance list: [#, class, score, source, area px, review note]."""
        classes = self.classes
        rows = []
        for i, inst in enumerate(self.instances):
            name = classes[inst.class_id - 1] if 1 <= inst.class_id <= len(classes) else f"id {inst.class_id}"
            note = inst.reason or ("check" if inst.needs_review else "")
            mark = "▶ " if i == self.selected else ""
            rows.append([f"{mark}{i + 1}", name, round(float(inst.score), 3), inst.source, inst.area, note])
        return rows

    # ------------------------------------------------------------------ rendering
    def render(
        self,
        *,
        opacity: float = 0.5,
        hidden_classes: Iterable[int] = (),
        show_points: bool = True,
    ) -> np.ndarray:
        """The image with instance overlays: HWC uint8 RGB, same size as the image.

        Each visible instance is blended with its class colour at ``opacity`` in [0, 1] and outlined; the
        selected one gets a white outline and its clicks (green positive, red negative); a pending box corner
        is marked with a cross.
        """
        import cv2

        image = self._require_image()
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity must lie in [0, 1], got {opacity}")
        hidden = set(int(c) for c in hidden_classes)
        h, w = image.shape[:2]
        thick = max(1, int(round(max(h, w) / 400)))
        out = image.astype(np.float32)
        visible = [(i, inst) for i, inst in enumerate(self.instances) if inst.class_id not in hidden]
        # Paint large instances first so small ones stay visible on top.
        visible.sort(key=lambda item: -item[1].area)
        for _, inst in visible:
            color = np.array(class_color(inst.class_id), np.float32)
            out[inst.mask] = out[inst.mask] * (1.0 - opacity) + color * opacity
        canvas = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        for i, inst in visible:
            contours, _ = cv2.findContours(inst.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            if i == self.selected:
                cv2.drawContours(canvas, contours, -1, (255, 255, 255), thick + 2)
            cv2.drawContours(canvas, contours, -1, class_color(inst.class_id), thick)
        if show_points and self.selected is not None and self.selected < len(self.instances):
            inst = self.instances[self.selected]
            radius = max(3, int(round(max(h, w) / 120)))
            for (px, py), label in zip(inst.points, inst.labels, strict=True):
                color = (40, 220, 40) if label == 1 else (230, 30, 30)
                centre = (int(round(px)), int(round(py)))
                cv2.circle(canvas, centre, radius + thick, (255, 255, 255), -1)
                cv2.circle(canvas, centre, radius, color, -1)
            if inst.box is not None:
                x0, y0, x1, y1 = (int(round(v)) for v in inst.box)
                cv2.rectangle(canvas, (x0, y0), (x1, y1), (255, 255, 255), thick)
        if self.pending_corner is not None:
            cx, cy = (int(round(v)) for v in self.pending_corner)
            size = max(6, int(round(max(h, w) / 60)))
            cv2.drawMarker(canvas, (cx, cy), (255, 255, 255), cv2.MARKER_CROSS, size, thick + 1)
        return canvas


def run_bootstrap(
    store: ProjectStore,
    image_ids: Sequence[int] | None = None,
    *,
    progress: ProgressFn | None = None,
    **options: Any,
) -> Any:
    """Run the automatic labelling (``annotate.bootstrap``) on ``image_ids`` (None = all images)."""
    try:
        from annotate import bootstrap
    except ModuleNotFoundError as error:
        if error.name != "annotate.bootstrap":
            raise
        raise RuntimeError("the bootstrap pipeline (annotate.bootstrap) is not installed in this build") from None
    return _call_with_progress(bootstrap, ("bootstrap_project", "run_bootstrap", "bootstrap"),
                               store, image_ids, progress, options)


def run_training_round(
    store: ProjectStore, *, progress: ProgressFn | None = None, **options: Any
) -> Any:
    """Run one recursive training round (``training.rounds``) on the project's reviewed labels."""
    try:
        from training import rounds
    except ModuleNotFoundError as error:
        if error.name != "training.rounds":
            raise
        raise RuntimeError("the training loop (training.rounds) is not installed in this build") from None
    return _call_with_progress(rounds, ("run_round", "training_round", "run_training_round"),
                               store, None, progress, options)


def _call_with_progress(
    module: Any,
    names: Sequence[str],
    store: ProjectStore,
    image_ids: Sequence[int] | None,
    progress: ProgressFn | None,
    options: dict[str, Any],
) -> Any:
    """Call the first entry point of ``module`` among ``names``, forwarding ids and progress where accepted."""
    import inspect

    for name in names:
        fn = getattr(module, name, None)
        if callable(fn):
            break
    else:
        raise RuntimeError(f"{module.__name__} has none of the entry points {list(names)}")
    params = inspect.signature(fn).parameters
    kwargs = dict(options)
    if image_ids is not None:
        if "image_ids" not in params:
            raise RuntimeError(f"{module.__name__}.{fn.__name__} cannot run on selected images")
        kwargs["image_ids"] = list(image_ids)
    if progress is not None and "progress" in params:
        kwargs["progress"] = progress
    return fn(store, **kwargs)
