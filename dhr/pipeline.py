"""DHR: dual features-driven hierarchical rebalancing of a weakly-supervised mask (Jo et al., ECCV 2024).

Stage 1 restores vanished classes from OT-rebalanced CAMs; stage 2 separates inter-class regions with
unsupervised (USS) features; stage 3 separates correlated classes with the classifier's (WSS) features; a final
transport over all classes, an optional dense CRF and an argmax give the balanced mask.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .crf import CRFConfig, dense_crf
from .heatmaps import class_correlation, correlated_groups, cosine_heatmaps
from .labels import BACKGROUND, IGNORE_INDEX
from .normalise import minmax_maps
from .ot import OTSettings, SinkhornLog, ot_rebalance, plan_maps
from .prototypes import cell_shares, prototypes_from_shares
from .seeds import cam_scores, initialise_seeds

__all__ = ["IGNORE_INDEX", "BACKGROUND", "DHRConfig", "DHRResult", "rebalance"]



@dataclass(frozen=True)
class DHRConfig:
    """Settings of :func:`rebalance`; the defaults are the paper's.

    Attributes:
        tau: USS prototype correlation above which classes are separated with WSS features (stage 3).
        solver: transport solver of every plan: ``"pot"`` (POT's log-domain Sinkhorn), ``"reference"`` (the
            DHR authors' exp-domain solver and stopping rule) or ``"none"`` (no transport); see :mod:`dhr.ot`.
        eps: entropic regularisation of every transport plan.
        max_iter: Sinkhorn iterations at most. The default stops the plan early on purpose: after the
            per-class min-max an early plan shares each pixel's mass among the classes, which restores minor
            classes more often than a converged plan (``bench/validate_dhr.py`` chose it on its validation split).
        stop_thr: Sinkhorn stopping threshold (class marginal error for ``"pot"``, row-scaling change for
            ``"reference"``).
        seed_threshold: stage-1 score a class must exceed to replace a mask pixel (0.5 = argmax against the
            background score ``1 - max``).
        ot_seeds: rebalance the CAMs with OT in stage 1 (only when more than one class is tagged).
        crf: refine the final heatmaps with a dense CRF on the image (needs ``image``).
        num_classes: when set, class ids must lie in ``[0, num_classes)``.
    """

    tau: float = 0.8
    solver: str = "pot"
    eps: float = 0.2
    max_iter: int = 1
    stop_thr: float = 1e-4
    seed_threshold: float = 0.5
    ot_seeds: bool = True
    crf: bool = False
    crf_config: CRFConfig = field(default_factory=CRFConfig)
    num_classes: int | None = None
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        self.ot  # noqa: B018 -- OTSettings validates the solver knobs

    @property
    def ot(self) -> OTSettings:
        """The solver settings shared by every transport plan."""
        return OTSettings(self.solver, self.eps, self.max_iter, self.stop_thr)


@dataclass
class DHRResult:
    """Output of :func:`rebalance`.

    Attributes:
        mask: (H, W) int64 balanced mask of class ids (background 0).
        seed_mask: (H, W) int64 mask after stage 1.
        heatmaps: (C, H, W) float balanced heatmaps in [0, 1]; row ``i`` belongs to ``classes[i]``.
        classes: class ids of the heatmap rows (0 included when background is present).
        groups: class ids of each group separated with WSS features in stage 3.
        restored: tagged classes absent from the input mask that stage 1 brought back.
        sinkhorn: one :class:`~dhr.ot.SinkhornLog` per transport plan solved, in order (stage 1, stage-3
            groups, final); ``unconverged`` counts those that stopped before ``stop_thr``.
    """

    mask: torch.Tensor
    seed_mask: torch.Tensor
    heatmaps: torch.Tensor
    classes: list[int]
    groups: list[list[int]]
    restored: list[int]
    sinkhorn: list[SinkhornLog] = field(default_factory=list)

    @property
    def unconverged(self) -> int:
        """Transport plans that stopped at ``max_iter`` before meeting ``stop_thr``."""
        return sum(not log.converged for log in self.sinkhorn)


def rebalance(
    cams: torch.Tensor,
    mask: torch.Tensor,
    tags: Sequence[int],
    uss_features: torch.Tensor,
    wss_features: torch.Tensor | Sequence[torch.Tensor],
    image: np.ndarray | None = None,
    config: DHRConfig | None = None,
) -> DHRResult:
    """Rebalance a weakly-supervised mask so that minor classes survive next to major ones.

    Args:
        cams: (K, h, w) float CAMs of the tagged classes, in the order of ``tags``, any resolution.
        mask: (H, W) int64 base mask of class ids, ``config.ignore_index`` (255) = ignore.
        tags: K distinct class ids >= 1 of the tagged classes.
        uss_features: (Du, hu, wu) float unsupervised features at any stride.
        wss_features: (Dw, hw, ww) float classifier features, or a sequence of them (e.g. C4 and C5),
            averaged as heatmaps in stage 3.
        image: (H, W, 3) uint8 RGB image; required when ``config.crf`` is set.
        config: settings; :class:`DHRConfig` defaults when omitted.

    Returns:
        :class:`DHRResult` on the device of ``cams``. With no tags the mask is all background and the input
        mask's ignore pixels stay ignored.
    """
    config = config or DHRConfig()
    wss_list = [wss_features] if isinstance(wss_features, torch.Tensor) else list(wss_features)
    _validate(cams, mask, tags, uss_features, wss_list, image, config)
    device = cams.device
    ignore = config.ignore_index
    mask = mask.to(device).long()
    size = (mask.shape[0], mask.shape[1])

    if len(tags) == 0:
        background = torch.where(mask == ignore, mask, torch.zeros_like(mask))
        heatmaps = torch.ones((1, *size), device=device)
        return DHRResult(background, background.clone(), heatmaps, [BACKGROUND], [], [])

    tag_ids = torch.tensor(list(tags), dtype=torch.long, device=device)
    untagged = (mask != ignore) & (mask != BACKGROUND) & ~torch.isin(mask, tag_ids)
    if untagged.any():
        found = sorted(set(mask[untagged].unique().tolist()))
        warnings.warn(f"mask holds untagged classes {found}; their pixels are treated as ignore", stacklevel=2)
        mask = torch.where(untagged, torch.full_like(mask, ignore), mask)

    # Stage 1: OT-based seed initialisation.
    settings = config.ot
    logs: list[SinkhornLog] = []
    scores = cam_scores(cams.float(), size, rebalance=config.ot_seeds, settings=settings, logs=logs)
    seed_mask = initialise_seeds(mask, scores, tag_ids, threshold=config.seed_threshold)
    before = set(_class_ids(mask, ignore))
    present = _class_ids(seed_mask, ignore)
    restored = [t for t in tags if t not in before and t in present]
    if not present:  # nothing but ignore: no prototype can be formed
        return DHRResult(seed_mask.clone(), seed_mask, torch.zeros((0, *size), device=device), [], [], restored, logs)

    # Stage 2: USS inter-class rebalancing on compact class indices.
    lookup = torch.full((max(ignore, *present) + 1,), ignore, dtype=torch.long, device=device)
    lookup[torch.tensor(present, device=device)] = torch.arange(len(present), device=device)
    compact = lookup[seed_mask]
    uss = uss_features.to(device).float()
    grid = (uss.shape[1], uss.shape[2])
    shares = cell_shares(compact, grid, len(present), ignore)
    uss_prototypes, _ = prototypes_from_shares(uss, shares)
    heatmaps = cosine_heatmaps(uss, uss_prototypes)
    group_rows = correlated_groups(class_correlation(uss_prototypes), config.tau)

    # Stage 3: WSS intra-class rebalancing of every correlated group.
    if group_rows:
        wss_heatmaps = minmax_maps(torch.stack(
            [_wss_heatmaps(f.to(device).float(), compact, len(present), ignore, grid) for f in wss_list]).mean(0))
        for rows in group_rows:
            plan, info = plan_maps(wss_heatmaps[rows], settings, log=True)
            logs.append(info)
            heatmaps[rows] = heatmaps[rows] * plan
    heatmaps, info = ot_rebalance(heatmaps, settings, log=True)
    logs.append(info)
    heatmaps = minmax_maps(heatmaps)
    heatmaps = F.interpolate(heatmaps[None], size=size, mode="bilinear", align_corners=False)[0].clamp(0.0, 1.0)
    if config.crf:
        heatmaps = dense_crf(image, heatmaps, config.crf_config)

    classes = torch.tensor(present, device=device)
    balanced = classes[heatmaps.max(dim=0).indices]  # max(dim=0) is several times faster than argmax(dim=0)
    groups = [[present[r] for r in rows] for rows in group_rows]
    return DHRResult(balanced, seed_mask, heatmaps, present, groups, restored, logs)


def _class_ids(mask: torch.Tensor, ignore_index: int) -> list[int]:
    """Sorted class ids present in an (H, W) mask, ``ignore_index`` left out (bincount: faster than unique)."""
    counts = torch.bincount(mask.reshape(-1), minlength=ignore_index + 1)
    counts[ignore_index] = 0
    return torch.nonzero(counts).flatten().tolist()


def _all_finite(tensor: torch.Tensor) -> bool:
    """True when no element is NaN or infinite; the sum settles the common case without a full pass."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def _wss_heatmaps(features: torch.Tensor, compact: torch.Tensor, num: int, ignore: int,
                  grid: tuple[int, int]) -> torch.Tensor:
    """Cosine heatmaps (C, hu, wu) of one WSS layer (D, hw, ww) on the USS grid.

    Prototypes and heatmaps are computed on the layer's own grid (votes of the seed mask ``compact`` there) and
    only the C heatmaps are resized: resizing the thousands of feature channels instead cost most of the time.
    """
    prototypes, _ = prototypes_from_shares(features, cell_shares(compact, tuple(features.shape[1:]), num, ignore))
    heatmaps = cosine_heatmaps(features, prototypes)
    if tuple(heatmaps.shape[1:]) != grid:
        heatmaps = F.interpolate(heatmaps[None], size=grid, mode="bilinear", align_corners=False)[0]
    return heatmaps


