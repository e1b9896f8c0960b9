"""The one definition of an image's confidence, which orders the review queue (least confident first).

The bootstrap and the training rounds both store this value with the labels they write::

    confidence = mean over pixels of max_c heatmap_c            (how decisive DHR's balanced heatmaps are)
                 * (1 - 0.5 * flagged instances / instances)    (instances the segmenter and DHR disagree on)
                 * (1 - 0.5 * tagged classes without instance / tagged classes)

It rates the image's labels as a whole, in [0, 1]. A review edit updates it (:func:`edited_confidence`): the
heatmaps' part stays, the labels' part follows the edited instances. It is not a model's predicted quality of one mask: that is
an instance's ``score`` (SAM's IoU head, or the GrabCut stand-in's agreement with its prompt).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import torch

__all__ = ["LabelledInstance", "edited_confidence", "image_confidence", "label_factor"]


class LabelledInstance(Protocol):
    """What the confidence reads of an instance (``annotate.labeling.Instance``, ``annotate.store.NewInstance``)."""

    class_id: int
    needs_review: bool


def image_confidence(heatmaps: torch.Tensor, instances: Iterable[LabelledInstance], tags: Sequence[int]) -> float:
    """The review-queue confidence in [0, 1] (module docstring) of balanced ``heatmaps`` (C, H, W) in [0, 1],
    the image's ``instances`` and its tagged class ids."""
    certainty = float(heatmaps.max(0).values.float().mean()) if heatmaps.numel() else 0.0
    return float(min(1.0, max(0.0, certainty * label_factor(instances, tags))))


def label_factor(instances: Iterable[LabelledInstance], tags: Sequence[int]) -> float:
    """The part of the confidence the labels decide, in [0.25, 1]: flagged instances and tagged classes without
    an instance lower it (module docstring)."""
    instances = list(instances)
    flagged = sum(1 for inst in instances if inst.needs_review)
    found = {int(inst.class_id) for inst in instances}
    missing = sum(1 for t in tags if int(t) not in found)
    return (1 - 0.5 * flagged / max(1, len(instances))) * (1 - 0.5 * missing / max(1, len(tags)))


def edited_confidence(
    previous: float | None,
    before: Iterable[LabelledInstance],
    after: Iterable[LabelledInstance],
    tags: Sequence[int],
) -> float:
    """The confidence after an edit changed an image's instances from ``before`` to ``after``.

    The heatmaps' certainty is not stored, but the confidence is certainty x :func:`label_factor`, so it is
    recovered from ``previous`` and ``before`` and multiplied by the factor of ``after``: fixing a flagged
    instance or adding a missing class raises the confidence, deleting a tagged class's last instance lowers it.
    An image never rated (``previous`` None) counts as certain (a person drew its labels): its confidence is the
    factor of ``after``.
    """
    certainty = 1.0 if previous is None else float(previous) / label_factor(before, tags)
    return float(min(1.0, max(0.0, certainty * label_factor(after, tags))))
