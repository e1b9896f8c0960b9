"""Promptable segmenters: ``build_segmenter(name)`` for the registry's segmenters.

Segment Anything ViT-B / L / H (:mod:`.sam`), SAM 2.1 Hiera-T / S / B+ / L (:mod:`.sam2`), HQ-SAM ViT-B / L / H
and Light HQ-SAM (:mod:`.sam_hq`), Light SAM (:mod:`.light_sam`), GrabCut (:mod:`.grabcut`). Each segmenter owns its geometry
(:mod:`models.segmenters.frame`): callers ask it for mask prompts, for masks from its logits and for its
embedding as USS features. A new segmenter is one module and one entry in :mod:`models.registry`.

``"auto"`` picks by device (:mod:`.auto`): Light SAM on the CPU, SAM 2.1 Hiera-L / B+ on CUDA, present or
downloaded, else another present checkpoint, else GrabCut with a warning; the returned segmenter's ``name``
(its registry name), ``is_fallback`` and ``message`` tell the CLI and GUI what runs and why.
:func:`segmenter_choices` lists every segmenter with whether its checkpoint is present, for menus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from models.embedding_cache import EmbeddingCache
from models.registry import ModelEntry, entries
from models.segmenters.auto import (
    AUTO,
    SegmenterChoice,
    auto_plan,
    auto_segmenter_name,
    preferred_download,
    segmenter_choices,
)
from models.segmenters.base import Segmenter, SegmenterOutput
from models.segmenters.grabcut import GrabCutSegmenter
from models.segmenters.sam import SamSegmenter, build_sam, build_tiny_sam, load_sam
from models.segmenters.sam2 import Sam2Segmenter, build_sam2_model, build_tiny_sam2
from models.segmenters.sam_hq import HqSamSegmenter, build_sam_hq, build_tiny_sam_hq

logger = logging.getLogger(__name__)

__all__ = [
    "AUTO",
    "SEGMENTERS",
    "GrabCutSegmenter",
    "HqSamSegmenter",
    "Sam2Segmenter",
    "SamSegmenter",
    "Segmenter",
    "SegmenterChoice",
    "SegmenterOutput",
    "auto_plan",
    "auto_segmenter_name",
    "build_sam",
    "build_sam2_model",
    "build_sam_hq",
    "build_segmenter",
    "build_tiny_sam",
    "build_tiny_sam2",
    "build_tiny_sam_hq",
    "fallback_message",
    "load_sam",
    "segmenter_choices",
]

Builder = Callable[..., Segmenter]


def _builder(entry: ModelEntry) -> Builder:
    def build(
        weights_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        cache: EmbeddingCache | None = None,
        download: bool = True,
    ) -> Segmenter:
        segmenter = entry.build_function()(entry.name, weights_dir=weights_dir, device=device, cache=cache,
                                           download=download)
        segmenter.name = entry.name
        return segmenter

    build.__doc__ = f"{entry.name} (checkpoint {entry.checkpoint or 'none'}; {', '.join(sorted(entry.capabilities))})"
    return build


SEGMENTERS: dict[str, Builder] = {name: _builder(entry) for name, entry in entries("segmenter").items()}
"""Registry name -> builder ``(weights_dir, device, cache, download) -> Segmenter`` (from :mod:`models.registry`)."""


def fallback_message(weights_dir: str | Path | None = None, name: str = "sam_hq_vit_tiny", detail: str = "") -> str:
    """The sentence shown when checkpoint ``name`` is missing and GrabCut runs instead."""
    from models.weights import sam_fallback_message

    return sam_fallback_message(weights_dir, name, detail)


def build_segmenter(
    name: str = AUTO,
    weights_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache: EmbeddingCache | None = None,
    download: bool = True,
) -> Segmenter:
    """A segmenter by registry name, or ``"auto"`` (see :mod:`models.segmenters.auto`).

    An explicit name downloads its checkpoint when missing and ``download`` (offline:
    ``models.weights.WeightsNotFoundError`` naming the file, its URL and the folder). ``"auto"`` downloads only
    the device's preferred model, and falls back when that fails.
    """
    if name == AUTO:
        return _build_auto(weights_dir, device, cache, download)
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}; choose 'auto' or one of {', '.join(SEGMENTERS)}")
    return SEGMENTERS[name](weights_dir=weights_dir, device=device, cache=cache, download=download)


def _build_auto(
    weights_dir: str | Path | None, device: str | torch.device, cache: EmbeddingCache | None, download: bool
) -> Segmenter:
    from models.weights import WeightsNotFoundError

    detail = "" if download else "downloading is off"
    for step in auto_plan(device, weights_dir, download):
        try:
            segmenter = SEGMENTERS[step.name](weights_dir=weights_dir, device=device, cache=cache,
                                              download=step.download)
        except (WeightsNotFoundError, ImportError) as error:
            logger.warning("segmenter %s is not available: %s", step.name, error)
            detail = f"{step.name} is not available: {error}"
            continue
        segmenter.message = f"{segmenter.message}, chosen automatically for {device}"
        return segmenter
    message = fallback_message(weights_dir, entries("segmenter")[preferred_download(device)].checkpoint, detail)
    logger.warning("%s", message)
    fallback = GrabCutSegmenter(message=message)
    fallback.name = "grabcut"
    return fallback
