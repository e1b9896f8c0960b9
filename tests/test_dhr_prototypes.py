"""Prototypes match a slow per-cell majority-vote loop exactly; heatmaps and groups behave."""

import math

import pytest
import torch

from dhr.heatmaps import class_correlation, correlated_groups, cosine_heatmaps
from dhr.prototypes import class_prototypes


def _slow_prototypes(features, mask, num_classes, ignore=255):
    """Reference: every feature cell takes the majority class of the pixels under it (ties -> lowest id)."""
    d, h, w = features.shape
    big_h, big_w = mask.shape
    sums = torch.zeros(num_classes, d, dtype=torch.float64)
    counts = torch.zeros(num_classes, dtype=torch.long)
    for i in range(h):
        for j in range(w):
            y0, y1 = (i * big_h) // h, math.ceil((i + 1) * big_h / h)
            x0, x1 = (j * big_w) // w, math.ceil((j + 1) * big_w / w)
            values, freq = torch.unique(mask[y0:y1, x0:x1], return_counts=True)
            winner = int(values[freq.argmax()])  # unique sorts ascending: ties go to the lowest id, 255 last
            if winner == ignore:
                continue
            sums[winner] += features[:, i, j].double()
            counts[winner] += 1
    return sums / counts.clamp(min=1)[:, None], counts


@pytest.mark.parametrize("mask_size,grid", [((64, 64), (8, 8)), ((70, 53), (9, 7)), ((32, 48), (32, 48))])
def test_prototypes_match_the_slow_loop(mask_size, grid):
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 4, (mask_size[0] // 4 + 1, mask_size[1] // 4 + 1), generator=g)
    mask = torch.nn.functional.interpolate(mask[None, None].float(), size=mask_size, mode="nearest")[0, 0].long()
    mask[torch.rand(mask_size, generator=g) < 0.1] = 255
    features = torch.randn(5, *grid, generator=g)
    protos, counts = class_prototypes(features, mask, num_classes=5)
    expected, expected_counts = _slow_prototypes(features, mask, 5)
    assert torch.equal(counts, expected_counts)
    won = counts > 0
    assert torch.allclose(protos[won].double(), expected[won], atol=1e-5)
    assert (protos[4] == 0).all()  # class 4 is absent


def test_a_class_too_small_to_win_a_cell_gets_its_coverage_weighted_mean():
    mask = torch.zeros(16, 16, dtype=torch.long)
    mask[0:2, 0:2] = 1  # 4 pixels inside the first 8 x 8 cell: never a majority
    features = torch.arange(8, dtype=torch.float32).reshape(2, 2, 2)
    protos, counts = class_prototypes(features, mask, num_classes=2)
    assert counts.tolist() == [4, 0]
    assert torch.allclose(protos[1], features[:, 0, 0])


def test_cosine_heatmaps_peak_on_their_class(device):
    codes = torch.eye(3, device=device)
    labels = torch.tensor([[0, 1], [2, 1]], device=device)
    features = codes[labels].permute(2, 0, 1)  # (3, 2, 2)
    heat = cosine_heatmaps(features, codes)
    assert heat.shape == (3, 2, 2) and heat.device == features.device
    assert torch.equal(heat.argmax(dim=0), labels)
    assert heat.min() >= 0 and heat.max() <= 1


def test_groups_are_connected_components_above_tau():
    correlation = torch.eye(5)
    correlation[0, 1] = correlation[1, 0] = 0.9
    correlation[1, 2] = correlation[2, 1] = 0.85
    correlation[3, 4] = correlation[4, 3] = 0.7
    assert correlated_groups(correlation, 0.8) == [[0, 1, 2]]
    assert correlated_groups(correlation, 0.6) == [[0, 1, 2], [3, 4]]
    assert correlated_groups(torch.eye(3), 0.8) == []


def test_correlation_is_relu_cosine():
    protos = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])
    corr = class_correlation(protos)
    assert corr[0, 1] == 0 and torch.isclose(corr[0, 2], torch.tensor(2**-0.5))
