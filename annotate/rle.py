"""Thin helpers over pycocotools for instance masks in COCO run-length encoding (RLE).

Formats (as in pycocotools):

- mask: (H, W) bool (or 0/1 integer) numpy array, True = object;
- RLE: compressed COCO RLE dict ``{"size": [H, W], "counts": str}``; the counts string is the column-major run
  lengths (starting with background) in pycocotools' 6-bit text encoding; ``str`` (not bytes) so it is JSON-safe;
- uncompressed RLE: ``{"size": [H, W], "counts": [int, ...]}`` (what some tools write for ``iscrowd`` 1);
- polygons: COCO ``[[x1, y1, x2, y2, ...], ...]`` in pixel coordinates (pixel centres at integer + 0.5 by
  pycocotools' rasteriser convention);
- bbox: COCO XYWH ``[x, y, width, height]`` floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import numpy as np

RLE = dict[str, Any]


def encode_mask(mask: np.ndarray) -> RLE:
    """(H, W) bool mask -> compressed RLE dict with ``str`` counts."""
    from pycocotools import mask as mask_utils

    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {array.shape}")
    import cv2

    # pycocotools reads column-major memory: OpenCV's blocked transpose makes it (numpy's copy is several
    # times slower on a 12 MP mask)
    array = np.ascontiguousarray(array.astype(bool, copy=False)).view(np.uint8)
    fortran = cv2.transpose(array).T if min(array.shape) > 1 else np.asfortranarray(array)
    rle = mask_utils.encode(fortran)
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: RLE) -> np.ndarray:
    """RLE dict (compressed or uncompressed) -> (H, W) bool mask."""
    from pycocotools import mask as mask_utils

    return mask_utils.decode(_coco_rle(rle)).astype(bool)


def rle_area(rle: RLE) -> int:
    """Number of foreground pixels."""
    from pycocotools import mask as mask_utils

    return int(mask_utils.area(_coco_rle(rle)))


def rle_bbox(rle: RLE) -> list[float]:
    """Tight COCO XYWH box ``[x, y, w, h]`` of the foreground (all zeros for an empty mask)."""
    from pycocotools import mask as mask_utils

    return [float(v) for v in mask_utils.toBbox(_coco_rle(rle))]


def _coco_rle(rle: RLE) -> dict:
    """Our RLE dict -> pycocotools' form (bytes counts; uncompressed counts compressed first)."""
    counts = rle["counts"]
    if isinstance(counts, list):
        compressed = normalize_rle(rle)
        return {"size": compressed["size"], "counts": compressed["counts"].encode("ascii")}
    return {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


MAX_RLE_PIXELS = 2**32 - 1
"""Largest mask (H * W) an RLE may describe: pycocotools holds run lengths in 32 bits."""


def _string_runs(counts: bytes) -> list[int]:
    """Run lengths of a compressed counts string, as exact Python integers (no fixed-width wrap).

    pycocotools' text format: each run is a little-endian sequence of 5-bit groups, one character per group
    (``48 + group``, bit 0x20 = more groups follow, bit 0x10 of the last group = sign); runs from the fourth
    on are stored as the difference to the run two places before. The characters are decoded with numpy
    (each number fits in 60 bits, so that part is exact); the differences are summed with Python integers.
    """
    codes = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if codes.size == 0:
        return []
    if codes.min() < 0 or codes.max() >= 64:
        bad = counts[int(np.flatnonzero((codes < 0) | (codes >= 64))[0])]
        raise ValueError(f"invalid character {chr(bad)!r} in counts string")
    last = (codes & 0x20) == 0  # the character ending each number
    if not last[-1]:
        raise ValueError("counts string ends in the middle of a number")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    shift = 5 * (np.arange(codes.size) - np.repeat(starts, ends - starts + 1))
    if shift.max() > 55:
        raise ValueError("counts string holds a number too large for an image")
    values = np.add.reduceat((codes & 0x1F) << shift, starts)
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (shift[ends[negative]] + 5)
    # Undo the delta coding: runs[m] += runs[m - 2] for m > 2, along the odd and the even runs. When no partial
    # sum can leave int64 (every value and the count bound them), numpy's running sums are exact; else Python's.
    if len(values) > 3 and int(np.abs(values).max()) * len(values) < 1 << 62:
        for parity in (3, 4):
            if len(values) > parity:
                values[parity::2] = np.cumsum(values[parity::2]) + values[parity - 2]
        return values.tolist()
    runs = values.tolist()
    for parity in (3, 4):
        if len(runs) > parity:
            runs[parity::2] = list(accumulate(runs[parity::2], initial=runs[parity - 2]))[1:]
    return runs


def _positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value > 0


def normalize_rle(rle: Any, size: Sequence[int] | None = None) -> RLE:
    """Validate an RLE dict from any source and return it compressed with ``str`` counts.

    Every check runs in exact integer arithmetic: run lengths must be non-negative and sum to exactly H * W
    (no 64-bit wrap can make a crafted RLE pass), and H * W must fit pycocotools' 32-bit counts.

    Args:
        rle: ``{"size": [H, W], "counts": str | bytes | list[int]}``.
        size: expected ``(H, W)``; a different ``rle["size"]`` is an error.

    Raises:
        ValueError: not a dict, bad size, negative runs, or run lengths not summing to H * W.
    """
    from pycocotools import mask as mask_utils

    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("RLE must be a dict with 'size' and 'counts'")
    rle_size = rle["size"]
    if not isinstance(rle_size, (list, tuple)) or len(rle_size) != 2 or not all(map(_positive_int, rle_size)):
        raise ValueError(f"RLE size must be [H, W] with positive integers, got {rle_size!r}")
    height, width = int(rle_size[0]), int(rle_size[1])
    if size is not None and (height, width) != (int(size[0]), int(size[1])):
        raise ValueError(
            f"RLE size {height}x{width} does not match the image size {int(size[0])}x{int(size[1])}"
        )
    if height * width > MAX_RLE_PIXELS:
        raise ValueError(f"RLE size {height}x{width} is too large (more than {MAX_RLE_PIXELS} pixels)")
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in counts):
            raise ValueError("uncompressed RLE counts must be integers")
        runs = [int(v) for v in counts]
    elif isinstance(counts, (str, bytes)):
        if isinstance(counts, str) and not counts.isascii():
            raise ValueError("RLE counts string holds characters outside ASCII")
        raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
        runs = _string_runs(raw)
    else:
        raise ValueError(f"RLE counts must be a string or a list of integers, got {type(counts).__name__}")
    if runs and min(runs) < 0:
        raise ValueError("RLE has negative run lengths")
    total = sum(runs)
    if total != height * width:
        raise ValueError(f"RLE runs cover {total} pixels but its size {height}x{width} has {height * width}")
    if isinstance(counts, list):
        compressed = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
        return {"size": [height, width], "counts": compressed["counts"].decode("ascii")}
    return {"size": [height, width], "counts": raw.decode("ascii")}


