"""Interactive refinement: an instance with its prompts, the shared segmenter, and one refinement step.

Clicks refine an instance at once: the segmenter receives all the instance's clicks, its box (if it was drawn
as one) and its previous low-resolution logits (SAM's ``mask_input``), as Segment Anything's own interactive
loop does. The segmenter is shared between sessions through :class:`SharedSegmenter`, which re-targets it when
another image is asked for (cheap with the embedding cache).

Conventions: images HWC uint8 RGB; masks (H, W) bool; points XY pixels; boxes XYXY pixels.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np

from annotate.rle import encode_mask
from annotate.store import NewInstance
from models.segmenters.base import Segmenter


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
    iscrowd: bool = False  # a crowd region, kept as such through edits (ignore in semantic masks)
    predicted_iou: float | None = None  # the segmenter's own predicted IoU of ``mask``, None when it made none
    points: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0,), np.int64))
    box: tuple[float, float, float, float] | None = None
    logits: np.ndarray | None = None
    # (mask array, its RLE): the encoding of ``mask`` while ``mask`` is that very array. Edits assign a new
    # array, so an unchanged instance is not re-encoded at every save of its image.
    encoded: tuple[np.ndarray, dict] | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def area(self) -> int:
        """Number of mask pixels."""
        return int(np.count_nonzero(self.mask))

    def reshape(self, mask: np.ndarray) -> None:
        """Give this instance a (H, W) bool ``mask`` the segmenter did not predict (cleaned up, painted): it
        drops the segmenter's logits and predicted IoU."""
        self.mask = mask
        self.logits = None
        self.predicted_iou = None

    def rle(self) -> dict:
        """Compressed RLE of ``mask``, encoded once per mask array."""
        if self.encoded is None or self.encoded[0] is not self.mask:
            self.encoded = (self.mask, encode_mask(self.mask))
        return self.encoded[1]

    def to_new(self) -> NewInstance:
        """The store's form of this instance."""
        return NewInstance(
            class_id=self.class_id,
            mask=self.rle(),
            score=float(self.score),
            source=self.source,
            needs_review=bool(self.needs_review),
            reason=self.reason,
            iscrowd=bool(self.iscrowd),
            predicted_iou=self.predicted_iou,
        )


class SharedSegmenter:
    """A segmenter shared by several sessions and the GUI's jobs: a lock, and the image it currently holds.

    ``segmenter`` follows the :class:`models.segmenters.Segmenter` interface. ``key`` names an image (its
    sha256); the segmenter is re-targeted only when it changes. :meth:`lease` hands a job (bootstrap, training
    round) a ``Segmenter`` that uses this same model under the same lock, so a job never loads a second one.
    ``segmenter`` None: a page without a segmenter (clicks then fail with a message).
    """

    def __init__(self, segmenter: Segmenter | None):
        self.segmenter = segmenter
        self._lock = threading.RLock()
        self._key: str | None = None

    @property
    def model_id(self) -> str:
        return self.segmenter.model_id if self.segmenter is not None else "none"

    @property
    def is_fallback(self) -> bool:
        return self.segmenter is None or bool(self.segmenter.is_fallback)

    @property
    def source(self) -> str:
        """Instance source of its masks ("sam" or "grabcut")."""
        return self.segmenter.source if self.segmenter is not None else "manual"

    @property
    def message(self) -> str:
        """A sentence saying what segmenter runs and why (names the missing checkpoint for the fallback)."""
        if self.segmenter is None:
            return "no segmenter: draw and paint by hand"
        return self.segmenter.message or self.model_id

    def mask_prompt(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) bool mask -> (1, L, L) float32 logits in the segmenter's own mask-prompt frame."""
        return self.segmenter.mask_prompt(mask)

    def prepare(self, key: str, image: np.ndarray) -> None:
        """Make ``image`` (HWC uint8 RGB) the current image (computes or loads its embedding)."""
        with self._lock:
            self._set(key, image)

    def predict(self, key: str, image: np.ndarray, **prompts: Any):
        """``segmenter.predict(**prompts)`` on ``image``; returns its ``SegmenterOutput``."""
        with self._lock:
            self._set(key, image)
            return self.segmenter.predict(**prompts)

    @property
    def has_embedding(self) -> bool:
        """Whether the segmenter encodes images (SAM family): only then is there anything to prefetch."""
        return self.segmenter is not None and self.segmenter.has_embedding

    def prefetch(self, image: np.ndarray) -> None:
        """Start encoding ``image`` (HWC uint8 RGB) in the background (:meth:`Segmenter.prefetch`), so that its first
        click does not wait for the encoder; no lock is taken: the current image stays as it is."""
        if self.segmenter is not None:
            self.segmenter.prefetch(image)

    def lease(self) -> SegmenterLease | None:
        """A ``Segmenter`` for a job that shares this model (and its lock) with the GUI's sessions."""
        return SegmenterLease(self) if self.segmenter is not None else None

    def replace(self, segmenter: Segmenter) -> None:
        """Answer every later request with ``segmenter`` instead (the GUI's segmenter switch); the current
        image is set on it at the next request. Leases made before keep their own image but use the new model."""
        with self._lock:
            self.segmenter = segmenter
            self._key = None

    def _set(self, key: str, image: np.ndarray) -> None:
        if self._key != key:
            self.segmenter.set_image(image)
            self._key = key


