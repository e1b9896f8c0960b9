"""Optimal-transport plans between pixels and classes.

DHR rebalances class maps by transporting a uniform mass over pixels onto a uniform mass over classes: a class
that covers few pixels still receives ``1 / C`` of the mass, so it is no longer drowned by a large neighbour.
Every plan is min-max normalised per class column, which removes the column scaling of the Sinkhorn solution:
what remains is the row scaling, i.e. how each pixel's mass is shared among the classes.

Three solvers, chosen by :class:`OTSettings`:

- ``"pot"``: POT's log-domain Sinkhorn (``ot.sinkhorn(method="sinkhorn_log")``), stopped after ``max_iter``
  iterations or when the class marginal error falls below ``stop_thr``;
- ``"reference"``: the DHR authors' exp-domain Sinkhorn, which starts from all-one scalings and stops when the
  mean change of the row scaling falls below ``stop_thr`` (their 1e-2) or after ``max_iter`` iterations;
- ``"none"``: no transport, a plan of ones (the maps are left as they are).

Non-convergence is not an error here: an early-stopped plan is a deliberate choice. With ``log=True`` every
function returns what the solver did (iterations, final error, converged), as POT does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .normalise import minmax

__all__ = ["SOLVERS", "OTSettings", "SinkhornLog", "transport_plan", "plan_maps", "ot_rebalance"]

SOLVERS = ("pot", "reference", "none")


@dataclass(frozen=True)
class OTSettings:
    """Solver knobs of every transport plan.

    Attributes:
        solver: ``"pot"``, ``"reference"`` or ``"none"`` (see the module docstring).
        eps: entropic regularisation (POT's ``reg``).
        max_iter: Sinkhorn iterations at most (POT's ``numItermax``).
        stop_thr: stopping threshold: the class marginal error (L2) for ``"pot"``, the mean change of the row
            scaling for ``"reference"``.
    """

    solver: str = "pot"
    eps: float = 0.2
    max_iter: int = 1
    stop_thr: float = 1e-4

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.eps <= 0:
            raise ValueError(f"eps must be positive, got {self.eps}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be at least 1, got {self.max_iter}")


@dataclass(frozen=True)
class SinkhornLog:
    """What one transport plan cost: iterations run, the last stopping error, whether it met ``stop_thr``."""

    iterations: int
    error: float
    converged: bool


def transport_plan(
    similarity: torch.Tensor,
    settings: OTSettings | None = None,
    log: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, SinkhornLog]:
    """Entropic OT plan from N pixels to C classes, each class column min-max normalised.

    Args:
        similarity: (N, C) float similarity of every pixel to every class, expected in [-1, 1]
            (CAM scores or cosine similarities). The cost is the cosine distance ``1 - similarity``.
        settings: solver and its knobs; :class:`OTSettings` defaults when omitted.
        log: also return a :class:`SinkhornLog`.

    Returns:
        (N, C) plan on the input's device and dtype, each column min-max normalised to [0, 1] (all ones for a
        single class or the ``"none"`` solver), and its log when ``log`` is set.
    """
    settings = settings or OTSettings()
    if similarity.ndim != 2:
        raise ValueError(f"similarity must be (N, C), got shape {tuple(similarity.shape)}")
    n, c = similarity.shape
    if n == 0 or c == 0:
        raise ValueError(f"similarity must have at least one pixel and one class, got shape {(n, c)}")
    if not torch.isfinite(similarity).all():
        raise ValueError("similarity contains NaN or infinite values")
    if c == 1 or settings.solver == "none":
        plan, info = torch.ones_like(similarity), SinkhornLog(0, 0.0, True)
    elif settings.solver == "pot":
        plan, info = _pot_plan(similarity, settings)
    else:
        plan, info = _reference_plan(similarity, settings)
    plan = minmax(plan, dim=0).to(similarity.dtype) if c > 1 and settings.solver != "none" else plan
    return (plan, info) if log else plan


def _pot_plan(similarity: torch.Tensor, settings: OTSettings) -> tuple[torch.Tensor, SinkhornLog]:
    """POT's log-domain Sinkhorn in float64 (the log-sum-exp over 1/eps-scaled costs needs the headroom)."""
    import ot

    work = similarity.double()
    n, c = work.shape
    a = torch.full((n,), 1.0 / n, dtype=work.dtype, device=work.device)
    b = torch.full((c,), 1.0 / c, dtype=work.dtype, device=work.device)
    plan, info = ot.sinkhorn(
        a, b, 1.0 - work, settings.eps, method="sinkhorn_log", numItermax=settings.max_iter,
        stopThr=settings.stop_thr, warn=False, log=True,
    )
    error = float(info["err"][-1]) if len(info["err"]) else float("inf")
    iterations = int(info["niter"]) + 1
    return plan, SinkhornLog(iterations, error, error < settings.stop_thr)


def _reference_plan(similarity: torch.Tensor, settings: OTSettings) -> tuple[torch.Tensor, SinkhornLog]:
    """The DHR authors' solver: exp-domain Sinkhorn from all-one scalings, stopped on the row-scaling change.

    ``r`` is about ``1 / N`` once updated, so a threshold of 1e-2 on its mean change stops after a few
    iterations, long before the marginals hold; the column min-max that follows makes the early plan a
    per-pixel sharing of mass among the classes.
    """
    n, c = similarity.shape
    kernel = torch.exp(-(1.0 - similarity) / settings.eps)  # (N, C), in [exp(-2 / eps), 1]
    u = torch.full((n,), 1.0 / n, dtype=similarity.dtype, device=similarity.device)
    v = torch.full((c,), 1.0 / c, dtype=similarity.dtype, device=similarity.device)
    r = torch.ones_like(u)
    col = torch.ones_like(v)
    error, iterations = float("inf"), 0
    while iterations < settings.max_iter:
        iterations += 1
        previous = r
        r = u / (kernel @ col)
        col = v / (kernel.T @ r)
        error = float((r - previous).abs().mean())
        if error < settings.stop_thr:
            break
    plan = r[:, None] * kernel * col[None, :]
    return plan, SinkhornLog(iterations, error, error < settings.stop_thr)


def plan_maps(
    maps: torch.Tensor, settings: OTSettings | None = None, log: bool = False
) -> torch.Tensor | tuple[torch.Tensor, SinkhornLog]:
    """Transport plan of class maps, laid out like the maps.

    Args:
        maps: (C, h, w) float class maps (CAMs or heatmaps) in [0, 1], used as the pixel-class similarity.

    Returns:
        (C, h, w) plan, each class map min-max normalised to [0, 1]; all ones for a single class. With
        ``log`` the :class:`SinkhornLog` too.
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (C, h, w), got shape {tuple(maps.shape)}")
    c, h, w = maps.shape
    plan, info = transport_plan(maps.reshape(c, h * w).T, settings, log=True)
    plan = plan.T.reshape(c, h, w)
    return (plan, info) if log else plan


def ot_rebalance(
    maps: torch.Tensor, settings: OTSettings | None = None, log: bool = False
) -> torch.Tensor | tuple[torch.Tensor, SinkhornLog]:
    """Rebalance class maps by their own transport plan: (C, h, w) -> ``maps * plan`` (C, h, w)."""
    plan, info = plan_maps(maps, settings, log=True)
    return (maps * plan, info) if log else maps * plan
