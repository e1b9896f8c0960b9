"""USS features from a DINO ViT: the last layer's patch tokens on the patch grid (timm architecture).

The timm ``VisionTransformer`` is built with a dynamic image size, so any input size works (the image is padded
to a multiple of the patch size). Official DINO checkpoints use timm's parameter names; pass one as
``state_dict`` (loading the file is the caller's job). Without weights the model is random, which only suits
plumbing tests and timing.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn


class DinoFeatures(nn.Module):
    """(3, H, W) normalised image -> (D, ceil(H'/p), ceil(W'/p)) patch-token features of a ViT.

    ``max_side``: when set, images whose longest side exceeds it are downscaled first (attention cost grows with
    the square of the token count). H', W' are the sizes after that resize.
    """

    def __init__(self, vit: nn.Module, max_side: int | None = None) -> None:
        super().__init__()
        self.vit = vit
        self.max_side = max_side
        self.stride = int(vit.patch_embed.patch_size[0])
        self.dim = int(vit.embed_dim)

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be (3, H, W), got shape {tuple(image.shape)}")
        param = next(self.vit.parameters())
        x = image[None].to(param)
        h, w = x.shape[-2:]
        if self.max_side and max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            h, w = max(1, round(h * s)), max(1, round(w * s))
            x = F.interpolate(x, (h, w), mode="bilinear", align_corners=False, antialias=True)
        p = self.stride
        gh, gw = -(-h // p), -(-w // p)
        x = F.pad(x, (0, gw * p - w, 0, gh * p - h))
        tokens = self.vit.forward_features(x)[:, self.vit.num_prefix_tokens :]
        return tokens[0].transpose(0, 1).reshape(self.dim, gh, gw).to(image.dtype)


def build_dino(
    arch: str,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    max_side: int | None = None,
    **vit_kwargs,
) -> DinoFeatures:
    """Build a DINO feature provider on timm architecture ``arch`` (e.g. "vit_small_patch8_224").

    ``vit_kwargs`` override the architecture (e.g. ``depth=1, embed_dim=48, num_heads=2`` for tests).
    A ``state_dict`` that does not fit raises ValueError (its classification head entries are ignored).
    """
    import timm

    vit = timm.create_model(arch, pretrained=False, num_classes=0, dynamic_img_size=True, **vit_kwargs)
    if state_dict is not None:
        from models.weights import load_exact_state_dict

        load_exact_state_dict(vit, dict(state_dict), arch, drop_prefix="head.")
    return DinoFeatures(vit.eval(), max_side=max_side)
