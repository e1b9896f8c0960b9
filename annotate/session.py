"""The review editor without a GUI: one annotator's view of a project, one image at a time.

A :class:`ReviewSession` holds the selected image, its instances, the selected instance and the tool state;
every accepted edit is saved at once through :meth:`annotate.store.ProjectStore.save_labels` with the version it
was based on, so two annotators on the same image never overwrite each other silently: the second save raises
:class:`EditConflict` (from the store's :class:`annotate.store.VersionConflict`) after the session reloaded the
newer labels, and nothing of the stale edit is written.

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
from pathlib import Path
from typing import Any

import numpy as np

from annotate.store import STATUSES, NewInstance, ProjectStore, VersionConflict

logger = logging.getLogger(__name__)

TOOLS = ("select", "positive", "negative", "box")
"""Click tools: pick an instance, add a positive / negative point, or two clicks for a box (new instance)."""

PALETTE = np.array(
    [
        (0, 130, 200),
        (60, 180, 75),
        (255, 225, 25),
        (230, 25, 75),
        (145, 30, 180),
        (70, 240, 240),
        (245, 130, 48),
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


class EditConflict(RuntimeError):
    """The image was changed elsewhere since it was opened; the session has reloaded the newer labels.

    Raised from the store's :class:`annotate.store.VersionConflict` (kept as ``__cause__``); nothing was saved.
    """


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
    ``box`` XYXY pixels or None; ``logits`` (L, L) float32 low-res logits of the segmenter's last answer for
    this instance (L = the segmenter's ``mask_input_size``, 256 for SAM), or None when the mask did not come from the segmenter (loaded, painted, merged).
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

    @property
    def source(self) -> str:
        """Instance source of its masks ("sam" or "grabcut")."""
        return str(getattr(self.segmenter, "source", "") or ("grabcut" if self.is_fallback else "sam"))

    @property
    def message(self) -> str:
        """A sentence saying what segmenter runs and why (names the missing checkpoint for the fallback)."""
        return str(getattr(self.segmenter, "message", "") or self.model_id)

    def mask_prompt(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) bool mask -> (1, L, L) float32 logits in the segmenter's mask-prompt frame."""
        from annotate.prompts import mask_to_sam_logits

        return mask_to_sam_logits(
            mask,
            int(getattr(self.segmenter, "long_side", 1024)),
            int(getattr(self.segmenter, "mask_input_size", 256)),
        )

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


def stroke_mask(shape: tuple[int, int], points: Sequence[tuple[float, float]], radius: float) -> np.ndarray:
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


