"""Which models make (or made) a project's automatic labels, and what that means for their quality, in words.

The review GUI shows these notes before a job starts (what will run, from the weights actually present) and
after it ends (what ran, from the run's ``bootstrap.json``), and flags the images of the review queue whose
automatic labels deserve a closer look (:func:`review_checks`). Nothing here loads a model.

Rough labels come from a classifier trained from scratch (no ImageNet weights: its CAMs find objects only
roughly), a DeepLabv3+ trained from scratch, or the GrabCut fallback (no Segment Anything checkpoint: masks
follow colour edges, not objects).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from annotate.bootstrap.outputs import CLASSIFIER_FILE, MANIFEST_FILE
from annotate.bootstrap.profiles import AUTO_BACKBONE, PRETRAINED, SCRATCH
from annotate.bootstrap.run import USER as BOOTSTRAP_USER
from annotate.store import ProjectCatalog
from annotate.store.authorship import TRAINING_USER

logger = logging.getLogger(__name__)

AUTOMATIC_USERS = (BOOTSTRAP_USER, TRAINING_USER)
"""Users whose saves are automatic labels."""
LOW_CONFIDENCE = 0.5
"""Automatic labels of an image whose confidence is below this are flagged in the queue."""
ROUGH_VERDICT = "expect rough masks: check every image, the queue flags them"
GOOD_VERDICT = "expect usable masks; the least confident images come first in the queue"


@dataclass(frozen=True)
class ModelNote:
    """What runs (one line per model) and whether the result is expected to be rough."""

    lines: tuple[str, ...]
    rough: bool

    def text(self, heading: str) -> str:
        """Markdown: the heading, one bullet per model, and the verdict in bold."""
        verdict = ROUGH_VERDICT if self.rough else GOOD_VERDICT
        icon = "⚠️ " if self.rough else ""
        return f"{heading}\n" + "".join(f"- {line}\n" for line in self.lines) + f"\n{icon}**{verdict}**"


def segmenter_line(model_id: str, is_fallback: bool) -> str:
    """The segmenter in words; the GrabCut fallback says what it lacks."""
    if is_fallback:
        return "GrabCut fallback, no Segment Anything checkpoint: masks follow colour edges, not objects"
    return f"Segment Anything {model_id}"


def uss_line(uss: str, segmenter_has_embedding: bool) -> str:
    """The unsupervised (USS) features DHR compares regions with."""
    if uss == "auto":
        uss = "sam" if segmenter_has_embedding else "color"
    if uss == "sam":
        return "region features from the Segment Anything image embedding"
    if uss == "color":
        return "region features from colour and texture only (no SAM or DINO features)"
    return f"region features from {uss}"


def _weights_present(backbone: str, weights_dir: Any) -> bool:
    from models.registry import get_entry
    from models.weights import is_present

    checkpoint = get_entry(backbone, "backbone").checkpoint
    return checkpoint is not None and is_present(checkpoint, weights_dir)


def read_manifest(store: ProjectCatalog) -> dict[str, Any] | None:
    """The project's ``bootstrap.json`` (what the last automatic labelling ran), or None when absent or unreadable."""
    path = store.root / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("%s cannot be read: %s", path, error)
        return None
    return manifest if isinstance(manifest, dict) else None


def classifier_line(backbone: str, pretrained: bool, images: int | None = None) -> str:
    """The tag classifier in words: its backbone and whether it started from ImageNet weights."""
    on = f" on {images} tagged image(s)" if images is not None else ""
    if pretrained:
        return f"classifier {backbone} fine-tuned from ImageNet weights{on}"
    return f"classifier {backbone} trained from scratch{on} (no ImageNet weights): its CAMs find objects roughly"


