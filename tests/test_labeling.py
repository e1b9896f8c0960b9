"""Choose, gate and merge: from a balanced mask and a segmenter to instances and a semantic mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from annotate.labeling import (
    Instance,
    LabelingConfig,
    Seeds,
    choose_mask,
    label_image,
    mask_iou,
    merge_instances,
    seed_agreement,
)
from annotate.prompts import PromptConfig
from models.segmenters import GrabCutSegmenter, SamSegmenter, build_tiny_sam
from tests.test_segmenters import synthetic_scene


def _dhr_like(seed_mask: np.ndarray, classes: list[int], blur: bool = False) -> Seeds:
    """Heatmaps = one-hot of the seed mask (optionally softened), rows following ``classes``."""
    mask = torch.from_numpy(seed_mask)
    heat = torch.stack([(mask == c).float() for c in classes])
    if blur:
        heat = torch.nn.functional.avg_pool2d(heat[None], 9, stride=1, padding=4)[0]
    return Seeds(mask, heat, classes)


def test_choose_mask_known_answer() -> None:
    seed = np.zeros((10, 10), bool)
    seed[:, :5] = True  # 50 px
    exact = seed.copy()
    half = np.zeros_like(seed)
    half[:, :2] = True  # IoU 0.4
    masks = np.stack([half, exact])
    index, rating, iou = choose_mask(masks, np.array([1.0, 0.2]), seed, seed_weight=0.7)
    assert (index, iou) == (1, 1.0) and rating == pytest.approx(0.7 + 0.3 * 0.2)
    index, rating, iou = choose_mask(masks, np.array([1.0, 0.2]), seed, seed_weight=0.0)
    assert (index, iou) == (0, pytest.approx(0.4)) and rating == pytest.approx(1.0)


def test_seed_agreement_rules() -> None:
    seed = np.zeros((10, 10), bool)
    seed[:, :6] = True  # 60 px, an over-grown seed
    tight = np.zeros_like(seed)
    tight[:, :3] = True  # 30 px inside it
    leak = np.zeros_like(seed)
    leak[:, 3:] = True  # 70 px, 30 of them inside
    assert seed_agreement(tight, seed, "iou") == pytest.approx(0.5)
    assert seed_agreement(tight, seed, "inside") == 1.0  # tightening an over-grown seed passes
    assert seed_agreement(leak, seed, "inside") == pytest.approx(30 / 70)
    speck = np.zeros_like(seed)
    speck[0, 0] = True
    assert seed_agreement(speck, seed, "inside", min_cover=0.2) == 0.0  # a collapsed mask fails
    assert seed_agreement(np.zeros_like(seed), seed, "inside") == 0.0
    with pytest.raises(ValueError, match="gate"):
        LabelingConfig(gate="dice")


def test_evidence_drops_an_unsupported_component() -> None:
    image, truth, seed_mask = synthetic_scene()
    spurious = seed_mask.copy()
    spurious[90:115, 10:40] = 1  # a class-1 region the classifier never saw
    evidence = np.zeros((2, *seed_mask.shape), np.float32)
    for row, class_id in enumerate((1, 2)):
        evidence[row][truth == class_id] = 1.0
    config = LabelingConfig(prompts=PromptConfig(min_area=100))
    plain = label_image(image, _dhr_like(spurious, [0, 1, 2]), [1, 2], GrabCutSegmenter(), config)
    checked = label_image(image, _dhr_like(spurious, [0, 1, 2]), [1, 2], GrabCutSegmenter(), config, evidence=evidence)
    assert (plain.semantic[90:115, 10:40] == 1).mean() > 0.5
    assert (checked.semantic[90:115, 10:40] == 1).mean() < 0.05
    for class_id in (1, 2):
        assert mask_iou(checked.semantic == class_id, truth == class_id) > 0.9


def test_merge_resolves_overlap_by_heatmaps() -> None:
    seed = np.zeros((20, 30), np.int64)
    seed[:, :15] = 1
    seed[:, 15:] = 2
    a = np.zeros((20, 30), bool)
    a[:, :20] = True  # class 1 spills 5 columns into class 2
    b = np.zeros((20, 30), bool)
    b[:, 12:] = True  # class 2 spills 3 columns into class 1
    heat = torch.zeros(3, 20, 30)
    heat[1, :, :15], heat[2, :, 15:] = 0.9, 0.9
    heat[1, :, 15:], heat[2, :, :15] = 0.2, 0.2
    instances, semantic = merge_instances(
        [Instance(1, a, 0.9, "sam"), Instance(2, b, 0.8, "sam")], heat, [0, 1, 2], seed, [1, 2]
    )
    np.testing.assert_array_equal(semantic, seed)  # each overlap went to the class with the higher heatmap
    assert [inst.mask.sum() for inst in instances] == [300, 300]
    assert not (instances[0].mask & instances[1].mask).any()
    assert not any(inst.needs_review for inst in instances)


def test_merge_never_drops_a_tagged_class() -> None:
    seed = np.zeros((40, 40), np.int64)
    seed[5:35, 5:35] = 1
    seed[15:25, 15:25] = 2  # a small object inside a large one
    seed[0:3, 37:40] = 3  # a 9-px speck: no instance at all (below any min_area)
    big = np.zeros((40, 40), bool)
    big[5:35, 5:35] = True  # class 1's mask covers class 2 entirely ...
    small = seed == 2
    heat = torch.zeros(4, 40, 40)
    heat[1] = 1.0  # ... and class 1's heatmap beats class 2's everywhere
    heat[2] = 0.5
    instances, semantic = merge_instances(
        [Instance(1, big, 0.9, "sam"), Instance(2, small, 0.8, "sam")], heat, [0, 1, 2, 3], seed, [1, 2, 3]
    )
    assert set(np.unique(semantic).tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(semantic == 2, seed == 2)  # restored on its own seed region
    np.testing.assert_array_equal(semantic == 3, seed == 3)
    by_class = {inst.class_id: inst for inst in instances}
    assert by_class[2].needs_review and "restored" in by_class[2].reason
    assert by_class[3].source == "dhr" and by_class[3].needs_review
    assert not by_class[1].needs_review and by_class[1].mask.sum() == 900 - 100


def test_label_image_with_grabcut_recovers_objects() -> None:
    image, truth, seed_mask = synthetic_scene()
    result = label_image(
        image,
        _dhr_like(seed_mask, [0, 1, 2], blur=True),
        [1, 2],
        GrabCutSegmenter(),
        LabelingConfig(prompts=PromptConfig(min_area=100)),
    )
    assert result.semantic.shape == truth.shape and result.semantic.dtype == np.int64
    for class_id in (1, 2):
        assert mask_iou(result.semantic == class_id, truth == class_id) > 0.9
    assert seed_mask[5:12, 5:12].tolist() == [[2] * 7] * 7  # the stray blob, below min_area, ...
    assert (result.semantic[5:12, 5:12] == 0).all()  # ... is not an instance: class 2 has a real one
    sources = sorted((inst.class_id, inst.source) for inst in result.instances)
    assert sources == [(1, "grabcut"), (1, "grabcut"), (2, "grabcut")]
    assert all(inst.seed_iou >= 0.5 and 0 <= inst.score <= 1 for inst in result.instances)


def test_quality_gate_keeps_the_seed_and_says_why() -> None:
    image, _, seed_mask = synthetic_scene()
    dhr_result = _dhr_like(seed_mask, [0, 1, 2])
    segmenter = SamSegmenter(build_tiny_sam(), "tiny")
    prompts = PromptConfig(min_area=100)
    strict = label_image(
        image, dhr_result, [1, 2], segmenter, LabelingConfig(prompts=prompts, gate="iou", min_seed_iou=1.0)
    )
    assert len(strict.instances) == 3
    for inst in strict.instances:
        assert inst.source == "dhr" and inst.needs_review
        assert "disagrees with the DHR seed" in inst.reason and "IoU" in inst.reason
    # Seeds kept: the semantic mask is the balanced mask without its sub-min_area blob.
    expected = seed_mask.copy()
    expected[5:12, 5:12] = 0
    np.testing.assert_array_equal(strict.semantic, expected)
    assert strict.needs_review

    lenient = label_image(
        image,
        dhr_result,
        [1, 2],
        segmenter,
        LabelingConfig(prompts=prompts, min_seed_iou=0.0, review_quality=0.0),
    )
    assert {inst.source for inst in lenient.instances} == {"sam"}
    assert set(np.unique(lenient.semantic).tolist()) >= {1, 2}  # every tagged class survives the merge
    assert lenient.semantic.shape == seed_mask.shape


def test_heatmaps_at_feature_resolution_and_bad_input() -> None:
    image, _, seed_mask = synthetic_scene()
    small = _dhr_like(seed_mask, [0, 1, 2])
    small.heatmaps = torch.nn.functional.interpolate(small.heatmaps[None], size=(30, 40), mode="bilinear")[0]
    result = label_image(
        image, small, [1, 2], GrabCutSegmenter(), LabelingConfig(prompts=PromptConfig(min_area=100))
    )
    assert result.semantic.shape == (120, 160)
    with pytest.raises(ValueError, match="differs"):
        label_image(image[:100], small, [1, 2], GrabCutSegmenter())
    with pytest.raises(ValueError, match="heatmap rows"):
        merge_instances([], torch.zeros(2, 5, 5), [0, 1, 2], np.zeros((5, 5), np.int64), [1])
    with pytest.raises(ValueError, match="seed_weight"):
        LabelingConfig(seed_weight=1.5)


def test_label_image_on_a_rebalanced_scene() -> None:
    """The real chain: ``dhr.rebalance`` on a known-answer scene, then GrabCut labelling of its output."""
    from dhr import rebalance
    from dhr.synthetic import make_scene

    scene = make_scene()
    balanced = rebalance(scene.cams, scene.mask, scene.tags, scene.uss, scene.wss)
    result = label_image(scene.image, balanced, scene.tags, GrabCutSegmenter())
    truth, dhr_mask = scene.gt.numpy(), balanced.mask.numpy()
    for class_id in scene.tags:
        if (dhr_mask == class_id).any():
            assert (result.semantic == class_id).any()
        assert mask_iou(result.semantic == class_id, truth == class_id) >= min(
            0.9, mask_iou(dhr_mask == class_id, truth == class_id)
        )
