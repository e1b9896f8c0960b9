"""Image <-> tensor conversion with the ImageNet normalisation every provider and the classifier expect."""

from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_to_tensor(image: np.ndarray, device: str | torch.device | None = None) -> torch.Tensor:
    """HWC uint8 RGB array -> (3, H, W) float32 tensor normalised with the ImageNet mean / std."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HWC uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device=device).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=x.device)[:, None, None]
    return (x - mean) / std


def tensor_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``image_to_tensor`` on tensors: (3, H, W) normalised -> (3, H, W) float RGB in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype)[:, None, None]
    return (x * std + mean).clamp(0, 1)
