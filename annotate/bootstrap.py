"""Pseudo-labels from image tags: classifier -> CAMs -> base mask -> DHR -> segmenter prompts -> project store.

``run_bootstrap(dataset, config)`` writes, under ``config.out``:

- ``project.db`` + ``images/``: a ``ProjectStore`` with every usable image, its tags, its instances (status
  "pseudo", score, source, review flag) and its confidence;
- ``classifier.pt``: the WSS classifier (trained on the whole dataset, or the one given), reloaded on rerun;
- ``masks/<name>.png``: the semantic mask of each image (uint8 class ids, 0 = background);
- ``coco.json``: COCO instances with RLE masks (``annotate.coco.export_coco``);
- ``bootstrap.json``: the run's settings, classes and shard.

**Confidence** (orders the review queue, lowest first), in [0, 1]::

    confidence = mean over pixels of max_c heatmap_c            (how decisive DHR's balanced heatmaps are)
                 * (1 - 0.5 * flagged instances / instances)    (instances the segmenter and DHR disagree on)
                 * (1 - 0.5 * tagged classes without instance / tagged classes)

**Resuming.** An image is finished when its labels are saved with status "pseudo" (one SQLite transaction,
after its mask PNG). A rerun with the same ``out`` reloads the classifier, skips finished images (and any image
a reviewer has touched since) and redoes the rest; every image is processed from a seed derived from its name,
so the result does not depend on which images ran before it.

**Shards.** ``shard=(i, n)`` (0 <= i < n) keeps the images whose position in the name-sorted dataset is
``i mod n``; ``merge_shards`` joins the shard folders into one project and COCO file.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from annotate.dataset import DatasetEntry, TaggedDataset
from annotate.files import atomic_copy, atomic_write, atomic_write_text
from annotate.images import load_image
from annotate.labeling import LabelingConfig, LabelingResult, label_image
from dhr import DHRConfig, DHRResult, rebalance

if TYPE_CHECKING:
    from annotate.segmenters import Segmenter
    from training.classifier import Classifier

logger = logging.getLogger(__name__)

CLASSIFIER_FILE = "classifier.pt"
MANIFEST_FILE = "bootstrap.json"
COCO_FILE = "coco.json"
MASKS_DIR = "masks"
USER = "bootstrap"


@dataclass
class BootstrapConfig:
    """Settings of a bootstrap run (the CLI's options)."""

    out: Path
    backbone: str = "resnet50"
    classifier: str | Path | None = None  # a saved classifier to use instead of training one
    pretrained: bool = True  # ImageNet initialisation when the weights file is present or downloadable
    epochs: int = 5
    lr: float = 0.01
    optimizer: str = "sgd"
    crop_size: int = 320
    batch_size: int = 8
    workers: int = 0
    cam_scales: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)
    cam_flip: bool = True
    background_threshold: float = 0.3  # base mask: background where the highest CAM is below this
    base_masks: str | Path | None = (
        None  # folder of base masks (PNG class ids, <name>.png) from another method
    )
    uss: str = "auto"  # a dhr.uss.USS_PROVIDERS name, or "auto" (see build_uss_provider)
    segmenter: str = "auto"
    weights_dir: str | Path | None = None
    download: bool = True
    device: str = "cpu"
    shard: tuple[int, int] = (0, 1)
    seed: int = 0
    dhr: DHRConfig = field(default_factory=DHRConfig)
    labeling: LabelingConfig = field(default_factory=LabelingConfig)
    embedding_cache: str | Path | None = None  # SAM embedding cache folder (default: <out>/.cache/embeddings)
    progress: bool = True
    train_only: bool = False  # train (or load) and save the classifier, label nothing (then shard with it)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        i, n = self.shard
        if n < 1 or not 0 <= i < n:
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")
        if not 0.0 <= self.background_threshold <= 1.0:
            raise ValueError(f"background_threshold must be in [0, 1], got {self.background_threshold}")


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


