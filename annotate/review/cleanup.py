"""Mask clean-up for the review session's bulk actions: connected pieces of an instance mask.

Masks (H, W) bool; connectivity is 8 (pixels touching at a corner belong to one piece). Each function works on
the mask's bounding box only, so a small instance on a large photo costs its own size.
"""

from __future__ import annotations

import numpy as np


def _bounds(mask: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(1))
    if not len(rows):
        return None
    cols = np.flatnonzero(mask.any(0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _pieces(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels (h, w) int32, areas (count,) of labels 0..count-1; label 0 is the background)."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(crop.astype(np.uint8), connectivity=8)
    return labels, stats[:, cv2.CC_STAT_AREA].copy()


def largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest connected piece of ``mask`` (H, W) bool (the mask itself when it has one piece or none)."""
    where = _bounds(mask)
    if where is None:
        return mask
    labels, areas = _pieces(mask[where])
    if len(areas) <= 2:
        return mask
    areas[0] = 0
    out = np.zeros_like(mask)
    out[where] = labels == int(np.argmax(areas))
    return out


def without_fragments(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, int]:
    """``mask`` without its connected pieces smaller than ``min_area`` pixels, and the number of pieces removed
    (the mask itself, 0, when none is that small). A mask made only of such pieces comes back empty."""
    if min_area < 1:
        raise ValueError(f"the fragment size must be at least 1 px, got {min_area}")
    where = _bounds(mask)
    if where is None:
        return mask, 0
    labels, areas = _pieces(mask[where])
    small = areas < min_area
    small[0] = False
    removed = int(small.sum())
    if not removed:
        return mask, 0
    keep = ~small
    keep[0] = False
    out = np.zeros_like(mask)
    out[where] = keep[labels]
    return out, removed
