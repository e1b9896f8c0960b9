"""Prediction with the trained network and evaluation against ground truth (``dhr eval``).

``predict_image`` runs multi-scale + flip inference and returns class probabilities, CAMs and the C4 / C5
features; ``load_ground_truth`` reads masks from a folder of PNGs (one per image, pixel value = class id, 255
ignore; named like the image with ``.png``) or a COCO file (categories matched to the project's classes by
name, images by file name, crowd regions ignored); ``evaluate_labels`` / ``evaluate_model`` score the project's
current labels or a network with ``dhr.metrics`` (mIoU, per-class IoU, mean FPR and FNR).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dhr.labels import IGNORE_INDEX
from dhr.normalise import normalise_cams
from models.inference import multiscale_flip

__all__ = ["Prediction", "predict_image", "tag_restricted_mask", "tag_restricted_probs", "load_ground_truth",
           "evaluate_masks", "evaluate_labels", "evaluate_model", "format_scores"]

logger = logging.getLogger(__name__)


@dataclass
class Prediction:
    """probs (N + 1, H, W) float in [0, 1] summing to 1 over classes; cams (N, h, w) in [0, 1] (each class
    max-normalised) on the scale-1 C5 grid; features dict C4 / C5 (D, h, w) at scale 1."""

    probs: torch.Tensor
    cams: torch.Tensor
    features: dict[str, torch.Tensor]


@torch.no_grad()
def predict_image(model: nn.Module, image: np.ndarray, scales: Sequence[float] = (1.0,), flip: bool = True) -> Prediction:
    """Multi-scale (+ horizontal flip) inference of a DeepLabV3Plus on one HWC uint8 RGB image."""
    from dhr.uss import image_to_tensor

    param = next(model.parameters())
    x = image_to_tensor(image, param.device)
    height, width = x.shape[-2:]
    was_training = model.training
    model.eval()
    probs = torch.zeros((model.num_classes + 1, height, width), device=param.device)
    cams, features = None, {}

    def forward(batch: torch.Tensor):
        out = model(batch)
        return {"seg": out["seg"].float().softmax(1), "cams": out["cams"].float()}, {k: out[k] for k in ("C4", "C5")}

    ordered = sorted(scales, key=lambda s: abs(s - 1.0))  # scale 1 (or the nearest) first: it sets the CAM grid
    for _, maps, plain in multiscale_flip(forward, x, ordered, flip):
        probs += F.interpolate(maps["seg"][None], (height, width), mode="bilinear", align_corners=False)[0]
        if cams is None:
            cams = maps["cams"]
            features = {k: v.float() for k, v in plain.items()}
        else:
            cams += F.interpolate(maps["cams"][None], cams.shape[-2:], mode="bilinear", align_corners=False)[0]
    model.train(was_training)
    probs /= probs.sum(0, keepdim=True).clamp_min(1e-12)
    return Prediction(probs, normalise_cams(cams), features)


def tag_restricted_probs(probs: torch.Tensor, tags: Sequence[int]) -> torch.Tensor:
    """probs (N + 1, H, W) renormalised over background and the tagged classes only (the others set to 0)."""
    allowed = torch.zeros(probs.shape[0], dtype=torch.bool, device=probs.device)
    allowed[0] = True
    allowed[list(tags)] = True
    restricted = torch.where(allowed[:, None, None], probs, torch.zeros_like(probs))
    return restricted / restricted.sum(0, keepdim=True).clamp_min(1e-12)


def tag_restricted_mask(probs: torch.Tensor, tags: Sequence[int]) -> tuple[torch.Tensor, float]:
    """Argmax over background and the tagged classes only; probs (N + 1, H, W) -> ((H, W) int64, mean peak prob)."""
    peak, mask = tag_restricted_probs(probs, tags).max(0)
    return mask, float(peak.mean())


def _png_mask(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"ground-truth mask {path} has mode {img.mode}; expected a single-channel PNG of "
                                 "class ids (grayscale or palette)")
            return np.asarray(img).astype(np.int64)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read ground-truth mask {path}: {error}") from error


def _coco_masks(path: Path, store, records) -> dict[int, np.ndarray]:
    from annotate.rle import decode_rle, normalize_rle, polygons_to_rle

    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"ground-truth file {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise ValueError(f"ground-truth file {path} is not a COCO file (needs images, annotations, categories)")
    index = {name: i + 1 for i, name in enumerate(store.classes)}
    category = {c["id"]: index.get(c["name"]) for c in data["categories"]}
    unknown = sorted(c["name"] for c in data["categories"] if c["name"] not in index)
    if unknown:
        logger.warning("%s: categories %s are not project classes and are ignored", path, unknown)
    by_name = {PurePath(r.file_name).name: r for r in records}
    coco_image = {im["id"]: by_name.get(PurePath(im["file_name"]).name) for im in data["images"]}
    masks = {r.id: np.zeros((r.height, r.width), np.int64) for r in coco_image.values() if r is not None}
    anns = sorted(data["annotations"], key=lambda a: -float(a.get("area", 0)))  # small objects painted last
    for ann in anns:
        record = coco_image.get(ann["image_id"])
        class_id = category.get(ann["category_id"])
        if record is None or "segmentation" not in ann:
            continue
        seg = ann["segmentation"]
        h, w = record.height, record.width
        rle = polygons_to_rle(seg, h, w) if isinstance(seg, list) else normalize_rle(seg, (h, w))
        region = decode_rle(rle).astype(bool)
        if ann.get("iscrowd", 0) or class_id is None:
            masks[record.id][region] = IGNORE_INDEX
        else:
            masks[record.id][region] = class_id
    return masks


def load_ground_truth(path: str | Path, store, image_ids: Sequence[int] | None = None) -> dict[int, np.ndarray]:
    """Ground-truth masks (H, W) int64 by image id, from a PNG folder or a COCO JSON file.

    Images without a ground-truth mask are left out (logged); a mask whose size differs from its image raises
    ``ValueError`` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ground truth not found: {path}")
    records = [store.image(i) for i in image_ids] if image_ids is not None else store.list_images()
    if path.is_dir():
        masks = {}
        for record in records:
            file = path / (PurePath(record.file_name).stem + ".png")
            if file.is_file():
                masks[record.id] = _png_mask(file)
    elif path.suffix.lower() == ".json":
        masks = _coco_masks(path, store, records)
    else:
        raise ValueError(f"ground truth {path} must be a folder of PNG masks or a COCO .json file")
    for record in records:
        mask = masks.get(record.id)
        if mask is not None and mask.shape != (record.height, record.width):
            raise ValueError(f"ground-truth mask for {record.file_name} in {path} is {mask.shape[1]}x{mask.shape[0]}, "
                             f"the image is {record.width}x{record.height}")
    missing = len(records) - len(masks)
    if missing:
        logger.info("%d of %d images have no ground truth in %s", missing, len(records), path)
    if not masks:
        raise ValueError(f"no ground-truth mask in {path} matches an image of the project")
    return masks


