"""The weakly-supervised (WSS) multi-label classifier: a dilated ResNet with a 1x1-conv head giving CAMs.

``Classifier`` maps an image batch (B, 3, H, W) ImageNet-normalised float to logits (B, N) by global average
pooling of its class activation maps; ``compute_cams`` gives one image's CAMs with multi-scale and flip
inference, and its C4 / C5 maps (the WSS features DHR uses). ``train_classifier`` fits it on image-level tags
with the multi-label soft-margin loss and standard augmentation (random rescale, flip, colour jitter, crop).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from core.files import load_torch, save_torch
from dhr.normalise import normalise_cams
from dhr.uss import image_to_tensor
from models import optim
from models.backbone import BACKBONES, build_resnet, centre_wss_features, imagenet_state_dict
from models.inference import multiscale_flip
from models.transforms import AugmentConfig, augment

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class Classifier(nn.Module):
    """ResNet backbone + 1x1 conv classifier (no bias), so the class scores are spatial maps (CAMs).

    ``forward(x)`` -> logits (B, N); ``cams_and_features(x)`` -> (CAMs (B, N, h, w) before ReLU, dict C4/C5).
    ``pretrained`` says whether the backbone started from ImageNet weights (``state_dict``) or from scratch.
    ``top_share``: each class's logit is the mean of the highest ``top_share`` of its CAM cells (at least one);
    1.0 is global average pooling. A small share lets an object covering a few cells decide its class, so its
    CAM has to fire on it: with global averaging a from-scratch network can score a small object that always
    sits beside a big one from the big one's cells.
    """

    def __init__(
        self, backbone: str, num_classes: int, output_stride: int = 16, state_dict=None, pretrained: bool | None = None,
        top_share: float = 1.0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 < top_share <= 1.0:
            raise ValueError(f"top_share must be in (0, 1], got {top_share}")
        self.backbone_name = backbone
        self.num_classes = int(num_classes)
        self.top_share = float(top_share)
        self.pretrained = state_dict is not None if pretrained is None else bool(pretrained)
        self.backbone = build_resnet(backbone, state_dict=state_dict, output_stride=output_stride)
        self.head = nn.Conv2d(self.backbone.channels["C5"], self.num_classes, kernel_size=1, bias=False)
        nn.init.xavier_uniform_(self.head.weight)

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    def cams_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B, 3, H, W) -> raw CAMs (B, N, h, w) on the C5 grid, and dict(C4, C5) feature maps.

        All three are resampled to the cell centres (``centre_cells``), so that a resize puts them on their objects.
        """
        centred = centre_wss_features(self.backbone(x), x.shape[-2:], self.output_stride)
        return self.head(centred["C5"]), centred

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> multi-label logits (B, N): the mean of each class's top ``top_share`` CAM cells."""
        feats = self.backbone(x)
        if self.top_share >= 1.0:  # global average pooling (the head is linear: pool first, cheaper)
            pooled = F.adaptive_avg_pool2d(feats["C5"], 1)
            return self.head(pooled).flatten(1)
        return top_share_pool(self.head(feats["C5"]), self.top_share)


def top_share_pool(maps: torch.Tensor, share: float) -> torch.Tensor:
    """(B, N, h, w) -> (B, N): the mean of the ``ceil(share * h * w)`` highest values of each map."""
    flat = maps.flatten(2)
    k = max(1, math.ceil(share * flat.shape[-1]))
    return flat.topk(k, dim=-1).values.mean(-1)


def build_classifier(
    backbone: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights_dir: str | Path | None = None,
    download: bool = True,
    output_stride: int = 16,
) -> Classifier:
    """A classifier initialised from ImageNet weights when available (``models.weights`` rules).

    Without a weights file (and no download), or with ``pretrained=False``, the backbone starts from random
    weights; a warning says so unless ``pretrained`` is False.
    """
    state = imagenet_state_dict(backbone, weights_dir, download) if pretrained else None
    return Classifier(backbone, num_classes, output_stride, state_dict=state)


