"""Segmentation metrics: confusion-matrix mIoU, per-class IoU, false-positive / false-negative ratios."""

from __future__ import annotations

import torch

from .labels import IGNORE_INDEX

__all__ = ["confusion_matrix", "segmentation_scores", "minor_class_recall"]


def confusion_matrix(pred: torch.Tensor, gt: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel confusion matrix, rows = ground truth, columns = prediction.

    Args:
        pred: (...) int class ids. Ids outside ``[0, num_classes)`` (e.g. an ignore label in a pseudo mask) are
            counted in an extra last column: a miss for the true class, a false positive for none.
        gt: (...) int class ids of the same shape; ``ignore_index`` pixels are skipped.

    Returns:
        (num_classes, num_classes + 1) int64 counts; add matrices to accumulate over a dataset.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    pred = torch.as_tensor(pred).reshape(-1).long()
    gt = torch.as_tensor(gt).reshape(-1).long().to(pred.device)
    keep = (gt != ignore_index) & (gt >= 0) & (gt < num_classes)
    pred, gt = pred[keep], gt[keep]
    pred = torch.where((pred >= 0) & (pred < num_classes), pred, torch.full_like(pred, num_classes))
    counts = torch.bincount(gt * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def segmentation_scores(confusion: torch.Tensor) -> dict[str, object]:
    """mIoU, per-class IoU and the mean false-positive / false-negative ratios, as the DHR paper reports them.

    For class ``c`` with union ``U = T + P - TP``: ``IoU = TP / U``, ``FPR = (P - TP) / U`` (over-activation),
    ``FNR = (T - TP) / U`` (under-activation). Classes with an empty union are NaN and left out of the means.

    Args:
        confusion: (N, N + 1) from :func:`confusion_matrix` (an (N, N) matrix is accepted too).

    Returns:
        dict with ``miou``, ``fpr``, ``fnr`` (floats in [0, 1]) and ``iou`` ((N,) float64 tensor).
    """
    confusion = confusion.double()
    n = confusion.shape[0]
    tp = confusion.diagonal()[:n]
    truth = confusion.sum(dim=1)
    predicted = confusion[:, :n].sum(dim=0)
    union = truth + predicted - tp
    nan = torch.full_like(union, float("nan"))
    valid = union > 0
    iou = torch.where(valid, tp / union.clamp(min=1), nan)
    fpr = torch.where(valid, (predicted - tp) / union.clamp(min=1), nan)
    fnr = torch.where(valid, (truth - tp) / union.clamp(min=1), nan)
    return {
        "miou": float(iou.nanmean()),
        "iou": iou,
        "fpr": float(fpr.nanmean()),
        "fnr": float(fnr.nanmean()),
    }


def minor_class_recall(
    pred: torch.Tensor, gt: torch.Tensor, num_classes: int, max_share: float = 0.05, ignore_index: int = IGNORE_INDEX
) -> float:
    """Recall of the pixels of minor classes: classes covering less than ``max_share`` of an image.

    Args:
        pred, gt: (B, H, W) or (H, W) int class ids; the share is measured per image, background (0) excluded.

    Returns:
        Pixel recall over all minor-class pixels in [0, 1]; NaN when no image has a minor class.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    gt = torch.as_tensor(gt).long()
    pred = torch.as_tensor(pred).long().to(gt.device)
    if gt.ndim == 2:
        gt, pred = gt[None], pred[None]
    hits = total = 0
    for g, p in zip(gt, pred, strict=True):
        valid = g != ignore_index
        counts = torch.bincount(g[valid], minlength=num_classes)[:num_classes]
        share = counts.double() / max(int(valid.sum()), 1)
        minor = torch.nonzero((share > 0) & (share < max_share)).flatten()
        minor = minor[minor != 0]
        if minor.numel() == 0:
            continue
        region = torch.isin(g, minor)
        hits += int((region & (p == g)).sum())
        total += int(region.sum())
    return hits / total if total else float("nan")