class PolygonReport:
    """What :func:`checked_polygons` did to a segmentation: whether it clipped parts or dropped empty ones."""

    def __init__(self) -> None:
        self.clipped = False
        self.dropped = 0


def _clip_edge(points: list[tuple[float, float]], axis: int, bound: float, keep_below: bool) -> list:
    """One Sutherland-Hodgman step: the part of a closed polygon on one side of ``coordinate[axis] = bound``."""

    def inside(p: tuple[float, float]) -> bool:
        return p[axis] <= bound if keep_below else p[axis] >= bound

    out: list[tuple[float, float]] = []
    for i, current in enumerate(points):
        previous = points[i - 1]
        if inside(current) != inside(previous):
            t = (bound - previous[axis]) / (current[axis] - previous[axis])
            crossing = [previous[k] + t * (current[k] - previous[k]) for k in (0, 1)]
            crossing[axis] = bound
            out.append((crossing[0], crossing[1]))
        if inside(current):
            out.append(current)
    return out


def checked_polygons(
    polygons: Any, height: int, width: int, report: PolygonReport | None = None
) -> list[list[float]]:
    """COCO polygons checked and made safe for pycocotools' rasteriser; ValueError when they are malformed.

    Each part needs an even number (at least 6) of finite coordinates, all within one image size of the image
    (x in [-W, 2W], y in [-H, 2H]): farther points are refused, since the native rasteriser's memory grows with
    them (and crashes on very large ones). Parts are clipped to the image (one pixel of margin, which
    rasterises the same) and parts left empty are dropped; ``report`` records both. The clipped outline may
    not run longer than ``100 * (H + W) + 10000`` pixels in all.
    """
    if not isinstance(polygons, (list, tuple)) or not polygons:
        raise ValueError("polygons must be a non-empty list of coordinate lists")
    report = report if report is not None else PolygonReport()
    parts: list[list[float]] = []
    length = 0.0
    for index, polygon in enumerate(polygons):
        if not isinstance(polygon, (list, tuple)):
            raise ValueError(f"polygon {index} is not a list of coordinates")
        if len(polygon) < 6 or len(polygon) % 2:
            raise ValueError(f"polygon {index} needs an even number of coordinates and at least 3 points")
        numbers = (int, float, np.integer, np.floating)
        if not all(isinstance(v, numbers) and not isinstance(v, bool) for v in polygon):
            raise ValueError(f"polygon {index} holds a coordinate that is not a number")
        try:
            values = np.asarray([float(v) for v in polygon], dtype=np.float64)
        except OverflowError:
            raise ValueError(f"polygon {index} holds a coordinate too large for a number") from None
        if not np.isfinite(values).all():
            raise ValueError(f"polygon {index} holds a coordinate that is not finite")
        xs, ys = values[0::2], values[1::2]
        if xs.min() < -width or xs.max() > 2 * width or ys.min() < -height or ys.max() > 2 * height:
            both = np.concatenate([xs, ys])
            far = both[np.argmax(np.abs(np.concatenate([xs / width, ys / height]) - 0.5))]
            raise ValueError(
                f"polygon {index} reaches {far:g}, more than one image size outside the {width}x{height} image"
            )
        points = list(zip(xs.tolist(), ys.tolist(), strict=True))
        if xs.min() < -1 or xs.max() > width + 1 or ys.min() < -1 or ys.max() > height + 1:
            report.clipped = True
            sides = ((0, -1.0, False), (0, width + 1.0, True), (1, -1.0, False), (1, height + 1.0, True))
            for axis, bound, below in sides:
                points = _clip_edge(points, axis, bound, below) if points else points
        if len(points) < 3:
            report.dropped += 1
            continue
        ring = np.asarray(points + points[:1])
        length += float(np.abs(np.diff(ring, axis=0)).max(axis=1).sum())
        parts.append([float(v) for point in points for v in point])
    limit = 100 * (height + width) + 10000
    if length > limit:
        raise ValueError(
            f"polygon outline runs {length:.0f} px, more than the {limit} px allowed for this image"
        )
    return parts


