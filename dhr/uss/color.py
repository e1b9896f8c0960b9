"""Weight-free USS features: CIE Lab colour, local colour statistics and gradient texture, pooled to a grid.

For offline runs with no model weights. Each channel is standardised over the image (zero mean, unit variance),
so the cosine similarity DHR computes between prototypes and cells contrasts regions of this image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dhr.uss.normalize import tensor_to_rgb

# sRGB (D65) -> XYZ, rows X, Y, Z
_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_WHITE = (0.950456, 1.0, 1.088754)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float sRGB in [0, 1] -> (3, H, W) CIE Lab (L in [0, 100], a / b roughly in [-128, 127])."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = torch.tensor(_RGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device)
    xyz = torch.einsum("ij,jhw->ihw", m, linear)
    xyz = xyz / torch.tensor(_WHITE, dtype=rgb.dtype, device=rgb.device)[:, None, None]
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    L = 116 * f[1] - 16
    a = 500 * (f[0] - f[1])
    b = 200 * (f[1] - f[2])
    return torch.stack([L, a, b])


def _box(x: torch.Tensor, k: int) -> torch.Tensor:
    """Box filter of odd size k on (C, H, W), reflect-padded."""
    pad = k // 2
    return F.avg_pool2d(F.pad(x[None], (pad, pad, pad, pad), mode="replicate"), k, stride=1)[0]


class ColorTextureFeatures(nn.Module):
    """(3, H, W) normalised image -> (D=13, ceil(H/stride), ceil(W/stride)) colour + texture features.

    Channels: Lab (3), Lab smoothed over ``window`` px (3), local standard deviation of Lab (3),
    |dL/dx|, |dL/dy| at pixel scale and smoothed (4). Each channel is standardised over the image, then
    ``texture_weight`` scales the texture channels against the colour ones. Average-pooled by ``stride``.
    """

    dim = 13

    def __init__(self, stride: int = 4, window: int = 7, texture_weight: float = 0.5) -> None:
        super().__init__()
        if stride < 1 or window < 1 or window % 2 == 0:
            raise ValueError(f"stride must be >= 1 and window odd >= 1, got stride={stride}, window={window}")
        self.stride = int(stride)
        self.window = int(window)
        self.texture_weight = float(texture_weight)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be (3, H, W), got shape {tuple(image.shape)}")
        x = image.float()
        lab = rgb_to_lab(tensor_to_rgb(x))
        lab_smooth = _box(lab, self.window)
        lab_std = (_box(lab * lab, self.window) - lab_smooth**2).clamp_min(0).sqrt()
        L = F.pad(lab[None, :1], (1, 1, 1, 1), mode="replicate")[0, 0]
        gx = (L[1:-1, 2:] - L[1:-1, :-2]).abs() / 2
        gy = (L[2:, 1:-1] - L[:-2, 1:-1]).abs() / 2
        grads = torch.stack([gx, gy])
        texture = torch.cat([lab_std, grads, _box(grads, self.window)])
        feats = torch.cat(
            [_standardise(torch.cat([lab, lab_smooth])), self.texture_weight * _standardise(texture)]
        )
        if self.stride > 1:
            feats = F.avg_pool2d(feats[None], self.stride, ceil_mode=True)[0]
        return feats.to(image.dtype) if image.dtype.is_floating_point else feats


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """Per-channel zero mean, unit variance over the image, (C, H, W)."""
    flat = x.flatten(1)
    return (x - flat.mean(1)[:, None, None]) / flat.std(1).clamp_min(1e-6)[:, None, None]
