"""The seeds a training round relabels an image from: the network's prediction, with DHR as its helper.

The network was trained with DHR in its step, so its prediction already carries the rebalancing; the choices
(``RoundsConfig.relabel``):

- ``"prediction"``: the tag-restricted argmax of the prediction and its class probabilities, as they are;
- ``"restore"`` (default): the prediction, plus every tagged class it lacks that DHR's stage 1 restores from
  the network's CAMs and that looks unlike the classes around it. A restored class whose USS prototype
  correlates above ``tau`` with a class the prediction holds (DHR puts both in one stage-3 group) is left out:
  it looks like that class, which the network, trained to tell them apart, chose there;
- ``"dhr"``: DHR's balanced mask and heatmaps of the prediction, all classes rebalanced again.

Before DHR, three rules keep what the labels already hold (``RoundsConfig.min_confidence``, ``max_area_ratio``
and ``keep_tags``): pixels the network is unsure of keep their current labels (:func:`unsure_to_previous`), no
class the labels hold grows or shrinks by more than a factor in one round (:func:`bounded_change`), and a tagged
class the labels hold but the prediction lacks keeps its current region (:func:`carry_lost_tags`).

Why: on the generated benchmarks (``bench/bench_pipeline.py``, ``bench/bench_rounds.py``; README) a second
full DHR pass let the weight-free colour features paint look-alike regions as a class and, where the CAM of a
small class points at its neighbour, put that class on the neighbour; the prediction alone never brings back
a class the start labels had swallowed. Restoring only classes that look distinct keeps the first and avoids
the second.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from annotate.labeling import Seeds

__all__ = ["RELABEL_SEEDS", "bounded_change", "carry_lost_tags", "lacks_a_tag", "prediction_seeds",
           "restore_distinct", "unsure_to_previous"]

RELABEL_SEEDS = ("prediction", "restore", "dhr")


def prediction_seeds(base: torch.Tensor, probs: torch.Tensor, tags: Sequence[int]) -> Seeds:
    """The prediction as it is: base (H, W) int64 tag-restricted argmax of probs (N + 1, H, W); heatmap rows
    follow ``[0, *tags]``."""
    rows = [0, *tags]
    return Seeds(base, probs[rows], rows)


def lacks_a_tag(base: torch.Tensor, tags: Sequence[int]) -> bool:
    """Whether the prediction ``base`` (H, W) misses a tagged class: only then can DHR's stage 1 restore one
    (without, ``restore`` gives :func:`prediction_seeds`)."""
    return any(not bool((base == t).any()) for t in tags)


def restore_distinct(seeds: Seeds, balanced) -> Seeds:
    """``seeds`` plus the tagged classes ``balanced`` restored that they lack and that share no group with
    another class.

    seeds: the prediction's seeds, heatmap rows following ``[0, *tags]`` (:func:`prediction_seeds`, maybe with
    :func:`carry_lost_tags`); balanced: the ``dhr.DHRResult`` of ``seeds.mask`` (heatmaps at its size).
    Each restored class gets the pixels DHR gave it and its DHR heatmap row.
    """
    rows, mask, heatmaps = list(seeds.classes), seeds.mask.clone(), seeds.heatmaps.clone()
    grouped = {c for group in balanced.groups if len(group) > 1 for c in group}
    for class_id in balanced.restored:
        if class_id in grouped or bool((seeds.mask == class_id).any()):
            continue
        mask[balanced.mask == class_id] = class_id
        heatmaps[rows.index(class_id)] = balanced.heatmaps[list(balanced.classes).index(class_id)].to(heatmaps)
    return Seeds(mask, heatmaps, seeds.classes)


def carry_lost_tags(seeds: Seeds, previous: torch.Tensor, tags: Sequence[int]) -> Seeds:
    """``seeds`` with every tagged class they lack but the image's current labels hold carried over.

    seeds: heatmap rows following ``[0, *tags]`` (:func:`prediction_seeds`); previous: (H, W) int64 the
    image's labels before the round. A carried class gets its previous pixels in the mask and, in its heatmap
    row, 1 there (the labels are as sure of it as of a restored class). The image's tags say the class is
    there, so a round never drops one its labels had: without this, a class the network predicts nowhere
    (a small one, after a round that shrank it) is lost for good unless DHR restores it, which it does not for
    a class that looks like a neighbour.
    """
    lost = [t for t in tags if not bool((seeds.mask == t).any()) and bool((previous == t).any())]
    if not lost:
        return seeds
    mask, heatmaps = seeds.mask.clone(), seeds.heatmaps.clone()
    rows = list(seeds.classes)
    for class_id in lost:
        region = previous.to(mask.device) == class_id
        mask[region] = class_id
        heatmaps[rows.index(class_id)][region] = 1.0
    return Seeds(mask, heatmaps, seeds.classes)


def unsure_to_previous(seeds: Seeds, confidence: torch.Tensor, previous: torch.Tensor, min_confidence: float) -> Seeds:
    """``seeds`` whose pixels the network is unsure of take the image's current labels instead.

    confidence: (H, W) the network's probability of the predicted class, over background and the tags (the
    peak of :func:`training.evaluate.tag_restricted_probs`); previous: (H, W) int64 labels before the round. A
    pixel keeps the seeds' class where ``confidence`` is at least ``min_confidence``; elsewhere it takes
    ``previous``. Self-training keeps only confident pseudo-labels; here the unsure pixels keep what the labels
    said, so a round corrects labels where the network is sure and does not paint a look-alike region (an orange
    suit next to a red ball) with a class it half believes.
    """
    if min_confidence <= 0.0:
        return seeds
    mask = torch.where(confidence >= min_confidence, seeds.mask, previous.to(seeds.mask))
    return Seeds(mask, seeds.heatmaps, seeds.classes)


def bounded_change(seeds: Seeds, previous: torch.Tensor, tags: Sequence[int], max_ratio: float) -> Seeds:
    """``seeds`` in which no tagged class the labels hold grows or shrinks by more than ``max_ratio`` in area.

    previous: (H, W) int64 the image's labels before the round. A class whose seed region is more than
    ``max_ratio`` times its previous area gives the pixels it gained back to their previous labels; then a class
    left with less than ``1 / max_ratio`` of its previous area takes back the pixels it lost. Classes the labels
    did not hold (restored ones) are not bounded; ``max_ratio`` 0 turns the bound off. A network trained from
    scratch on tens of images learns colour as much as shape: sure of itself, it painted a red plate next to the
    red ball as ball (5 times the ball's area), and gave most of a small tag to the box beside it. A round moves
    the labels by a bounded step, and the next round, from a better network, can take the next one.
    """
    if max_ratio <= 0.0:
        return seeds
    previous = previous.to(seeds.mask)
    mask = seeds.mask.clone()
    areas = {int(t): int((previous == t).sum()) for t in tags}
    held = {class_id: before for class_id, before in areas.items() if before}
    for class_id, before in held.items():
        if int((mask == class_id).sum()) > max_ratio * before:
            gained = (mask == class_id) & (previous != class_id)
            mask[gained] = previous[gained]
    for class_id, before in held.items():
        if int((mask == class_id).sum()) * max_ratio < before:
            mask[(previous == class_id) & (mask != class_id)] = class_id
    return Seeds(mask, seeds.heatmaps, seeds.classes)
