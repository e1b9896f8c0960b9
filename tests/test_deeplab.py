"""DeepLabv3+ network, augmentations carrying the crop box, and the DHR step on crops."""

import numpy as np
import pytest
import torch

from models.backbone import centre_cells
from models.deeplab import ASPP, DeepLabV3Plus, build_deeplab
from models.transforms import AugmentConfig, augment, sample_in_box
from training.dhr_step import in_valid_region, rebalance_batch


@pytest.mark.parametrize("backbone, channels", [("resnet_tiny", (128, 256)), ("resnet50", (1024, 2048))])
def test_deeplab_outputs(backbone, channels):
    torch.manual_seed(0)
    model = build_deeplab(3, backbone).eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 80)
        out = model(x)
    assert out["seg"].shape == (2, 4, 64, 80)
    assert out["cls"].shape == (2, 3)
    assert out["cams"].shape == (2, 3, 4, 5)  # output stride 16
    assert out["C4"].shape == (2, channels[0], 4, 5) and out["C5"].shape == (2, channels[1], 4, 5)
    assert out["cams"].min() >= 0
    # the tag logit is the spatial mean of the CAM head's scores on the network's cells; the CAMs are the
    # positive part of the scores at the cells' centres (``centre_cells``), as C4 and C5 are
    with torch.no_grad():
        raw = model.backbone(x)
    torch.testing.assert_close(out["cls"], model.cam_head(raw["C5"]).mean(dim=(2, 3)))
    torch.testing.assert_close(out["C5"], centre_cells(raw["C5"], (64, 80), 16))
    torch.testing.assert_close(out["C4"], centre_cells(raw["C4"], (64, 80), 16))
    torch.testing.assert_close(out["cams"], model.cam_head(out["C5"]).clamp_min(0))


def test_parameter_groups_split_the_model():
    model = build_deeplab(2, "resnet_tiny")
    head = {id(p) for p in model.head_parameters()}
    backbone = {id(p) for p in model.backbone_parameters()}
    assert not head & backbone
    assert head | backbone == {id(p) for p in model.parameters()}


def test_batch_of_one_trains_and_gradients_reach_every_head():
    model = build_deeplab(2, "resnet_tiny").train()
    out = model(torch.randn(1, 3, 48, 48))
    (out["seg"].sum() + out["cls"].sum()).backward()
    for name, module in (("aspp", model.aspp), ("decoder", model.decoder), ("cam_head", model.cam_head),
                         ("backbone", model.backbone)):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name


def test_aspp_keeps_the_grid_and_bad_inputs_raise():
    aspp = ASPP(16, 8, rates=(1, 2, 3)).eval()
    assert aspp(torch.randn(2, 16, 5, 7)).shape == (2, 8, 5, 7)
    model = build_deeplab(2, "resnet_tiny")
    with pytest.raises(ValueError, match="B, 3, H, W"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="num_classes"):
        DeepLabV3Plus(model.backbone, 0)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_deeplab(2, "vgg16")


