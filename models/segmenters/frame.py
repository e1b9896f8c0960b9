"""The frame a segmenter's mask prompts and low-resolution logits live in, owned by the segmenter.

Segment Anything (v1) resizes an image so that its longest side is ``long_side`` (1024), pads the bottom and
right to a square and encodes it to a grid of ``long_side / 16`` cells; mask prompts and its low-resolution
logits are ``mask_input_size`` (256) squares of that padded frame. :class:`LongestSideFrame` maps masks,
logits and embeddings between that frame and the image, so a caller never needs to know it. SAM 2 resizes
the image to a ``long_side`` square (both sides scaled, no padding); its mask prompts and logits are
``mask_input_size`` squares of that stretched image: :class:`SquareFrame`. Each segmenter names its frame
(``Segmenter.frame``); both follow the :class:`Frame` protocol.

Conventions: masks (H, W) bool; logits (1, L, L) float32; embeddings (C, g, g) on the encoder's grid. Logits come
back to the image as the packages' own predictors bring them (bilinear resizes, ``align_corners=False``), for the
masks asked for only (:meth:`Frame.logits_to_masks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Frame", "LongestSideFrame", "SquareFrame", "resized_size"]

MASK_LOGIT = 8.0
"""Logit magnitude of a fully covered (or fully empty) cell in a mask prompt."""


def resized_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h', w') of an (H, W) image resized so its longest side is ``long_side`` (SAM's rounding)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


class Frame(Protocol):
    """What a segmenter's frame does: masks <-> mask-prompt logits, and the embedding cells of an image."""

    long_side: int
    mask_input_size: int

    def mask_to_logits(self, mask: np.ndarray, mask_logit: float = MASK_LOGIT) -> np.ndarray:
        """(H, W) bool -> (1, L, L) float32 logits."""

    def logits_to_mask(self, logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """(1, L, L) or (L, L) logits -> (H, W) bool at ``size``."""

    def logits_to_masks(self, logits: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """(M, L, L) logits -> (M, H, W) bool at ``size``."""

    def embedding_cells(self, embedding: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(C, g, g) embedding of an (H, W) image -> (C, h, w) cells that cover the image."""


def _stack(logits: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(M, L, L), (1, L, L) or (L, L) logits -> (1, M, L, L) float32 tensor (numpy memory shared, a tensor's
    device kept)."""
    x = torch.as_tensor(logits, dtype=torch.float32)
    return x.reshape(1, -1, x.shape[-2], x.shape[-1])


def _bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size, mode="bilinear", align_corners=False)


def _as_chw(embedding: torch.Tensor) -> torch.Tensor:
    if embedding.ndim == 4 and embedding.shape[0] == 1:
        embedding = embedding[0]
    if embedding.ndim != 3:
        raise ValueError(f"embedding must be (C, h, w), got shape {tuple(embedding.shape)}")
    return embedding


@dataclass(frozen=True)
class LongestSideFrame:
    """Longest-side resize to ``long_side``, zero padding to a square, ``mask_input_size`` logit squares."""

    long_side: int = 1024
    mask_input_size: int = 256

    def mask_to_logits(self, mask: np.ndarray, mask_logit: float = MASK_LOGIT) -> np.ndarray:
        """(H, W) bool -> (1, L, L) float32 logits ``(2 f - 1) * mask_logit`` (f: covered share of a cell)."""
        import cv2

        height, width = mask.shape
        new_h, new_w = resized_size(height, width, self.long_side)
        # resized as 0 / 255 bytes (a quarter of the memory of floats on a large photo), back to [0, 1] after
        coverage = np.ascontiguousarray(mask, bool).view(np.uint8) * np.uint8(255)
        resized = cv2.resize(coverage, (new_w, new_h), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        padded = np.zeros((self.long_side, self.long_side), np.float32)
        padded[:new_h, :new_w] = resized
        side = self.mask_input_size
        low = cv2.resize(padded, (side, side), interpolation=cv2.INTER_AREA)
        return ((2.0 * np.clip(low, 0.0, 1.0) - 1.0) * mask_logit)[None].astype(np.float32)

    def logits_to_mask(self, logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """(1, L, L) or (L, L) logits -> (H, W) bool at ``size``, undoing the padding and the resize."""
        return self.logits_to_masks(logits, size)[0]

    def logits_to_masks(self, logits: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """(M, L, L) logits -> (M, H, W) bool at ``size``: Segment Anything's post-processing (a bilinear resize
        to the ``long_side`` square, the padding cut off, a bilinear resize to the image), the first resize made
        for the kept part of the square only (the same values: the low-resolution rows and columns it reads, one
        more for the bilinear neighbour, at the same scale); the second is skipped when it keeps the size."""
        x = _stack(logits)
        height, width = size
        new_h, new_w = resized_size(height, width, self.long_side)
        side = x.shape[-1]
        if self.long_side % side == 0:  # the resize reads rows and columns at the scale side / long_side
            factor = self.long_side // side
            rows, cols = (min(side, -(-n // factor) + 1) for n in (new_h, new_w))
            x = F.interpolate(x[..., :rows, :cols], (rows * factor, cols * factor), mode="bilinear",
                              align_corners=False)
        else:
            x = _bilinear(x, (self.long_side, self.long_side))
        return (_bilinear(x[..., :new_h, :new_w], size) > 0.0)[0].cpu().numpy()

    def embedding_cells(self, embedding: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(C, g, g) embedding of an (H, W) image -> (C, h, w): the cells that cover the image, not the padding."""
        embedding = _as_chw(embedding)
        grid = embedding.shape[-1]
        stride = self.long_side / grid
        rh, rw = resized_size(*size, self.long_side)
        h = min(grid, max(1, math.ceil(rh / stride)))
        w = min(grid, max(1, math.ceil(rw / stride)))
        return embedding[:, :h, :w]


@dataclass(frozen=True)
class SquareFrame:
    """Resize of both sides to ``long_side`` (no padding), ``mask_input_size`` logit squares: SAM 2's frame.

    A low-resolution logit cell covers ``W / L`` x ``H / L`` image pixels; SAM 2's predictor brings logits back
    to the image by a bilinear resize (``align_corners=False``), which :meth:`logits_to_mask` repeats.
    """

    long_side: int = 1024
    mask_input_size: int = 256

    def mask_to_logits(self, mask: np.ndarray, mask_logit: float = MASK_LOGIT) -> np.ndarray:
        """(H, W) bool -> (1, L, L) float32 logits ``(2 f - 1) * mask_logit`` (f: covered share of a cell)."""
        import cv2

        side = self.mask_input_size
        low = cv2.resize(mask.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
        return ((2.0 * np.clip(low, 0.0, 1.0) - 1.0) * mask_logit)[None].astype(np.float32)

    def logits_to_mask(self, logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """(1, L, L) or (L, L) logits -> (H, W) bool at ``size`` (the stretch undone by a bilinear resize)."""
        return self.logits_to_masks(logits, size)[0]

    def logits_to_masks(self, logits: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """(M, L, L) logits -> (M, H, W) bool at ``size``: SAM 2's post-processing, one bilinear resize."""
        return (_bilinear(_stack(logits), size) > 0.0)[0].cpu().numpy()

    def embedding_cells(self, embedding: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(C, g, g) embedding -> (C, g, g): every cell covers the (stretched) image, none is padding."""
        return _as_chw(embedding)
