"""Unsupervised (USS) feature providers for DHR, chosen by name from ``USS_PROVIDERS``.

Every provider is a callable (an ``nn.Module``) mapping one image tensor (3, H, W) float, ImageNet-normalised
(see ``image_to_tensor``), to a feature map (D, h, w) on the image's device; the grid stride differs per
provider (``provider.stride``). Builders take keyword arguments only and never read files: weights come in as a
``state_dict`` (the caller loads it), so this package stays pure.

- "color": weight-free Lab colour + gradient texture features, for offline runs;
- "sam": the SAM image-encoder embedding (256, 64, 64) with the padding of SAM's 1024 square cropped away;
- "dino_vits8", "dino_vits16", "dino_vitb8", "dino_vitb16": DINO ViT patch tokens (timm architecture).

Adding a provider is one entry: ``USS_PROVIDERS["name"] = builder`` with ``builder(**kwargs) -> provider``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from dhr.uss.color import ColorTextureFeatures
from dhr.uss.dino import DINO_ARCHS, DinoFeatures, build_dino
from dhr.uss.normalize import IMAGENET_MEAN, IMAGENET_STD, image_to_tensor, tensor_to_rgb
from dhr.uss.sam import SamEmbeddingFeatures, crop_sam_embedding

USS_PROVIDERS: dict[str, Callable[..., nn.Module]] = {
    "color": ColorTextureFeatures,
    "sam": SamEmbeddingFeatures,
    **{name: partial(build_dino, arch) for name, arch in DINO_ARCHS.items()},
}


def build_uss(name: str, **kwargs) -> nn.Module:
    """Build the USS provider registered as ``name`` (keyword arguments go to its builder)."""
    if name not in USS_PROVIDERS:
        raise ValueError(f"unknown USS provider {name!r}; choose one of {sorted(USS_PROVIDERS)}")
    return USS_PROVIDERS[name](**kwargs)


__all__ = [
    "USS_PROVIDERS",
    "build_uss",
    "image_to_tensor",
    "tensor_to_rgb",
    "ColorTextureFeatures",
    "DinoFeatures",
    "SamEmbeddingFeatures",
    "crop_sam_embedding",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
