"""Promptable segmenters: ``build_segmenter(name)`` for the registry's segmenters (SAM ViT-B / ViT-L / ViT-H, GrabCut).

Each segmenter owns its geometry (:mod:`models.segmenters.frame`): callers ask it for mask prompts, for masks
from its logits and for its embedding as USS features. A new segmenter is one module and one entry in
:mod:`models.registry`.

``"auto"`` picks SAM ViT-B when its checkpoint is in the weights folder and otherwise GrabCut, logging a
warning; the returned segmenter's ``is_fallback`` and ``message`` tell the CLI and GUI what runs and why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from models.embedding_cache import EmbeddingCache
from models.registry import ModelEntry, entries
from models.segmenters.base import Segmenter, SegmenterOutput
from models.segmenters.grabcut import GrabCutSegmenter
from models.segmenters.sam import SamSegmenter, build_sam, build_tiny_sam, load_sam

logger = logging.getLogger(__name__)

__all__ = [
    "SEGMENTERS",
    "GrabCutSegmenter",
    "SamSegmenter",
    "Segmenter",
    "SegmenterOutput",
    "build_sam",
    "build_segmenter",
    "build_tiny_sam",
    "fallback_message",
    "load_sam",
]

Builder = Callable[..., Segmenter]


def _builder(entry: ModelEntry) -> Builder:
    def build(
        weights_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        cache: EmbeddingCache | None = None,
        download: bool = True,
    ) -> Segmenter:
        return entry.build_function()(entry.name, weights_dir=weights_dir, device=device, cache=cache,
                                      download=download)

    build.__doc__ = f"{entry.name} (checkpoint {entry.checkpoint or 'none'}; {', '.join(sorted(entry.capabilities))})"
    return build


SEGMENTERS: dict[str, Builder] = {name: _builder(entry) for name, entry in entries("segmenter").items()}
"""Registry name -> builder ``(weights_dir, device, cache, download) -> Segmenter`` (from :mod:`models.registry`)."""


def fallback_message(weights_dir: str | Path | None = None, name: str = "sam_vit_b") -> str:
    """The sentence shown when SAM's checkpoint is missing and GrabCut runs instead."""
    from models.weights import sam_fallback_message

    return sam_fallback_message(weights_dir, name)


def build_segmenter(
    name: str = "auto",
    weights_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache: EmbeddingCache | None = None,
    download: bool = True,
) -> Segmenter:
    """A segmenter by registry name, or ``"auto"``: SAM ViT-B if its checkpoint file is present, else GrabCut.

    ``"auto"`` never downloads. An explicit SAM name downloads its checkpoint when missing and ``download``
    (offline: ``models.weights.WeightsNotFoundError`` naming the file, its URL and the folder).
    """
    if name == "auto":
        from models.weights import is_present

        if is_present("sam_vit_b", weights_dir):
            return SEGMENTERS["sam_vit_b"](
                weights_dir=weights_dir, device=device, cache=cache, download=False
            )
        message = fallback_message(weights_dir)
        logger.warning("%s", message)
        return GrabCutSegmenter(message=message)
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}; choose 'auto' or one of {', '.join(SEGMENTERS)}")
    return SEGMENTERS[name](weights_dir=weights_dir, device=device, cache=cache, download=download)
