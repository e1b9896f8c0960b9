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
    """
    import cv2

    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity}")
    hidden = set(int(c) for c in hidden_classes)
    full = image.shape[:2]
    if scale != 1.0:
        size = (int(round(full[1] * scale)), int(round(full[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    h, w = image.shape[:2]
    sy, sx = h / full[0], w / full[1]

    def shown(mask: np.ndarray) -> np.ndarray:
        if scale == 1.0:
            return mask
        return cv2.resize(np.ascontiguousarray(mask).view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).view(bool)

    def at(x: float, y: float) -> tuple[int, int]:
        return int(round((x + 0.5) * sx - 0.5)), int(round((y + 0.5) * sy - 0.5))

    thick = max(1, int(round(max(h, w) / 400)))
    visible = [(i, inst) for i, inst in enumerate(instances) if inst.class_id not in hidden]
    # Paint large instances first so small ones stay visible on top; one blend for all of them.
    visible.sort(key=lambda item: -item[1].area)
    masks = {i: shown(inst.mask) for i, inst in visible}
    colors = image.copy()
    covered = np.zeros((h, w), bool)
    for i, inst in visible:
        colors[masks[i]] = class_color(inst.class_id)
        covered |= masks[i]
    canvas = image.copy()
    if visible and opacity > 0:
        blended = cv2.addWeighted(image, 1.0 - opacity, colors, opacity, 0.0)
        canvas[covered] = blended[covered]
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
