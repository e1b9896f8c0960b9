"""From a balanced DHR mask to labelled instances: prompt a segmenter, choose, gate, merge.

``label_image(image, seeds, tags, segmenter)`` uses only ``seeds.mask`` ((H, W) int class ids, 255 = ignore),
``seeds.heatmaps`` ((C, H, W) float in [0, 1]) and ``seeds.classes`` (class id of each heatmap row): a
``dhr.DHRResult`` (the balanced mask and heatmaps) or :class:`Seeds` (for example a segmentation network's
prediction and class probabilities). With ``evidence`` (e.g. the classifier's CAMs), components of the balanced mask that hold
no evidence of at least ``min_evidence`` are dropped first (``annotate.prompts.drop_unsupported_components``):
regions the USS features made look like a class without the classifier ever seeing it there; with
``seed_evidence`` above 0 so are the seed pixels whose own class's evidence is below it (the bootstrap's
from-scratch profile trims DHR's seeds to where the CAM is at least half its peak). For each prompt
set (``annotate.prompts``) the segmenter returns candidate masks:

- **choose**: each candidate is rated ``seed_weight * IoU(candidate, seed component) + (1 - seed_weight) *
  predicted quality``; the best rating wins and becomes the instance's score;
- **gate**: if the winner agrees with its seed component less than ``min_seed_iou``, the seed component is
  kept instead (source "dhr") and the instance is flagged for review with the reason; a kept segmenter mask
  whose predicted quality is below ``review_quality`` is flagged too. The agreement (``gate``) is the IoU
  (``"iou"``), or (``"inside"``) the share of the mask that lies inside the seed, when the mask keeps at least
  ``min_seed_cover`` of the seed: a segmenter that tightens an over-grown seed to its object passes, one that
  leaks out of it or collapses does not;
- **merge** (``merge_instances``): where instances overlap, each pixel goes to the instance whose class has
  the highest DHR heatmap value there (ties: higher score); instance masks become disjoint, the semantic mask
  is painted from them. A tagged class present in the balanced mask is never dropped: if the overlaps took
  all its pixels, it gets back the pixels of its own seed region (flagged), and a class whose components
  were all below the prompt's ``min_area`` becomes one "dhr" instance from its seed pixels (flagged).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from annotate.prompts import InstancePrompt, PromptConfig, drop_unsupported_components, prompts_from_mask
from models.segmenters.base import Segmenter, mask_iou

GATES = {"iou": "IoU", "inside": "share inside"}  # gate rule -> its name in review reasons


def seed_agreement(mask: np.ndarray, seed: np.ndarray, gate: str = "iou", min_cover: float = 0.2) -> float:
    """Agreement in [0, 1] of a segmenter mask (H, W) bool with its seed component (H, W) bool.

    "iou": their IoU. "inside": the share of the mask inside the seed, 0 when the mask keeps less than
    ``min_cover`` of the seed's pixels.
    """
    if gate == "iou":
        return mask_iou(mask, seed)
    if gate != "inside":
        raise ValueError(f"gate must be one of {sorted(GATES)}, got {gate!r}")
    overlap = float(np.logical_and(mask, seed).sum())
    if overlap < min_cover * float(seed.sum()) or overlap == 0:
        return 0.0
    return overlap / float(mask.sum())


@dataclass
class Seeds:
    """Seeds to label without DHR: mask (H, W) int class ids; heatmaps (C, H, W) float in [0, 1] whose row
    ``i`` scores class ``classes[i]`` (they settle overlaps between instances)."""

    mask: np.ndarray | torch.Tensor
    heatmaps: np.ndarray | torch.Tensor
    classes: Sequence[int]


@dataclass
class LabelingConfig:
    """Knobs of ``label_image`` (see the module docstring)."""

    prompts: PromptConfig = field(default_factory=PromptConfig)
    use_box: bool = True
    use_points: bool = True
    use_mask_prompt: bool = True
    multimask: bool = True
    seed_weight: float = 0.7  # weight of the seed IoU against the segmenter's predicted quality
    gate: str = "inside"  # agreement with the seed: "inside" or "iou" (see the module docstring)
    min_seed_iou: float = 0.5  # below this agreement, the seed is kept and the instance flagged
    min_seed_cover: float = 0.2  # "inside": the mask must keep at least this share of the seed
    review_quality: float = 0.5  # a kept mask with predicted quality below it is flagged
    min_evidence: float = 0.5  # with evidence maps: components whose peak evidence is below this are dropped
    seed_evidence: float = 0.0  # with evidence maps: seed pixels whose own class's evidence is below this too

    def __post_init__(self) -> None:
        for name in ("seed_weight", "min_seed_iou", "min_seed_cover", "review_quality", "min_evidence",
                     "seed_evidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.gate not in GATES:
            raise ValueError(f"gate must be one of {sorted(GATES)}, got {self.gate!r}")


@dataclass
class Instance:
    """One labelled object: mask (H, W) bool; score in [0, 1]; source "sam" | "grabcut" | "dhr".

    ``score`` is the labelling's rating (seed agreement blended with the segmenter's quality, :func:`choose_mask`);
    ``predicted_iou`` the segmenter's own predicted IoU of the kept mask (None when the seed was kept instead).
    ``seed_iou`` is the IoU of the segmenter's best mask with the DHR seed component, whether that mask was
    kept or (below the gate) replaced by the seed; 1.0 for instances made from seed pixels alone.
    """

    class_id: int
    mask: np.ndarray
    score: float
    source: str
    needs_review: bool = False
    reason: str = ""
    seed_iou: float = 1.0
    predicted_iou: float | None = None


@dataclass
class LabelingResult:
    """instances: disjoint instances; semantic: (H, W) int64 class ids painted from them (0 = background)."""

    instances: list[Instance]
    semantic: np.ndarray
    prompts: list[InstancePrompt] = field(default_factory=list)

    @property
    def needs_review(self) -> bool:
        """Whether any instance is flagged."""
        return any(instance.needs_review for instance in self.instances)


def _numpy(value: Any, dtype: type) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value).astype(dtype, copy=False)


def _heatmaps_at(heatmaps: Any, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) float32 heatmaps at ``size`` (bilinear resize if they come at another size)."""
    heat = heatmaps if isinstance(heatmaps, torch.Tensor) else torch.as_tensor(np.asarray(heatmaps))
    if heat.ndim != 3:
        raise ValueError(f"heatmaps must be (C, H, W), got shape {tuple(heat.shape)}")
    heat = heat.detach().float().cpu()
    if tuple(heat.shape[-2:]) != size:
        heat = torch.nn.functional.interpolate(heat[None], size=size, mode="bilinear", align_corners=False)[0]
    return heat.numpy()


