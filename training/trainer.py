"""The training loop: DeepLabv3+ on pseudo masks and tags, DHR in the step, EMA, AMP, exact resume.

Loss = weighted pixel cross-entropy on the (DHR-rebalanced) pseudo masks, ignoring ``IGNORE_INDEX``, plus the multi-label
classification loss on the tags (weight ``cls_loss_weight``). Pixels of accepted images weigh
``accepted_weight``. SGD (momentum 0.9, weight decay 4e-5), lr 1e-3 on the backbone and 10x on the heads, poly
decay with power 0.9, EMA 0.999 of the weights, float16 autocast with loss scaling on CUDA.

A checkpoint (``last.pt``) holds model, EMA, optimizer, scheduler, loss scaler, step and the run's torch RNG states; a run
killed at any point and restarted continues from the last checkpoint and ends with the same weights as an
uninterrupted run (bit for bit on CPU).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from core.errors import UserError
from core.files import load_torch, save_torch
from dhr.labels import IGNORE_INDEX
from models import optim
from training.data import EpochSampler, ProjectDataset, collate
from training.dhr_step import rebalance_batch
from training.distributed import DistContext, all_reduce_sum, broadcast_buffers, unwrap, wrap_model

__all__ = ["TrainConfig", "TrainResult", "ModelEMA", "build_optimizer", "segmentation_loss",
           "Trainer", "CHECKPOINT_NAME"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = 1


class TrainingDiverged(UserError, RuntimeError):
    """The training loss stopped being finite (the message says what to change)."""


@dataclass
class TrainConfig:
    """Knobs of one training run; defaults are the seed paper's SGD settings."""

    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    head_lr_mult: float = 10.0
    weight_decay: float = 4e-5
    momentum: float = 0.9
    poly_power: float = 0.9
    ema_decay: float = 0.999
    amp: bool = True  # float16 autocast + loss scaling; only on CUDA
    cls_loss_weight: float = 1.0
    accepted_weight: float = 1.0  # loss weight of the pixels of accepted (human-reviewed) images
    dhr: bool = True  # rebalance the pseudo masks inside the step
    dhr_warmup: int | None = None  # steps on the stored masks before the DHR step starts; None = steps // 10
    dhr_every: int = 1  # run the DHR step every k steps (the stored masks are used in between)
    checkpoint_every: int = 100
    num_workers: int = 0
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.lr <= 0 or self.dhr_every < 1 or self.checkpoint_every < 1:
            raise ValueError("lr must be > 0 and dhr_every, checkpoint_every >= 1")


@dataclass
class TrainResult:
    """Per-step history of this process (steps run in this call only) and where the run stopped."""

    step: int
    losses: list[float] = field(default_factory=list)
    seg_losses: list[float] = field(default_factory=list)
    cls_losses: list[float] = field(default_factory=list)
    dhr_seconds: float = 0.0
    step_seconds: float = 0.0
    finished: bool = False


