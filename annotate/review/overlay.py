"""Overlay rendering of the review canvas: class colours, and instances drawn over the image.

Images HWC uint8 RGB; instance masks (H, W) bool; points XY pixels; boxes XYXY pixels; class ids >= 1.
An :class:`OverlayCache` kept between drawings holds what was computed per array (the image and masks resized,
each mask's outline), so that redrawing after an edit does that work again for the changed masks only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
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


class OverlayCache:
    """What :func:`render_overlay` computed from an array, kept while the array is drawn.

    Entries are keyed by the array object (an edit gives an instance a new mask array, so a changed mask is
    never mistaken for the old one) and by what was computed from it (e.g. its size after resizing, or its
    outline's thickness). :meth:`keep_drawn` drops the entries of arrays the last drawing did not use.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[int, Hashable], tuple[np.ndarray, Any]] = {}
        self._drawn: dict[tuple[int, Hashable], tuple[np.ndarray, Any]] = {}

    def get(self, array: np.ndarray, key: Hashable, make: Callable[[], Any]) -> Any:
        """What ``make()`` computes from ``array`` (for ``key``), computed once per array object."""
        slot = (id(array), key)
        hit = self._drawn.get(slot) or self._entries.get(slot)
        value = hit[1] if hit is not None and hit[0] is array else make()
        self._drawn[slot] = (array, value)
        return value

    def keep_drawn(self) -> None:
        """End a drawing: keep only the entries it used."""
        self._entries, self._drawn = self._drawn, {}

    def __len__(self) -> int:
        return len(self._entries)


def _resize(array: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    """``array`` (H, W) bool or (H, W, 3) uint8 resized to ``size`` (W, H) with an OpenCV interpolation."""
    import cv2

    source = np.ascontiguousarray(array)
    if source.dtype == bool:
        return cv2.resize(source.view(np.uint8), size, interpolation=interpolation).view(bool)
    return cv2.resize(source, size, interpolation=interpolation)


_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)


@dataclass(frozen=True)
class Outline:
    """An instance's outline: ``band`` (h, w) uint8, 1 on the outline, placed with its first pixel at row ``top``,
    column ``left`` of the image (the mask's bounding box widened by the outline's width)."""

    top: int
    left: int
    band: np.ndarray

    def paint(self, canvas: np.ndarray, color: tuple[int, int, int]) -> None:
        """Paint the outline on ``canvas`` (H, W, 3) uint8 in ``color``, in place."""
        import cv2

        h, w = self.band.shape
        region = canvas[self.top : self.top + h, self.left : self.left + w]
        painted = cv2.copyTo(np.full((h, w, 3), color, np.uint8), self.band, region)  # in place into the view
        if painted is not region:  # a binding that copied the view instead
            region[...] = painted


def outline(mask: np.ndarray, thickness: int) -> Outline | None:
    """The outline of ``mask`` (H, W) bool, ``thickness`` px wide, or None for an empty mask.

    The outline is the mask's edge, its pixels with a 4-neighbour outside the mask (the edges of holes included;
    the image's border is not an edge), widened to a band ``thickness`` px across (a ``thickness`` x ``thickness``
    square around each edge pixel). Two morphological operations over the mask's bounding box, and painting is
    a masked copy: neither grows with the number of pieces or the length of their edges, so a ragged automatic
    mask draws as fast as a clean one.
    """
    import cv2

    if thickness < 1:
        raise ValueError(f"thickness must be at least 1, got {thickness}")
    source = np.ascontiguousarray(mask).view(np.uint8)
    x, y, bw, bh = cv2.boundingRect(source)
    if bw == 0:
        return None
    h, w = source.shape
    margin = thickness + 1  # room for the band; beyond it the crop's border is background, as the image is
    x0, y0 = max(0, x - margin), max(0, y - margin)
    crop = np.ascontiguousarray(source[y0 : min(h, y + bh + margin), x0 : min(w, x + bw + margin)])
    edge = cv2.subtract(crop, cv2.erode(crop, _CROSS, borderValue=1))  # outside the image counts as inside
    if thickness > 1:
        edge = cv2.dilate(edge, np.ones((thickness, thickness), np.uint8))
    return Outline(y0, x0, edge)


def _outline(
    canvas: np.ndarray,
    mask: np.ndarray,
    shown: np.ndarray,
    thickness: int,
    color: tuple[int, int, int],
    cache: OverlayCache,
) -> None:
    """Paint on ``canvas`` (HWC uint8, in place) the outline of an instance whose ``mask`` is ``shown`` (H, W)
    bool at the canvas's size, ``thickness`` px wide in ``color``; the outline is computed once per mask array."""
    found = cache.get(mask, ("outline", shown.shape, thickness), lambda: outline(shown, thickness))
    if found is not None:
        found.paint(canvas, color)


def _blend_fills(
    image: np.ndarray, visible: list[tuple[int, Any]], masks: dict[int, np.ndarray], opacity: float
) -> np.ndarray:
    """``image`` with the ``visible`` instances (paint order) filled in their class colours at ``opacity``;
    where instances overlap, the last painted wins. ``masks`` are the instances' masks at the image's size."""
    import cv2

    h, w = image.shape[:2]
    canvas = image.copy()
    if not visible or opacity <= 0:
        return canvas
    # One label map (the last drawn, smallest, instance wins), one colour lookup, one blend.
    # OpenCV's table lookup and masked copy: numpy's fancy indexing is ten times slower at display size.
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
    return canvas


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
    cache: OverlayCache | None = None,
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

    ``cache`` (an :class:`OverlayCache` the caller keeps between calls) holds the resized image and masks and
    the masks' outlines, so that redrawing after an edit recomputes them for the masks that changed only.
    """
    import cv2

    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity}")
    cache = cache if cache is not None else OverlayCache()
    hidden = set(int(c) for c in hidden_classes)
    full = image.shape[:2]
    size = (int(round(full[1] * scale)), int(round(full[0] * scale)))

    def resized(array: np.ndarray, interpolation: int) -> np.ndarray:
        if scale == 1.0:
            return array
        return cache.get(array, ("resized", size), lambda: _resize(array, size, interpolation))

    image = resized(image, cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    h, w = image.shape[:2]
    sy, sx = h / full[0], w / full[1]

    def at(x: float, y: float) -> tuple[int, int]:
        return int(round((x + 0.5) * sx - 0.5)), int(round((y + 0.5) * sy - 0.5))

    thick = max(1, int(round(max(h, w) / 400)))
    visible = [(i, inst) for i, inst in enumerate(instances) if inst.class_id not in hidden]
    # Paint large instances first so small ones stay visible on top; one blend for all of them.
    visible.sort(key=lambda item: -item[1].area)
    masks = {i: resized(inst.mask, cv2.INTER_NEAREST) for i, inst in visible}
    canvas = _blend_fills(image, visible, masks, opacity)
    for i, inst in visible:
        shown = masks[i]
        if i == selected:
            _outline(canvas, inst.mask, shown, thick + 2, (255, 255, 255), cache)
        _outline(canvas, inst.mask, shown, thick, class_color(inst.class_id), cache)
    cache.keep_drawn()
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
        marker = max(6, int(round(max(h, w) / 60)))
        cv2.drawMarker(canvas, (cx, cy), (255, 255, 255), cv2.MARKER_CROSS, marker, thick + 1)
    return canvas
