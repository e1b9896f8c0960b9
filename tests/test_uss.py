"""USS feature providers: registry, colour/texture features, SAM embedding cells, DINO ViT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dhr.prototypes import class_prototypes
from dhr.uss import image_to_tensor, tensor_to_rgb
from dhr.uss.color import rgb_to_lab
from models import ModelSettings
from models.segmenters import SamSegmenter, build_tiny_sam
from models.segmenters.frame import LongestSideFrame, resized_size
from models.uss import USS_REGISTRY, build_uss_module, build_uss_provider
from tests.synthetic_dataset import make_samples

build_uss = build_uss_module


def test_registry_names_and_unknown_name():
    assert {"color", "sam", "dino_vits8", "dino_vits16", "dino_vitb8", "dino_vitb16"} <= set(USS_REGISTRY)
    assert USS_REGISTRY["dino_vits8"].checkpoint == "dino_vits8" and USS_REGISTRY["sam"].has("from_segmenter")
    with pytest.raises(ValueError, match="unknown USS provider"):
        build_uss("hog")


def test_image_tensor_round_trip():
    image = (np.arange(2 * 3 * 3) * 9).astype(np.uint8).reshape(2, 3, 3)
    x = image_to_tensor(image)
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    back = (tensor_to_rgb(x) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(back, image)
    with pytest.raises(ValueError, match="HWC uint8"):
        image_to_tensor(image.astype(np.float32))


def test_lab_known_values():
    rgb = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])[:, :, None]  # white, red, black
    lab = rgb_to_lab(rgb)[:, :, 0].T
    torch.testing.assert_close(lab[0], torch.tensor([100.0, 0.0, 0.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(lab[1], torch.tensor([53.24, 80.09, 67.20]), atol=0.1, rtol=0)
    torch.testing.assert_close(lab[2], torch.zeros(3), atol=0.05, rtol=0)


def test_color_features_separate_the_synthetic_classes(device):
    provider = build_uss("color", stride=4)
    samples = make_samples(6, (96, 96), seed=1)
    correct = total = 0
    protos_per_image = []
    for s in samples:
        feats = provider(image_to_tensor(s.image, device))
        assert feats.shape == (13, 24, 24) and feats.device.type == device.type
        gt = torch.from_numpy(s.gt).long().to(device)
        protos, counts = class_prototypes(feats, gt, 4)
        protos_per_image.append((protos.cpu(), counts.cpu()))
        present = torch.nonzero(counts > 0).flatten()
        # nearest prototype (cosine) of every cell reproduces the cell's majority class
        cells = F.normalize(feats.flatten(1), dim=0)
        sims = F.normalize(protos[present], dim=1) @ cells
        pred = present[sims.argmax(0)].reshape(24, 24)
        small = F.interpolate(gt[None, None].float(), (24, 24), mode="nearest")[0, 0].long()
        correct += int((pred == small).sum())
        total += small.numel()
    assert correct / total > 0.9
    # the same class looks alike across images, distinct classes do not
    (pa, ca), (pb, cb) = protos_per_image[3], protos_per_image[5]  # both hold ball, box and tag
    sim = F.normalize(pa[1:], dim=1) @ F.normalize(pb[1:], dim=1).T
    assert (ca[1:] > 0).all() and (cb[1:] > 0).all()
    assert sim.diagonal().min() > 0.7
    assert (sim - torch.eye(3) * 10).max() < sim.diagonal().min()


def test_color_features_follow_input_dtype():
    x = image_to_tensor(make_samples(1, (32, 40))[0].image).double()
    out = build_uss("color", stride=1)(x)
    assert out.dtype == torch.float64 and out.shape == (13, 32, 40)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="window"):
        build_uss("color", window=4)


@pytest.mark.parametrize(
    ("size", "grid"), [((480, 640), (48, 64)), ((100, 300), (22, 64)), ((1024, 512), (64, 32))]
)
def test_sam_embedding_cells_drop_the_padding(size, grid):
    embedding = torch.randn(256, 64, 64)
    out = LongestSideFrame().embedding_cells(embedding, size)
    assert tuple(out.shape[1:]) == grid
    torch.testing.assert_close(out, embedding[:, : grid[0], : grid[1]])
    assert resized_size(256, 512, 1024) == (512, 1024)


def test_sam_uss_features_are_the_segmenter_embedding_cells():
    segmenter = SamSegmenter(build_tiny_sam(img_size=256), "tiny")
    provider = build_uss_provider("sam", ModelSettings(), segmenter)
    image = make_samples(1, (64, 96))[0].image
    feats = provider.features(image)
    assert feats.shape == (32, 11, 16) and torch.isfinite(feats).all()  # 64x96 -> 171x256 -> 11x16 cells of 16
    torch.testing.assert_close(feats, segmenter.embedding[:, :11, :16])
    assert provider.feature_id == "sam:tiny:cells256"
    with pytest.raises(ValueError, match="segmenter's embedding"):
        build_uss("sam")


def _dino_state_dict(depth: int, dim: int, patch: int, tokens: int) -> dict[str, torch.Tensor]:
    """A state dict with the official DINO checkpoints' key names and shapes (random values)."""
    sd = {
        "cls_token": torch.randn(1, 1, dim),
        "pos_embed": torch.randn(1, tokens + 1, dim),
        "patch_embed.proj.weight": torch.randn(dim, 3, patch, patch),
        "patch_embed.proj.bias": torch.randn(dim),
        "norm.weight": torch.ones(dim),
        "norm.bias": torch.zeros(dim),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        sd |= {
            p + "norm1.weight": torch.ones(dim), p + "norm1.bias": torch.zeros(dim),
            p + "attn.qkv.weight": torch.randn(3 * dim, dim) * 0.02, p + "attn.qkv.bias": torch.zeros(3 * dim),
            p + "attn.proj.weight": torch.randn(dim, dim) * 0.02, p + "attn.proj.bias": torch.zeros(dim),
            p + "norm2.weight": torch.ones(dim), p + "norm2.bias": torch.zeros(dim),
            p + "mlp.fc1.weight": torch.randn(4 * dim, dim) * 0.02, p + "mlp.fc1.bias": torch.zeros(4 * dim),
            p + "mlp.fc2.weight": torch.randn(dim, 4 * dim) * 0.02, p + "mlp.fc2.bias": torch.zeros(dim),
        }  # fmt: skip
    return sd


def test_dino_loads_official_key_layout_and_gives_patch_grid():
    torch.manual_seed(0)
    sd = _dino_state_dict(depth=1, dim=48, patch=8, tokens=28 * 28)
    provider = build_uss("dino_vits8", state_dict=sd, depth=1, embed_dim=48, num_heads=2)
    assert provider.stride == 8 and provider.dim == 48
    torch.testing.assert_close(provider.vit.pos_embed, sd["pos_embed"])
    x = image_to_tensor(make_samples(1, (60, 90))[0].image)
    feats = provider(x)
    assert feats.shape == (48, 8, 12)  # ceil(60/8), ceil(90/8)
    again = build_uss("dino_vits8", state_dict=provider.vit.state_dict(), depth=1, embed_dim=48, num_heads=2)
    torch.testing.assert_close(again(x), feats)
    capped = build_uss("dino_vits16", depth=1, embed_dim=48, num_heads=2, max_side=48)
    assert capped(x).shape == (48, 2, 3)  # 60x90 -> 32x48 -> 2x3 patches of 16
    with pytest.raises(ValueError, match="does not fit"):
        build_uss("dino_vits8", state_dict=sd, depth=1, embed_dim=64, num_heads=2)
