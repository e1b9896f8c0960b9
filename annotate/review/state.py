"""The review session's state: the open image, its instances, the selection and the tool settings.

:class:`SessionState` opens, releases, restores and closes an image, reads its instances from the store, looks
up classes and selects instances. It saves nothing: edits go through :class:`annotate.review.saving.SavingSession`.

Opening an image checks its file against the SHA-256 recorded when it was added (a changed file is refused,
naming it). :meth:`SessionState.release` frees the pixels and masks of a session not in use (the GUI bounds its
memory so) and :meth:`SessionState.restore` reads them again.

Conventions: images HWC uint8 RGB; masks (H, W) bool; points XY pixels; class id = index in ``store.classes``
+ 1.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

import numpy as np

from annotate.review.overlay import OverlayCache
from annotate.review.refine import EditableInstance, SharedSegmenter
from annotate.store import ProjectStore
from models.segmenters import Segmenter

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SavedLabel:
    """What the confidence reads of a saved instance (:func:`annotate.confidence.edited_confidence`)."""

    class_id: int
    needs_review: bool


def saved_labels(instances: list[EditableInstance]) -> list[SavedLabel]:
    """The confidence's view of ``instances``: one :class:`SavedLabel` each, in order."""
    return [SavedLabel(inst.class_id, bool(inst.needs_review)) for inst in instances]


class SessionState:
    """One annotator's view of a :class:`ProjectStore`: the open image and what is selected on it.

    Args:
        store: the open project.
        segmenter: a :class:`SharedSegmenter` or a bare segmenter (wrapped).
        user: name written with every save.

    Attributes:
        image_id, image, image_key: the open image's id, pixels (H, W, 3) uint8 RGB and SHA-256 (None, None,
            "" when none is open; ``image`` None also while released).
        version, status, confidence, tag_ids: the open image's label version, status, confidence and the class
            ids of its tags, as last read or saved.
        instances: the open image's instances, each with an (H, W) bool mask.
        selected: index into ``instances`` of the selected instance, or None.
        tool, new_class: the click tool (see :data:`annotate.review.session.TOOLS`) and the class id given to a
            new instance.
        pending_corner: the box tool's first corner (x, y) in pixels, or None.
        released: True while :meth:`release` has freed the pixels and masks.
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
        self._labels_as_saved: list[SavedLabel] = []  # the instances as last saved, for the confidence
        self._overlay_cache = OverlayCache()  # the overlay's resized image, masks and outlines

    # ------------------------------------------------------------------ classes
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

    def class_name(self, class_id: int) -> str:
        """Name of a class id, or ``"id N"`` for an id the project has no class for."""
        classes = self.classes
        return classes[class_id - 1] if 1 <= class_id <= len(classes) else f"id {class_id}"

    def _new_instance_class(self, class_id: int | str | None) -> int:
        """The class id of a new instance: ``class_id``, or :attr:`new_class` when it is None."""
        return self.class_id(class_id if class_id is not None else self.new_class)

    # ------------------------------------------------------------------ images
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

    def prefetch_image(self, image_id: int) -> threading.Thread | None:
        """Read image ``image_id`` and encode it for the segmenter in the background (the image the annotator will
        likely open next), so that its first click does not wait for the encoder; returns the reading thread, or
        None for a segmenter without an image encoder (nothing is read). A missing or unreadable image is left
        for :meth:`open_image` to report."""
        if not self.segmenter.has_embedding:
            return None

        def read_and_encode() -> None:
            try:
                self.segmenter.prefetch(self.store.load_image(int(image_id)))
            except Exception:  # a prefetch only saves time; opening the image reports the problem
                logger.debug("prefetching image %s failed", image_id, exc_info=True)

        thread = threading.Thread(target=read_and_encode, name="prefetch-image", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Free the open image's pixels and masks (to bound memory); :meth:`restore` reads them again.

        Every edit is saved at once, so nothing is lost but the clicks of the selected instance and the pending
        box corner. The image stays the one the session works on.
        """
        if self.image_id is None or self.released:
            return
        self.released = True
        self._overlay_cache = OverlayCache()
        self._drop_pixels()

    def restore(self) -> None:
        """Read the image and its labels again after :meth:`release` (nothing to do otherwise)."""
        if self.released and self.image_id is not None:
            self.released = False
            self.open_image(self.image_id)

    def close_image(self) -> None:
        """Leave the open image (e.g. after it was removed from the project): nothing is open afterwards."""
        self.released = False
        self.image_id = None
        self.image_key = ""
        self.version = None
        self.status = ""
        self._drop_pixels()

    def _drop_pixels(self) -> None:
        """Forget the image's pixels, its instances, the selection and the pending box corner."""
        self.image = None
        self.instances = []
        self.selected = None
        self.pending_corner = None

    def reload(self) -> None:
        """Re-read the current image's instances and version from the store."""
        self.require_image()
        self._load_instances(self.store.image(self.image_id))

    def _load_instances(self, record: Any) -> None:
        """Read the version, status, confidence, tags and instances of the image ``record`` (a store record)."""
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
        self._labels_as_saved = saved_labels(self.instances)

    def require_image(self) -> np.ndarray:
        """The open image (H, W, 3) uint8 RGB; ValueError when none is open."""
        if self.image is None or self.image_id is None:
            raise ValueError("no image is open: pick one in the queue first")
        return self.image

    def prepare_segmenter(self) -> None:
        """Give the current image to the segmenter now (SAM encodes it once; later clicks are fast)."""
        self.segmenter.prepare(self.image_key, self.require_image())

    # ------------------------------------------------------------------ selection
    def instance_at(self, x: float, y: float, *, exclude: int | None = None) -> int | None:
        """Index of the topmost instance covering pixel (x, y) (the smallest: the overlay draws small ones on
        top), leaving out instance ``exclude``; None if none does."""
        image = self.require_image()
        xi, yi = int(x), int(y)
        if not (0 <= xi < image.shape[1] and 0 <= yi < image.shape[0]):
            return None
        hits = [(inst.area, i) for i, inst in enumerate(self.instances) if i != exclude and inst.mask[yi, xi]]
        return min(hits)[1] if hits else None

    def select(self, index: int | None) -> None:
        """Select an instance by index (None clears the selection)."""
        if index is not None:
            self._check_index(index)
        self.selected = index
        self.pending_corner = None

    def _selected_or(self, index: int | None) -> int:
        """``index``, or the selected instance's when it is None; ValueError when that is no instance."""
        index = self.selected if index is None else index
        if index is None:
            raise ValueError(
                "select an instance first (click it with the select tool or pick it in the list)"
            )
        self._check_index(index)
        return index

    def _check_index(self, index: int) -> None:
        """ValueError unless ``index`` is an index into :attr:`instances`."""
        if not 0 <= index < len(self.instances):
            raise ValueError(f"no instance #{index + 1}: the image has {len(self.instances)}")

    def _select_instance(self, chosen: EditableInstance | None) -> None:
        """Select ``chosen`` where it now stands in :attr:`instances` (nothing when it is None or gone)."""
        self.selected = next((i for i, inst in enumerate(self.instances) if inst is chosen), None)