def polygons_to_rle(
    polygons: Sequence[Sequence[float]], height: int, width: int, report: PolygonReport | None = None
) -> RLE:
    """COCO polygons (one object, possibly several parts) -> one compressed RLE of size (height, width).

    The polygons are checked and clipped first (:func:`checked_polygons`); an object with nothing inside the
    image gives an empty mask.
    """
    from pycocotools import mask as mask_utils

    parts = checked_polygons(polygons, int(height), int(width), report)
    if not parts:
        return encode_mask(np.zeros((int(height), int(width)), bool))
    merged = mask_utils.merge(mask_utils.frPyObjects(parts, int(height), int(width)))
    return {"size": [int(height), int(width)], "counts": merged["counts"].decode("ascii")}


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.25) -> list[list[float]]:
    """(H, W) bool mask -> COCO polygons of its outer contours (OpenCV ``findContours``).

    The mask is upsampled 2x (nearest) before tracing, and the traced points mapped back with
    ``(p + 0.5) / 2``, so the polygons run along pixel edges rather than through boundary pixel centres:
    pycocotools rasterises them back to the same pixels (IoU about 0.999 on blobs; one-pixel parts survive).
    Holes are not represented (that is what RLE is for). Points are then thinned with Douglas-Peucker
    (``cv2.approxPolyDP``) at ``tolerance`` pixels: 0.25 removes a third of the points with no measurable
    change; 0.5 halves them again at IoU about 0.997; 0 keeps every corner.
    """
    import cv2

    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {array.shape}")
    rows, cols = np.flatnonzero(array.any(axis=1)), np.flatnonzero(array.any(axis=0))
    if rows.size == 0:
        return []
    y0, x0 = int(rows[0]), int(cols[0])  # trace the bounding box only: fast for small objects in big images
    crop = array[y0 : int(rows[-1]) + 1, x0 : int(cols[-1]) + 1].astype(np.uint8)
    doubled = np.ascontiguousarray(np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1))
    contours, _ = cv2.findContours(doubled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons: list[list[float]] = []
    for contour in contours:
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, 2.0 * tolerance, True)
        points = (contour.reshape(-1, 2).astype(np.float64) + 0.5) / 2.0 + (x0, y0)
        if len(points) >= 3:
            polygons.append([float(v) for v in points.reshape(-1)])
    return polygons


def polygon_area_bbox(polygons: Sequence[Sequence[float]], height: int, width: int) -> tuple[int, list[float]]:
    """(pixel count, XYWH bbox) of COCO polygons as pycocotools rasterises them (parts merged), the way COCO
    tools read an exported polygon annotation."""
    from pycocotools import mask as mask_utils

    if not polygons:
        return 0, [0.0, 0.0, 0.0, 0.0]
    merged = mask_utils.merge(mask_utils.frPyObjects([list(p) for p in polygons], int(height), int(width)))
    return int(mask_utils.area(merged)), [float(v) for v in mask_utils.toBbox(merged)]


def has_holes(mask: np.ndarray) -> bool:
    """Whether an (H, W) bool mask encloses background (a hole, which outer-contour polygons cannot keep)."""
    from scipy.ndimage import binary_fill_holes

    array = np.asarray(mask, bool)
    rows, cols = np.flatnonzero(array.any(axis=1)), np.flatnonzero(array.any(axis=0))
    if rows.size == 0:
        return False
    crop = array[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return bool((binary_fill_holes(crop) & ~crop).any())
