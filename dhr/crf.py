"""Dense-CRF refinement of class heatmaps on the image (pydensecrf2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["CRFConfig", "dense_crf"]


@dataclass(frozen=True)
class CRFConfig:
    """Fully connected CRF parameters (Kraehenbuehl and Koltun), the WSS community's usual values."""

    iterations: int = 10
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 50.0
    bilateral_srgb: float = 5.0
    bilateral_compat: float = 10.0


def dense_crf(image: np.ndarray, heatmaps: torch.Tensor, config: CRFConfig | None = None) -> torch.Tensor:
    """Refine class heatmaps with a dense CRF whose pairwise terms follow the image's edges.

    Args:
        image: (H, W, 3) uint8 RGB image.
        heatmaps: (C, H, W) float class scores >= 0 (normalised per pixel into probabilities here).

    Returns:
        (C, H, W) float32 marginal probabilities on the heatmaps' device.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    config = config or CRFConfig()
    c, h, w = heatmaps.shape
    if image.shape != (h, w, 3) or image.dtype != np.uint8:
        raise ValueError(f"image must be ({h}, {w}, 3) uint8 to match the heatmaps, got {image.shape} {image.dtype}")
    probs = heatmaps.detach().float().clamp(min=0.0).cpu().numpy() + 1e-5
    probs /= probs.sum(axis=0, keepdims=True)
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=config.gaussian_sxy, compat=config.gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=config.bilateral_sxy, srgb=config.bilateral_srgb, rgbim=np.ascontiguousarray(image), compat=config.bilateral_compat
    )
    marginals = np.asarray(crf.inference(config.iterations), dtype=np.float32).reshape(c, h, w)
    return torch.from_numpy(marginals).to(heatmaps.device)
