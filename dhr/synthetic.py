"""Synthetic scenes with a known answer: a minor class beside a major one, as WSS outputs make them.

Every scene has a ground truth, an image, CAMs in which the major class spills over the minor one (so the CAM
argmax and the base mask lose it), unsupervised (USS) features at stride 8 and classifier (WSS) features at
stride 16. In a "confusable" scene the minor class shares the USS embedding of its neighbour, so only the WSS
features can tell the two apart. Used by the tests, the demo and the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .normalise import normalise_cams

__all__ = ["SyntheticScene", "make_scene", "cam_argmax", "pool_maps", "blur_maps"]

PALETTE = np.array(
    [[40, 40, 48], [200, 60, 50], [60, 160, 70], [60, 90, 200], [210, 190, 60], [170, 80, 190], [70, 190, 200],
     [230, 130, 40], [120, 120, 120], [240, 240, 240], [150, 100, 60]],
    dtype=np.uint8,
)


@dataclass
class SyntheticScene:
    """A scene and everything DHR needs for it.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        gt: (H, W) int64 ground-truth class ids (0 background).
        cams: (K, H/16, W/16) float CAMs of ``tags``.
        tags: class ids present in the scene, ascending.
        mask: (H, W) int64 base mask: the CAM argmax against ``1 - max`` (what a WSS method hands over).
        uss: (32, H/8, W/8) float unsupervised features.
        wss: two (64, H/16, W/16) float classifier feature maps (C4, C5).
        minor: class id of the minor class.
    """

    image: np.ndarray
    gt: torch.Tensor
    cams: torch.Tensor
    tags: list[int]
    mask: torch.Tensor
    uss: torch.Tensor
    wss: list[torch.Tensor]
    minor: int


def pool_maps(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Average-pool maps (C, H, W) by ``stride`` -> (C, H / stride, W / stride)."""
    return F.avg_pool2d(x[None], stride)[0]


def blur_maps(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of maps (C, h, w) with replicate padding -> (C, h, w)."""
    radius = max(int(3 * sigma), 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = x.shape[0]
    x = F.conv2d(F.pad(x[None], (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return x[0]


def cam_argmax(cams: torch.Tensor, tags: list[int], size: tuple[int, int]) -> torch.Tensor:
    """Plain CAM baseline: max-normalised, upsampled CAMs against the background score ``1 - max``.

    Args:
        cams: (K, h, w) float CAMs of ``tags``.

    Returns:
        (H, W) int64 class ids.
    """
    up = F.interpolate(normalise_cams(cams)[None], size=size, mode="bilinear", align_corners=False)[0]
    scores = torch.cat([1 - up.amax(dim=0, keepdim=True), up])
    ids = torch.tensor([0, *tags], device=cams.device)
    return ids[scores.argmax(dim=0)]


def make_scene(size: int = 160, confusable: bool = False, seed: int = 0, noise: float = 0.05) -> SyntheticScene:
    """A background, a major class (1), a minor class (2) touching it, and a separate third class (3).

    Args:
        size: image side in pixels, a multiple of 16.
        confusable: give the minor class the USS embedding of the major one (only WSS features separate them).
        seed: random seed of the layout jitter, embeddings and noise.
        noise: standard deviation of the feature and CAM noise.
    """
    if size % 16:
        raise ValueError(f"size must be a multiple of 16, got {size}")
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    s = size / 160
    gt = torch.zeros(size, size, dtype=torch.long)
    jitter = rng.integers(-6, 7, size=4) * s
    y0, x0 = int(30 * s + jitter[0]), int(20 * s + jitter[1])
    gt[y0 : y0 + int(80 * s), x0 : x0 + int(70 * s)] = 1  # major
    gt[y0 + int(20 * s) : y0 + int(52 * s), x0 + int(70 * s) : x0 + int(102 * s)] = 2  # minor, touching major
    y3, x3 = int(110 * s + jitter[2] / 2), int(110 * s + jitter[3] / 2)
    gt[y3 : y3 + int(36 * s), x3 : x3 + int(40 * s)] = 3
    num = 4
    one_hot = F.one_hot(gt, num).permute(2, 0, 1).float()  # (4, H, W)

    image = PALETTE[[0, 1, 2, 3]][gt.numpy()].astype(np.float32)
    image += rng.normal(0, 8, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)

    uss_codes = F.normalize(torch.randn(num, 32, generator=g), dim=1)
    if confusable:
        uss_codes[2] = uss_codes[1]
    uss = pool_maps(torch.einsum("cd,chw->dhw", uss_codes, one_hot), 8)
    uss = uss + noise * torch.randn(uss.shape, generator=g)

    wss = []
    for _ in range(2):  # C4 and C5
        codes = F.normalize(torch.randn(num, 64, generator=g), dim=1)
        codes[2] = F.normalize(codes[1] + 0.9 * codes[2], dim=0)  # related to the major class, yet separable
        feats = pool_maps(torch.einsum("cd,chw->dhw", codes, one_hot), 16)
        wss.append(feats + noise * torch.randn(feats.shape, generator=g))

    # CAMs: the major class fires evenly over itself and its minor neighbour; the minor class only at its centre.
    h = size // 16
    reach = int(8 * s)
    spill = F.max_pool2d(one_hot[2:3][None], 2 * reach + 1, stride=1, padding=reach)[0]  # minor region, dilated
    major = blur_maps(pool_maps((one_hot[1:2] + spill).clamp(max=1), 16), 0.7)[0]
    centre = torch.nonzero(one_hot[2]).float().mean(dim=0) / 16 - 0.5
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(h, dtype=torch.float32), indexing="ij")
    minor = 0.6 * torch.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * (0.6 * s) ** 2))
    third = blur_maps(pool_maps(one_hot[3:4], 16), 0.7)[0] * 0.9
    cams = torch.stack([major, minor, third]) + noise * torch.rand(3, h, h, generator=g)
    tags = [1, 2, 3]
    mask = cam_argmax(cams, tags, (size, size))
    return SyntheticScene(image, gt, cams, tags, mask, uss, wss, minor=2)