def _validate(
    cams: torch.Tensor,
    mask: torch.Tensor,
    tags: Sequence[int],
    uss: torch.Tensor,
    wss: list[torch.Tensor],
    image: np.ndarray | None,
    config: DHRConfig,
) -> None:
    """Raise ``ValueError`` naming the first problem with the inputs of :func:`rebalance`."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
    if mask.dtype.is_floating_point or mask.dtype == torch.bool:
        raise ValueError(f"mask must hold integer class ids, got dtype {mask.dtype}")
    tags = list(tags)
    if any(not isinstance(t, (int, np.integer)) for t in tags):
        raise ValueError(f"tags must be integer class ids, got {tags}")
    if len(set(tags)) != len(tags):
        raise ValueError(f"tags must be distinct, got {tags}")
    limit = config.num_classes if config.num_classes is not None else config.ignore_index
    bad = [t for t in tags if not BACKGROUND < t < limit]
    if bad:
        raise ValueError(f"tag class ids must lie in [1, {limit}); got {bad}")
    outside = ((mask < 0) | (mask >= limit)) & (mask != config.ignore_index)
    if outside.any():
        raise ValueError(
            f"mask class ids must lie in [0, {limit}) or be {config.ignore_index}; got {mask[outside].unique().tolist()}"
        )
    if cams.ndim != 3 or cams.shape[0] != len(tags):
        raise ValueError(f"cams must be (K, h, w) with K = {len(tags)} tags, got shape {tuple(cams.shape)}")
    if not tags:
        return
    named = [("cams", cams), ("uss_features", uss)] + [(f"wss_features[{i}]", f) for i, f in enumerate(wss)]
    for name, tensor in named[1:]:
        if tensor.ndim != 3:
            raise ValueError(f"{name} must be (D, h, w), got shape {tuple(tensor.shape)}")
    if not wss:
        raise ValueError("wss_features must hold at least one (D, h, w) feature map")
    for name, tensor in named:
        if not _all_finite(tensor):
            raise ValueError(f"{name} contains NaN or infinite values")
    if config.crf:
        if image is None:
            raise ValueError("config.crf needs the image: pass image=(H, W, 3) uint8")
        if image.shape != (*mask.shape, 3) or image.dtype != np.uint8:
            raise ValueError(f"image must be {(*mask.shape, 3)} uint8 to match the mask, got {image.shape} {image.dtype}")
