"""Brush strokes to masks: a stroke along a polyline, and the strokes painted on the GUI's editor layers.

Masks (H, W) bool; points XY pixels; editor layers (H, W, 4) uint8 RGBA.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


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
    and erases otherwise (the red brush). Layers of another size (the editor gets a scaled-down image) are
    read at their own size and the two masks resized (nearest) to ``shape``.
    """
    import cv2

    add = np.zeros(shape, bool)
    remove = np.zeros(shape, bool)
    for layer in layers:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] != 4:
            raise ValueError(f"a brush layer must be (H, W, 4) RGBA, got shape {layer.shape}")
        painted = layer[..., 3] > 127
        green = layer[..., 1].astype(np.int16) > layer[..., 0].astype(np.int16)
        for target, stroke in ((add, painted & green), (remove, painted & ~green)):
            if not stroke.any():
                continue
            if stroke.shape != tuple(shape):
                stroke = cv2.resize(stroke.view(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
            target |= stroke
    return add, remove
