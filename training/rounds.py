"""Recursive training rounds (``dhr train``): train, predict, rebalance, prompt SAM, relabel, repeat.

Each round trains DeepLabv3+ on the project's current labels (DHR in the step, accepted labels as they are),
predicts every image that is not accepted or rejected with multi-scale + flip inference of the EMA weights,
turns the predictions (argmax over background and the image's tags; pixels the network is unsure of and tagged
classes it lacks keep the current labels; by default with the tagged classes still missing that DHR restores and
that look distinct: ``relabel``, :mod:`training.relabel_seeds`) into instances
with ``annotate.labeling.label_image`` (SAM prompts, or GrabCut; the network's CAMs as evidence), and saves
them to the store (optimistic versioning: an image edited meanwhile is left alone). Rounds stop early when
the share of relabelled pixels falls below ``min_change``.

**Work in progress is kept.** An image whose labels a person changed since the last automatic pass (the
store's change log: a label edit by a user other than the bootstrap and the rounds' user,
:func:`annotate.store.hand_edits`) is not relabelled unless ``relabel_edited`` is set;
:func:`relabel_plan` says beforehand how many images a round changes and skips, and each round's figures
list the images it kept as edited (``kept_edited``).

Layout under ``out_dir`` (default ``PROJECT/training``): ``round_01/last.pt`` (resumable training state),
``round_01/model.pt`` (EMA weights for ``dhr eval --checkpoint``), ``round_01/metrics.json`` (the round's
figures; its presence marks the round as done, so a killed ``dhr train`` continues where it stopped) and
``rounds.json`` (all rounds).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from annotate.store.authorship import TRAINING_USER
from core.files import atomic_write_text, load_torch, save_torch
from dhr import DHRConfig, rebalance
from models.deeplab import DeepLabV3Plus, build_deeplab
from models.settings import ModelSettings
from models.transforms import AugmentConfig
from models.uss import build_uss_provider
from training.data import (
    ImageEntry,
    ProjectDataset,
    USSFeatureCache,
    precompute_uss_features,
    project_entries,
)
from training.distributed import DistContext, all_reduce_sum, barrier, init_distributed
from training.evaluate import evaluate_labels, predict_image, tag_restricted_probs
from training.relabel_seeds import (
    RELABEL_SEEDS,
    bounded_change,
    carry_lost_tags,
    lacks_a_tag,
    prediction_seeds,
    restore_distinct,
    unsure_to_previous,
)
from training.trainer import TrainConfig, Trainer

if TYPE_CHECKING:
    from models.segmenters import Segmenter

__all__ = ["RoundsConfig", "RelabelPlan", "automatic_writers", "relabel_plan", "run_rounds", "relabel_image",
           "save_model", "load_model", "MODEL_NAME"]

logger = logging.getLogger(__name__)

MODEL_NAME = "model.pt"
MODEL_FORMAT = 1
RELABEL_STATUSES = ("new", "pseudo", "review")


@dataclass
class RoundsConfig:
    """Settings of ``dhr train``; ``train`` holds the per-round optimisation settings."""

    rounds: int = 3
    train: TrainConfig = field(default_factory=TrainConfig)
    backbone: str = "resnet50"
    output_stride: int = 16
    pretrained: bool = True  # ImageNet backbone weights (models.weights); random init with a warning if absent
    uss: str = "color"  # USS provider name (models.uss.USS_REGISTRY)
    crop_size: int = 512
    scale_range: tuple[float, float] = (0.5, 2.0)
    scales: tuple[float, ...] = (0.5, 1.0, 1.5)  # inference scales for relabelling
    flip: bool = True
    use_segmenter: bool = True  # prompt the segmenter with the seeds; False stores the seeds as they are
    relabel: str = "restore"  # seeds of the relabelling: training.relabel_seeds.RELABEL_SEEDS
    keep_tags: bool = True  # a tagged class the labels hold and the new seeds lack is carried over
    min_confidence: float = 0.8  # seeds: pixels the network is less sure of keep their current labels (0: off)
    max_area_ratio: float = 2.0  # seeds: no class the labels hold grows or shrinks more than this in a round (0: off)
    min_change: float = 0.002  # stop when fewer than this share of pixels changed in a round
    reinit: bool = False  # start every round from the backbone weights instead of the last round's model
    accepted_repeat: int = 1  # accepted (reviewed) images appear this many times per epoch
    user: str = TRAINING_USER
    relabel_edited: bool = False  # also relabel images a person edited since the last automatic pass
    out_dir: str | None = None
    dhr: DHRConfig = field(default_factory=lambda: DHRConfig(crf=True))  # DHR of the step and the relabelling
    labeling: object = None  # annotate.labeling.LabelingConfig; None = defaults

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.accepted_repeat < 1:
            raise ValueError(f"accepted_repeat must be >= 1, got {self.accepted_repeat}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.max_area_ratio != 0.0 and self.max_area_ratio < 1.0:
            raise ValueError(f"max_area_ratio must be 0 (off) or >= 1, got {self.max_area_ratio}")
        if self.relabel not in RELABEL_SEEDS:
            raise ValueError(f"relabel must be one of {RELABEL_SEEDS}, got {self.relabel!r}")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"inference scales must be positive, got {self.scales}")


def automatic_writers(config: RoundsConfig) -> tuple[str, ...]:
    """The users whose saves are automatic labels: the bootstrap's and the rounds' own."""
    from annotate.bootstrap.run import USER as BOOTSTRAP_USER

    return (BOOTSTRAP_USER, config.user)


@dataclass(frozen=True)
class RelabelPlan:
    """What a round will do to the labels: image ids it relabels, names it skips as edited by hand, and the
    number of accepted / rejected images it never touches."""

    relabel: tuple[int, ...]
    skipped_edited: tuple[str, ...]
    reviewed: int

    def summary(self) -> str:
        """One line: how many images change, how many are skipped and why."""
        line = f"relabels {len(self.relabel)} image(s)"
        if self.skipped_edited:
            shown = ", ".join(self.skipped_edited[:5]) + (" ..." if len(self.skipped_edited) > 5 else "")
            line += f", skips {len(self.skipped_edited)} edited by hand ({shown})"
        return line + f"; {self.reviewed} accepted or rejected image(s) are never touched"


def relabel_plan(store, config: RoundsConfig) -> RelabelPlan:
    """Which images a round of ``config`` relabels now (status new / pseudo / review, not edited by hand
    unless ``config.relabel_edited``) and which it skips."""
    from annotate.store import hand_edits

    records = store.list_images(order="name")
    open_records = [r for r in records if r.status in RELABEL_STATUSES]
    edited = {} if config.relabel_edited else hand_edits(store, automatic_writers(config), [r.id for r in open_records])
    return RelabelPlan(
        relabel=tuple(r.id for r in open_records if r.id not in edited),
        skipped_edited=tuple(r.file_name for r in open_records if r.id in edited),
        reviewed=len(records) - len(open_records),
    )


def save_model(model: DeepLabV3Plus, path: str | Path, *, backbone: str, output_stride: int,
               classes: Sequence[str]) -> None:
    """Write weights and architecture (atomic) so that :func:`load_model` rebuilds the network."""
    payload = {"format": MODEL_FORMAT, "backbone": backbone, "output_stride": output_stride,
               "classes": list(classes), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    save_torch(payload, path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[DeepLabV3Plus, list[str]]:
    """Rebuild a network saved by :func:`save_model` -> (model in eval mode on ``device``, class names)."""
    payload = load_torch(path, what="model file")
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a dhr-label segmentation model")
    model = build_deeplab(len(payload["classes"]), payload["backbone"], output_stride=int(payload["output_stride"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), list(payload["classes"])


def _new_model(config: RoundsConfig, settings: ModelSettings, num_classes: int) -> DeepLabV3Plus:
    state = None
    if config.pretrained:
        from models.backbone import imagenet_state_dict

        state = imagenet_state_dict(config.backbone, settings.weights_dir, download=settings.download)
    with torch.random.fork_rng(devices=[]):  # initial weights from the run's seed; the caller's generator untouched
        torch.random.default_generator.manual_seed(config.train.seed)
        return build_deeplab(num_classes, config.backbone, backbone_state_dict=state,
                             output_stride=config.output_stride)


def _instances_from_mask(mask: np.ndarray, tags: Sequence[int], score: float):
    from annotate.store import NewInstance

    return [NewInstance(int(c), mask == c, score=score, source="dhr") for c in tags if (mask == c).any()]


@torch.no_grad()
def relabel_image(store, model: DeepLabV3Plus, entry: ImageEntry, uss_features: torch.Tensor, config: RoundsConfig,
                  segmenter=None, previous: np.ndarray | None = None) -> tuple[np.ndarray, list, float]:
    """New labels of one image: prediction -> tag-restricted argmax -> seeds (``config.relabel``,
    :mod:`training.relabel_seeds`) -> segmenter prompts.

    As in ``dhr bootstrap``, the network's CAMs of the tags are the labelling's evidence: components of the
    seeds whose CAM peak stays below ``LabelingConfig.min_evidence`` get no prompt.

    ``previous``: the image's (H, W) labels before the round (read from the store when None).

    Returns (semantic mask (H, W) int64, list of ``NewInstance``, the image's confidence in [0, 1]
    (:func:`annotate.confidence.image_confidence`)). Without a segmenter the instances are the seeds' classes,
    each scored with the network's mean peak probability.
    """
    from annotate.confidence import image_confidence
    from annotate.labeling import LabelingConfig, label_image
    from annotate.store import NewInstance

    image = store.load_image(entry.image_id)
    pred = predict_image(model, image, config.scales, config.flip)
    tags = list(entry.tags)
    sure, base = tag_restricted_probs(pred.probs, tags).max(0)  # (H, W) peak probability and its class
    peak = float(sure.mean())
    if not tags:  # all background: as confident as the network is of it
        return base.cpu().numpy(), [], image_confidence(pred.probs[:1], [], [])
    cams = pred.cams[[t - 1 for t in tags]]
    seeds = prediction_seeds(base, pred.probs, tags)
    if config.keep_tags or config.min_confidence > 0.0 or config.max_area_ratio > 0.0:
        held = store.semantic_mask(entry.image_id) if previous is None else previous
        held = torch.as_tensor(np.asarray(held, np.int64), device=base.device)
        seeds = unsure_to_previous(seeds, sure, held, config.min_confidence)
        seeds = bounded_change(seeds, held, tags, config.max_area_ratio)
        if config.keep_tags:
            seeds = carry_lost_tags(seeds, held, tags)
    if config.relabel == "dhr" or (config.relabel == "restore" and lacks_a_tag(seeds.mask, tags)):
        balanced = rebalance(cams, seeds.mask, tags, uss_features.to(cams.device),
                             [pred.features["C4"], pred.features["C5"]], image=image if config.dhr.crf else None,
                             config=config.dhr)
        seeds = restore_distinct(seeds, balanced) if config.relabel == "restore" else balanced
    if segmenter is None:
        semantic = np.asarray(seeds.mask.cpu().numpy(), np.int64)
        instances = _instances_from_mask(semantic, tags, peak)
        return semantic, instances, image_confidence(seeds.heatmaps, instances, tags)
    evidence = F.interpolate(cams[None], image.shape[:2], mode="bilinear", align_corners=False)[0]
    labeled = label_image(image, seeds, tags, segmenter, config=config.labeling or LabelingConfig(), evidence=evidence)
    instances = [NewInstance.from_instance(i) for i in labeled.instances]
    return np.asarray(labeled.semantic, np.int64), instances, image_confidence(seeds.heatmaps, instances, tags)


def _relabel(store, model: DeepLabV3Plus, entries: Sequence[ImageEntry], cache: USSFeatureCache,
             config: RoundsConfig, ctx: DistContext, segmenter, on_progress=None) -> dict[str, float]:
    """Relabel this rank's share of ``entries``; returns summed counts (all ranks)."""
    from tqdm.auto import tqdm

    from annotate.store import VersionConflict, hand_edits

    changed = total = relabelled = conflicts = 0
    confidence_sum = 0.0
    automatic = automatic_writers(config)
    mine = list(entries)[ctx.rank::ctx.world_size]
    for index, entry in enumerate(tqdm(mine, desc="relabel", unit="img", disable=not ctx.is_main)):
        if on_progress is not None:
            on_progress(index / max(1, len(mine)), f"relabelling image {index + 1} of {len(mine)}")
        record = store.image(entry.image_id)
        if record.status not in RELABEL_STATUSES:
            continue  # accepted or rejected since the round started: never touched
        if not config.relabel_edited and hand_edits(store, automatic, [entry.image_id]):
            continue  # a person's work in progress: kept (listed in the round's figures)
        features = cache.get(entry.sha256)
        if features is None:
            raise RuntimeError(f"USS features of image {record.file_name} are missing from {cache.root}")
        old = np.asarray(store.semantic_mask(entry.image_id), np.int64)
        semantic, instances, confidence = relabel_image(store, model, entry, features, config, segmenter, old)
        instances = list(instances) + [i.to_new() for i in store.instances(entry.image_id) if i.iscrowd]  # kept
        status = "review" if any(i.needs_review for i in instances) else "pseudo"
        try:
            store.save_labels(entry.image_id, instances, user=config.user, expected_version=record.version,
                              status=status, confidence=confidence)
        except VersionConflict as error:
            conflicts += 1
            logger.warning("%s changed during relabelling; kept as it is (%s)", record.file_name, error)
            continue
        changed += int((semantic != old).sum())
        total += semantic.size
        relabelled += 1
        confidence_sum += confidence
    sums = all_reduce_sum(torch.tensor([changed, total, relabelled, conflicts, confidence_sum], dtype=torch.float64),
                          ctx)
    changed, total, relabelled, conflicts, confidence_sum = sums.tolist()
    kept = hand_edits(store, automatic, [e.image_id for e in entries])  # every rank's share, after the pass
    return {
        "relabelled": int(relabelled),
        "kept_edited": sorted(store.image(i).file_name for i in kept),
        "conflicts": int(conflicts),
        "changed_fraction": changed / total if total else 0.0,
        "mean_confidence": confidence_sum / relabelled if relabelled else math.nan,
    }


