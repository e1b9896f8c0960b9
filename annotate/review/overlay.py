"""Overlay rendering of the review canvas: class colours, and instances drawn over the image.

Images HWC uint8 RGB; instance masks (H, W) bool; points XY pixels; boxes XYXY pixels; class ids >= 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

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


def class_color(class_id: int) -> tuple[int, int, int]:
    """RGB colour (uint8 values) of a class id >= 1."""
    if class_id < 1:
        raise ValueError(f"class id {class_id} has no colour: classes start at 1 (0 is background)")
    r, g, b = PALETTE[(class_id - 1) % len(PALETTE)]
    return int(r), int(g), int(b)


def render_overlay(
    image: np.ndarray,
    instances: Sequence[Any],
    *,
    selected: int | None = None,
    pending_corner: tuple[float, float] | None = None,
    opacity: float = 0.5,
    hidden_classes: Iterable[int] = (),
    show_points: bool = True,
    scale: float = 1.0,
    cache: dict[int, tuple[np.ndarray, float, np.ndarray]] | None = None,
) -> np.ndarray:
    """``image`` (HWC uint8 RGB) with instance overlays: HWC uint8 RGB, the image's size times ``scale``.

    With ``scale`` != 1 the image and masks are resized first (area / nearest) and the drawing happens at the
    output size, so a large photo shown small costs the small size (coordinates stay full-size pixels).

    ``instances`` have ``class_id``, ``mask`` (H, W) bool and ``area``; the ``selected`` one (an index) also
    ``points`` (N, 2) XY, ``labels`` (N,) and ``box`` (XYXY or None), e.g.
    :class:`annotate.review.refine.EditableInstance`. Each visible instance is blended with its class colour at
    ``opacity`` in [0, 1] (where instances overlap, the smaller one's colour) and outlined; the selected one
    gets a white outline and its clicks (green positive, red negative); a ``pending_corner`` (XY) of a box
    being drawn is marked with a cross.

    ``cache`` (a dict the caller keeps between calls) holds the resized image and masks by array, so that
    redrawing a large photo after an edit resizes only the masks that changed; entries of arrays no longer
    drawn are dropped.
    """
    import cv2

    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity}")
    hidden = set(int(c) for c in hidden_classes)
    full = image.shape[:2]
    size = (int(round(full[1] * scale)), int(round(full[0] * scale)))
    used: dict[int, tuple[np.ndarray, float, np.ndarray]] = {}

    def resized(array: np.ndarray, interpolation: int) -> np.ndarray:
        hit = cache.get(id(array)) if cache is not None else None
        if hit is not None and hit[0] is array and hit[1] == scale:
            out = hit[2]
        else:
            source = np.ascontiguousarray(array)
            if source.dtype == bool:
                out = cv2.resize(source.view(np.uint8), size, interpolation=interpolation).view(bool)
            else:
                out = cv2.resize(source, size, interpolation=interpolation)
        used[id(array)] = (array, scale, out)
        return out

    if scale != 1.0:
        image = resized(image, cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    h, w = image.shape[:2]
    sy, sx = h / full[0], w / full[1]

    def shown(mask: np.ndarray) -> np.ndarray:
        return mask if scale == 1.0 else resized(mask, cv2.INTER_NEAREST)

    def at(x: float, y: float) -> tuple[int, int]:
        return int(round((x + 0.5) * sx - 0.5)), int(round((y + 0.5) * sy - 0.5))

    thick = max(1, int(round(max(h, w) / 400)))
    visible = [(i, inst) for i, inst in enumerate(instances) if inst.class_id not in hidden]
    # Paint large instances first so small ones stay visible on top; one blend for all of them.
    visible.sort(key=lambda item: -item[1].area)
    masks = {i: shown(inst.mask) for i, inst in visible}
    if cache is not None:
        cache.clear()
        cache.update(used)
    # One label map (the last drawn, smallest, instance wins), one colour lookup, one blend.
    # OpenCV's table lookup and masked copy: numpy's fancy indexing is ten times slower at display size.
    canvas = image.copy()
    if visible and opacity > 0:
        colors = image.copy()
        covered = np.zeros((h, w), np.uint8)
        for start in range(0, len(visible), 255):  # 255 instances per label map (0 is "none")
            label = np.zeros((h, w), np.uint8)
            lut = np.zeros((256, 3), np.uint8)
            for k, (i, inst) in enumerate(visible[start : start + 255], 1):
                np.copyto(label, np.uint8(k), where=masks[i])
                lut[k] = class_color(inst.class_id)
            painted = cv2.merge([cv2.LUT(label, lut[:, c].copy()) for c in range(3)])
            hit = (label > 0).view(np.uint8)
            cv2.copyTo(painted, hit, colors)
            covered |= hit
        blended = cv2.addWeighted(image, 1.0 - opacity, colors, opacity, 0.0)
        cv2.copyTo(blended, covered, canvas)
    for i, inst in visible:
        contours, _ = cv2.findContours(masks[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if i == selected:
            cv2.drawContours(canvas, contours, -1, (255, 255, 255), thick + 2)
        cv2.drawContours(canvas, contours, -1, class_color(inst.class_id), thick)
    if show_points and selected is not None and selected < len(instances):
        inst = instances[selected]
        radius = max(3, int(round(max(h, w) / 120)))
        for (px, py), label in zip(inst.points, inst.labels, strict=True):
            color = (40, 220, 40) if label == 1 else (230, 30, 30)
            centre = at(px, py)
            cv2.circle(canvas, centre, radius + thick, (255, 255, 255), -1)
            cv2.circle(canvas, centre, radius, color, -1)
        if inst.box is not None:
            cv2.rectangle(canvas, at(*inst.box[:2]), at(*inst.box[2:]), (255, 255, 255), thick)
    if pending_corner is not None:
        cx, cy = at(*pending_corner)
        size = max(6, int(round(max(h, w) / 60)))
        cv2.drawMarker(canvas, (cx, cy), (255, 255, 255), cv2.MARKER_CROSS, size, thick + 1)
    return canvas
