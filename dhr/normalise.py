"""The two normalisations of class maps used throughout DHR: min-max and peak (ReLU, divide by the maximum)."""

from __future__ import annotations

import torch

__all__ = ["MIN_RANGE", "minmax", "minmax_maps", "normalise_cams"]

MIN_RANGE = 1e-5  # a range or peak below this counts as constant: the map becomes 0


def minmax(x: torch.Tensor, dim: int | tuple[int, ...]) -> torch.Tensor:
    """Min-max normalise ``x`` to [0, 1] along ``dim`` (any shape); a constant slice becomes 0."""
    low = x.amin(dim=dim, keepdim=True)
    high = x.amax(dim=dim, keepdim=True)
    return (x - low) / (high - low).clamp(min=MIN_RANGE)


def minmax_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map of ``maps`` (C, h, w) to [0, 1]; a constant map becomes 0."""
    return minmax(maps, dim=(1, 2))


def normalise_cams(cams: torch.Tensor) -> torch.Tensor:
    """ReLU and divide each CAM by its maximum: (K, h, w) -> (K, h, w) in [0, 1]; an all-zero CAM stays zero."""
    cams = cams.clamp(min=0.0)
    return cams / cams.amax(dim=(1, 2), keepdim=True).clamp(min=MIN_RANGE)
