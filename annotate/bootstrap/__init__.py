"""Bootstrapping labels from image tags: ``dhr bootstrap`` (no clicks).

- :mod:`annotate.bootstrap.run`: :func:`run_bootstrap`, the resumable run over a dataset;
- :mod:`annotate.bootstrap.image`: one image: CAMs -> base mask -> DHR -> prompts -> instances, and its confidence;
- :mod:`annotate.bootstrap.models`: the classifier, USS provider and segmenter of a run;
- :mod:`annotate.bootstrap.profiles`: classifier and CAM settings with ImageNet weights or from scratch (offline);
- :mod:`annotate.bootstrap.outputs`: the output folder (project, masks, COCO, manifest);
- :mod:`annotate.bootstrap.shards`: ``--shard i/n`` and ``dhr merge-shards``.
"""

from annotate.bootstrap.image import ImageOutcome, image_confidence, process_image, read_base_mask
from annotate.bootstrap.models import (
    build_bootstrap_classifier,
    build_bootstrap_segmenter,
    build_uss_provider,
    prepare_classifier,
)
from annotate.bootstrap.outputs import CLASSIFIER_FILE, COCO_FILE, MANIFEST_FILE, MASKS_DIR, export_outputs
from annotate.bootstrap.profiles import (
    PRETRAINED,
    SCRATCH,
    ClassifierProfile,
    classifier_profile,
    resolved_config,
)
from annotate.bootstrap.run import USER, BootstrapConfig, BootstrapReport, run_bootstrap
from annotate.bootstrap.shards import merge_shards, parse_shard, shard_entries

__all__ = [
    "BootstrapConfig",
    "BootstrapReport",
    "CLASSIFIER_FILE",
    "COCO_FILE",
    "ClassifierProfile",
    "ImageOutcome",
    "MANIFEST_FILE",
    "MASKS_DIR",
    "PRETRAINED",
    "SCRATCH",
    "USER",
    "build_bootstrap_classifier",
    "build_bootstrap_segmenter",
    "classifier_profile",
    "build_uss_provider",
    "export_outputs",
    "image_confidence",
    "merge_shards",
    "parse_shard",
    "prepare_classifier",
    "process_image",
    "read_base_mask",
    "resolved_config",
    "run_bootstrap",
    "shard_entries",
]