def strokes_from_layers(
    layers: Iterable[np.ndarray], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Brush strokes painted on RGBA layers -> (add, remove) (H, W) bool masks at ``shape``.

    A painted pixel (alpha > 127) adds to the instance where its colour is greener than red (the green brush)
    and removes otherwise (the red brush). Layers of another size are resized (nearest) to ``shape``.
    """
    import cv2

    add = np.zeros(shape, bool)
    remove = np.zeros(shape, bool)
    for layer in layers:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] != 4:
            raise ValueError(f"a brush layer must be (H, W, 4) RGBA, got shape {layer.shape}")
        if layer.shape[:2] != tuple(shape):
            layer = cv2.resize(layer, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        painted = layer[..., 3] > 127
        green = layer[..., 1].astype(np.int16) > layer[..., 0].astype(np.int16)
        add |= painted & green
        remove |= painted & ~green
    return add, remove


def project_path(root: str | Path, relative: str | Path) -> Path:
    """``root / relative`` resolved, refusing any path that would leave ``root`` (absolute, ``..``, links)."""
    root = Path(root).resolve()
    relative = Path(relative)
    if relative.is_absolute() or relative.drive:
        raise ValueError(
            f"{relative}: an absolute path is not allowed here; give a path inside the project {root}"
        )
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise ValueError(f"{relative}: leads outside the project folder {root}")
    return path


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
        self.require_image()
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
        it alone from then on).
        """
        self.require_image()
        status = "review" if self.status in ("new", "pseudo") else None
        # The store drops empty masks; drop them here too so the list matches what is saved.
        kept = [inst for inst in self.instances if inst.mask.any()]
        if len(kept) != len(self.instances):
            chosen = self.instances[self.selected] if self.selected is not None else None
            self.instances = kept
            self.selected = next((i for i, inst in enumerate(kept) if inst is chosen), None)
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
        image = self.require_image()
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
        previous = dataclasses.replace(inst)
        inst.points = np.concatenate([inst.points, np.array([[x, y]], np.float32)])
        inst.labels = np.concatenate([inst.labels, np.array([1 if positive else 0], np.int64)])
        try:
            self._refine(inst)
            self.selected = index
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
        self._refine(inst)
        self.instances.append(inst)
        self.selected = len(self.instances) - 1
        try:
            self._commit()
        except EditConflict:
            raise
        except Exception:
            self.instances.pop()
            self.selected = None
            raise
        return self.selected

    def _refine(self, inst: EditableInstance) -> None:
        """Run the segmenter on the instance's prompts and replace its mask, score and logits."""
        image = self.require_image()
        prompts: dict[str, Any] = {}
        if len(inst.points):
            prompts["point_coords"] = inst.points.astype(np.float32)
            prompts["point_labels"] = inst.labels.astype(np.int64)
        box = inst.box
        if inst.logits is not None:
            prompts["mask_input"] = inst.logits[None].astype(np.float32)
        elif inst.mask.any():
            # A mask that did not come from the segmenter (loaded, painted, merged) guides the refinement.
            prompts["mask_input"] = self.segmenter.mask_prompt(inst.mask)
        if box is not None:
            prompts["box"] = np.asarray(box, np.float32)
        single_click = len(inst.points) == 1 and box is None and "mask_input" not in prompts
        out = self.segmenter.predict(self.image_key, image, multimask=single_click, **prompts)
        masks = np.asarray(out.masks, bool)
        scores = np.asarray(out.scores, np.float32)
        if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
            raise ValueError(
                f"segmenter returned masks of shape {masks.shape}, expected (M, {image.shape[0]}, {image.shape[1]})"
            )
        best = int(np.argmax(scores)) if len(scores) else 0
        if len(masks) == 0 or not masks[best].any():
            raise ValueError("the segmenter found no object for these prompts; try another point or a box")
        inst.mask = masks[best].copy()
        inst.score = float(scores[best]) if len(scores) else 1.0
        inst.logits = np.asarray(out.low_res_logits[best], np.float32).copy()
        inst.source = self.segmenter.source
        inst.needs_review = False
        inst.reason = ""

    # ------------------------------------------------------------------ instance edits
    def set_class(self, class_id: int | str, index: int | None = None) -> None:
        """Change the class of the selected (or given) instance; saved at once (nothing saved if unchanged)."""
        index = self._target(index)
        inst = self.instances[index]
        old, new = inst.class_id, self.class_id(class_id)
        if new == old:
            return  # nothing to save (no empty step in the undo history)
        inst.class_id = new
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
        created = False
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
        image = self.require_image()
        stroke = stroke_mask(image.shape[:2], points, radius)
        return self.paint(remove=stroke) if erase else self.paint(add=stroke)

    # ------------------------------------------------------------------ history and status
    def undo(self) -> None:
        """Go back to the image's previous saved version (through the store's history)."""
        self.require_image()
        self._history("undo")

    def _history(self, direction: str) -> None:
        move = self.store.undo if direction == "undo" else self.store.redo
        try:
            move(self.image_id, user=self.user, expected_version=self.version)
        except VersionConflict as error:
            self.reload()
            raise EditConflict(
                f"image {self.image_id} was changed by someone else; the latest labels are shown and nothing "
                f"was {direction}ne ({error})"
            ) from error
        self.reload()

    def redo(self) -> None:
        """Re-apply the version undone last."""
        self.require_image()
        self._history("redo")

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
        self.require_image()
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
    ) -> np.ndarray:
        """The image with instance overlays: HWC uint8 RGB, same size as the image.

        Each visible instance is blended with its class colour at ``opacity`` in [0, 1] (where instances
        overlap, the smaller one's colour) and outlined; the selected one gets a white outline and its clicks (green positive, red negative); a pending box corner
        is marked with a cross.
        """
        import cv2

        image = self.require_image()
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity must lie in [0, 1], got {opacity}")
        hidden = set(int(c) for c in hidden_classes)
        h, w = image.shape[:2]
        thick = max(1, int(round(max(h, w) / 400)))
        visible = [(i, inst) for i, inst in enumerate(self.instances) if inst.class_id not in hidden]
        # Paint large instances first so small ones stay visible on top; one blend for all of them.
        visible.sort(key=lambda item: -item[1].area)
        colors = image.copy()
        covered = np.zeros((h, w), bool)
        for _, inst in visible:
            colors[inst.mask] = class_color(inst.class_id)
            covered |= inst.mask
        canvas = image.copy()
        if visible and opacity > 0:
            blended = cv2.addWeighted(image, 1.0 - opacity, colors, opacity, 0.0)
            canvas[covered] = blended[covered]
        for i, inst in visible:
            contours, _ = cv2.findContours(
                inst.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
            )
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
    on_progress: ProgressFn | None = None,
    redo_pseudo: bool = False,
    user: str = "local",
    **options: Any,
) -> Any:
    """Pseudo-label project images with ``annotate.bootstrap`` (classifier -> CAMs -> DHR -> segmenter).

    ``image_ids`` None means every image. Only images still "new" are labelled (the bootstrap never overwrites
    reviewed work); with ``redo_pseudo`` the chosen images in status "pseudo" are set back to "new" first.
    The classifier is trained once on every image of the project (``PROJECT/classifier.pt``, reused later).
    ``options`` are :class:`annotate.bootstrap.BootstrapConfig` fields (``segmenter``, ``device``, ``epochs``...);
    the bootstrap builds its own segmenter, sharing the project's embedding cache with the GUI.
    Returns the :class:`annotate.bootstrap.BootstrapReport`.
    """
    from annotate.bootstrap import CLASSIFIER_FILE, BootstrapConfig, prepare_classifier
    from annotate.bootstrap import run_bootstrap as bootstrap_images
    from annotate.dataset import DatasetEntry, TaggedDataset
    from annotate.store import IMAGES_DIR

    prefix = IMAGES_DIR + "/"
    records = store.list_images(order="name")
    chosen = set(int(i) for i in image_ids) if image_ids is not None else {r.id for r in records}
    unknown = chosen - {r.id for r in records}
    if unknown:
        raise ValueError(f"no image with id(s) {sorted(unknown)} in project {store.root}")
    usable = [r for r in records if r.file_name.startswith(prefix) and r.tags]
    skipped = [r.file_name for r in records if r.id in chosen and r not in usable]
    if skipped:
        logger.warning(
            "not labelled automatically (outside %s or without tags): %s", prefix, ", ".join(skipped)
        )

    def entry(record: Any) -> DatasetEntry:
        return DatasetEntry(record.file_name[len(prefix) :], store.image_path(record.id), tuple(record.tags))

    classes = list(store.classes)
    everything = TaggedDataset(
        store.root / IMAGES_DIR, classes, [entry(r) for r in usable], source=store.root
    )
    targets = [r for r in usable if r.id in chosen]
    if not targets:
        raise ValueError("none of the chosen images can be labelled automatically (they need tags)")
    if redo_pseudo:
        for r in targets:
            if r.status == "pseudo":
                store.set_status(r.id, "new", user=user, expected_version=r.version)
    todo = sum(1 for r in targets if store.image(r.id).status == "new")
    if todo == 0:
        raise ValueError(
            "the chosen images are all labelled or reviewed already (only 'new' images are labelled)"
        )
    defaults = {"embedding_cache": project_path(store.root, "cache/embeddings")}
    config = BootstrapConfig(out=store.root, **{**defaults, **options})
    if on_progress is not None:
        on_progress(0.0, "classifier")
    prepare_classifier(everything, config, store.root / CLASSIFIER_FILE)
    done = [0]

    def image_done(file_name: str) -> None:
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0] / todo, f"labelled {file_name}")

    dataset = TaggedDataset(store.root / IMAGES_DIR, classes, [entry(r) for r in targets], source=store.root)
    return bootstrap_images(dataset, config, on_image_done=image_done)


def run_training_round(
    store: ProjectStore, *, on_progress: ProgressFn | None = None, **options: Any
) -> dict[str, Any]:
    """Run the project's next recursive training round (``training.rounds``); returns that round's figures.

    ``options`` are :class:`training.rounds.RoundsConfig` fields (``segmenter``, ``weights_dir``, ``train``...);
    rounds already done under ``PROJECT/training`` are kept, so each call adds one round. Progress inside the
    round is reported through tqdm bars (a GUI can track them).
    """
    from training.rounds import RoundsConfig, run_rounds

    out_dir = Path(options.get("out_dir") or project_path(store.root, "training"))
    done = len(list(out_dir.glob("round_*/metrics.json"))) if out_dir.is_dir() else 0
    config = RoundsConfig(**{**options, "rounds": done + 1})
    if on_progress is not None:
        on_progress(0.0, f"training round {done + 1}")
    history = run_rounds(store.root, config, progress=True)
    if on_progress is not None:
        on_progress(1.0, f"training round {done + 1} done")
    return history[-1] if history else {}
