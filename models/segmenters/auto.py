"""Which segmenter ``"auto"`` runs on a device, and the list of segmenters a menu offers.

``auto`` takes, in order (:func:`auto_plan`):

1. the device's preferred model when its checkpoint is in the weights folder: on CUDA SAM 2.1 Hiera-L, else
   Hiera-B+; on the CPU Light SAM (``light_sam``: the 42 MB Light HQ-SAM checkpoint, its TinyViT encoder with
   SAM's own decoder, :mod:`.light_sam`: the fastest encoder and click of the family);
2. when downloading is on: that preferred model downloaded (Hiera-B+ on CUDA, Light HQ-SAM on the CPU);
3. any other Segment Anything checkpoint already in the folder, fastest first on the CPU, best first on CUDA;
4. GrabCut, with a message naming the checkpoint to fetch.

A download that fails (offline) moves on to the next step with a warning; a corrupt file stops with its
error. Nothing here imports a model package: listing the choices is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from models.registry import entries

if TYPE_CHECKING:
    from models.settings import ModelSettings

__all__ = ["AUTO", "AutoStep", "SegmenterChoice", "auto_plan", "auto_segmenter_name", "segmenter_choices"]

AUTO = "auto"

_CUDA_PREFERRED = ("sam2.1_hiera_large", "sam2.1_hiera_base_plus")
_CUDA_DOWNLOAD = "sam2.1_hiera_base_plus"
_CUDA_OTHERS = ("sam2.1_hiera_small", "sam2.1_hiera_tiny", "sam_hq_vit_h", "sam_vit_h", "sam_hq_vit_l",
                "sam_vit_l", "sam_hq_vit_b", "sam_vit_b", "sam_hq_vit_tiny")
_CPU_PREFERRED = ("light_sam",)
_CPU_DOWNLOAD = "light_sam"
_CPU_OTHERS = ("sam_hq_vit_tiny", "sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam_vit_b", "sam_hq_vit_b",
               "sam2.1_hiera_base_plus", "sam_vit_l", "sam_hq_vit_l", "sam2.1_hiera_large", "sam_vit_h", "sam_hq_vit_h")


@dataclass(frozen=True)
class AutoStep:
    """One candidate of ``auto``: a registry segmenter, and whether its checkpoint is to be downloaded."""

    name: str
    download: bool = False


class SegmenterChoice(NamedTuple):
    """One menu entry: registry name (or ``"auto"``), a label, and whether it runs without a download."""

    name: str
    label: str
    present: bool


def _on_cuda(device: object) -> bool:
    return str(device).startswith("cuda")


def preferred_download(device: object) -> str:
    """The segmenter whose checkpoint ``auto`` downloads on ``device`` (and names when it falls back to GrabCut)."""
    return _CUDA_DOWNLOAD if _on_cuda(device) else _CPU_DOWNLOAD


def auto_plan(device: object = "cpu", weights_dir: str | Path | None = None, download: bool = True) -> list[AutoStep]:
    """The segmenters ``auto`` tries on ``device``, in order (GrabCut after the last one); see the module notes."""
    def is_present(name: str, folder: str | Path | None) -> bool:  # a segmenter's checkpoint, by registry name
        from models.weights import is_present as checkpoint_present

        return checkpoint_present(entries("segmenter")[name].checkpoint, folder)

    cuda = _on_cuda(device)
    preferred, others = (_CUDA_PREFERRED, _CUDA_OTHERS) if cuda else (_CPU_PREFERRED, _CPU_OTHERS)
    steps = [AutoStep(name) for name in preferred if is_present(name, weights_dir)]
    wanted = preferred_download(device)
    if download and not is_present(wanted, weights_dir):
        steps.append(AutoStep(wanted, download=True))
    steps += [AutoStep(name) for name in others if is_present(name, weights_dir)]
    return steps


def auto_segmenter_name(settings: ModelSettings) -> str:
    """The registry name ``auto`` picks for ``settings`` now (``"grabcut"`` when nothing is available), assuming
    a planned download succeeds."""
    plan = auto_plan(settings.device, settings.weights_dir, settings.download)
    return plan[0].name if plan else "grabcut"


def segmenter_choices(settings: ModelSettings) -> list[SegmenterChoice]:
    """``"auto"`` (labelled with what it picks) and every registry segmenter, with whether its checkpoint is in
    ``settings.weights_dir`` (GrabCut needs none). ``Segmenter.name`` of a built segmenter is one of these names."""
    from models.weights import is_present

    segmenters = entries("segmenter")
    picked = auto_segmenter_name(settings)
    choices = [SegmenterChoice(AUTO, f"Automatic ({segmenters[picked].label})", True)]
    for name, entry in segmenters.items():
        present = entry.checkpoint is None or is_present(entry.checkpoint, settings.weights_dir)
        choices.append(SegmenterChoice(name, entry.label or name, present))
    return choices