def evaluate_masks(predict: Callable[[int], np.ndarray | torch.Tensor], gt: dict[int, np.ndarray],
                   num_classes: int) -> dict[str, object]:
    """Scores of ``predict(image_id) -> (H, W)`` class ids against ``gt``; ``num_classes`` includes background."""
    from dhr.metrics import confusion_matrix, segmentation_scores

    confusion = torch.zeros((num_classes, num_classes + 1), dtype=torch.int64)
    for image_id, truth in gt.items():
        pred = torch.as_tensor(predict(image_id)).long().cpu()  # a numpy mask or a tensor on any device
        confusion += confusion_matrix(pred, torch.as_tensor(truth), num_classes)
    scores = segmentation_scores(confusion)
    scores["images"] = len(gt)
    return scores


def evaluate_labels(store, gt: dict[int, np.ndarray]) -> dict[str, object]:
    """Scores of the project's current labels (``store.semantic_mask``) against ``gt``."""
    return evaluate_masks(lambda i: store.semantic_mask(i), gt, len(store.classes) + 1)


def evaluate_model(model: nn.Module, store, gt: dict[int, np.ndarray], scales: Sequence[float] = (1.0,),
                   flip: bool = True, use_tags: bool = False) -> dict[str, object]:
    """Scores of the network's predictions (argmax; over the tagged classes only with ``use_tags``)."""
    index = {name: i + 1 for i, name in enumerate(store.classes)}

    def predict(image_id: int) -> torch.Tensor:
        probs = predict_image(model, store.load_image(image_id), scales, flip).probs
        if use_tags:
            return tag_restricted_mask(probs, [index[t] for t in store.image(image_id).tags])[0]
        return probs.argmax(0)

    return evaluate_masks(predict, gt, len(store.classes) + 1)


def format_scores(scores: dict[str, object], classes: Sequence[str]) -> str:
    """Markdown table of mIoU, mean FPR / FNR and the per-class IoU (background first)."""
    lines = ["| metric | value |", "|---|---|",
             f"| mIoU | {100 * scores['miou']:.2f} |",
             f"| mean FPR | {100 * scores['fpr']:.2f} |",
             f"| mean FNR | {100 * scores['fnr']:.2f} |",
             f"| images | {scores.get('images', '')} |"]
    for name, value in zip(["background", *classes], scores["iou"].tolist(), strict=True):
        lines.append(f"| IoU {name} | {'n/a' if np.isnan(value) else f'{100 * value:.2f}'} |")
    return "\n".join(lines)