def save_classifier(model: Classifier, path: str | Path, classes: Sequence[str] | None = None) -> None:
    """Write the classifier (weights + architecture) so that ``load_classifier`` rebuilds it; atomic."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "backbone": model.backbone_name,
        "num_classes": model.num_classes,
        "output_stride": model.output_stride,
        "pretrained": model.pretrained,
        "top_share": model.top_share,
        "classes": list(classes) if classes is not None else [],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    save_torch(payload, path)


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, list[str]]:
    """Rebuild a classifier saved by ``save_classifier`` (``torch.load(weights_only=True)``); -> (model, classes)."""
    payload = load_torch(path, what="classifier checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a dhr-label classifier checkpoint")
    pretrained = payload.get("pretrained", BACKBONES[payload["backbone"]].checkpoint is not None)
    model = Classifier(
        payload["backbone"], int(payload["num_classes"]), int(payload["output_stride"]), pretrained=pretrained,
        top_share=float(payload.get("top_share", 1.0)),
    )
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), list(payload["classes"])


# ----------------------------------------------------------------------------------------------- training


@dataclass
class ClassifierTrainConfig:
    """Knobs of ``train_classifier``. ``lr`` is the backbone's; the head uses ``lr * head_lr_mult``."""

    epochs: int = 5
    batch_size: int = 8
    crop_size: int = 320
    scale_range: tuple[float, float] = (0.7, 1.3)  # random rescale factor of the image
    flip: bool = True
    color_jitter: float = 0.3  # brightness / contrast / saturation amplitude, 0 to disable
    optimizer: str = "sgd"  # "sgd" (poly schedule, momentum 0.9) or "adam"
    lr: float = 0.01
    head_lr_mult: float = 10.0
    weight_decay: float = 1e-4
    workers: int = 0
    seed: int = 0
    device: str = "cpu"

    @property
    def augment_config(self) -> AugmentConfig:
        """These settings as the shared augmentation's (:mod:`models.transforms`); jitter without hue."""
        jitter = self.color_jitter
        return AugmentConfig(crop_size=self.crop_size, scale_range=self.scale_range, flip=self.flip,
                             brightness=jitter, contrast=jitter, saturation=jitter, hue=0.0)


class _TagDataset(Dataset):
    """Augmented samples: ((3, crop, crop) normalised float, (N,) multi-hot float)."""

    def __init__(
        self,
        images: Sequence[np.ndarray] | Callable[[int], np.ndarray],
        targets: torch.Tensor,
        config: ClassifierTrainConfig,
        epoch: int = 0,
    ) -> None:
        self.images = images
        self.targets = targets
        self.config = config
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def _image(self, index: int) -> np.ndarray:
        return self.images(index) if callable(self.images) else self.images[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.epoch, index])
        image = self._image(index)
        sample = augment(image, np.zeros(image.shape[:2], np.uint8), rng, cfg.augment_config)
        return image_to_tensor(sample.image), self.targets[index]


