"""Stage 1: OT-based seed initialisation from the CAMs of the tagged classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .ot import ot_rebalance

__all__ = ["normalise_cams", "cam_scores", "initialise_seeds"]


def normalise_cams(cams: torch.Tensor) -> torch.Tensor:
    """ReLU and divide each CAM by its maximum: (K, h, w) -> (K, h, w) in [0, 1]; an all-zero CAM stays zero."""
    cams = cams.clamp(min=0.0)
    return cams / cams.amax(dim=(1, 2), keepdim=True).clamp(min=1e-5)


def cam_scores(
    cams: torch.Tensor,
    size: tuple[int, int],
    rebalance: bool = True,
    eps: float = 0.1,
    max_iter: int = 100,
    stop_thr: float = 1e-4,
) -> torch.Tensor:
    """Per-class scores at image size: normalised CAMs, OT-rebalanced when more than one class is tagged.

    After the transport each class map is scaled back to a peak of 1, so a minor class whose CAM was weak
    everywhere competes on equal terms with its big neighbour.

    Args:
        cams: (K, h, w) float CAMs of the tagged classes.
        size: (H, W) output size.

    Returns:
        (K, H, W) float scores in [0, 1] (bilinear upsampling).
    """
    scores = normalise_cams(cams.float())
    if rebalance and scores.shape[0] > 1:
        scores = normalise_cams(ot_rebalance(scores, eps=eps, max_iter=max_iter, stop_thr=stop_thr))
    return F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0].clamp(0.0, 1.0)


def initialise_seeds(
    mask: torch.Tensor,
    scores: torch.Tensor,
    tags: torch.Tensor,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Replace the mask's pixels with confident CAM seeds.

    A pixel is a seed of class ``k`` when ``k`` has the highest score there and that score beats the background
    score ``1 - max`` (equivalently, is above ``threshold``; 0.5 is the argmax against ``1 - max``). Other pixels
    keep the input mask, so background and ignore regions survive (no CRF here: a CRF over the tagged classes
    alone erases the background on images with one or two tags).

    Args:
        mask: (H, W) int64 input mask (class ids, 255 = ignore).
        scores: (K, H, W) float scores from :func:`cam_scores`.
        tags: (K,) int64 class id of each score map.

    Returns:
        (H, W) int64 seed mask.
    """
    if scores.shape[0] == 0:
        return mask.clone()
    best, index = scores.max(dim=0)
    confident = best > threshold
    return torch.where(confident, tags.to(mask.device)[index], mask)
