"""Cosine heatmaps, class correlation and correlated class groups."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .normalise import minmax_maps

__all__ = ["cosine_heatmaps", "class_correlation", "correlated_groups"]


def cosine_heatmaps(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every feature cell to every prototype, each map min-max normalised.

    Args:
        features: (D, h, w) float feature map.
        prototypes: (C, D) float prototypes.

    Returns:
        (C, h, w) float heatmaps in [0, 1].
    """
    d, h, w = features.shape
    cells = F.normalize(features.reshape(d, h * w), dim=0)
    similarity = F.normalize(prototypes, dim=1) @ cells  # (C, h * w) in [-1, 1]
    return minmax_maps(similarity.reshape(-1, h, w))


def class_correlation(prototypes: torch.Tensor) -> torch.Tensor:
    """ReLU of the cosine similarity between prototypes: (C, D) -> (C, C) in [0, 1]."""
    unit = F.normalize(prototypes, dim=1)
    return (unit @ unit.T).clamp(min=0.0)


def correlated_groups(correlation: torch.Tensor, tau: float) -> list[list[int]]:
    """Groups of two or more classes linked by correlation above ``tau`` (connected components).

    Args:
        correlation: (C, C) symmetric class correlation.

    Returns:
        Row indices of each group, sorted; classes correlated with no other class form no group.
    """
    linked = (correlation > tau).cpu()
    c = linked.shape[0]
    reach = linked | torch.eye(c, dtype=torch.bool)
    for _ in range(max(c - 1, 0).bit_length()):  # transitive closure by repeated squaring
        reach = reach | ((reach.float() @ reach.float()) > 0)
    groups = {tuple(torch.nonzero(row).flatten().tolist()) for row in reach}
    return sorted(list(group) for group in groups if len(group) > 1)
