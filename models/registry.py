"""The one registry of every model the product can run: segmenters, USS feature providers, classifier backbones.

Each :class:`ModelEntry` names its family, the builder that makes it (an import path, so that listing the
registry imports no torch), the checkpoint it loads (a :data:`models.weights.CHECKPOINTS` name, or None) and
its capabilities, and a short ``label`` for menus. Adding a model is one builder module and one entry here.

Segmenters: Segment Anything ViT-B / L / H (``segment-anything``), SAM 2.1 Hiera-T / S / B+ / L (``sam2``),
HQ-SAM ViT-B / L / H and Light HQ-SAM (``segment-anything-hq``), and GrabCut (OpenCV, no weights).

Capabilities:

- ``"embedding"``: a segmenter whose image embedding doubles as USS features (the Segment Anything family);
- ``"mask_prompt"``: a segmenter that takes a mask prompt;
- ``"from_segmenter"``: a USS provider that reads the segmenter's embedding instead of running a model;
- ``"imagenet"``: a backbone with ImageNet weights.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAMILIES", "REGISTRY", "ModelEntry", "entries", "get_entry", "names"]

FAMILIES = ("segmenter", "uss", "backbone")


@dataclass(frozen=True)
class ModelEntry:
    """One model: ``builder`` is ``"module:function"``; ``options`` are keyword arguments the builder gets."""

    name: str
    family: str
    builder: str
    checkpoint: str | None = None
    capabilities: frozenset[str] = frozenset()
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r}; choose one of {FAMILIES}")

    def build_function(self) -> Callable[..., Any]:
        """The builder, imported on first use."""
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)

    def has(self, capability: str) -> bool:
        return capability in self.capabilities


def _entries(*items: ModelEntry) -> dict[str, ModelEntry]:
    return {item.name: item for item in items}


_SAM = frozenset({"embedding", "mask_prompt"})
_DINO = {"dino_vits8": "vit_small_patch8_224", "dino_vits16": "vit_small_patch16_224",
         "dino_vitb8": "vit_base_patch8_224", "dino_vitb16": "vit_base_patch16_224"}

_SEGMENTERS = {  # registry name = checkpoint name -> (builder, label)
    "sam_vit_b": ("models.segmenters.sam:build_sam_segmenter", "SAM ViT-B"),
    "sam_vit_l": ("models.segmenters.sam:build_sam_segmenter", "SAM ViT-L"),
    "sam_vit_h": ("models.segmenters.sam:build_sam_segmenter", "SAM ViT-H"),
    "sam2.1_hiera_tiny": ("models.segmenters.sam2:build_sam2_segmenter", "SAM 2.1 Hiera-T"),
    "sam2.1_hiera_small": ("models.segmenters.sam2:build_sam2_segmenter", "SAM 2.1 Hiera-S"),
    "sam2.1_hiera_base_plus": ("models.segmenters.sam2:build_sam2_segmenter", "SAM 2.1 Hiera-B+"),
    "sam2.1_hiera_large": ("models.segmenters.sam2:build_sam2_segmenter", "SAM 2.1 Hiera-L"),
    "sam_hq_vit_tiny": ("models.segmenters.sam_hq:build_sam_hq_segmenter", "Light HQ-SAM (TinyViT)"),
    "sam_hq_vit_b": ("models.segmenters.sam_hq:build_sam_hq_segmenter", "HQ-SAM ViT-B"),
    "sam_hq_vit_l": ("models.segmenters.sam_hq:build_sam_hq_segmenter", "HQ-SAM ViT-L"),
    "sam_hq_vit_h": ("models.segmenters.sam_hq:build_sam_hq_segmenter", "HQ-SAM ViT-H"),
}

REGISTRY: dict[str, ModelEntry] = _entries(
    *(ModelEntry(name, "segmenter", builder, name, _SAM, label=label) for name, (builder, label) in _SEGMENTERS.items()),
    ModelEntry("light_sam", "segmenter", "models.segmenters.light_sam:build_light_sam_segmenter", "sam_hq_vit_tiny",
               _SAM, label="Light SAM (TinyViT + SAM decoder, fast on CPU)"),
    ModelEntry("grabcut", "segmenter", "models.segmenters.grabcut:build_grabcut_segmenter", None,
               frozenset({"mask_prompt"}), label="GrabCut (no model)"),
    ModelEntry("color", "uss", "dhr.uss.color:ColorTextureFeatures"),
    ModelEntry("sam", "uss", "", None, frozenset({"from_segmenter"})),
    *(ModelEntry(name, "uss", "models.dino:build_dino", name, options={"arch": arch}) for name, arch in _DINO.items()),
    ModelEntry("resnet50", "backbone", "models.backbone:build_resnet", "resnet50", frozenset({"imagenet"})),
    ModelEntry("resnet101", "backbone", "models.backbone:build_resnet", "resnet101", frozenset({"imagenet"})),
    ModelEntry("resnet_tiny", "backbone", "models.backbone:build_resnet"),
    ModelEntry("resnet_small", "backbone", "models.backbone:build_resnet"),
)


def entries(family: str) -> dict[str, ModelEntry]:
    """The entries of one family, in registry order."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {FAMILIES}")
    return {name: entry for name, entry in REGISTRY.items() if entry.family == family}


def names(family: str) -> tuple[str, ...]:
    """Registry names of one family, in registry order."""
    return tuple(entries(family))


def get_entry(name: str, family: str) -> ModelEntry:
    """The entry ``name`` of ``family``; ValueError naming the choices otherwise."""
    found = entries(family).get(name)
    if found is None:
        raise ValueError(f"unknown {family} {name!r}; choose one of {', '.join(names(family))}")
    return found
