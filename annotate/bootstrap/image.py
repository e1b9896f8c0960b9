"""One image of a bootstrap run: CAMs -> base mask -> DHR -> segmenter prompts -> instances and a confidence.

The confidence, which orders the review queue, is :func:`annotate.confidence.image_confidence`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from annotate.confidence import image_confidence
from annotate.labeling import LabelingResult, label_image
from annotate.store.paths import png_name
from dhr import DHRResult, rebalance

if TYPE_CHECKING:
    from annotate.bootstrap import BootstrapConfig
    from models.classifier import Classifier
    from models.segmenters import Segmenter
    from models.uss import USSProvider


@dataclass
class ImageOutcome:
    """One image's result: DHR output, labelling result, base mask (H, W) int64, confidence in [0, 1]."""

    dhr: DHRResult
    labels: LabelingResult
    base_mask: torch.Tensor
    confidence: float


def read_base_mask(folder: Path, file_name: str, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) int64 base mask ``folder/<name>.png`` (class ids, 255 = ignore); its size must equal ``size``."""
    from PIL import Image

    path = folder / png_name(file_name)
    if not path.is_file():
        raise FileNotFoundError(f"base mask not found: {path}")
    with Image.open(path) as image:
        mask = np.array(image)
    if mask.ndim != 2:
        raise ValueError(
            f"base mask {path} must be a single-channel image of class ids, got shape {mask.shape}"
        )
    if mask.shape != size:
        raise ValueError(
            f"base mask {path} is {mask.shape[1]}x{mask.shape[0]}, the image {size[1]}x{size[0]}"
        )
    return torch.from_numpy(mask.astype(np.int64))


def process_image(
    image: np.ndarray,
    tags: Sequence[int],
    model: Classifier,
    uss_provider: USSProvider,
    segmenter: Segmenter,
    config: BootstrapConfig,
    base_mask: torch.Tensor | None = None,
    timings: dict[str, float] | None = None,
) -> ImageOutcome:
    """One image (HWC uint8 RGB) with its tag ids -> CAMs, base mask, DHR, segmenter instances, confidence.

    ``timings``: when given, the seconds of each stage are added to it under "cams", "sam_encoder" (the
    segmenter's ``set_image``), "uss", "dhr" and "prompting". Settings ``config`` leaves at None come from
    the classifier's profile (``annotate.bootstrap.profiles``).
    """
    from annotate.bootstrap.profiles import resolved_config
    from dhr.uss import image_to_tensor
    from models.classifier import cams_to_mask, compute_cams

    config = resolved_config(config, model)
    clock = _StageClock(timings, config.models.device)
    with clock("cams"):
        x = image_to_tensor(image, config.models.device)
        cams, feats = compute_cams(model, x, [t - 1 for t in tags], config.cam_scales, config.cam_flip)
        if base_mask is None:
            base_mask = cams_to_mask(cams, tags, config.background_threshold)
        base_mask = base_mask.to(cams.device)
    with clock("sam_encoder"):
        segmenter.set_image(image)  # computes or loads the embedding once; USS "sam" and labelling reuse it
    with clock("uss"):
        uss = uss_provider.features(image, x)  # a segmenter-embedding provider reuses the encoding above
    with clock("dhr"):
        feats_list = [feats["C4"], feats["C5"]]
        result = rebalance(cams, base_mask, list(tags), uss, feats_list, image=image, config=config.dhr)
    with clock("prompting"):
        labeling = dataclasses.replace(config.labeling, seed_evidence=config.seed_evidence)
        labels = label_image(image, result, list(tags), segmenter, labeling, evidence=cams)
    return ImageOutcome(result, labels, base_mask, image_confidence(result.heatmaps, labels.instances, tags))


class _StageClock:
    """Context managers adding each stage's wall time (seconds) to a dict; no-op when the dict is None."""

    def __init__(self, timings: dict[str, float] | None, device: str) -> None:
        self.timings = timings
        self.cuda = torch.device(device).type == "cuda"

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.timings is None:
            yield
            return
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize()
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start


__all__ = ["ImageOutcome", "process_image", "read_base_mask"]
