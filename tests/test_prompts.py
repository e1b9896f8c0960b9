"""Prompts from a balanced mask: boxes, deep positive points, negatives on neighbours, SAM mask prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from annotate.prompts import (
    PromptConfig,
    distance_inside,
    drop_unsupported_components,
    prompts_from_mask,
)
from models.segmenters.frame import LongestSideFrame


def _scene() -> np.ndarray:
    """(120, 200) mask: class 1 = a big rectangle and an L shape, class 2 = a disc touching the rectangle,
    class 3 = a 5x5 speck (below min_area), a strip of ignore (255)."""
    mask = np.zeros((120, 200), np.int64)
    mask[10:70, 10:90] = 1  # 4800 px rectangle
    mask[80:115, 120:130] = 1  # L shape: vertical bar ...
    mask[105:115, 130:190] = 1  # ... and horizontal foot
    rows, cols = np.mgrid[:120, :200]
    mask[(rows - 40) ** 2 + (cols - 115) ** 2 <= 22**2] = 2
    mask[2:7, 150:155] = 3
    mask[:, 195:] = 255
    return mask


def _components(mask: np.ndarray, class_id: int) -> list[np.ndarray]:
    import cv2

    count, labels = cv2.connectedComponents((mask == class_id).astype(np.uint8), connectivity=8)
    return [labels == i for i in range(1, count)]


def test_one_prompt_per_component_with_matching_box() -> None:
    mask = _scene()
    prompts = prompts_from_mask(torch.from_numpy(mask), [1, 2, 3], PromptConfig(min_area=64))
    assert [(p.class_id, p.area) for p in prompts] == [
        (1, int((mask == 1).sum()) - 950),  # the rectangle (partly painted over by the disc) ...
        (1, 950),  # ... then the L shape (35*10 + 10*60 pixels)
        (2, int((mask == 2).sum())),
    ]  # class 3's 25-pixel speck is below min_area
    for prompt in prompts:
        expected = [c for c in _components(mask, prompt.class_id) if np.array_equal(c, prompt.component)]
        assert len(expected) == 1
        rows, cols = np.nonzero(prompt.component)
        np.testing.assert_array_equal(prompt.box, [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])


def test_positive_points_deep_inside_and_spread() -> None:
    mask = _scene()
    config = PromptConfig(min_area=64, area_per_point=1000, max_positive=3, min_spacing=8.0)
    for prompt in prompts_from_mask(mask, [1, 2], config):
        positives = prompt.points[prompt.labels == 1].astype(int)
        wanted = min(3, 1 + prompt.area // 1000)
        assert len(positives) == wanted
        depth = distance_inside(prompt.component)
        for x, y in positives:
            assert prompt.component[y, x]
            assert depth[y, x] >= config.depth_fraction * depth.max()
        gaps = [np.hypot(*(a - b)) for i, a in enumerate(positives) for b in positives[i + 1 :]]
        assert all(g >= config.min_spacing for g in gaps)
    # The L shape's centroid lies outside it; its points do not.
    l_shape = prompts_from_mask(mask, [1], config)[1]
    rows, cols = np.nonzero(l_shape.component)
    assert not l_shape.component[int(rows.mean()), int(cols.mean())]


def test_negative_points_on_neighbouring_classes() -> None:
    mask = _scene()
    prompts = prompts_from_mask(mask, [1, 2], PromptConfig(min_area=64, neighbour_band=12))
    by_key = {(p.class_id, p.area): p for p in prompts}
    rectangle = next(p for (c, a), p in by_key.items() if c == 1 and a > 1000)
    disc = next(p for (c, _), p in by_key.items() if c == 2)
    l_shape = next(p for (c, a), p in by_key.items() if c == 1 and a == 950)
    for prompt, neighbour in ((rectangle, 2), (disc, 1)):
        negatives = prompt.points[prompt.labels == 0].astype(int)
        assert len(negatives) == 1
        x, y = negatives[0]
        assert not prompt.component[y, x] and mask[y, x] == neighbour
    assert (l_shape.labels == 0).sum() == 0  # only background around it
    with_background = prompts_from_mask(mask, [1], PromptConfig(min_area=64, negatives_on_background=True))[1]
    negatives = with_background.points[with_background.labels == 0].astype(int)
    assert len(negatives) == 1 and mask[negatives[0][1], negatives[0][0]] == 0


def test_mask_prompt_follows_sam_resize_and_pad() -> None:
    height, width = 90, 160  # landscape: SAM pads rows at the bottom
    component = np.zeros((height, width), bool)
    component[20:60, 100:150] = True
    frame = LongestSideFrame(long_side=1024, mask_input_size=256)
    logits = frame.mask_to_logits(component, mask_logit=8.0)
    assert logits.shape == (1, 256, 256) and logits.dtype == np.float32
    # The component's centre mapped by SAM's own transform lands on a positive cell.
    transform = ResizeLongestSide(1024)
    cx, cy = transform.apply_coords(np.array([[125.0, 40.0]]), (height, width))[0] / 4
    assert logits[0, int(cy), int(cx)] == pytest.approx(8.0)
    new_h, _ = transform.get_preprocess_shape(height, width, 1024)
    assert (logits[0, int(np.ceil(new_h / 4)) :, :] == -8.0).all()  # the padding is background
    back = frame.logits_to_mask(logits, (height, width))
    iou = (back & component).sum() / (back | component).sum()
    assert iou > 0.95


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="tags"):
        prompts_from_mask(np.zeros((8, 8), np.int64), [0])
    with pytest.raises(TypeError, match="integer"):
        prompts_from_mask(np.zeros((8, 8), np.float32), [1])
    with pytest.raises(ValueError, match="connectivity"):
        PromptConfig(connectivity=6)
    assert prompts_from_mask(np.zeros((8, 8), np.int64), [1]) == []


def test_components_without_evidence_are_dropped_but_each_class_keeps_its_best() -> None:
    mask = _scene()
    evidence = np.zeros((3, *mask.shape), np.float32)
    evidence[0, 40, 50] = 0.9  # a strong peak inside the rectangle only: the L shape has none
    evidence[0, 100, 125] = 0.4
    evidence[1, 40, 115] = 0.2  # the disc: weak evidence, but the only component of its class
    out = drop_unsupported_components(mask, [1, 2, 3], evidence, min_peak=0.5)
    assert out.dtype == np.int64 and out.shape == mask.shape
    np.testing.assert_array_equal(out == 1, (mask == 1) & (np.arange(200)[None, :] < 100))  # the L shape is gone
    np.testing.assert_array_equal(out == 2, mask == 2)
    np.testing.assert_array_equal(out == 3, mask == 3)  # no evidence at all, still its best component
    assert (out == 255).sum() == (mask == 255).sum()  # ignore untouched
    # with the L shape's evidence above the bound, nothing changes
    evidence[0, 100, 125] = 0.6
    np.testing.assert_array_equal(drop_unsupported_components(mask, [1, 2, 3], torch.from_numpy(evidence), 0.5), mask)
    with pytest.raises(ValueError, match="evidence must be"):
        drop_unsupported_components(mask, [1, 2], evidence, 0.5)


def test_seed_pixels_below_their_evidence_floor_are_dropped_unless_the_class_would_vanish() -> None:
    mask = np.zeros((20, 30), np.int64)
    mask[2:18, 2:14] = 1  # class 1: a 16 x 12 block whose evidence covers only its left half
    mask[5:10, 20:28] = 2  # class 2: evidence everywhere below the floor
    mask[0, 29] = 255
    evidence = np.zeros((2, 20, 30), np.float32)
    evidence[0, :, :8] = 0.9
    evidence[0, :, 8:] = 0.3
    evidence[1] = 0.2
    out = drop_unsupported_components(mask, [1, 2], evidence, min_peak=0.1, min_pixel=0.5)
    expected = mask.copy()
    expected[2:18, 8:14] = 0
    np.testing.assert_array_equal(out, expected)  # class 1 trimmed to its evidence, class 2 whole, ignore kept
    np.testing.assert_array_equal(drop_unsupported_components(mask, [1, 2], evidence, 0.1, min_pixel=0.0), mask)