def planned_bootstrap(
    store: ProjectCatalog, weights_dir: Any, download: bool, model_id: str, is_fallback: bool,
    options: Mapping[str, Any] | None = None,
) -> ModelNote:
    """The models an automatic-labelling job on ``store`` will use, from the weights present now.

    ``options`` are the job's :class:`annotate.bootstrap.BootstrapConfig` fields (``backbone``, ``pretrained``,
    ``uss``); the segmenter is the GUI's (``model_id``, ``is_fallback``).
    """
    options = dict(options or {})
    images = sum(1 for r in store.list_images() if r.tags)
    manifest = read_manifest(store)
    if (store.root / CLASSIFIER_FILE).is_file() and manifest and isinstance(manifest.get("classifier"), dict):
        saved = manifest["classifier"]
        line = classifier_line(str(saved.get("backbone")), bool(saved.get("pretrained"))) + ", the saved one"
        scratch = not saved.get("pretrained")
    elif (store.root / CLASSIFIER_FILE).is_file():
        line, scratch = f"the saved classifier {CLASSIFIER_FILE} (how it was trained is not recorded)", False
    else:
        backbone = options.get("backbone", AUTO_BACKBONE)
        wanted = bool(options.get("pretrained", True))
        candidate = PRETRAINED.backbone if backbone == AUTO_BACKBONE else backbone
        present = wanted and _weights_present(candidate, weights_dir)
        if backbone == AUTO_BACKBONE and not present:
            candidate = SCRATCH.backbone
        line = classifier_line(candidate, present, images)
        if not present and wanted and download and backbone == AUTO_BACKBONE:
            line += f"; a download of the {PRETRAINED.backbone} ImageNet weights is tried first"
        scratch = not present
    seg = segmenter_line(model_id, is_fallback)
    uss = uss_line(str(options.get("uss", "auto")), not is_fallback)
    return ModelNote((line, seg, uss), scratch or is_fallback)


def planned_training(
    weights_dir: Any, model_id: str, is_fallback: bool, options: Mapping[str, Any] | None = None
) -> ModelNote:
    """The models a training round will use: DeepLabv3+ (its backbone's start) and the relabelling segmenter."""
    options = dict(options or {})
    backbone = str(options.get("backbone", "resnet50"))
    pretrained = bool(options.get("pretrained", True)) and _weights_present(backbone, weights_dir)
    if pretrained:
        net = f"DeepLabv3+ {backbone} from ImageNet weights, trained on the project's labels"
    else:
        net = (f"DeepLabv3+ {backbone} trained from scratch (no ImageNet weights): on tens of images it predicts "
               "wider masks than the labels it learns from")
    return ModelNote((net, segmenter_line(model_id, is_fallback)), not pretrained or is_fallback)


def bootstrap_ran(store: ProjectCatalog) -> ModelNote | None:
    """What the last automatic labelling of ``store`` ran, from its ``bootstrap.json``; None when unrecorded."""
    manifest = read_manifest(store)
    if manifest is None or not isinstance(manifest.get("classifier"), dict):
        return None
    saved = manifest["classifier"]
    segmenter = str(manifest.get("segmenter", ""))
    fallback = segmenter == "grabcut"
    line = classifier_line(str(saved.get("backbone")), bool(saved.get("pretrained")))
    uss = uss_line(str(manifest.get("uss", "")), False)
    return ModelNote((line, segmenter_line(segmenter, fallback), uss), not saved.get("pretrained") or fallback)


def review_checks(store: ProjectCatalog, records: list[Any] | None = None) -> dict[int, str]:
    """Image id -> a short warning for the review queue ('' when none): the automatic labels of an image (its
    last save by an automatic writer, status pseudo or review) are flagged when their confidence is below
    :data:`LOW_CONFIDENCE` or when rough models made them (:func:`bootstrap_ran`)."""
    records = store.list_images() if records is None else records
    ran = bootstrap_ran(store)
    rough = ran is not None and ran.rough
    checks: dict[int, str] = {}
    for r in records:
        parts = []
        if r.status in ("pseudo", "review") and r.updated_by in AUTOMATIC_USERS:
            if r.confidence is not None and r.confidence < LOW_CONFIDENCE:
                parts.append("low confidence")
            if rough:
                parts.append("rough models")
        checks[r.id] = ("⚠ " + ", ".join(parts)) if parts else ""
    return checks


__all__ = [
    "AUTOMATIC_USERS",
    "LOW_CONFIDENCE",
    "ModelNote",
    "bootstrap_ran",
    "planned_bootstrap",
    "planned_training",
    "read_manifest",
    "review_checks",
]
