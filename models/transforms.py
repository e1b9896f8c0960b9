"""Training augmentations that remember where the crop came from.

Random resize, horizontal flip, colour jitter and a square crop (padded where the image is smaller). Besides
the crop, each sample carries its geometry so that features computed once on the whole original image
(USS features) can be resampled onto the crop inside the training step:

- ``box``: (4,) float XYXY, the crop window in continuous pixel coordinates of the *original* image
  (pixel i covers [i, i + 1)); it may reach outside the image where the crop was padded;
- ``flip``: bool, the crop is mirrored left-right relative to ``box``;
- ``valid``: (4,) int XYXY, the part of the crop (crop pixels) holding image content; the rest is padding
  (mask 255).

All randomness comes from the ``numpy.random.Generator`` passed in, so a sample is a function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dhr.labels import IGNORE_INDEX
from dhr.uss.normalize import IMAGENET_MEAN

__all__ = ["AugmentConfig", "AugmentedSample", "augment", "sample_in_box"]

_PAD_COLOUR = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)


@dataclass(frozen=True)
class AugmentConfig:
    """Knobs of :func:`augment`; scales are relative to the original image size."""

    crop_size: int = 512
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05
    ignore_index: int = IGNORE_INDEX


@dataclass
class AugmentedSample:
    """image (S, S, 3) uint8 RGB; mask (S, S) int64 (ignore where padded); geometry as in the module doc."""

    image: np.ndarray
    mask: np.ndarray
    box: np.ndarray
    flip: bool
    valid: np.ndarray


def _resize(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    width, height = size
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return image, mask


def _jitter(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Brightness, contrast, saturation and hue changes in a random order; HWC uint8 in and out."""
    import cv2

    x = image.astype(np.float32)
    ops = rng.permutation(4)
    for op in ops:
        if op == 0 and config.brightness > 0:
            x *= rng.uniform(1 - config.brightness, 1 + config.brightness)
        elif op == 1 and config.contrast > 0:
            grey = (x @ np.array([0.299, 0.587, 0.114], np.float32)).mean()
            x = (x - grey) * rng.uniform(1 - config.contrast, 1 + config.contrast) + grey
        elif op == 2 and config.saturation > 0:
            grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
            x = (x - grey) * rng.uniform(1 - config.saturation, 1 + config.saturation) + grey
        elif op == 3 and config.hue > 0:
            hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
            shift = int(round(rng.uniform(-config.hue, config.hue) * 180))
            hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
        x = np.clip(x, 0, 255)
    return x.astype(np.uint8)


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            config: AugmentConfig | None = None) -> AugmentedSample:
    """Resize by a random scale, flip, jitter and crop ``config.crop_size`` squared (padding as needed).

    image (H, W, 3) uint8 RGB; mask (H, W) integer class ids (255 = ignore).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape[:2]}")
    config = config or AugmentConfig()
    height, width = image.shape[:2]
    size = config.crop_size
    scale = float(rng.uniform(*config.scale_range))
    new_w, new_h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    image, mask = _resize(image, mask, (new_w, new_h))
    sx, sy = new_w / width, new_h / height
    flip = bool(config.flip and rng.random() < 0.5)
    if flip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    image = _jitter(image, rng, config)
    # Crop offset in the resized (and flipped) image; negative offsets pad before the image.
    cx = int(rng.integers(0, new_w - size + 1)) if new_w >= size else -int(rng.integers(0, size - new_w + 1))
    cy = int(rng.integers(0, new_h - size + 1)) if new_h >= size else -int(rng.integers(0, size - new_h + 1))
    out_image = np.empty((size, size, 3), np.uint8)
    out_image[:] = _PAD_COLOUR
    out_mask = np.full((size, size), config.ignore_index, np.int64)
    x0, y0 = max(cx, 0), max(cy, 0)
    x1, y1 = min(cx + size, new_w), min(cy + size, new_h)
    out_image[y0 - cy:y1 - cy, x0 - cx:x1 - cx] = image[y0:y1, x0:x1]
    out_mask[y0 - cy:y1 - cy, x0 - cx:x1 - cx] = mask[y0:y1, x0:x1]
    valid = np.array([x0 - cx, y0 - cy, x1 - cx, y1 - cy], np.int64)
    if flip:  # crop columns [cx, cx + S) of the mirrored image are columns [W' - cx - S, W' - cx) unmirrored
        bx0, bx1 = (new_w - cx - size) / sx, (new_w - cx) / sx
    else:
        bx0, bx1 = cx / sx, (cx + size) / sx
    box = np.array([bx0, cy / sy, bx1, (cy + size) / sy], np.float64)
    return AugmentedSample(np.ascontiguousarray(out_image), out_mask, box, flip, valid)


def sample_in_box(features: torch.Tensor, image_size: tuple[int, int], box: torch.Tensor | np.ndarray,
                  flip: bool, out_size: tuple[int, int]) -> torch.Tensor:
    """Resample features of a whole image onto a crop window.

    features (D, h, w) cover the original image of ``image_size`` (H, W) at any stride; ``box`` XYXY in
    original pixel coordinates and ``flip`` as carried by :class:`AugmentedSample`. Returns (D, oh, ow) on the
    crop grid (``out_size`` = (oh, ow)), bilinear; zero outside the image.
    """
    if features.ndim != 3:
        raise ValueError(f"features must be (D, h, w), got {tuple(features.shape)}")
    height, width = image_size
    x0, y0, x1, y1 = (float(v) for v in box)
    oh, ow = out_size
    dev = features.device
    u = (torch.arange(ow, device=dev, dtype=torch.float32) + 0.5) / ow
    v = (torch.arange(oh, device=dev, dtype=torch.float32) + 0.5) / oh
    xs = (x1 - u * (x1 - x0)) if flip else (x0 + u * (x1 - x0))
    ys = y0 + v * (y1 - y0)
    grid = torch.stack(torch.meshgrid(2 * ys / height - 1, 2 * xs / width - 1, indexing="ij")[::-1], dim=-1)
    out = F.grid_sample(features[None].float(), grid[None], mode="bilinear", padding_mode="zeros",
                        align_corners=False)[0]
    return out.to(features.dtype)