class SegmenterLease(Segmenter):
    """The shared segmenter seen by one job: its own current image, the shared model underneath.

    Every call takes the shared lock and re-targets the model to this lease's image when a session moved it
    to another one meanwhile (cheap: the embedding comes from the cache or the model's memory).
    """

    def __init__(self, shared: SharedSegmenter) -> None:
        super().__init__()
        inner = shared.segmenter
        self.shared = shared
        self.name, self.model_id, self.source = inner.name, inner.model_id, inner.source
        self.is_fallback = inner.is_fallback
        self.message, self.long_side, self.mask_input_size = inner.message, inner.long_side, inner.mask_input_size
        self._image: np.ndarray | None = None
        self._key: str | None = None

    def set_image(self, image: np.ndarray) -> None:
        from models.embedding_cache import image_hash

        image = self.check_image(image)
        self._image, self._key = image, "lease:" + image_hash(image)
        self._image_size = (int(image.shape[0]), int(image.shape[1]))
        with self.shared._lock:
            self.shared._set(self._key, image)

    def _current(self) -> Segmenter:
        if self._image is None:
            raise RuntimeError("set_image(image) must be called before predict()")
        self.shared._set(self._key, self._image)
        return self.shared.segmenter

    @property
    def uss_id(self) -> str:
        return self.shared.segmenter.uss_id

    @property
    def frame(self):
        return self.shared.segmenter.frame

    @property
    def embedding(self):
        with self.shared._lock:
            return self._current().embedding

    def uss_features(self):
        with self.shared._lock:
            return self._current().uss_features()

    def mask_prompt(self, mask: np.ndarray) -> np.ndarray:
        return self.shared.segmenter.mask_prompt(mask)

    def logits_to_mask(self, logits: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        return self.shared.segmenter.logits_to_mask(logits, size or self._image_size)

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ):
        with self.shared._lock:
            return self._current().predict(point_coords, point_labels, box, mask_input, multimask)


def box_mask(shape: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """(H, W) bool: the pixels whose centre lies inside the XYXY ``box`` (pixel edges at integers)."""
    import math

    x0, y0, x1, y1 = (float(v) for v in box)
    inside = np.zeros(shape, bool)
    top, left = max(0, math.ceil(y0 - 0.5)), max(0, math.ceil(x0 - 0.5))
    bottom, right = max(top, math.floor(y1 - 0.5) + 1), max(left, math.floor(x1 - 0.5) + 1)
    inside[top:bottom, left:right] = True
    return inside


def refine_instance(segmenter: SharedSegmenter, key: str, image: np.ndarray, inst: EditableInstance) -> None:
    """Run ``segmenter`` on ``image`` (HWC uint8 RGB, named ``key``) with the instance's prompts; replace its
    mask, score and logits in place.

    The prompts are all the instance's clicks, its box and its previous low-res logits (``mask_input``); a
    mask that did not come from the segmenter is turned into a mask prompt instead. A single click asks for
    several masks (the best scoring one is kept). An instance drawn as a box stays inside it: the mask is cut
    to the box (no pixel outside it, whatever the segmenter answered). ValueError when the answer is empty or of
    the wrong shape.
    """
    prompts: dict[str, Any] = {}
    if len(inst.points):
        prompts["point_coords"] = inst.points.astype(np.float32)
        prompts["point_labels"] = inst.labels.astype(np.int64)
    box = inst.box
    if inst.logits is not None:
        prompts["mask_input"] = inst.logits[None].astype(np.float32)
    elif inst.mask.any():
        # A mask that did not come from the segmenter (loaded, painted, merged) guides the refinement.
        prompts["mask_input"] = segmenter.mask_prompt(inst.mask)
    if box is not None:
        prompts["box"] = np.asarray(box, np.float32)
    single_click = len(inst.points) == 1 and box is None and "mask_input" not in prompts
    out = segmenter.predict(key, image, multimask=single_click, **prompts)
    scores = np.asarray(out.scores, np.float32)
    if len(scores) == 0:
        raise ValueError("the segmenter found no object for these prompts; try another point or a box")
    best = out.best  # the only mask made (a segmenter may make each mask when it is read)
    mask = np.asarray(out.mask(best), bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"segmenter returned a mask of shape {mask.shape}, expected {image.shape[:2]}")
    if not mask.any():
        raise ValueError("the segmenter found no object for these prompts; try another point or a box")
    mask = mask.copy()
    if box is not None:
        mask &= box_mask(image.shape[:2], box)
        if not mask.any():
            raise ValueError("the segmenter found nothing inside the box; draw it around the object")
    inst.mask = mask
    inst.predicted_iou = float(scores[best])
    inst.score = inst.predicted_iou  # no seed here: the rating is it
    inst.logits = np.asarray(out.low_res_logits[best], np.float32).copy()
    inst.source = segmenter.source
    inst.needs_review = False
    inst.reason = ""
