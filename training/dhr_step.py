"""DHR inside the training step: rebalance the pseudo mask of every crop of a batch with ``dhr.rebalance``.

Per image: stage 1 uses the network's own CAMs of the tagged classes, stage 2 the USS features precomputed on
the whole original image (resampled onto the crop through its box and flip), stage 3 the network's C4 / C5.
Only the part of the crop holding image content (``valid``) is rebalanced; padding stays ignore. Images whose
labels a human accepted are left exactly as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from dhr.labels import IGNORE_INDEX
from models.transforms import sample_in_box

__all__ = ["DHRStepStats", "in_valid_region", "rebalance_batch"]

logger = logging.getLogger(__name__)


@dataclass
class DHRStepStats:
    """What one call did: images rebalanced, skipped (accepted, untagged, no USS features), failed, pixels changed."""

    rebalanced: int = 0
    accepted: int = 0
    untagged: int = 0
    no_features: int = 0
    failed: int = 0
    changed_pixels: int = 0
    unconverged: int = 0  # transport plans stopped before their threshold (by design when max_iter is small)
    restored: list[int] = field(default_factory=list)


def in_valid_region(features: torch.Tensor, valid: Sequence[int], crop_size: tuple[int, int]) -> torch.Tensor:
    """Features (D, gh, gw) of the whole crop resampled onto exactly the crop pixels ``valid`` XYXY.

    The grid of the result keeps the features' stride (``round(extent * g / crop side)`` cells, at least one);
    ``roi_align`` with ``aligned=True`` samples the fractional box, so maps of different strides (CAMs, C4/C5,
    USS features) stay aligned with each other and with the mask region even when padding ends mid-cell.
    """
    from torchvision.ops import roi_align

    height, width = crop_size
    gh, gw = features.shape[-2:]
    sx, sy = gw / width, gh / height
    x0, y0, x1, y1 = (float(v) for v in valid)
    out_h = max(1, round((y1 - y0) * sy))
    out_w = max(1, round((x1 - x0) * sx))
    box = torch.tensor([[0.0, x0 * sx, y0 * sy, x1 * sx, y1 * sy]], dtype=features.dtype, device=features.device)
    return roi_align(features[None], box, (out_h, out_w), spatial_scale=1.0, sampling_ratio=2, aligned=True)[0]


def _uss_on_crop(features: torch.Tensor, image_size: tuple[int, int], box: np.ndarray, flip: bool,
                 crop_size: int) -> torch.Tensor:
    """USS features (D, hu, wu) of the whole image -> (D, g, g) on the crop, at the features' own stride."""
    height = float(image_size[0])
    box_height = float(box[3] - box[1])
    cells = int(round(box_height * features.shape[-2] / height))
    cells = max(1, min(crop_size, cells))
    return sample_in_box(features, image_size, box, flip, (cells, cells))


@torch.no_grad()
def rebalance_batch(
    outputs: dict[str, torch.Tensor],
    masks: torch.Tensor,
    tags: torch.Tensor,
    accepted: torch.Tensor,
    uss: Sequence[torch.Tensor | None],
    boxes: torch.Tensor,
    flips: torch.Tensor,
    valid: torch.Tensor,
    image_sizes: torch.Tensor,
    *,
    images: torch.Tensor | None = None,
    config=None,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[torch.Tensor, DHRStepStats]:
    """Rebalanced copy of the batch's pseudo masks.

    outputs: the network's ``cams`` (B, N, h, w) >= 0, ``C4``, ``C5`` (B, D, h, w); masks (B, S, S) int64
    class ids (``ignore_index`` = ignore); tags (B, N) multi-hot; accepted (B,) bool; uss: per image (D, hu, wu)
    features of the whole original image, or None (the image is then left unchanged); boxes (B, 4) XYXY,
    flips (B,), valid (B, 4) XYXY crop pixels, image_sizes (B, 2) (H, W) as carried by ``models.transforms``;
    images (B, S, S, 3) uint8, only used when ``config.crf`` is set; config a ``dhr.DHRConfig``.
    Returns (masks (B, S, S) int64 on the masks' device, stats).
    """
    from dhr import rebalance

    batch, height, width = masks.shape
    if tags.shape[0] != batch or len(uss) != batch:
        raise ValueError(f"batch of {batch} masks but {tags.shape[0]} tag rows and {len(uss)} USS maps")
    out = masks.clone()
    stats = DHRStepStats()
    cams_all = outputs["cams"].detach().float()
    c4_all, c5_all = outputs["C4"].detach().float(), outputs["C5"].detach().float()
    use_crf = bool(getattr(config, "crf", False))
    for b in range(batch):
        if bool(accepted[b]):
            stats.accepted += 1
            continue
        class_ids = (torch.nonzero(tags[b] > 0.5).flatten() + 1).tolist()
        if not class_ids:
            stats.untagged += 1
            continue
        if uss[b] is None:
            stats.no_features += 1
            continue
        vx0, vy0, vx1, vy1 = (int(v) for v in valid[b])
        if vx1 <= vx0 or vy1 <= vy0:
            continue
        box = boxes[b].detach().cpu().double().numpy()
        size = (int(image_sizes[b][0]), int(image_sizes[b][1]))
        crop = (height, width)
        cams = in_valid_region(cams_all[b, [c - 1 for c in class_ids]], valid[b], crop)  # rebalance normalises them
        wss = [in_valid_region(f[b], valid[b], crop) for f in (c4_all, c5_all)]
        uss_crop = _uss_on_crop(uss[b].to(cams_all.device).float(), size, box, bool(flips[b]), height)
        uss_crop = in_valid_region(uss_crop, valid[b], crop)
        base = out[b, vy0:vy1, vx0:vx1]
        image = images[b, vy0:vy1, vx0:vx1].cpu().numpy() if (use_crf and images is not None) else None
        try:
            result = rebalance(cams, base, class_ids, uss_crop, wss, image=image, config=config)
        except ValueError as error:
            stats.failed += 1
            logger.warning("DHR step skipped an image: %s", error)
            continue
        new = result.mask.to(device=out.device, dtype=out.dtype)
        new = torch.where(base == ignore_index, base, new)  # ignore (crowd, unsure) stays ignore: never trained on
        stats.changed_pixels += int((new != base).sum())
        stats.restored.extend(int(c) for c in result.restored)
        stats.unconverged += result.unconverged
        out[b, vy0:vy1, vx0:vx1] = new
        stats.rebalanced += 1
    return out, stats
