"""rebalance() on synthetic scenes with a known answer, and its handling of bad input.

The scenes (``dhr.synthetic``) have a minor class (id 2, 32 x 32 px in a 160 x 160 image, 4 % of the pixels)
touching a major class whose CAM fires evenly over both: the plain CAM argmax and the base mask lose the minor
class (IoU < 0.2). The final heatmaps live on the USS grid (stride 8), so a 32 px square is resolved to within
about half a cell on each side: an IoU above 0.6 is a clear restoration (a square shrunk or grown by 4 px on every
side still has IoU 0.56-0.77).
"""

import numpy as np
import pytest
import torch

from dhr import DHRConfig, confusion_matrix, rebalance, segmentation_scores
from dhr.synthetic import cam_argmax, make_scene

SEEDS = [0, 1, 2, 3, 4]


def _scores(pred, gt):
    return segmentation_scores(confusion_matrix(pred, gt, 4))


@pytest.mark.parametrize("seed", SEEDS)
def test_minor_class_restored_where_baselines_lose_it(seed):
    scene = make_scene(seed=seed)
    result = rebalance(scene.cams, scene.mask, scene.tags, scene.uss, scene.wss)
    baseline_cam = cam_argmax(scene.cams, scene.tags, scene.gt.shape)
    base, cam, out = (_scores(p, scene.gt) for p in (scene.mask, baseline_cam, result.mask))
    assert base["iou"][2] < 0.2 and cam["iou"][2] < 0.2
    assert out["iou"][2] > 0.6
    assert out["miou"] > base["miou"] + 0.1 and out["miou"] > cam["miou"] + 0.1


@pytest.mark.parametrize("seed", SEEDS)
def test_a_class_absent_from_the_mask_comes_back_in_stage_one(seed):
    scene = make_scene(seed=seed)
    mask = scene.mask.clone()
    mask[mask == 2] = 1  # the minor class has vanished completely
    result = rebalance(scene.cams, mask, scene.tags, scene.uss, scene.wss)
    assert result.restored == [2]
    assert (result.seed_mask == 2).any()
    assert _scores(result.mask, scene.gt)["iou"][2] > 0.6


@pytest.mark.parametrize("seed", SEEDS)
def test_wss_features_separate_what_uss_features_cannot(seed):
    scene = make_scene(seed=seed, confusable=True)
    full = rebalance(scene.cams, scene.mask, scene.tags, scene.uss, scene.wss)
    uss_only = rebalance(scene.cams, scene.mask, scene.tags, scene.uss, scene.wss, config=DHRConfig(tau=1.01))
    assert [1, 2] in full.groups and uss_only.groups == []
    # measured over seeds 0-7: minor IoU 0.11-0.24 with USS features alone, 0.77-0.88 with the WSS stage
    without = float(_scores(uss_only.mask, scene.gt)["iou"][2])
    assert without < 0.35
    out = _scores(full.mask, scene.gt)
    assert out["iou"][2] > max(0.6, without + 0.4)
    baseline_cam = cam_argmax(scene.cams, scene.tags, scene.gt.shape)
    assert out["miou"] > _scores(scene.mask, scene.gt)["miou"] + 0.1
    assert out["miou"] > _scores(baseline_cam, scene.gt)["miou"] + 0.1


def test_result_layout_and_device(device):
    scene = make_scene(seed=0)
    to = lambda t: t.to(device)  # noqa: E731
    result = rebalance(to(scene.cams), to(scene.mask), scene.tags, to(scene.uss), [to(f) for f in scene.wss])
    assert result.mask.device.type == device.type and result.mask.dtype == torch.int64
    assert result.mask.shape == scene.gt.shape == result.seed_mask.shape
    assert result.classes == [0, 1, 2, 3]
    assert result.heatmaps.shape == (4, *scene.gt.shape)
    assert float(result.heatmaps.min()) >= 0 and float(result.heatmaps.max()) <= 1
    classes = torch.tensor(result.classes, device=device)
    assert torch.equal(classes[result.heatmaps.argmax(0)], result.mask)


def test_crf_refines_on_the_image():
    scene = make_scene(seed=0)
    plain = rebalance(scene.cams, scene.mask, scene.tags, scene.uss, scene.wss)
    refined = rebalance(scene.cams, scene.mask, scene.tags, scene.uss, scene.wss, image=scene.image, config=DHRConfig(crf=True))
    assert _scores(refined.mask, scene.gt)["miou"] > _scores(plain.mask, scene.gt)["miou"] + 0.05


def test_no_tags_gives_background_and_keeps_ignore():
    mask = torch.zeros(32, 32, dtype=torch.long)
    mask[:4] = 255
    mask[10:20, 10:20] = 3
    pass_through = rebalance(torch.zeros(0, 2, 2), mask, [], torch.rand(8, 4, 4), torch.rand(8, 2, 2))
    assert (pass_through.mask[:4] == 255).all() and (pass_through.mask[4:] == 0).all()
    assert pass_through.classes == [0]


def test_one_tag_keeps_the_background():
    scene = make_scene(seed=0)
    keep = [0]  # only the major class is tagged: its CAM alone, no OT in stage 1
    mask = torch.where(scene.gt == 1, scene.gt, torch.zeros_like(scene.gt))
    result = rebalance(scene.cams[keep], mask, [1], scene.uss, scene.wss)
    background_share = float((result.mask == 0).float().mean())
    assert background_share > 0.4  # the scene is 66 % background; stage 1 must not erase it
    assert set(result.classes) == {0, 1}


def test_untagged_classes_in_the_mask_are_ignored_with_a_warning():
    scene = make_scene(seed=0)
    with pytest.warns(UserWarning, match=r"untagged classes \[3\]"):
        result = rebalance(scene.cams[:2], scene.mask, [1, 2], scene.uss, scene.wss)
    assert 3 not in result.classes


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(cams=torch.rand(2, 10, 10)), r"cams must be \(K, h, w\) with K = 3"),
        (dict(tags=[1, 1, 2]), "distinct"),
        (dict(tags=[0, 1, 2]), r"tag class ids must lie in \[1"),
        (dict(uss=torch.full((32, 20, 20), float("nan"))), "uss_features contains NaN"),
        (dict(wss=[torch.rand(64, 10)]), r"wss_features\[0\] must be"),
        (dict(mask=torch.zeros(160, 160)), "integer class ids"),
        (dict(mask=torch.full((160, 160), 300)), "mask class ids must lie"),
        (dict(config=DHRConfig(crf=True)), "needs the image"),
        (dict(image=np.zeros((10, 10, 3), np.uint8), config=DHRConfig(crf=True)), "image must be"),
        (dict(tags=[1, 2, 5], config=DHRConfig(num_classes=4)), r"\[1, 4\)"),
    ],
)
def test_bad_input_raises_a_clear_error(change, message):
    scene = make_scene(seed=0)
    args = dict(cams=scene.cams, mask=scene.mask, tags=scene.tags, uss=scene.uss, wss=scene.wss, image=None, config=None)
    args.update(change)
    with pytest.raises(ValueError, match=message):
        rebalance(args["cams"], args["mask"], args["tags"], args["uss"], args["wss"], image=args["image"], config=args["config"])
