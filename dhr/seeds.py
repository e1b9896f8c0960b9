"""Stage 1: OT-based seed initialisation from the CAMs of the tagged classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .normalise import normalise_cams
from .ot import OTSettings, SinkhornLog, ot_rebalance

__all__ = ["cam_scores", "initialise_seeds"]


def cam_scores(
    cams: torch.Tensor,
    size: tuple[int, int],
    rebalance: bool = True,
    settings: OTSettings | None = None,
    logs: list[SinkhornLog] | None = None,
) -> torch.Tensor:
    """Per-class scores at image size: normalised CAMs, OT-rebalanced when more than one class is tagged.

    After the transport each class map is scaled back to a peak of 1, so a minor class whose CAM was weak
    everywhere competes on equal terms with its big neighbour.

    Args:
        cams: (K, h, w) float CAMs of the tagged classes.
        size: (H, W) output size.
        rebalance: apply the transport plan (only when more than one class is tagged).
        settings: the solver of the plan.
        logs: when given, the plan's :class:`SinkhornLog` is appended to it.

    Returns:
        (K, H, W) float scores in [0, 1] (bilinear upsampling).
    """
    scores = normalise_cams(cams.float())
    if rebalance and scores.shape[0] > 1:
        scores, info = ot_rebalance(scores, settings, log=True)
        scores = normalise_cams(scores)
        if logs is not None:
            logs.append(info)
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
