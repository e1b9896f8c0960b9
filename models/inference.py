"""Multi-scale + horizontal-flip inference of a dense network, the loop the classifier and DeepLabv3+ share.

The image is resized to each scale (sides at least ``min_side``), batched with its mirror image when ``flip``,
and run once per scale. The caller's ``forward`` picks what it needs from the network's output and returns
two dicts of (B, C, h, w) tensors: ``maps``, whose mirrored half is flipped back and added to the plain half,
and ``plain``, of which only the unmirrored image is kept (features).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

__all__ = ["Outputs", "multiscale_flip"]

Outputs = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]
"""What ``forward`` returns for a (B, 3, h, w) batch: (maps, plain), each key -> (B, C, h', w')."""


def multiscale_flip(
    forward: Callable[[torch.Tensor], Outputs],
    x: torch.Tensor,
    scales: Sequence[float],
    flip: bool = True,
    min_side: int = 16,
) -> Iterator[tuple[float, dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """Run ``forward`` on ``x`` (3, H, W) at each scale; yield (scale, maps (C, h', w'), plain (C, h', w')).

    ``maps`` are the sum over the image and its flipped-back mirror (twice the single-view value with
    ``flip``); ``plain`` are the unmirrored image's. Shapes h', w' are whatever ``forward`` returns.
    """
    if not scales:
        raise ValueError("scales must hold at least one scale")
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"image tensor must be (3, H, W), got {tuple(x.shape)}")
    height, width = x.shape[-2:]
    for scale in scales:
        size = (max(min_side, round(height * scale)), max(min_side, round(width * scale)))
        xs = x[None] if size == (height, width) else F.interpolate(x[None], size, mode="bilinear", align_corners=False)
        maps, plain = forward(torch.cat([xs, xs.flip(-1)]) if flip else xs)
        if flip:
            maps = {k: v[:1] + v[1:].flip(-1) for k, v in maps.items()}
        yield scale, {k: v[0] for k, v in maps.items()}, {k: v[0] for k, v in plain.items()}
