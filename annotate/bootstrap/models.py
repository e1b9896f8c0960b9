"""The models a bootstrap run needs: the tag classifier and the prompted segmenter (USS: :mod:`models.uss`).

Each is built from :class:`annotate.bootstrap.BootstrapConfig` settings (or any object with the fields a
builder reads); model weights come through :mod:`models.weights` and are loaded onto ``config.models.device``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from annotate.bootstrap.profiles import AUTO_BACKBONE, PRETRAINED, SCRATCH, profile_for, resolved_config
from annotate.dataset import DatasetEntry, TaggedDataset
from annotate.images import load_image
from annotate.store.layout import ProjectLayout

if TYPE_CHECKING:
    from annotate.bootstrap import BootstrapConfig
    from models.classifier import Classifier
    from models.segmenters import Segmenter

logger = logging.getLogger(__name__)


def prepare_classifier(dataset: TaggedDataset, config: BootstrapConfig, path: Path) -> Classifier:
    """Load ``config.classifier`` or ``path`` if present (classes must match), else train and save to ``path``."""
    from models.classifier import ClassifierTrainConfig, load_classifier, save_classifier, train_classifier

    source = Path(config.classifier) if config.classifier is not None else (path if path.is_file() else None)
    if source is not None:
        model, classes = load_classifier(source, config.models.device)
        if classes and classes != dataset.classes:
            raise ValueError(
                f"classifier {source} was trained on classes {classes}, the dataset has {dataset.classes}"
            )
        if model.num_classes != len(dataset.classes):
            raise ValueError(
                f"classifier {source} has {model.num_classes} classes, the dataset {len(dataset.classes)}"
            )
        logger.info("classifier loaded from %s", source)
        if source != path:
            save_classifier(model, path, dataset.classes)
        return model
    model = build_bootstrap_classifier(config, len(dataset.classes))
    config = resolved_config(config, model)
    train = ClassifierTrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        crop_size=config.crop_size,
        scale_range=config.scale_range,
        optimizer=config.optimizer,
        lr=config.lr,
        workers=config.workers,
        seed=config.seed,
        device=config.models.device,
    )
    entries = dataset.entries
    logger.info(
        "training the %s classifier (%s) on %d images for %d epochs",
        config.backbone,
        "from ImageNet weights" if model.pretrained else "from scratch",
        len(entries),
        config.epochs,
    )
    train_classifier(
        model, _ImageReader(entries), torch.from_numpy(dataset.targets()), train, progress=config.progress
    )
    save_classifier(model, path, dataset.classes)
    return model.eval()


def build_bootstrap_classifier(config: BootstrapConfig, num_classes: int) -> Classifier:
    """A new classifier for ``config.backbone``, initialised from ImageNet when ``config.pretrained`` allows.

    ``"auto"``: a ResNet-50 with ImageNet weights when they are present or downloadable, else the offline
    default (``profiles.SCRATCH``: a small ResNet from random weights). The output stride follows the profile.
    Weights are drawn from a generator seeded with ``config.seed`` (the global torch generator is untouched).
    """
    from models.backbone import imagenet_state_dict
    from models.classifier import Classifier

    backbone = PRETRAINED.backbone if config.backbone == AUTO_BACKBONE else config.backbone
    state = imagenet_state_dict(backbone, config.models.weights_dir, config.models.download) if config.pretrained else None
    if state is None and config.backbone == AUTO_BACKBONE:
        backbone = SCRATCH.backbone
        logger.warning("no ImageNet weights: the offline classifier %s is trained from scratch", backbone)
    profile = profile_for(backbone, state is not None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        top_share = profile.top_share if config.top_share is None else config.top_share
        model = Classifier(backbone, num_classes, profile.output_stride, state_dict=state, top_share=top_share)
    return model.to(config.models.device)


class _ImageReader:
    """index -> HWC uint8 image of an entry (picklable, for DataLoader workers)."""

    def __init__(self, entries: Sequence[DatasetEntry]) -> None:
        self.paths = [e.path for e in entries]

    def __call__(self, index: int) -> np.ndarray:
        return load_image(self.paths[index])


def build_bootstrap_segmenter(name: str | Segmenter, config: BootstrapConfig) -> Segmenter:
    """A segmenter by name (with an embedding cache), or the given segmenter object."""
    from models.embedding_cache import EmbeddingCache
    from models.segmenters import build_segmenter

    if not isinstance(name, str):
        return name
    cache_dir = Path(config.embedding_cache) if config.embedding_cache else ProjectLayout(config.out).embeddings_dir
    return build_segmenter(
        name,
        weights_dir=config.models.weights_dir,
        device=config.models.device,
        cache=EmbeddingCache(cache_dir),
        download=config.models.download,
    )


__all__ = ["build_bootstrap_classifier", "build_bootstrap_segmenter", "prepare_classifier"]