def train_classifier(
    model: Classifier,
    images: Sequence[np.ndarray] | Callable[[int], np.ndarray],
    targets: torch.Tensor,
    config: ClassifierTrainConfig | None = None,
    progress: bool = True,
) -> list[float]:
    """Fit ``model`` on multi-hot ``targets`` (M, N) {0, 1} for ``images`` (M HWC uint8 RGB arrays, or a
    function index -> array). Multi-label soft-margin loss; returns the mean loss of each epoch.
    """
    from tqdm.auto import tqdm

    config = config or ClassifierTrainConfig()
    targets = torch.as_tensor(targets, dtype=torch.float32)
    if targets.ndim != 2 or targets.shape[1] != model.num_classes:
        raise ValueError(f"targets must be (M, {model.num_classes}), got {tuple(targets.shape)}")
    if not callable(images) and len(images) != targets.shape[0]:
        raise ValueError(f"{len(images)} images but {targets.shape[0]} target rows")
    if targets.shape[0] == 0:
        raise ValueError("no training images")
    device = torch.device(config.device)
    model.to(device).train()
    opt = optim.build_optimizer(
        model.backbone.parameters(), model.head.parameters(), kind=config.optimizer, lr=config.lr,
        head_lr_mult=config.head_lr_mult, momentum=0.9, weight_decay=config.weight_decay,
    )
    steps_per_epoch = math.ceil(targets.shape[0] / config.batch_size)
    total = max(1, config.epochs * steps_per_epoch)
    schedule = optim.poly_scheduler(opt, total)
    step = 0
    history: list[float] = []
    bar = tqdm(total=total, desc="classifier", unit="step", disable=not progress)
    for epoch in range(config.epochs):
        data = _TagDataset(images, targets, config, epoch)
        loader = DataLoader(
            data,
            batch_size=config.batch_size,
            shuffle=True,
            num_workers=config.workers,
            generator=torch.Generator().manual_seed(config.seed + epoch),
            drop_last=False,
        )
        losses = []
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            if x.shape[0] == 1 and model.training:  # BatchNorm needs more than one value per channel
                x, y = torch.cat([x, x.flip(-1)]), torch.cat([y, y])
            loss = F.multilabel_soft_margin_loss(model(x), y)
            if not torch.isfinite(loss):
                raise RuntimeError(
                    f"classifier loss is {loss.item()} at epoch {epoch}; lower the learning rate"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
        history.append(float(np.mean(losses)))
        logger.info("classifier epoch %d: loss %.4f", epoch, history[-1])
    bar.close()
    model.eval()
    return history


# ----------------------------------------------------------------------------------------------- inference


@torch.no_grad()
def compute_cams(
    model: Classifier,
    image: np.ndarray | torch.Tensor,
    class_indices: Sequence[int],
    scales: Sequence[float] = (1.0, 0.5, 1.5, 2.0),
    flip: bool = True,
    size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CAMs of the given classes with multi-scale + flip inference, and the WSS features at scale 1.

    ``image``: HWC uint8 RGB array or a (3, H, W) normalised float tensor. ``class_indices``: 0-based rows of the
    classifier head (class id - 1), in the order wanted. ``size``: output (h, w), default the image size.
    Returns (CAMs (K, h, w) float in [0, 1], each class max-normalised; dict C4, C5 of (D, H/16, W/16)).
    The CAMs are on the model's device.
    """
    if not isinstance(model, Classifier):
        raise TypeError(f"model must be a Classifier, got {type(model).__name__}")
    device = next(model.parameters()).device
    x = image_to_tensor(image) if isinstance(image, np.ndarray) else image
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"image tensor must be (3, H, W), got {tuple(x.shape)}")
    x = x.to(device=device, dtype=torch.float32)
    idx = [int(i) for i in class_indices]
    if any(i < 0 or i >= model.num_classes for i in idx):
        raise ValueError(f"class indices {idx} out of range for {model.num_classes} classes")
    H, W = x.shape[-2:]
    out_size = size or (H, W)
    was_training = model.training
    model.eval()
    total = torch.zeros((len(idx), *out_size), device=device)
    features: dict[str, torch.Tensor] = {}

    def forward(batch: torch.Tensor):
        cams, feats = model.cams_and_features(batch)
        return {"cams": F.relu(cams[:, idx])}, feats

    for s, maps, plain in multiscale_flip(forward, x, scales, flip):
        total += F.interpolate(maps["cams"][None], out_size, mode="bilinear", align_corners=False)[0]
        if s == 1.0 or not features:
            features = plain
    if was_training:
        model.train()
    return normalise_cams(total), features


def cams_to_mask(cams: torch.Tensor, tags: Sequence[int], threshold: float = 0.3) -> torch.Tensor:
    """Base (WSS) mask from CAMs: the tag of the highest CAM, background (0) where that CAM is below ``threshold``.

    ``cams``: (K, H, W) float in [0, 1] in the order of ``tags`` (class ids >= 1). Returns (H, W) int64.
    """
    if cams.ndim != 3 or cams.shape[0] != len(tags):
        raise ValueError(f"cams must be (K={len(tags)}, H, W), got shape {tuple(cams.shape)}")
    ids = torch.tensor([int(t) for t in tags], dtype=torch.long, device=cams.device)
    if len(ids) == 0:
        return torch.zeros(cams.shape[1:], dtype=torch.long, device=cams.device)
    peak, arg = cams.max(0)
    return torch.where(peak >= threshold, ids[arg], torch.zeros_like(arg))
