"""Class prototypes: the mean feature vector of each class under a mask, in one vectorised pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .labels import IGNORE_INDEX

__all__ = ["cell_shares", "prototypes_from_shares", "class_prototypes"]


def cell_shares(mask: torch.Tensor, size: tuple[int, int], num_classes: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Share of every class among the mask pixels under each cell of a (h, w) feature grid.

    Cell ``(i, j)`` covers rows ``floor(i * H / h)`` to ``ceil((i + 1) * H / h)`` and likewise for columns
    (adaptive pooling bins), so any mask size works with any feature stride.

    Args:
        mask: (H, W) int64 class ids in ``[0, num_classes)`` or ``ignore_index``.
        size: (h, w) of the feature grid.

    Returns:
        (num_classes + 1, h, w) float shares summing to 1 per cell; the last channel is the ignored share.
    """
    ids = torch.where(mask == ignore_index, torch.full_like(mask, num_classes), mask)
    big_h, big_w = mask.shape
    h, w = size
    if big_h % h == 0 and big_w % w == 0:  # equal cells: one bincount over (cell, class) pairs
        cell = (torch.arange(big_h, device=mask.device) // (big_h // h))[:, None] * w + (
            torch.arange(big_w, device=mask.device) // (big_w // w)
        )[None, :]
        counts = torch.bincount((cell * (num_classes + 1) + ids).reshape(-1), minlength=h * w * (num_classes + 1))
        shares = counts.reshape(h, w, num_classes + 1).permute(2, 0, 1).float()
        return shares / float((big_h // h) * (big_w // w))
    one_hot = F.one_hot(ids, num_classes + 1).permute(2, 0, 1).float()  # (C + 1, H, W)
    return F.adaptive_avg_pool2d(one_hot[None], size)[0]


def prototypes_from_shares(features: torch.Tensor, shares: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature per class, each cell voting for its majority class (see :func:`class_prototypes`).

    Args:
        features: (D, h, w) float features.
        shares: (C + 1, h, w) from :func:`cell_shares` on the same grid.

    Returns:
        prototypes (C, D) and counts (C,) int64 of majority cells per class.
    """
    d, h, w = features.shape
    num_classes = shares.shape[0] - 1
    flat = features.reshape(d, h * w)
    majority = shares.reshape(num_classes + 1, h * w).argmax(dim=0)  # ties -> lowest id; ignore is last
    votes = F.one_hot(majority, num_classes + 1)[:, :num_classes].to(features.dtype)  # (h * w, C)
    counts = votes.sum(dim=0)
    prototypes = (votes.T @ flat.T) / counts.clamp(min=1)[:, None]
    # A class too small to win any cell still gets a prototype: its coverage-weighted mean.
    weights = shares[:num_classes].reshape(num_classes, h * w).to(features.dtype)
    covered = weights.sum(dim=1)
    soft = (weights @ flat.T) / covered.clamp(min=1e-12)[:, None]
    fallback = (counts == 0) & (covered > 0)
    prototypes = torch.where(fallback[:, None], soft, prototypes)
    return prototypes, counts.long()


def class_prototypes(
    features: torch.Tensor, mask: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature vector per class, each feature cell voting for the majority class of its pixels.

    Cells whose majority is ``ignore_index`` are skipped; ties go to the lowest class id. A class present in
    the mask that wins no cell gets the mean of the cells it touches, weighted by its coverage.

    Args:
        features: (D, h, w) float feature map at any stride.
        mask: (H, W) int64 class ids in ``[0, num_classes)`` or ``ignore_index``; any resolution.
        num_classes: number of class ids the prototypes are indexed by.

    Returns:
        prototypes: (num_classes, D) mean features, zero for classes absent from the mask;
        counts: (num_classes,) int64 number of majority cells each prototype averages.
    """
    if features.ndim != 3 or mask.ndim != 2:
        raise ValueError(
            f"features must be (D, h, w) and mask (H, W), got {tuple(features.shape)} and {tuple(mask.shape)}"
        )
    shares = cell_shares(mask.to(features.device).long(), tuple(features.shape[1:]), num_classes, ignore_index)
    return prototypes_from_shares(features, shares)
