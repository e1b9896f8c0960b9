"""The model names a command line offers, without importing the models (which would import torch).

``dhr --help`` and the commands that need no model start in a fraction of a second because their parsers are
built from these tuples; the tests check them against the registries they name.
"""

from __future__ import annotations

SEGMENTER_NAMES = (
    "sam_vit_b",
    "sam_vit_l",
    "sam_vit_h",
    "sam2.1_hiera_tiny",
    "sam2.1_hiera_small",
    "sam2.1_hiera_base_plus",
    "sam2.1_hiera_large",
    "sam_hq_vit_tiny",
    "sam_hq_vit_b",
    "sam_hq_vit_l",
    "sam_hq_vit_h",
    "light_sam",
    "grabcut",
)
"""``models.segmenters.SEGMENTERS``, in its order."""
USS_NAMES = ("color", "dino_vitb16", "dino_vitb8", "dino_vits16", "dino_vits8", "sam")
"""``models.uss.USS_REGISTRY``, sorted."""
BACKBONE_NAMES = ("resnet101", "resnet50", "resnet_small", "resnet_tiny")
"""``models.backbone.BACKBONES``, sorted."""

__all__ = ["BACKBONE_NAMES", "SEGMENTER_NAMES", "USS_NAMES"]
