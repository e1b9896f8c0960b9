"""Optimal-transport plans between pixels and classes (POT's log-domain Sinkhorn).

DHR rebalances class maps by transporting a uniform mass over pixels onto a uniform mass over classes: a class
that covers few pixels still receives ``1 / C`` of the mass, so it is no longer drowned by a large neighbour.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["SinkhornWarning", "transport_plan", "plan_maps", "ot_rebalance"]


class SinkhornWarning(UserWarning):
    """The Sinkhorn solver stopped at ``max_iter`` before its marginals met ``stop_thr``."""

_MIN_RANGE = 1e-5


def minmax_columns(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each column of ``x`` (N, C) to [0, 1]; a constant column becomes 0."""
    low = x.amin(dim=0, keepdim=True)
    high = x.amax(dim=0, keepdim=True)
    return (x - low) / (high - low).clamp(min=_MIN_RANGE)


def transport_plan(
    similarity: torch.Tensor,
    eps: float = 0.1,
    max_iter: int = 100,
    stop_thr: float = 1e-4,
) -> torch.Tensor:
    """Entropic OT plan from N pixels to C classes, each class column min-max normalised.

    Args:
        similarity: (N, C) float similarity of every pixel to every class, expected in [-1, 1]
            (CAM scores or cosine similarities). The cost is the cosine distance ``1 - similarity``.
        eps: entropic regularisation (POT's ``reg``). Small values are safe: the solver works in log domain.
        max_iter: Sinkhorn iterations at most (POT's ``numItermax``).
        stop_thr: stop when the class marginal is violated by less than this (L2 norm, POT's ``stopThr``;
            the marginal itself is ``1 / C`` per class).

    Returns:
        (N, C) plan on the input's device and dtype, each column min-max normalised to [0, 1]. With a single
        class the plan is all ones (there is nothing to rebalance).
    """
    import ot

    if similarity.ndim != 2:
        raise ValueError(f"similarity must be (N, C), got shape {tuple(similarity.shape)}")
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    n, c = similarity.shape
    if n == 0 or c == 0:
        raise ValueError(f"similarity must have at least one pixel and one class, got shape {(n, c)}")
    if not torch.isfinite(similarity).all():
        raise ValueError("similarity contains NaN or infinite values")
    if c == 1:
        return torch.ones_like(similarity)
    work = similarity.double()  # the log-sum-exp over 1/eps-scaled costs needs the headroom
    a = torch.full((n,), 1.0 / n, dtype=work.dtype, device=work.device)
    b = torch.full((c,), 1.0 / c, dtype=work.dtype, device=work.device)
    plan, log = ot.sinkhorn(
        a, b, 1.0 - work, eps, method="sinkhorn_log", numItermax=max_iter, stopThr=stop_thr, warn=False, log=True
    )
    error = float(log["err"][-1])  # checked every 10th iteration; below stop_thr only when it stopped early
    if error >= stop_thr:
        warnings.warn(
            f"Sinkhorn stopped after {max_iter} iterations with marginal error {error:.2e} "
            f"(threshold {stop_thr:.0e}); raise max_iter or eps for a converged plan",
            SinkhornWarning,
            stacklevel=2,
        )
    return minmax_columns(plan).to(similarity.dtype)


def plan_maps(maps: torch.Tensor, eps: float = 0.1, max_iter: int = 100, stop_thr: float = 1e-4) -> torch.Tensor:
    """Transport plan of class maps, laid out like the maps.

    Args:
        maps: (C, h, w) float class maps (CAMs or heatmaps) in [0, 1], used as the pixel-class similarity.

    Returns:
        (C, h, w) plan, each class map min-max normalised to [0, 1]; all ones for a single class.
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (C, h, w), got shape {tuple(maps.shape)}")
    c, h, w = maps.shape
    plan = transport_plan(maps.reshape(c, h * w).T, eps=eps, max_iter=max_iter, stop_thr=stop_thr)
    return plan.T.reshape(c, h, w)


def ot_rebalance(maps: torch.Tensor, eps: float = 0.1, max_iter: int = 100, stop_thr: float = 1e-4) -> torch.Tensor:
    """Rebalance class maps by their own transport plan: (C, h, w) -> ``maps * plan`` (C, h, w)."""
    return maps * plan_maps(maps, eps=eps, max_iter=max_iter, stop_thr=stop_thr)
