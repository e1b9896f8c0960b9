"""Registry of promptable segmenters: ``build_segmenter(name)`` for SAM ViT-B / ViT-L / ViT-H and GrabCut.

``"auto"`` picks SAM ViT-B when its checkpoint is in the weights folder and otherwise GrabCut, logging a
warning; the returned segmenter's ``is_fallback`` and ``message`` tell the CLI and GUI what runs and why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from annotate.embedding_cache import EmbeddingCache
from annotate.segmenters.base import Segmenter, SegmenterOutput
from annotate.segmenters.grabcut import GrabCutSegmenter
from annotate.segmenters.sam import SAM_VARIANTS, SamSegmenter, build_sam, build_tiny_sam, load_sam

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


def _sam_builder(name: str) -> Builder:
    def build(
        weights_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        cache: EmbeddingCache | None = None,
        download: bool = True,
    ) -> Segmenter:
        model, model_id = load_sam(name, weights_dir, download, device)
        return SamSegmenter(model, model_id, cache=cache)

    build.__doc__ = f"SAM {name} with its official checkpoint (downloaded if missing and ``download``)."
    return build


def _grabcut_builder(
    weights_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache: EmbeddingCache | None = None,
    download: bool = True,
) -> Segmenter:
    """GrabCut chosen on purpose (no weights, no embedding)."""
    return GrabCutSegmenter(
        message="GrabCut (OpenCV) segmenter, chosen explicitly; Segment Anything is not used"
    )


SEGMENTERS: dict[str, Builder] = {name: _sam_builder(name) for name in SAM_VARIANTS}
SEGMENTERS["grabcut"] = _grabcut_builder


def fallback_message(weights_dir: str | Path | None = None, name: str = "sam_vit_b") -> str:
    """The sentence shown when SAM's checkpoint is missing and GrabCut runs instead."""
    from annotate.weights import sam_fallback_message

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
    (offline: ``annotate.weights.WeightsNotFoundError`` naming the file, its URL and the folder).
    """
    if name == "auto":
        from annotate.weights import is_present

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
