"""Pseudo-labels from image tags: classifier -> CAMs -> base mask -> DHR -> segmenter prompts -> project store.

``run_bootstrap(dataset, config)`` writes, under ``config.out`` (names in :mod:`annotate.bootstrap.outputs`):

- ``project.db`` + ``images/``: a ``ProjectStore`` with every usable image, its tags, its instances (status
  "pseudo", score, source, review flag) and its confidence;
- ``classifier.pt``: the WSS classifier (trained on the whole dataset, or the one given), reloaded on rerun;
- ``masks/<name>.png``: the semantic mask of each image (uint8 class ids, 0 = background);
- ``coco.json``: COCO instances with RLE masks (``annotate.coco.export_coco``);
- ``bootstrap.json``: the run's settings, classes and shard, and the classifier it used: its backbone and
  whether it started from ImageNet weights (which file) or from random weights, as it actually ran.

``coco.json`` and ``masks/`` are exports of the store made at the end of each run (``coco.json`` says when in
``info.date_created``, ``masks/README.txt`` likewise); the store stays the one source of truth, and edits made
later (review, training) are only in a new ``dhr export``.

**Unreadable images.** When the dataset's images were only checked by their header, the images the run reads
are decoded first (the whole dataset when the classifier is trained, else this shard): one that does not
decode (a truncated JPEG) is left out and reported (``BootstrapReport.unreadable``) before anything is
registered or trained.

The parts: the models (:mod:`annotate.bootstrap.models`), one image's pipeline and its **confidence**, which
orders the review queue (:mod:`annotate.bootstrap.image`), shards and their merge (:mod:`annotate.bootstrap.shards`).
Their public names are importable from :mod:`annotate.bootstrap`.

**Resuming.** An image is finished when its labels are saved with status "pseudo" (one SQLite transaction,
after its mask PNG). A rerun with the same ``out`` reloads the classifier, skips finished images (and any image
a reviewer has touched since) and redoes the rest. Labelling an image draws no random numbers (GrabCut seeds its
own generator at every call), so the result does not depend on which images ran before it, and no global
generator is reseeded.

**Shards.** ``shard=(i, n)`` (0 <= i < n) keeps the images whose position in the name-sorted dataset is
``i mod n``; ``merge_shards`` joins the shard folders into one project and COCO file.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from annotate.bootstrap.image import ImageOutcome, process_image, read_base_mask
from annotate.bootstrap.models import build_bootstrap_segmenter, prepare_classifier
from annotate.bootstrap.outputs import (
    CLASSIFIER_FILE,
    MANIFEST_FILE,
    export_outputs,
    mask_path,
    open_project,
    write_mask_png,
)
from annotate.bootstrap.profiles import resolved_config
from annotate.bootstrap.shards import shard_entries
from annotate.dataset import DatasetEntry, DatasetProblem, TaggedDataset, undecodable
from annotate.images import load_image
from annotate.labeling import LabelingConfig
from annotate.store.paths import place_image, png_name
from core.files import atomic_write_text
from dhr import DHRConfig
from models.settings import ModelSettings
from models.uss import USSProvider, build_uss_provider

if TYPE_CHECKING:
    from annotate.store import ProjectStore

logger = logging.getLogger(__name__)

USER = "bootstrap"


@dataclass
class BootstrapConfig:
    """Settings of a bootstrap run (the CLI's options).

    Fields left at None (and ``backbone="auto"``) take the values of the classifier's profile
    (:mod:`annotate.bootstrap.profiles`): ``auto`` is a ResNet-50 fine-tuned from ImageNet when its weights are
    present or downloadable, else the offline default, a small ResNet trained from scratch.
    """

    out: Path
    backbone: str = "auto"  # a models.backbone.BACKBONES name, or "auto"
    classifier: str | Path | None = None  # a saved classifier to use instead of training one
    pretrained: bool = True  # ImageNet initialisation when the weights file is present or downloadable
    epochs: int | None = None
    lr: float | None = None
    optimizer: str = "sgd"
    crop_size: int | None = None
    batch_size: int | None = None
    scale_range: tuple[float, float] | None = None  # random rescale of the classifier's training images
    workers: int = 0
    cam_scales: tuple[float, ...] | None = None
    cam_flip: bool | None = None  # CAMs also of the flipped image (None: the profile's, by device)
    background_threshold: float | None = None  # base mask: background where the highest CAM is below this
    top_share: float | None = None  # classifier logits: mean of each class's top share of CAM cells (1.0: average)
    seed_evidence: float | None = None  # prompts: seed pixels whose class's CAM is below this are dropped
    base_masks: str | Path | None = (
        None  # folder of base masks (PNG class ids, <name>.png) from another method
    )
    uss: str = "auto"  # a models.uss.USS_REGISTRY name, or "auto" (see models.uss.build_uss_provider)
    models: ModelSettings = field(default_factory=ModelSettings)  # device, weights folder, segmenter, download
    shard: tuple[int, int] = (0, 1)
    seed: int = 0
    dhr: DHRConfig = field(default_factory=lambda: DHRConfig(crf=True))  # as the CLI: DHR ends with the dense CRF
    labeling: LabelingConfig = field(default_factory=LabelingConfig)
    embedding_cache: str | Path | None = None  # segmenter embedding cache (default: ProjectLayout(out).embeddings_dir)
    progress: bool = True
    train_only: bool = False  # train (or load) and save the classifier, label nothing (then shard with it)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        i, n = self.shard
        if n < 1 or not 0 <= i < n:
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")
        for name in ("background_threshold", "seed_evidence"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")


@dataclass
class BootstrapReport:
    """What a run did: images processed now, skipped as finished, total, and the output files."""

    processed: list[str]
    skipped: list[str]
    total: int
    store_root: Path
    coco_path: Path | None
    classifier_path: Path
    segmenter: str
    uss: str
    classifier: str = ""  # what the classifier is: backbone, ImageNet weights or random start, loaded from where
    unreadable: list[DatasetProblem] = field(default_factory=list)  # left out: they do not decode


def classifier_summary(model: Any, loaded_from: Path | None) -> dict[str, Any]:
    """What the run's classifier is, as it ran: backbone, ImageNet start (and its weights file) or random
    weights, and the file it was loaded from (None: trained by this run)."""
    from models.backbone import BACKBONES
    from models.weights import CHECKPOINTS

    name = str(getattr(model, "backbone_name", ""))
    pretrained = bool(getattr(model, "pretrained", False))
    checkpoint = BACKBONES[name].checkpoint if pretrained and name in BACKBONES else None
    weights = CHECKPOINTS[checkpoint].filename if checkpoint in CHECKPOINTS else None
    start = f"ImageNet weights {weights}" if pretrained else "random weights (trained from scratch)"
    text = f"{name} from {start}" + (f", loaded from {loaded_from}" if loaded_from is not None else "")
    return {
        "backbone": name,
        "pretrained": pretrained,
        "imagenet_weights": weights,
        "loaded_from": None if loaded_from is None else str(loaded_from),
        "summary": text,
    }


def _write_manifest(
    config: BootstrapConfig, dataset: TaggedDataset, segmenter: str, uss: str, classifier: dict[str, Any]
) -> None:
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in asdict(config).items()
        if k not in ("out", "dhr", "labeling", "progress")
    }
    settings["pretrained"] = classifier["pretrained"]  # what ran, not what was asked for
    manifest = {
        "classes": dataset.classes,
        "dataset": str(dataset.source),
        "image_dir": str(dataset.image_dir),
        "shard": list(config.shard),
        "segmenter": segmenter,
        "uss": uss,
        "classifier": classifier,
        "settings": settings,
        "dhr": {
            k: v for k, v in asdict(config.dhr).items() if isinstance(v, (int, float, str, bool, type(None)))
        },
    }
    atomic_write_text(config.out / MANIFEST_FILE, json.dumps(manifest, indent=1, default=str))


def run_bootstrap(
    dataset: TaggedDataset,
    config: BootstrapConfig,
    *,
    segmenter: Any = None,
    uss_provider: USSProvider | nn.Module | None = None,
    on_image_done: Callable[[str], None] | None = None,
    classifier_trained: bool = False,
) -> BootstrapReport:
    """Pseudo-label the dataset (this shard of it) into ``config.out``; resumable. See the module docstring.

    ``segmenter`` / ``uss_provider``: objects to use instead of building ``config.segmenter`` / ``config.uss``.
    ``on_image_done(file_name)`` is called after each image is saved. ``classifier_trained``: the caller has
    just trained ``out/classifier.pt`` for this run (on more images than this dataset's), so ``bootstrap.json``
    records it as trained by the run, not as loaded from an earlier one.
    """
    from tqdm.auto import tqdm

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    classifier_path = out / CLASSIFIER_FILE
    shard = shard_entries(dataset.entries, config.shard)  # from the whole list: shares never shift
    loaded_from = Path(config.classifier) if config.classifier is not None else None
    if loaded_from is None and classifier_path.is_file() and not classifier_trained:
        loaded_from = classifier_path
    will_train = config.classifier is None and not classifier_path.is_file()
    dataset, unreadable = _drop_undecodable(dataset, shard, config, training=will_train)
    if config.train_only:
        model = prepare_classifier(dataset, config, classifier_path)
        summary = classifier_summary(model, loaded_from)["summary"]
        return BootstrapReport([], [], 0, out, None, classifier_path, "", "", summary, unreadable)
    store = open_project(out, dataset.classes)
    try:
        left_out = {p.file_name for p in unreadable}
        entries = [e for e in shard if e.file_name not in left_out]
        ids = {e.file_name: _register(store, e) for e in entries}
        records = {e.file_name: store.image(ids[e.file_name]) for e in entries}
        todo = [e for e in entries if records[e.file_name].status == "new"]
        pending = {e.file_name for e in todo}
        skipped = [e.file_name for e in entries if e.file_name not in pending]
        base_dir = Path(config.base_masks) if config.base_masks is not None else None
        if base_dir is not None:
            missing = [e.file_name for e in todo if not (base_dir / png_name(e.file_name)).is_file()]
            if missing:
                warnings.warn(
                    f"{len(missing)} base mask(s) missing in {base_dir} (CAM masks used instead): "
                    + ", ".join(missing[:10])
                    + (" ..." if len(missing) > 10 else ""),
                    stacklevel=2,
                )
        # models that may be missing (offline weights) fail here, before the classifier is trained
        seg = build_bootstrap_segmenter(segmenter if segmenter is not None else config.models.segmenter, config)
        provider = build_uss_provider(uss_provider if uss_provider is not None else config.uss, config.models, seg)
        uss_name = provider.name
        model = prepare_classifier(dataset, config, classifier_path)
        config = resolved_config(config, model)
        seg_name = getattr(seg, "model_id", type(seg).__name__)
        classifier = classifier_summary(model, loaded_from)
        _write_manifest(config, dataset, seg_name, uss_name, classifier)
        processed: list[str] = []
        logger.info("%d image(s) to label, %d already finished", len(todo), len(skipped))
        with ThreadPoolExecutor(max_workers=max(1, config.workers)) as pool:
            futures = [pool.submit(load_image, e.path) for e in todo[: max(1, config.workers) + 1]]
            bar = tqdm(
                total=len(entries),
                initial=len(skipped),
                desc="bootstrap",
                unit="img",
                disable=not config.progress,
            )
            for index, entry in enumerate(todo):
                ahead = index + max(1, config.workers) + 1
                if ahead < len(todo):
                    futures.append(pool.submit(load_image, todo[ahead].path))
                image = futures[index].result()
                futures[index] = None  # free the image once used
                tags = dataset.tag_ids(entry)
                base = None
                if base_dir is not None and (base_dir / png_name(entry.file_name)).is_file():
                    base = read_base_mask(base_dir, entry.file_name, image.shape[:2])
                outcome = process_image(image, tags, model, provider, seg, config, base)
                if _save(store, records[entry.file_name], entry, outcome):
                    processed.append(entry.file_name)
                else:
                    skipped.append(entry.file_name)
                bar.update(1)
                if on_image_done is not None:
                    on_image_done(entry.file_name)
            bar.close()
        coco_path = export_outputs(store)
    finally:
        store.close()
    return BootstrapReport(
        processed,
        skipped,
        len(entries),
        out,
        coco_path,
        classifier_path,
        seg_name,
        uss_name,
        classifier["summary"],
        unreadable,
    )


def _drop_undecodable(
    dataset: TaggedDataset, shard: list[DatasetEntry], config: BootstrapConfig, *, training: bool
) -> tuple[TaggedDataset, list[DatasetProblem]]:
    """The dataset less the images that do not decode, and why (nothing to do when they were all decoded
    before): every image when the classifier is trained on them all, else this shard's."""
    if dataset.checked == "decode":
        return dataset, []
    problems = undecodable(dataset.entries if training else shard, progress=config.progress)
    for problem in problems:
        logger.debug("left out: %s", problem)
    return dataset.without({p.file_name for p in problems}, problems), problems


def _store_name(store: ProjectStore, entry: DatasetEntry) -> str:
    """The project-relative name ``entry`` has (or gets) in the store (the store's own placement rule)."""
    return place_image(store.root, Path(entry.path), copy=True, dest_name=entry.file_name)[0]


def _register(store: ProjectStore, entry: DatasetEntry) -> int:
    """Image id of ``entry`` in the store; a new image is copied to ``images/<file_name>``."""
    record = store.find_image(_store_name(store, entry))
    if record is not None:
        return record.id
    return store.add_image(entry.path, list(entry.tags), dest_name=entry.file_name)


def _save(store: ProjectStore, record, entry: DatasetEntry, outcome: ImageOutcome) -> bool:
    """Write the image's mask PNG, then its instances, status "pseudo" and confidence (one transaction).

    The save carries the version the run started from: an image a reviewer edited meanwhile (in the GUI, while
    this run goes on) is left as the reviewer saved it, its PNG rewritten from those labels, and False is returned.
    """
    from annotate.store import NewInstance, VersionConflict

    path = mask_path(store.root, entry.file_name)
    write_mask_png(path, outcome.labels.semantic)
    instances = [NewInstance.from_instance(inst) for inst in outcome.labels.instances]
    try:
        store.save_labels(
            record.id, instances, user=USER, expected_version=record.version, status="pseudo",
            confidence=outcome.confidence,
        )
    except VersionConflict:
        logger.warning("%s was edited during the run: its labels are kept and it is skipped", entry.file_name)
        write_mask_png(path, store.semantic_mask(record.id))
        return False
    return True


__all__ = ["BootstrapConfig", "BootstrapReport", "run_bootstrap"]