@dataclass
class ImageOutcome:
    """One image's result: DHR output, labelling result, base mask (H, W) int64, confidence in [0, 1]."""

    dhr: DHRResult
    labels: LabelingResult
    base_mask: torch.Tensor
    confidence: float


def image_confidence(dhr: DHRResult, labels: LabelingResult, tags: Sequence[int]) -> float:
    """The review-queue confidence defined in the module docstring, in [0, 1]."""
    heat = dhr.heatmaps
    certainty = float(heat.max(0).values.mean()) if heat.numel() else 0.0
    n = len(labels.instances)
    flagged = sum(1 for inst in labels.instances if inst.needs_review)
    found = {inst.class_id for inst in labels.instances}
    missing = sum(1 for t in tags if t not in found)
    value = certainty * (1 - 0.5 * flagged / max(1, n)) * (1 - 0.5 * missing / max(1, len(tags)))
    return float(min(1.0, max(0.0, value)))


def shard_entries(entries: Sequence[DatasetEntry], shard: tuple[int, int]) -> list[DatasetEntry]:
    """Entries of shard ``(i, n)``: positions ``i, i + n, ...`` of the name-sorted list."""
    i, n = shard
    ordered = sorted(entries, key=lambda e: e.file_name)
    return ordered[i::n]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse "i/n" -> (i, n), 0 <= i < n."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as error:
        raise ValueError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from error
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {text!r}: need 0 <= i < n")
    return i, n


def _image_seed(name: str, seed: int) -> int:
    return (zlib.crc32(name.encode()) + seed * 7919) % (2**31)


def _mask_name(file_name: str) -> str:
    return str(Path(file_name).with_suffix(".png").as_posix())


# ------------------------------------------------------------------------------------------- components


def prepare_classifier(dataset: TaggedDataset, config: BootstrapConfig, path: Path) -> Classifier:
    """Load ``config.classifier`` or ``path`` if present (classes must match), else train and save to ``path``."""
    from training.classifier import (
        TrainConfig,
        build_classifier,
        load_classifier,
        save_classifier,
        train_classifier,
    )

    source = Path(config.classifier) if config.classifier is not None else (path if path.is_file() else None)
    if source is not None:
        model, classes = load_classifier(source, config.device)
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
    torch.manual_seed(config.seed)
    model = build_classifier(
        config.backbone,
        len(dataset.classes),
        pretrained=config.pretrained,
        weights_dir=config.weights_dir,
        download=config.download,
    )
    train = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        crop_size=config.crop_size,
        optimizer=config.optimizer,
        lr=config.lr,
        workers=config.workers,
        seed=config.seed,
        device=config.device,
    )
    entries = dataset.entries
    logger.info(
        "training the %s classifier on %d images for %d epochs", config.backbone, len(entries), config.epochs
    )
    train_classifier(
        model, _ImageReader(entries), torch.from_numpy(dataset.targets()), train, progress=config.progress
    )
    save_classifier(model, path, dataset.classes)
    return model.eval()


class _ImageReader:
    """index -> HWC uint8 image of an entry (picklable, for DataLoader workers)."""

    def __init__(self, entries: Sequence[DatasetEntry]) -> None:
        self.paths = [e.path for e in entries]

    def __call__(self, index: int) -> np.ndarray:
        return load_image(self.paths[index])


def build_uss_provider(
    name: str | nn.Module, config: BootstrapConfig, segmenter: Segmenter | None
) -> tuple[nn.Module, str]:
    """The USS provider for ``name`` -> (provider, name used).

    "auto": "sam" when the segmenter is SAM (its embedding is reused, no extra cost), else "color".
    "sam" without a SAM segmenter falls back to "color" with a warning.
    """
    from dhr.uss import build_uss

    if isinstance(name, nn.Module):
        return name.to(config.device), type(name).__name__
    if name == "auto":
        name = "sam" if getattr(segmenter, "source", "") == "sam" else "color"
    if name == "sam":
        if getattr(segmenter, "source", "") != "sam":
            warnings.warn(
                "USS 'sam' needs a SAM segmenter (none is loaded: GrabCut runs); using the 'color' features instead",
                stacklevel=2,
            )
            return build_uss("color"), "color"
        return build_uss("sam", img_size=int(segmenter.long_side)), "sam"
    if name.startswith("dino"):
        from annotate.weights import load_state_dict

        state = load_state_dict(name, config.weights_dir, config.download)
        return build_uss(name, state_dict=state).to(config.device), name
    return build_uss(name).to(config.device), name


