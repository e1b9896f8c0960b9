"""The seeds a training round relabels an image from: the network's prediction, with DHR as its helper.

The network was trained with DHR in its step, so its prediction already carries the rebalancing; the choices
(``RoundsConfig.relabel``):

- ``"prediction"``: the tag-restricted argmax of the prediction and its class probabilities, as they are;
- ``"restore"`` (default): the prediction, plus every tagged class it lacks that DHR's stage 1 restores from
  the network's CAMs and that looks unlike the classes around it. A restored class whose USS prototype
  correlates above ``tau`` with a class the prediction holds (DHR puts both in one stage-3 group) is left out:
  it looks like that class, which the network, trained to tell them apart, chose there;
- ``"dhr"``: DHR's balanced mask and heatmaps of the prediction, all classes rebalanced again.

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

__all__ = ["RELABEL_SEEDS", "prediction_seeds", "restore_distinct"]

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


def restore_distinct(base: torch.Tensor, probs: torch.Tensor, tags: Sequence[int], balanced) -> Seeds:
    """The prediction plus the tagged classes ``balanced`` restored that share no group with another class.

    base: (H, W) int64 tag-restricted argmax of ``probs``; probs: (N + 1, H, W) class probabilities;
    tags: tagged class ids; balanced: the ``dhr.DHRResult`` of ``base`` (heatmaps at the size of ``base``).
    Returns :class:`annotate.labeling.Seeds` whose heatmap rows follow ``[0, *tags]``: the probabilities, and
    for each restored class its DHR heatmap, its pixels in the mask those DHR gave it.
    """
    seeds = prediction_seeds(base, probs, tags)
    rows, mask, heatmaps = seeds.classes, base.clone(), seeds.heatmaps  # probs[rows] is already a copy
    grouped = {c for group in balanced.groups if len(group) > 1 for c in group}
    for class_id in balanced.restored:
        if class_id in grouped:
            continue
        mask[balanced.mask == class_id] = class_id
        heatmaps[rows.index(class_id)] = balanced.heatmaps[list(balanced.classes).index(class_id)].to(heatmaps)
    return Seeds(mask, heatmaps, rows)
