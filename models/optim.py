"""The optimiser and learning-rate schedule every network here trains with: two parameter groups, poly decay.

Backbone parameters learn at ``lr``, the heads at ``lr * head_lr_mult``; the rate decays as
``(1 - step / total) ** power`` (the "poly" schedule of DeepLab).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["build_optimizer", "poly_lambda", "poly_scheduler"]


def poly_lambda(total_steps: int, power: float = 0.9) -> Callable[[int], float]:
    """Poly decay factor (1 - step / total) ** power as a function of the step (0 after ``total_steps``)."""

    def factor(step: int) -> float:
        return max(0.0, 1.0 - min(step, total_steps) / total_steps) ** power

    return factor


def build_optimizer(
    backbone: Iterable[nn.Parameter],
    heads: Iterable[nn.Parameter],
    *,
    kind: str = "sgd",
    lr: float,
    head_lr_mult: float = 10.0,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """SGD (with ``momentum``) or Adam over two groups: ``backbone`` at ``lr``, ``heads`` at ``lr * head_lr_mult``."""
    groups = [
        {"params": [p for p in backbone if p.requires_grad], "lr": lr},
        {"params": [p for p in heads if p.requires_grad], "lr": lr * head_lr_mult},
    ]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {kind!r}; choose 'sgd' or 'adam'")


def poly_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, power: float = 0.9):
    """A ``LambdaLR`` applying :func:`poly_lambda` to every group of ``optimizer``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lambda(max(1, total_steps), power))
