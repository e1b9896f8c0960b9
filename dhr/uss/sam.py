"""USS features from the Segment Anything image encoder: its (256, 64, 64) embedding without the padding.

SAM resizes an image so that its longest side is 1024, normalises it with the ImageNet mean / std (in 0..255
units), pads the bottom and right to a 1024 square and encodes it to a (256, 64, 64) grid of stride 16. Only the
top-left ``ceil(h' / 16) x ceil(w' / 16)`` cells cover the image (h', w' the resized size); the rest describe
padding, which would otherwise enter DHR's prototypes and heatmaps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SAM_SIZE = 1024
SAM_STRIDE = 16


def sam_resized_size(height: int, width: int, target: int = SAM_SIZE) -> tuple[int, int]:
    """Size (h', w') of an image after SAM's ResizeLongestSide(target) (the same rounding)."""
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def crop_sam_embedding(
    embedding: torch.Tensor, image_size: tuple[int, int], img_size: int = SAM_SIZE
) -> torch.Tensor:
    """(256, 64, 64) SAM embedding -> (256, h, w): the cells covering an image of ``image_size`` (H, W).

    ``img_size``: the encoder's square input side (1024 for the released models).
    """
    if embedding.ndim == 4 and embedding.shape[0] == 1:
        embedding = embedding[0]
    if embedding.ndim != 3:
        raise ValueError(f"SAM embedding must be (C, h, w), got shape {tuple(embedding.shape)}")
    grid = embedding.shape[-1]
    stride = img_size / grid
    rh, rw = sam_resized_size(*image_size, target=img_size)
    h = min(grid, max(1, math.ceil(rh / stride)))
    w = min(grid, max(1, math.ceil(rw / stride)))
    return embedding[:, :h, :w]


class SamEmbeddingFeatures(nn.Module):
    """SAM-embedding USS provider.

    ``forward(image, embedding=None)``: ``image`` (3, H, W) ImageNet-normalised float; ``embedding`` a
    precomputed (256, 64, 64) SAM embedding of that image (e.g. from the segmenter's embedding cache). Without
    one, ``image_encoder`` (a segment_anything ``ImageEncoderViT``) encodes the image. Returns (256, h, w).
    ``img_size``: the encoder's input side (default: the encoder's ``img_size``, else 1024).
    """

    def __init__(self, image_encoder: nn.Module | None = None, img_size: int | None = None) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.img_size = int(img_size or getattr(image_encoder, "img_size", SAM_SIZE))
        self.stride = SAM_STRIDE  # in pixels of the resized image

    def forward(self, image: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be (3, H, W), got shape {tuple(image.shape)}")
        size = (int(image.shape[1]), int(image.shape[2]))
        if embedding is None:
            if self.image_encoder is None:
                raise ValueError("the 'sam' USS provider needs the image's SAM embedding or an image_encoder")
            embedding = self.encode(image)
        return crop_sam_embedding(embedding.to(image.device), size, self.img_size)

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) normalised -> (256, 64, 64) embedding, preprocessed as SAM does (resize, pad to 1024)."""
        encoder = self.image_encoder
        target = self.img_size
        rh, rw = sam_resized_size(image.shape[1], image.shape[2], target)
        param = next(encoder.parameters())
        x = F.interpolate(
            image[None].to(param), (rh, rw), mode="bilinear", align_corners=False, antialias=True
        )
        x = F.pad(x, (0, target - rw, 0, target - rh))  # 0 = the mean colour after normalisation, as in SAM
        return encoder(x)[0]
