"""The settings every model builder reads: one object, built by the CLI or the GUI and handed to the jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelSettings"]


@dataclass(frozen=True)
class ModelSettings:
    """Where models run and where their weights come from.

    ``device``: torch device of every model (``"cpu"``, ``"cuda"``, ``"cuda:1"``); ``weights_dir``: checkpoint
    folder (None: ``$DHR_WEIGHTS_DIR`` or ``~/.cache/dhr-label/weights``); ``segmenter``: registry name of the
    prompted segmenter (``"auto"``: chosen by device, see :mod:`models.segmenters.auto`: Light SAM on the
    CPU, SAM 2.1 on CUDA, else GrabCut); ``download``: fetch missing checkpoints from their official URLs.
    """

    device: str = "cpu"
    weights_dir: str | Path | None = None
    segmenter: str = "auto"
    download: bool = True

    def __post_init__(self) -> None:
        import torch  # here, not at import: `dhr weights list` and other model-free commands never load torch

        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"invalid torch device {self.device!r}: {error}") from None
