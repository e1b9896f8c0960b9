"""The one small interface every promptable segmenter follows (the Segment Anything family and GrabCut)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch

from models.segmenters.frame import Frame, LongestSideFrame


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks (0.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


class SegmenterOutput:
    """Masks predicted from one prompt set.

    masks: (M, H, W) bool at the image's size; scores: (M,) float32 predicted quality in [0, 1] (SAM's IoU
    head, or the GrabCut stand-in's agreement with its prompt); low_res_logits: (M, L, L) float32 logits in
    SAM's mask-prompt frame (L = ``Segmenter.mask_input_size``), to feed back as ``mask_input``.

    A segmenter whose masks are its low-resolution logits brought to the image gives ``to_masks`` ((k, L, L)
    logits -> (k, H, W) bool) instead of ``masks``: each mask is then made when it is first read, so a caller that
    keeps one (:meth:`mask`, e.g. of :attr:`best`) does not pay for the others.
    """

    def __init__(
        self,
        masks: np.ndarray | None = None,
        scores: np.ndarray | None = None,
        low_res_logits: np.ndarray | None = None,
        to_masks: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if (masks is None) == (to_masks is None) or scores is None or low_res_logits is None:
            raise ValueError("SegmenterOutput needs scores, low_res_logits and either masks or to_masks")
        self.scores = scores
        self.low_res_logits = low_res_logits
        self._masks = masks
        self._to_masks = to_masks
        self._made: dict[int, np.ndarray] = {}

    @classmethod
    def from_predictor(cls, masks: np.ndarray, scores: np.ndarray, low_res_logits: np.ndarray) -> SegmenterOutput:
        """From a package predictor's ``predict`` outputs: masks (M, H, W) bool or 0 / 1, scores (M,) (clipped to
        [0, 1]), low_res_logits (M, L, L)."""
        return cls(
            masks=np.asarray(masks) > 0.5,
            scores=np.clip(np.asarray(scores, np.float32), 0.0, 1.0),
            low_res_logits=np.asarray(low_res_logits, np.float32),
        )

    @property
    def masks(self) -> np.ndarray:
        """(M, H, W) bool, all the masks."""
        if self._masks is None:
            self._masks = self._to_masks(self.low_res_logits)
        return self._masks

    def mask(self, index: int) -> np.ndarray:
        """(H, W) bool, mask ``index`` alone."""
        if self._masks is not None:
            return self._masks[index]
        index = range(len(self.scores))[index]  # IndexError out of range; negative indices counted from the end
        if index not in self._made:
            self._made[index] = self._to_masks(self.low_res_logits[index : index + 1])[0]
        return self._made[index]

    @property
    def best(self) -> int:
        """Index of the highest-scoring mask (0 without scores)."""
        return int(np.argmax(self.scores)) if len(self.scores) else 0


class Segmenter(ABC):
    """A promptable segmenter: ``set_image`` once, then ``predict`` from points / box / mask prompts.

    Attributes: ``name`` (the registry name it was built from, e.g. ``"sam2.1_hiera_tiny"``; empty for a
    segmenter made by hand), ``model_id`` (names model and weights; keys the embedding cache), ``source`` (the
    instance source it produces: "sam" for the Segment Anything family, or "grabcut"), ``is_fallback`` and ``message`` (a sentence for the CLI and
    GUI saying what runs and why), ``long_side`` and ``mask_input_size`` (the geometry of mask prompts).

    The segmenter owns that geometry: callers turn a mask into a prompt with :meth:`mask_prompt`, logits back
    into a mask with :meth:`logits_to_mask`, and take the image embedding as USS features from
    :meth:`uss_features`; none of them needs to know the frame (``frame``) these live in.
    """

    name: str = ""
    model_id: str = ""
    source: str = ""
    is_fallback: bool = False
    message: str = ""
    long_side: int = 1024
    mask_input_size: int = 256

    def __init__(self) -> None:
        self._image_size: tuple[int, int] | None = None

    @property
    def frame(self) -> Frame:
        """The frame of this segmenter's mask prompts, low-resolution logits and embedding grid (Segment
        Anything's longest-side frame; a segmenter with another geometry overrides this)."""
        return LongestSideFrame(int(self.long_side), int(self.mask_input_size))

    def mask_prompt(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) bool mask -> (1, L, L) float32 logits to pass as ``predict(mask_input=...)``."""
        return self.frame.mask_to_logits(np.asarray(mask, bool))

    def logits_to_mask(self, logits: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """(1, L, L) low-resolution logits -> (H, W) bool mask at ``size`` (default: the current image's)."""
        size = size or self._image_size
        if size is None:
            raise RuntimeError("logits_to_mask() needs a size or a current image (set_image)")
        return self.frame.logits_to_mask(logits, size)

    @property
    def has_embedding(self) -> bool:
        """Whether :meth:`uss_features` gives the image embedding (SAM); GrabCut has none."""
        return type(self).embedding is not Segmenter.embedding

    @property
    def uss_id(self) -> str:
        """Names the USS features of :meth:`uss_features`: the model, its weights and the geometry."""
        return f"{self.model_id}:cells{self.long_side}"

    def uss_features(self) -> torch.Tensor | None:
        """(C, h, w) embedding cells covering the current image (the frame's padding cut off), or None without
        one: (256, h, w) with max(h, w) = 64 in Segment Anything's longest-side frame, (256, 64, 64) for SAM 2's
        square frame."""
        embedding = self.embedding
        if embedding is None or self._image_size is None:
            return None
        return self.frame.embedding_cells(embedding, self._image_size)

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(H, W) of the current image, None before ``set_image``."""
        return self._image_size

    @staticmethod
    def check_image(image: np.ndarray) -> np.ndarray:
        """Validate an HWC uint8 RGB image; return it contiguous."""
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image must be a numpy array (HWC uint8 RGB), got {type(image).__name__}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) RGB, got shape {image.shape}")
        if image.dtype != np.uint8:
            raise TypeError(f"image must be uint8, got {image.dtype}")
        if min(image.shape[:2]) < 1:
            raise ValueError(f"image is empty: shape {image.shape}")
        return np.ascontiguousarray(image)

    def check_prompts(
        self,
        point_coords: np.ndarray | None,
        point_labels: np.ndarray | None,
        box: np.ndarray | None,
        mask_input: np.ndarray | None,
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Validate and normalise prompts: points (N, 2) float32 XY, labels (N,) int32, box (4,) float32 XYXY,
        mask_input (1, L, L) float32."""
        if self._image_size is None:
            raise RuntimeError("set_image(image) must be called before predict()")
        if point_coords is not None and len(point_coords) == 0:
            point_coords, point_labels = None, None
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        if point_coords is not None:
            point_coords = np.asarray(point_coords, np.float32).reshape(-1, 2)
            point_labels = np.asarray(point_labels, np.int32).reshape(-1)
            if len(point_labels) != len(point_coords):
                raise ValueError(f"{len(point_coords)} points but {len(point_labels)} labels")
            if not np.isin(point_labels, (0, 1)).all():
                raise ValueError("point labels must be 1 (positive) or 0 (negative)")
        if box is not None:
            box = np.asarray(box, np.float32).reshape(-1)
            if box.shape != (4,) or not (box[2] > box[0] and box[3] > box[1]):
                raise ValueError(f"box must be XYXY with x1 > x0 and y1 > y0, got {box.tolist()}")
        if mask_input is not None:
            mask_input = np.asarray(mask_input, np.float32)
            side = self.mask_input_size
            if mask_input.shape not in ((side, side), (1, side, side)):
                raise ValueError(
                    f"mask_input must be (1, {side}, {side}) logits, got shape {mask_input.shape}"
                )
            mask_input = mask_input.reshape(1, side, side)
        if point_coords is None and box is None and mask_input is None:
            raise ValueError("predict() needs at least one prompt: points, a box or a mask")
        return point_coords, point_labels, box, mask_input

    @abstractmethod
    def set_image(self, image: np.ndarray) -> None:
        """Prepare for prompts on ``image`` (H, W, 3) uint8 RGB."""

    def prefetch(self, image: np.ndarray):
        """Prepare ``image`` (H, W, 3) uint8 RGB in the background for a later :meth:`set_image`; returns a
        ``concurrent.futures.Future`` or None when there is nothing to prepare (this default: a segmenter
        without an image encoder)."""
        return None

    @property
    def embedding(self) -> torch.Tensor | None:
        """(C, h, w) image embedding of the current image ((256, 64, 64) for SAM); None without one."""
        return None

    @abstractmethod
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> SegmenterOutput:
        """Masks for the prompts: points (N, 2) XY with labels (N,) 1/0, box (4,) XYXY, mask_input (1, L, L)."""