def choose_mask(
    masks: np.ndarray, scores: np.ndarray, seed: np.ndarray, seed_weight: float = 0.7
) -> tuple[int, float, float]:
    """Pick among candidate masks (M, H, W) bool with scores (M,) -> (index, rating, IoU with ``seed``)."""
    ious = np.array([mask_iou(mask, seed) for mask in masks])
    ratings = seed_weight * ious + (1.0 - seed_weight) * np.clip(scores, 0.0, 1.0)
    best = int(np.argmax(ratings))
    return best, float(ratings[best]), float(ious[best])


def _restore(tag: int, instances: list[Instance], owner: np.ndarray, region: np.ndarray) -> None:
    """Give class ``tag`` back the pixels of its seed ``region`` (those its instances cover, else all)."""
    members = [i for i, inst in enumerate(instances) if inst.class_id == tag]
    covered = np.zeros(region.shape, bool)
    for i in sorted(members, key=lambda i: instances[i].score):  # the higher score is painted last and wins
        pixels = region & instances[i].mask
        owner[pixels] = i
        covered |= pixels
    if not covered.any():
        owner[region] = max(members, key=lambda i: instances[i].score)
    for i in members:
        instances[i].needs_review = True
        note = "overlapping classes took all its pixels; seed region restored"
        instances[i].reason = f"{instances[i].reason}; {note}" if instances[i].reason else note


