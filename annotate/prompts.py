"""Segment Anything prompts from a balanced (DHR) mask: one prompt set per connected component of a class.

For every tagged class, each connected component (OpenCV, 8-connectivity by default) of at least
``min_area`` pixels becomes one ``InstancePrompt``:

- **box**: the component's bounding box, XYXY in pixel edges (``x0 <= x < x1``), optionally widened by
  ``box_margin`` pixels and clipped to the image;
- **positive points**: deep inside the component. The Euclidean distance transform gives each pixel's
  distance to the component's edge; the first point is its maximum, further points (one per
  ``area_per_point`` pixels, at most ``max_positive``) are picked by farthest-point sampling among "deep"
  pixels (distance >= ``depth_fraction`` x the maximum), so they are spread along the component and never
  near its edge. A point closer than ``min_spacing`` to another is not added;
- **negative points**: on neighbouring classes: other class ids found within ``neighbour_band`` pixels of
  the component (background too if ``negatives_on_background``); for each, the pixel of that class inside
  the band that lies deepest inside its own region; largest neighbours first, at most ``max_negatives``;
- **mask prompt** (``use_mask_prompt``): the component in the segmenter's own mask-prompt frame, made by the
  segmenter (``Segmenter.mask_prompt``; for SAM the longest-side resize and padding of
  :mod:`models.segmenters.frame`).

Coordinates: points (N, 2) float XY pixel coordinates (column, row of the pixel); labels (N,) int32,
1 = positive, 0 = negative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dhr import IGNORE_INDEX
from models.segmenters.frame import LongestSideFrame


@dataclass
class PromptConfig:
    """Knobs of ``prompts_from_mask`` (see the module docstring for what each does)."""

    min_area: int = 64  # components smaller than this many pixels get no prompt
    connectivity: int = 8  # 4 or 8
    max_instances_per_class: int = 20  # largest components first
    area_per_point: int = 4096  # one more positive point per this many pixels ...
    max_positive: int = 3  # ... up to this many
    depth_fraction: float = 0.5  # positive points lie where distance-to-edge >= this x the maximum
    min_spacing: float = 8.0  # pixels between positive points
    neighbour_band: int = 12  # pixels around a component searched for neighbouring classes
    max_negatives: int = 4
    negatives_on_background: bool = False
    box_margin: int = 0  # pixels added on each side of the box
    use_mask_prompt: bool = True
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if self.connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {self.connectivity}")
        if not 0.0 <= self.depth_fraction <= 1.0:
            raise ValueError(f"depth_fraction must be in [0, 1], got {self.depth_fraction}")
        for name in ("min_area", "area_per_point", "max_positive"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class InstancePrompt:
    """Prompts for one connected component of a class.

    component: (H, W) bool; box: (4,) float XYXY pixel edges; points: (N, 2) float XY; labels: (N,) int32;
    mask_input: (1, L, L) float32 mask-prompt logits of the segmenter, or None; area: pixels in component.
    """

    class_id: int
    component: np.ndarray
    box: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    mask_input: np.ndarray | None
    area: int


def _as_numpy_mask(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    if not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(f"mask must hold integer class ids, got dtype {mask.dtype}")
    return mask.astype(np.int64, copy=False)


def distance_inside(region: np.ndarray) -> np.ndarray:
    """(H, W) float32 Euclidean distance of each region pixel to the nearest non-region pixel or image edge."""
    import cv2

    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def positive_points(component: np.ndarray, config: PromptConfig) -> np.ndarray:
    """(N, 2) float XY points deep inside ``component`` (H, W) bool, spread apart; N >= 1 for a non-empty one."""
    depth = distance_inside(component)
    peak = float(depth.max())
    if peak <= 0:
        return np.zeros((0, 2), np.float32)
    area = int(component.sum())
    wanted = int(min(config.max_positive, 1 + area // config.area_per_point))
    rows, cols = np.nonzero(depth >= max(config.depth_fraction * peak, 1.0))
    first = int(np.argmax(depth[rows, cols]))
    chosen = [first]
    nearest = np.hypot(rows - rows[first], cols - cols[first])
    while len(chosen) < wanted:
        index = int(np.argmax(nearest))
        if nearest[index] < config.min_spacing:
            break
        chosen.append(index)
        nearest = np.minimum(nearest, np.hypot(rows - rows[index], cols - cols[index]))
    return np.stack([cols[chosen], rows[chosen]], axis=1).astype(np.float32)


def negative_points(
    mask: np.ndarray, component: np.ndarray, class_id: int, config: PromptConfig
) -> np.ndarray:
    """(N, 2) float XY points on the classes neighbouring ``component`` within ``neighbour_band`` pixels."""
    import cv2

    if config.max_negatives <= 0 or config.neighbour_band <= 0:
        return np.zeros((0, 2), np.float32)
    size = 2 * config.neighbour_band + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    ring = cv2.dilate(component.astype(np.uint8), kernel).astype(bool) & ~component
    values, counts = np.unique(mask[ring], return_counts=True)
    excluded = {class_id, config.ignore_index} | (set() if config.negatives_on_background else {0})
    order = [
        int(v)
        for v, _ in sorted(zip(values, counts, strict=True), key=lambda vc: -vc[1])
        if int(v) not in excluded
    ]
    points = []
    for value in order[: config.max_negatives]:
        region = mask == value
        depth = np.where(ring & region, distance_inside(region), -1.0)
        row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
        points.append((col, row))
    return np.asarray(points, np.float32).reshape(-1, 2)


def drop_unsupported_components(
    mask: np.ndarray | torch.Tensor,
    tags: Sequence[int],
    evidence: np.ndarray | torch.Tensor,
    min_peak: float,
    connectivity: int = 8,
    min_pixel: float = 0.0,
) -> np.ndarray:
    """The mask with what no strong evidence supports set to background (0).

    ``mask``: (H, W) int class ids; ``evidence``: (K, H, W) float maps in [0, 1] in the order of ``tags``
    (e.g. the classifier's peak-normalised CAMs). First each pixel of class ``tags[k]`` whose ``evidence[k]`` is
    below ``min_pixel`` is dropped, unless that would drop every pixel of the class (a class restored where its
    evidence is weak keeps its region). Then a component of class ``tags[k]`` is kept when the highest value of
    ``evidence[k]`` inside it reaches ``min_peak``; the best-supported component of every class is always kept,
    so a tagged class present in the mask never vanishes. Returns (H, W) int64.
    """
    import cv2

    mask = _as_numpy_mask(mask).copy()
    if isinstance(evidence, torch.Tensor):
        evidence = evidence.detach().float().cpu().numpy()
    evidence = np.asarray(evidence, np.float32)
    if evidence.shape != (len(tags), *mask.shape):
        raise ValueError(f"evidence must be (K={len(tags)}, {mask.shape[0]}, {mask.shape[1]}), got {evidence.shape}")
    for row, tag in enumerate(tags):
        region = mask == int(tag)
        weak_pixels = region & (evidence[row] < min_pixel)
        if weak_pixels.any() and region.sum() > weak_pixels.sum():
            mask[weak_pixels] = 0
            region &= ~weak_pixels
        count, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=connectivity)
        if count <= 2:  # no component, or only one: nothing to choose
            continue
        peaks = np.full(count, -np.inf, np.float32)
        np.maximum.at(peaks, labels.ravel(), evidence[row].ravel())
        peaks[0] = np.inf  # label 0 is everything else
        weak = peaks < min_peak
        weak[int(np.argmax(np.where(np.arange(count) > 0, peaks, -np.inf)))] = False
        mask[weak[labels]] = 0
    return mask


def prompts_from_mask(
    mask: np.ndarray | torch.Tensor,
    tags: Sequence[int],
    config: PromptConfig | None = None,
    mask_prompt: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[InstancePrompt]:
    """Prompts for every component of every tagged class in ``mask`` (H, W) int class ids (``IGNORE_INDEX`` =
    ignore).

    ``mask_prompt`` turns a component into the segmenter's mask prompt (``Segmenter.mask_prompt``; default:
    Segment Anything's frame). Returned class by class in the order of ``tags``, largest component first.
    """
    import cv2

    config = config or PromptConfig()
    mask_prompt = mask_prompt or LongestSideFrame().mask_to_logits
    mask = _as_numpy_mask(mask)
    height, width = mask.shape
    prompts: list[InstancePrompt] = []
    for tag in tags:
        tag = int(tag)
        if tag < 1 or tag == config.ignore_index:
            raise ValueError(f"tags must be class ids >= 1 other than {config.ignore_index}, got {tag}")
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            (mask == tag).astype(np.uint8), connectivity=config.connectivity
        )
        order = sorted(range(1, count), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
        order = [i for i in order if stats[i, cv2.CC_STAT_AREA] >= config.min_area]
        for index in order[: config.max_instances_per_class]:
            component = labels == index
            left, top = stats[index, cv2.CC_STAT_LEFT], stats[index, cv2.CC_STAT_TOP]
            right = left + stats[index, cv2.CC_STAT_WIDTH]
            bottom = top + stats[index, cv2.CC_STAT_HEIGHT]
            margin = config.box_margin
            box = np.array(
                [
                    max(0, left - margin),
                    max(0, top - margin),
                    min(width, right + margin),
                    min(height, bottom + margin),
                ],
                np.float32,
            )
            positives = positive_points(component, config)
            negatives = negative_points(mask, component, tag, config)
            points = np.concatenate([positives, negatives]).astype(np.float32)
            point_labels = np.concatenate(
                [np.ones(len(positives), np.int32), np.zeros(len(negatives), np.int32)]
            )
            mask_input = (
                mask_prompt(component)
                if config.use_mask_prompt
                else None
            )
            prompts.append(
                InstancePrompt(
                    tag, component, box, points, point_labels, mask_input, int(stats[index, cv2.CC_STAT_AREA])
                )
            )
    return prompts