def _class_shares(store, entries: Sequence[ImageEntry]) -> list[float]:
    counts = np.zeros(len(store.classes) + 1, np.int64)
    for entry in entries:
        mask = np.asarray(store.semantic_mask(entry.image_id))
        counts += np.bincount(mask.ravel(), minlength=counts.size)[: counts.size]
    return (counts / max(1, counts.sum())).tolist()


def _segmenter(config: RoundsConfig, settings: ModelSettings, store) -> Segmenter | None:
    """The segmenter of the rounds (with the project's embedding cache), or None when none is needed."""
    if not config.use_segmenter and config.uss not in ("sam", "auto"):
        return None
    from models.embedding_cache import EmbeddingCache
    from models.segmenters import build_segmenter

    return build_segmenter(settings.segmenter, weights_dir=settings.weights_dir, device=settings.device,
                           cache=EmbeddingCache(store.layout.embeddings_dir), download=settings.download)


def run_rounds(root: str | Path, config: RoundsConfig, ctx: DistContext | None = None,
               gt: dict[int, np.ndarray] | None = None, progress: bool = True, *,
               settings: ModelSettings | None = None, segmenter: Segmenter | None = None,
               on_progress=None) -> list[dict]:
    """Run (or continue) the training rounds on the project at ``root``; returns the figures of every round.

    ``settings`` give the device, weights folder and segmenter (``ctx``, when given, decides the device of
    a distributed run); ``segmenter`` is a running one to reuse (the GUI's), else one is built from
    ``settings``. ``gt`` (image id -> (H, W) class ids), when given, adds the labels' mIoU / FPR / FNR to each
    round's figures. ``on_progress(fraction, text)``, when given, hears each training step and relabelled
    image (fraction of the current phase).
    """
    from annotate.store import ProjectStore

    settings = settings or ModelSettings()
    ctx = ctx or init_distributed(settings.device)
    settings = replace(settings, device=str(ctx.device))
    with ProjectStore.open(root) as store:
        layout = store.layout
        out_dir = Path(config.out_dir) if config.out_dir else layout.training_dir
        classes = store.classes
        num_classes = len(classes)
        if segmenter is None:
            segmenter = _segmenter(config, settings, store)
        provider = build_uss_provider(config.uss, settings, segmenter)
        cache = USSFeatureCache(layout.features_dir, provider.feature_id)
        if not config.use_segmenter:
            segmenter = None
        if config.pretrained and ctx.distributed:  # one process fetches the ImageNet weights, the others wait
            from models.backbone import imagenet_state_dict

            if ctx.is_main:
                imagenet_state_dict(config.backbone, settings.weights_dir, download=settings.download)
            barrier(ctx)
        history: list[dict] = []
        initial_path = out_dir / "initial.json"
        if gt is not None and ctx.is_main:
            if initial_path.is_file():
                history.append(json.loads(initial_path.read_text()))
            else:
                start = evaluate_labels(store, gt)
                history.append({"round": 0, "miou": start["miou"], "fpr": start["fpr"], "fnr": start["fnr"],
                                "iou": [float(v) for v in start["iou"]]})
                out_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(initial_path, json.dumps(history[-1], indent=1))
            logger.info("labels before training: mIoU %.4f", history[-1]["miou"])
        for round_index in range(1, config.rounds + 1):
            round_dir = out_dir / f"round_{round_index:02d}"
            metrics_path = round_dir / "metrics.json"
            if metrics_path.is_file():
                figures = json.loads(metrics_path.read_text())
                history.append(figures)
                logger.info("round %d already done (%s)", round_index, metrics_path)
                if figures.get("stopped_early"):
                    break
                continue
            entries = project_entries(store)
            if not entries:
                raise ValueError(f"project {store.root} has no image to train on")
            precompute_uss_features(store, entries[ctx.rank::ctx.world_size], provider, cache,
                                    progress=progress and ctx.is_main)
            barrier(ctx)
            previous = out_dir / f"round_{round_index - 1:02d}" / MODEL_NAME
            if round_index > 1 and not config.reinit and previous.is_file():
                model = load_model(previous)[0]  # the last round's EMA weights
            else:
                model = _new_model(config, settings, num_classes)
            augment_config = AugmentConfig(crop_size=config.crop_size, scale_range=config.scale_range, flip=config.flip)
            repeated = [e for e in entries if e.accepted] * (config.accepted_repeat - 1)
            dataset = ProjectDataset(store.root, entries + repeated, num_classes, augment_config, cache)
            step_done = None
            if on_progress is not None:
                def step_done(step: int, steps: int, _round: int = round_index) -> None:
                    on_progress(step / max(1, steps), f"round {_round}: training step {step} of {steps}")
            trainer = Trainer(model, dataset, config.train, round_dir, dhr_config=config.dhr, ctx=ctx,
                              progress=progress, on_step=step_done)
            result = trainer.fit()
            ema = trainer.ema.module
            if ctx.is_main:
                save_model(ema, round_dir / MODEL_NAME, backbone=config.backbone, output_stride=config.output_stride,
                           classes=classes)
            todo = [e for e in entries if not e.accepted]
            figures = {"round": round_index, "steps": trainer.step, "loss": trainer.mean_loss(result),
                       **_relabel(store, ema, todo, cache, config, ctx, segmenter, on_progress)}
            barrier(ctx)
            figures["dhr_share"] = result.dhr_seconds / result.step_seconds if result.step_seconds else 0.0
            if ctx.is_main:
                figures["class_shares"] = _class_shares(store, entries)
                if gt is not None:
                    scores = evaluate_labels(store, gt)
                    figures.update(miou=scores["miou"], fpr=scores["fpr"], fnr=scores["fnr"],
                                   iou=[float(v) for v in scores["iou"]])
            figures["stopped_early"] = bool(round_index < config.rounds and figures["changed_fraction"] < config.min_change)
            if ctx.is_main:
                logger.info("round %d: %s", round_index,
                            {k: v for k, v in figures.items() if k not in ("iou", "class_shares")})
                atomic_write_text(metrics_path, json.dumps(figures, indent=1))
            history.append(figures)
            barrier(ctx)
            if figures["stopped_early"]:
                logger.info("labels changed on %.4f%% of pixels (< %.4f%%): stopping after round %d",
                            100 * figures["changed_fraction"], 100 * config.min_change, round_index)
                break
        if ctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            summary = {"config": _jsonable(config), "rounds": history}
            atomic_write_text(out_dir / "rounds.json", json.dumps(summary, indent=1))
    return history


def _jsonable(config: RoundsConfig) -> dict:
    return json.loads(json.dumps(asdict(config), default=str))