class ModelEMA:
    """Exponential moving average of a model's parameters (buffers copied): ema = d * ema + (1 - d) * w.

    Given the optimisation ``step`` (0 for the first update), the decay warms up as
    ``d = min(decay, (1 + step) / (10 + step))``: the average follows the trained weights early on instead of
    keeping the initial ones (at decay 0.999 a 150-step run would otherwise leave 86 % of the random start in
    the average, whose BatchNorm statistics are those of the trained network).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = float(decay)
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        model = unwrap(model)
        decay = self.decay if step is None else min(self.decay, (1.0 + step) / (10.0 + step))
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for ema_buffer, buffer in zip(self.module.buffers(), model.buffers(), strict=True):
            ema_buffer.copy_(buffer)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with two groups: backbone at ``lr``, heads (ASPP, decoder, CAM head) at ``lr * head_lr_mult``."""
    model = unwrap(model)
    return optim.build_optimizer(model.backbone_parameters(), model.head_parameters(), lr=config.lr,
                                 head_lr_mult=config.head_lr_mult, momentum=config.momentum,
                                 weight_decay=config.weight_decay)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor,
                      ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel cross-entropy, logits (B, C, H, W), masks (B, H, W), per-image weights (B,); mean over labelled
    pixels (weighted). Zero (with a gradient) when no pixel is labelled."""
    pixel = F.cross_entropy(logits.float(), masks, ignore_index=ignore_index, reduction="none")
    w = (masks != ignore_index).float() * weights.view(-1, 1, 1)
    return (pixel * w).sum() / w.sum().clamp_min(1.0)


class TrainingRandomness:
    """The torch generator states of one run (dropout draws from torch's default generators).

    ``fit`` runs inside :meth:`active`: the run's states are installed in a forked RNG scope and read back at
    the end (and at each checkpoint), so the caller's global generators are left as they were and a resumed
    run continues the same random stream. Augmentation draws from its own ``numpy.random.Generator`` per item.
    """

    def __init__(self, seed: int, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.Generator().manual_seed(int(seed)).get_state()
        self.cuda: torch.Tensor | None = None
        self.seed = int(seed)
        self._inside = False

    def state_dict(self) -> dict:
        self.capture()
        state = {"torch": self.cpu}
        if self.cuda is not None:
            state["cuda"] = self.cuda
        return state

    def load_state_dict(self, state: dict) -> None:
        self.cpu = state["torch"]
        self.cuda = state.get("cuda") if self.device.type == "cuda" else None
        if self._inside:
            self._install()

    def _install(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.device.type == "cuda":
            if self.cuda is None:
                torch.cuda.manual_seed(self.seed)
            else:
                torch.cuda.set_rng_state(self.cuda, self.device)

    def capture(self) -> None:
        """Read the current states back while :meth:`active` (a no-op outside it)."""
        if self._inside:
            self.cpu = torch.get_rng_state()
            if self.device.type == "cuda":
                self.cuda = torch.cuda.get_rng_state(self.device)

    @contextlib.contextmanager
    def active(self):
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda, device_type="cuda" if cuda else "cpu"):
            self._install()
            self._inside = True
            try:
                yield
            finally:
                self.capture()
                self._inside = False


class Trainer:
    """One training run of a :class:`models.deeplab.DeepLabV3Plus` on a :class:`ProjectDataset`.

    ``out_dir`` holds ``last.pt``; ``fit()`` resumes from it when present. ``dhr_config`` is the
    ``dhr.DHRConfig`` of the in-step rebalancing (None = its defaults); ``on_step(done, steps)`` hears every step.
    """

    def __init__(self, model: nn.Module, dataset: ProjectDataset, config: TrainConfig, out_dir: str | Path,
                 *, dhr_config=None, ctx: DistContext | None = None, progress: bool = True,
                 on_step: Callable[[int, int], None] | None = None) -> None:
        self.config = config
        self.on_step = on_step  # hears (steps done, steps in all) after every step
        self.ctx = ctx or DistContext()
        self.device = self.ctx.device
        self.out_dir = Path(out_dir)
        self.dataset = dataset
        self.dhr_config = dhr_config
        self.progress = progress and self.ctx.is_main
        self.randomness = TrainingRandomness(config.seed, self.device)
        self.net = wrap_model(model, self.ctx)
        self.model = unwrap(self.net)
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = optim.poly_scheduler(self.optimizer, config.steps, config.poly_power)
        self.ema = ModelEMA(self.model, config.ema_decay)
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0
        self.sampler = EpochSampler(dataset, num_replicas=self.ctx.world_size, rank=self.ctx.rank, seed=config.seed)
        shard = len(self.sampler.inner)
        if shard == 0:
            raise ValueError("the dataset has no images to train on")
        self.drop_last = shard >= config.batch_size
        self.steps_per_epoch = shard // config.batch_size if self.drop_last else 1

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": self.randomness.state_dict(),
            "config": asdict(self.config),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a dhr-label training checkpoint")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.randomness.load_state_dict(state["rng"])
        self.step = int(state["step"])

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write the full training state atomically (rank 0 only; other ranks return the path)."""
        path = Path(path) if path is not None else self.checkpoint_path
        if self.ctx.is_main:
            save_torch(self.state_dict(), path)
        return path

    def load_checkpoint(self, path: str | Path | None = None) -> bool:
        """Resume from ``path`` (default ``out_dir/last.pt``); False when there is no checkpoint."""
        path = Path(path) if path is not None else self.checkpoint_path
        if not path.is_file():
            return False
        state = load_torch(path, what="training checkpoint")
        if state.get("config", {}).get("steps") != self.config.steps:
            raise ValueError(f"checkpoint {path} was written for {state.get('config', {}).get('steps')} steps, "
                             f"this run has {self.config.steps}; use another output folder")
        self.load_state_dict(state)
        logger.info("resumed from %s at step %d", path, self.step)
        return True

    # ------------------------------------------------------------------ training
    def _loader(self) -> DataLoader:
        workers = self.config.num_workers
        return DataLoader(
            self.dataset, batch_size=self.config.batch_size, sampler=self.sampler, collate_fn=collate,
            num_workers=workers, drop_last=self.drop_last, pin_memory=self.device.type == "cuda",
            persistent_workers=False, generator=torch.Generator().manual_seed(self.config.seed),
            prefetch_factor=2 if workers > 0 else None,
        )

    def train_step(self, batch: dict) -> tuple[float, float, float, float]:
        """One optimisation step on a collated batch -> (loss, seg loss, cls loss, seconds in the DHR step)."""
        import time

        cfg = self.config
        dev = self.device
        images = batch["image"].to(dev, non_blocking=True)
        masks = batch["mask"].to(dev, non_blocking=True)
        tags = batch["tags"].to(dev, non_blocking=True)
        accepted = batch["accepted"].to(dev)
        self.net.train()
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=self.use_amp):
            outputs = self.net(images)
        dhr_seconds = 0.0
        warmup = cfg.steps // 10 if cfg.dhr_warmup is None else cfg.dhr_warmup
        if cfg.dhr and self.step >= warmup and (self.step - warmup) % cfg.dhr_every == 0:
            start = time.perf_counter()
            masks, stats = rebalance_batch(
                outputs, masks, tags, batch["accepted"], batch["uss"], batch["box"], batch["flip"],
                batch["valid"], batch["size"], images=batch["raw"], config=self.dhr_config)
            dhr_seconds = time.perf_counter() - start
            log = logger.info if stats.failed else logger.debug
            log("DHR step %d: %s", self.step, stats)
        weights = torch.where(accepted, torch.tensor(cfg.accepted_weight, device=dev), torch.tensor(1.0, device=dev))
        seg = segmentation_loss(outputs["seg"], masks, weights)
        cls = F.multilabel_soft_margin_loss(outputs["cls"].float(), tags)
        loss = seg + cfg.cls_loss_weight * cls
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"training loss is {loss.item()} at step {self.step}; lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.ema.update(self.model, self.step)
        self.step += 1
        return float(loss.detach()), float(seg.detach()), float(cls.detach()), dhr_seconds

    def fit(self, stop_after: int | None = None, resume: bool = True) -> TrainResult:
        """Train to ``config.steps`` (resuming from the checkpoint when ``resume``); ``stop_after`` ends the call
        once that many total steps are done (a checkpoint is written there), as a run killed at that point.
        The run's own random stream is used (:class:`TrainingRandomness`); the caller's is left untouched."""
        with self.randomness.active():
            return self._fit(stop_after, resume)

    def _fit(self, stop_after: int | None, resume: bool) -> TrainResult:
        import time

        from tqdm.auto import tqdm

        if resume:
            self.load_checkpoint()
        cfg = self.config
        end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
        result = TrainResult(step=self.step)
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", disable=not self.progress)
        while self.step < end:
            epoch, offset = divmod(self.step, self.steps_per_epoch)
            self.sampler.set_epoch(epoch, offset * cfg.batch_size)
            for batch in self._loader():
                start = time.perf_counter()
                loss, seg, cls, dhr_seconds = self.train_step(batch)
                result.step_seconds += time.perf_counter() - start
                result.dhr_seconds += dhr_seconds
                result.losses.append(loss)
                result.seg_losses.append(seg)
                result.cls_losses.append(cls)
                bar.update(1)
                if self.on_step is not None:
                    self.on_step(self.step, cfg.steps)
                bar.set_postfix(loss=f"{loss:.3f}", seg=f"{seg:.3f}", cls=f"{cls:.3f}")
                if self.step % cfg.log_every == 0:
                    logger.info("step %d/%d loss %.4f (seg %.4f, cls %.4f) lr %.2e", self.step, cfg.steps, loss,
                                seg, cls, self.optimizer.param_groups[0]["lr"])
                if self.step % cfg.checkpoint_every == 0 or self.step >= end:
                    self.save_checkpoint()
                if self.step >= end:
                    break
                if self.step % self.steps_per_epoch == 0:
                    break  # epoch boundary: the next epoch gets its own permutation
        bar.close()
        broadcast_buffers(self.model, self.ctx)  # BatchNorm statistics of rank 0 everywhere, as in the checkpoint
        broadcast_buffers(self.ema.module, self.ctx)
        result.step = self.step
        result.finished = self.step >= cfg.steps
        return result

    def mean_loss(self, result: TrainResult, last: int = 10) -> float:
        """Mean loss over the last ``last`` steps of this process, averaged across ranks."""
        values = result.losses[-last:] or [math.nan]
        pair = torch.tensor([float(np.sum(values)), float(len(values))], dtype=torch.float64)
        total = all_reduce_sum(pair, self.ctx)
        return float(total[0] / total[1])