def merge_instances(
    instances: Sequence[Instance],
    heatmaps: Any,
    classes: Sequence[int],
    seed_mask: Any,
    tags: Sequence[int],
) -> tuple[list[Instance], np.ndarray]:
    """Resolve overlaps by heatmaps and paint the semantic mask; keep every tagged class of ``seed_mask``.

    instances: masks (H, W) bool; heatmaps: (C, H, W) float with rows following ``classes``; seed_mask: (H, W)
    int balanced mask. Returns (disjoint instances, none empty; semantic (H, W) int64).
    """
    seed = _numpy(seed_mask, np.int64)
    size = seed.shape
    heat = _heatmaps_at(heatmaps, size)
    if heat.shape[0] != len(classes):
        raise ValueError(f"{heat.shape[0]} heatmap rows but {len(classes)} classes")
    row_of = {int(c): i for i, c in enumerate(classes)}
    instances = [dataclasses.replace(inst) for inst in instances]
    present = [int(t) for t in dict.fromkeys(int(t) for t in tags) if (seed == int(t)).any()]
    for tag in present:
        if not any(inst.class_id == tag for inst in instances):
            instances.append(
                Instance(
                    tag,
                    seed == tag,
                    0.0,
                    "dhr",
                    True,
                    "only small regions in the balanced mask; kept from DHR",
                )
            )
    owner = np.full(size, -1, np.int64)
    best_heat = np.full(size, -np.inf, np.float32)
    best_score = np.full(size, -np.inf, np.float32)
    zeros = np.zeros(size, np.float32)
    for index, inst in enumerate(instances):
        if inst.mask.shape != size:
            raise ValueError(f"instance mask shape {inst.mask.shape} differs from the mask's {size}")
        value = heat[row_of[inst.class_id]] if inst.class_id in row_of else zeros
        wins = inst.mask & ((value > best_heat) | ((value == best_heat) & (inst.score > best_score)))
        owner[wins] = index
        best_heat[wins] = value[wins]
        best_score[wins] = inst.score
    class_of = np.array([inst.class_id for inst in instances], np.int64)
    # A restore writes only inside its class's own seed region, so a restored class stays restored; each pass
    # restores at least one more class.
    for _ in range(len(present)):
        shown = set(np.unique(class_of[owner[owner >= 0]]).tolist())
        missing = [t for t in present if t not in shown]
        if not missing:
            break
        for tag in missing:
            _restore(tag, instances, owner, seed == tag)
    merged = []
    for index, inst in enumerate(instances):
        inst.mask = owner == index
        if inst.mask.any():
            merged.append(inst)
    semantic = np.zeros(size, np.int64)
    semantic[owner >= 0] = class_of[owner[owner >= 0]]
    return merged, semantic


def label_image(
    image: np.ndarray,
    seeds: Any,
    tags: Sequence[int],
    segmenter: Segmenter,
    config: LabelingConfig | None = None,
    evidence: np.ndarray | torch.Tensor | None = None,
) -> LabelingResult:
    """Instances and semantic mask for ``image`` (H, W, 3) uint8 RGB from seeds (a ``dhr.DHRResult`` or
    :class:`Seeds`) and its tags.

    ``evidence``: optional (K, H, W) float maps in [0, 1] in the order of ``tags`` (see the module docstring).
    """
    config = config or LabelingConfig()
    seed = _numpy(seeds.mask, np.int64)
    if evidence is not None and len(tags):
        seed = drop_unsupported_components(
            seed, tags, evidence, config.min_evidence, config.prompts.connectivity, config.seed_evidence
        )
    image = segmenter.check_image(image)
    if image.shape[:2] != seed.shape:
        raise ValueError(f"image size {image.shape[:2]} differs from the balanced mask's {seed.shape}")
    prompt_config = dataclasses.replace(config.prompts, use_mask_prompt=config.use_mask_prompt)
    prompts = prompts_from_mask(seed, tags, prompt_config, segmenter.mask_prompt)
    instances: list[Instance] = []
    if prompts:
        segmenter.set_image(image)
    for prompt in prompts:
        use_points = config.use_points and len(prompt.points) > 0
        output = segmenter.predict(
            point_coords=prompt.points if use_points else None,
            point_labels=prompt.labels if use_points else None,
            box=prompt.box if config.use_box else None,
            mask_input=prompt.mask_input,
            multimask=config.multimask,
        )
        best, rating, iou = choose_mask(output.masks, output.scores, prompt.component, config.seed_weight)
        agreement = seed_agreement(output.masks[best], prompt.component, config.gate, config.min_seed_cover)
        if agreement < config.min_seed_iou:
            reason = (
                f"{segmenter.source} mask disagrees with the DHR seed ({GATES[config.gate]} {agreement:.2f} < "
                f"{config.min_seed_iou:.2f}); seed kept"
            )
            instances.append(
                Instance(prompt.class_id, prompt.component.copy(), rating, "dhr", True, reason, iou)
            )
            continue
        quality = float(output.scores[best])
        flagged = quality < config.review_quality
        reason = f"low predicted quality {quality:.2f} < {config.review_quality:.2f}" if flagged else ""
        instances.append(
            Instance(
                prompt.class_id, output.masks[best].copy(), rating, segmenter.source, flagged, reason, iou, quality
            )
        )
    merged, semantic = merge_instances(instances, seeds.heatmaps, seeds.classes, seed, tags)
    return LabelingResult(merged, semantic, prompts)