def _coordinate_image(height: int, width: int) -> tuple[np.ndarray, torch.Tensor]:
    """Image whose R / G channels encode x / y (pixel centres, in units of 1/4 px) and the same as features."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.round(xs * 255 / (width - 1))
    image[..., 1] = np.round(ys * 255 / (height - 1))
    features = torch.from_numpy(np.stack([xs * 255 / (width - 1), ys * 255 / (height - 1)]))
    return image, features


@pytest.mark.parametrize("seed", range(6))
def test_crop_box_maps_the_crop_back_to_the_original(seed):
    """Features of the whole image resampled through (box, flip) land where the augmented pixels came from."""
    height, width = 60, 90
    image, features = _coordinate_image(height, width)
    mask = np.zeros((height, width), np.int64)
    config = AugmentConfig(crop_size=48, scale_range=(0.6, 1.8), brightness=0, contrast=0, saturation=0, hue=0)
    sample = augment(image, mask, np.random.default_rng(seed), config)
    resampled = sample_in_box(features, (height, width), sample.box, sample.flip, (48, 48))
    x0, y0, x1, y1 = sample.valid
    assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 48
    crop = torch.from_numpy(sample.image[y0:y1, x0:x1, :2].astype(np.float32)).permute(2, 0, 1)
    inner = resampled[:, y0:y1, x0:x1]
    # interior pixels agree to within about one original pixel (255 / 89 ~ 2.9 units per pixel in x)
    error = (crop - inner)[:, 1:-1, 1:-1].abs()
    assert error.numel() > 0 and float(error.mean()) < 1.5 and float(error.max()) < 6.0
    # the padding of the crop is ignore in the mask and zero in the resampled features outside the image
    padding = np.ones((48, 48), bool)
    padding[y0:y1, x0:x1] = False
    assert (sample.mask[padding] == 255).all() and (sample.mask[~padding] == 0).all()
    far = np.ones((48, 48), bool)  # padding more than 3 crop pixels away from the image content
    far[max(0, y0 - 3):y1 + 3, max(0, x0 - 3):x1 + 3] = False
    assert (resampled[:, torch.from_numpy(far)] == 0).all()


def test_augment_is_a_function_of_the_seed():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (40, 50))
    a = augment(image, mask, np.random.default_rng(7), AugmentConfig(crop_size=32))
    b = augment(image, mask, np.random.default_rng(7), AugmentConfig(crop_size=32))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and np.array_equal(a.box, b.box)
    with pytest.raises(ValueError, match="does not match"):
        augment(image, mask[:10], np.random.default_rng(0))


def test_valid_region_resampling_keeps_maps_aligned_when_padding_ends_mid_cell():
    # A 64 px crop whose image content starts at x = 10: a 16 px stride map of a vertical edge at pixel 26
    # (between cells) must put the edge 16 px into the valid region, whatever the grid.
    crop = (64, 64)
    for stride in (4, 8, 16):
        cells = 64 // stride
        centres = (torch.arange(cells, dtype=torch.float32) + 0.5) * stride
        ramp = (centres - 26.0).repeat(cells, 1)[None]  # (1, cells, cells): signed distance to the edge
        window = in_valid_region(ramp, (10, 0, 64, 64), crop)
        assert window.shape[-1] == round(54 / stride)
        up = torch.nn.functional.interpolate(window[None], size=(64, 54), mode="bilinear", align_corners=False)[0, 0]
        zero = float(torch.nonzero(up[32] > 0)[0])
        assert abs(zero - 16) <= 1.5, (stride, zero)
    assert in_valid_region(torch.rand(3, 4, 4), (60, 60, 64, 64), crop).shape == (3, 1, 1)


def _two_class_scene(size: int = 64):
    """Left half class 1 (red), right half class 2 (blue); features and CAMs that say so."""
    half = size // 2
    gt = torch.zeros(size, size, dtype=torch.long)
    gt[:, :half], gt[:, half:] = 1, 2
    uss = torch.zeros(2, size // 4, size // 4)
    uss[0, :, : size // 8], uss[1, :, size // 8:] = 1, 1
    grid = size // 16
    cams = torch.zeros(1, 2, grid, grid)
    cams[0, 0, :, : grid // 2], cams[0, 1, :, grid // 2:] = 1, 1
    wss = torch.zeros(1, 4, grid, grid)
    wss[0, 0, :, : grid // 2], wss[0, 1, :, grid // 2:] = 1, 1
    return gt, uss, {"cams": cams, "C4": wss, "C5": wss.clone()}


def test_dhr_step_repairs_a_swallowed_class_and_skips_accepted_images():
    gt, uss, outputs = _two_class_scene()
    wrong = torch.ones_like(gt)  # the pseudo mask lost class 2 entirely
    outputs = {k: torch.cat([v, v]) for k, v in outputs.items()}
    masks = torch.stack([wrong, wrong])
    tags = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    accepted = torch.tensor([False, True])
    box = torch.tensor([[0.0, 0.0, 64.0, 64.0]] * 2, dtype=torch.float64)
    valid = torch.tensor([[0, 0, 64, 64]] * 2)
    sizes = torch.tensor([[64, 64]] * 2)
    new, stats = rebalance_batch(outputs, masks, tags, accepted, [uss, uss], box, torch.tensor([False, False]),
                                 valid, sizes)
    accuracy = float((new[0] == gt).float().mean())
    assert accuracy > 0.9
    assert torch.equal(new[1], wrong)  # accepted: untouched
    assert stats.rebalanced == 1 and stats.accepted == 1 and 2 in stats.restored
    assert torch.equal(masks[0], wrong)  # the input batch is not modified in place


def test_dhr_step_follows_the_flip_and_leaves_padding_ignored():
    """A flipped crop with padding: the USS features are mirrored onto the crop, padding stays 255."""
    gt, uss, _ = _two_class_scene()
    crop, pad = 64, 16
    # crop of the mirrored image whose first 16 columns are padding: valid region x in [16, 64)
    # mirrored-image columns [-16, 48) are original columns (16, 80]: the box reaches 16 px past the right edge
    box = torch.tensor([[float(pad), 0.0, 64.0 + pad, 64.0]], dtype=torch.float64)
    mirrored = gt.flip(-1)
    masks = torch.full((1, crop, crop), 255, dtype=torch.long)
    masks[0, :, pad:] = 2  # wrong: all class 2
    grid = crop // 16
    cams = torch.zeros(1, 2, grid, grid)
    cams[0, 1, :, 1:3], cams[0, 0, :, 3:] = 1, 1  # mirrored crop: class 2 left of class 1
    wss = torch.zeros(1, 4, grid, grid)
    wss[0, 1, :, 1:3], wss[0, 0, :, 3:] = 1, 1
    outputs = {"cams": cams, "C4": wss, "C5": wss}
    new, stats = rebalance_batch(outputs, masks, torch.ones(1, 2), torch.tensor([False]), [uss], box,
                                 torch.tensor([True]), torch.tensor([[pad, 0, crop, crop]]), torch.tensor([[64, 64]]))
    assert stats.rebalanced == 1
    assert (new[0, :, :pad] == 255).all()
    # crop column u >= pad shows original column 64 + pad - 1 - u, i.e. mirrored column u - pad
    target = mirrored[:, : crop - pad]
    assert float((new[0, :, pad:] == target).float().mean()) > 0.85