def build_bootstrap_segmenter(name: str | Segmenter, config: BootstrapConfig) -> Segmenter:
    """A segmenter by name (with an embedding cache), or the given segmenter object."""
    from annotate.embedding_cache import EmbeddingCache
    from annotate.segmenters import build_segmenter

    if not isinstance(name, str):
        return name
    cache_dir = (
        Path(config.embedding_cache) if config.embedding_cache else config.out / ".cache" / "embeddings"
    )
    return build_segmenter(
        name,
        weights_dir=config.weights_dir,
        device=config.device,
        cache=EmbeddingCache(cache_dir),
        download=config.download,
    )


def read_base_mask(folder: Path, file_name: str, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) int64 base mask ``folder/<name>.png`` (class ids, 255 = ignore); its size must equal ``size``."""
    from PIL import Image

    path = folder / _mask_name(file_name)
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
    uss_provider: nn.Module,
    segmenter: Segmenter,
    config: BootstrapConfig,
    base_mask: torch.Tensor | None = None,
    timings: dict[str, float] | None = None,
) -> ImageOutcome:
    """One image (HWC uint8 RGB) with its tag ids -> CAMs, base mask, DHR, segmenter instances, confidence.

    ``timings``: when given, the seconds of each stage are added to it under "cams", "sam_encoder" (the
    segmenter's ``set_image``), "uss", "dhr" and "prompting".
    """
    from dhr.uss import SamEmbeddingFeatures, image_to_tensor
    from training.classifier import cams_to_mask, compute_cams

    clock = _StageClock(timings, config.device)
    with clock("cams"):
        x = image_to_tensor(image, config.device)
        cams, feats = compute_cams(model, x, [t - 1 for t in tags], config.cam_scales, config.cam_flip)
        if base_mask is None:
            base_mask = cams_to_mask(cams, tags, config.background_threshold)
        base_mask = base_mask.to(cams.device)
    with clock("sam_encoder"):
        segmenter.set_image(image)  # computes or loads the embedding once; USS "sam" and labelling reuse it
    with clock("uss"), torch.no_grad():
        if isinstance(uss_provider, SamEmbeddingFeatures):
            uss = uss_provider(x, embedding=segmenter.embedding)
        else:
            uss = uss_provider(x)
    with clock("dhr"):
        feats_list = [feats["C4"], feats["C5"]]
        result = rebalance(cams, base_mask, list(tags), uss, feats_list, image=image, config=config.dhr)
    with clock("prompting"):
        labels = label_image(image, result, list(tags), segmenter, config.labeling)
    return ImageOutcome(result, labels, base_mask, image_confidence(result, labels, tags))


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


# ------------------------------------------------------------------------------------------------- run


def _write_png(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    atomic_write(path, partial(Image.fromarray(mask.astype(np.uint8)).save, format="PNG"))


def _open_store(out: Path, classes: list[str]):
    from annotate.store import DB_NAME, ProjectStore

    if (out / DB_NAME).exists():
        store = ProjectStore.open(out)
        if store.classes != classes:
            raise ValueError(
                f"{out} holds a project with classes {store.classes}, the dataset has {classes}; "
                "use another --out folder"
            )
        return store
    out.mkdir(parents=True, exist_ok=True)
    return ProjectStore.create(out, classes)


def _store_name(store, entry: DatasetEntry) -> str:
    """The project-relative name ``entry`` has (or gets) in the store."""
    from annotate.store import IMAGES_DIR

    path = Path(entry.path).absolute()
    root = store.root.absolute()
    if path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return f"{IMAGES_DIR}/{entry.file_name}"


def _register(store, entry: DatasetEntry) -> int:
    """Image id of ``entry`` in the store; a new image is copied to ``images/<file_name>``."""
    record = store.find_image(_store_name(store, entry))
    if record is not None:
        return record.id
    return store.add_image(entry.path, list(entry.tags), dest_name=entry.file_name)


def _dataset_name(store_name: str) -> str:
    """Inverse of ``_store_name`` for copied images: ``images/a/b.jpg`` -> ``a/b.jpg``."""
    from annotate.store import IMAGES_DIR

    prefix = IMAGES_DIR + "/"
    return store_name[len(prefix) :] if store_name.startswith(prefix) else store_name


def _write_manifest(config: BootstrapConfig, dataset: TaggedDataset, segmenter: str, uss: str) -> None:
    manifest = {
        "classes": dataset.classes,
        "dataset": str(dataset.source),
        "image_dir": str(dataset.image_dir),
        "shard": list(config.shard),
        "segmenter": segmenter,
        "uss": uss,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(config).items()
            if k not in ("out", "dhr", "labeling", "progress")
        },
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
    uss_provider: nn.Module | None = None,
    on_image_done: Callable[[str], None] | None = None,
) -> BootstrapReport:
    """Pseudo-label the dataset (this shard of it) into ``config.out``; resumable. See the module docstring.

    ``segmenter`` / ``uss_provider``: objects to use instead of building ``config.segmenter`` / ``config.uss``.
    ``on_image_done(file_name)`` is called after each image is saved.
    """
    from tqdm.auto import tqdm

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    classifier_path = out / CLASSIFIER_FILE
    if config.train_only:
        prepare_classifier(dataset, config, classifier_path)
        return BootstrapReport([], [], 0, out, None, classifier_path, "", "")
    store = _open_store(out, dataset.classes)
    try:
        entries = shard_entries(dataset.entries, config.shard)
        ids = {e.file_name: _register(store, e) for e in entries}
        todo = [e for e in entries if store.image(ids[e.file_name]).status == "new"]
        pending = {e.file_name for e in todo}
        skipped = [e.file_name for e in entries if e.file_name not in pending]
        base_dir = Path(config.base_masks) if config.base_masks is not None else None
        if base_dir is not None:
            missing = [e.file_name for e in todo if not (base_dir / _mask_name(e.file_name)).is_file()]
            if missing:
                warnings.warn(
                    f"{len(missing)} base mask(s) missing in {base_dir} (CAM masks used instead): "
                    + ", ".join(missing[:10])
                    + (" ..." if len(missing) > 10 else ""),
                    stacklevel=2,
                )
        # models that may be missing (offline weights) fail here, before the classifier is trained
        seg = build_bootstrap_segmenter(segmenter if segmenter is not None else config.segmenter, config)
        provider, uss_name = build_uss_provider(
            uss_provider if uss_provider is not None else config.uss, config, seg
        )
        model = prepare_classifier(dataset, config, classifier_path)
        seg_name = getattr(seg, "model_id", type(seg).__name__)
        _write_manifest(config, dataset, seg_name, uss_name)
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
                if base_dir is not None and (base_dir / _mask_name(entry.file_name)).is_file():
                    base = read_base_mask(base_dir, entry.file_name, image.shape[:2])
                _seed_everything(_image_seed(entry.file_name, config.seed))
                outcome = process_image(image, tags, model, provider, seg, config, base)
                _save(store, ids[entry.file_name], entry, outcome)
                processed.append(entry.file_name)
                bar.update(1)
                if on_image_done is not None:
                    on_image_done(entry.file_name)
            bar.close()
        coco_path = export_outputs(store)
    finally:
        store.close()
    return BootstrapReport(
        processed, skipped, len(entries), out, coco_path, classifier_path, seg_name, uss_name
    )


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import cv2
    except ImportError:  # GrabCut is then unavailable anyway
        return
    cv2.setRNGSeed(seed)


def _save(store, image_id: int, entry: DatasetEntry, outcome: ImageOutcome) -> None:
    from annotate.store import NewInstance

    _write_png(store.root / MASKS_DIR / _mask_name(entry.file_name), outcome.labels.semantic)
    instances = [
        NewInstance(
            inst.class_id, inst.mask, float(inst.score), inst.source, bool(inst.needs_review), inst.reason
        )
        for inst in outcome.labels.instances
    ]
    store.save_labels(image_id, instances, user=USER, status="pseudo", confidence=outcome.confidence)


def export_outputs(store) -> Path | None:
    """Write ``coco.json`` (RLE instances) of the store; None with a warning if ``annotate.coco`` is missing."""
    try:
        from annotate.coco import export_coco
    except ModuleNotFoundError as error:
        if error.name != "annotate.coco":
            raise
        warnings.warn("annotate.coco is not available: the COCO file was not written", stacklevel=2)
        return None
    path = store.root / COCO_FILE
    export_coco(store, path)  # written atomically
    return path


# ----------------------------------------------------------------------------------------------- merge


def merge_shards(out: str | Path, shard_dirs: Sequence[str | Path], *, progress: bool = True) -> Path | None:
    """Join shard projects (same classes) into one project at ``out``; returns the merged COCO file path.

    Images keep their names, instances, status and confidence; semantic PNGs and the classifier are copied.
    Raises ValueError for differing classes or an image present in two shards.
    """
    from tqdm.auto import tqdm

    from annotate.store import NewInstance, ProjectStore

    out = Path(out)
    if not shard_dirs:
        raise ValueError("no shard folders given")
    shards = [ProjectStore.open(Path(d)) for d in shard_dirs]
    try:
        classes = shards[0].classes
        for d, s in zip(shard_dirs, shards, strict=True):
            if s.classes != classes:
                raise ValueError(f"shard {d} has classes {s.classes}, the first shard {classes}")
        records = []
        seen: dict[str, str] = {}
        for d, s in zip(shard_dirs, shards, strict=True):
            for rec in s.list_images(order="name"):
                if rec.file_name in seen:
                    raise ValueError(f"image {rec.file_name} is in two shards: {seen[rec.file_name]} and {d}")
                seen[rec.file_name] = str(d)
                records.append((rec.file_name, s, rec))
        records.sort(key=lambda r: r[0])
        unfinished = [name for name, _, rec in records if rec.status == "new"]
        if unfinished:
            warnings.warn(
                f"{len(unfinished)} image(s) not labelled yet in their shard: {unfinished[:10]}", stacklevel=2
            )
        store = _open_store(out, classes)
        try:
            for name, shard, rec in tqdm(records, desc="merge", unit="img", disable=not progress):
                if store.find_image(name) is not None:
                    raise ValueError(f"{out} already holds image {name}; merge into an empty folder")
                source_name = _dataset_name(name)
                image_id = store.add_image(shard.image_path(rec.id), list(rec.tags), dest_name=source_name)
                mask = shard.root / MASKS_DIR / _mask_name(source_name)
                if mask.is_file():
                    atomic_copy(mask, store.root / MASKS_DIR / _mask_name(source_name))
                if rec.status == "new":
                    continue
                instances = [
                    NewInstance(i.class_id, i.rle, i.score, i.source, i.needs_review, i.reason)
                    for i in shard.instances(rec.id)
                ]
                store.save_labels(
                    image_id, instances, user="merge", status=rec.status, confidence=rec.confidence
                )
            classifier = shards[0].root / CLASSIFIER_FILE
            if classifier.is_file() and not (out / CLASSIFIER_FILE).exists():
                atomic_copy(classifier, out / CLASSIFIER_FILE)
            return export_outputs(store)
        finally:
            store.close()
    finally:
        for s in shards:
            s.close()
