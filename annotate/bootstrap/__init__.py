"""Bootstrapping labels from image tags: ``dhr bootstrap`` (no clicks).

- :mod:`annotate.bootstrap.run`: :func:`run_bootstrap`, the resumable run over a dataset;
- :mod:`annotate.bootstrap.image`: one image: CAMs -> base mask -> DHR -> prompts -> instances, and its confidence;
- :mod:`annotate.bootstrap.models`: the classifier and segmenter of a run (USS providers: :mod:`models.uss`);
- :mod:`annotate.bootstrap.profiles`: classifier and CAM settings with ImageNet weights or from scratch (offline);
- :mod:`annotate.bootstrap.outputs`: the output folder (project, masks, COCO, manifest);
- :mod:`annotate.bootstrap.shards`: ``--shard i/n`` and ``dhr merge-shards``.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from annotate.bootstrap.image import ImageOutcome, process_image, read_base_mask
    from annotate.bootstrap.models import (
        build_bootstrap_classifier,
        build_bootstrap_segmenter,
        prepare_classifier,
    )
    from annotate.bootstrap.outputs import (
        CLASSIFIER_FILE,
        COCO_FILE,
        MANIFEST_FILE,
        MASKS_DIR,
        export_outputs,
    )
    from annotate.bootstrap.profiles import (
        PRETRAINED,
        SCRATCH,
        ClassifierProfile,
        classifier_profile,
        resolved_config,
    )
    from annotate.bootstrap.run import USER, BootstrapConfig, BootstrapReport, run_bootstrap
    from annotate.bootstrap.shards import merge_shards, parse_shard, shard_entries

_PUBLIC = {
    "BootstrapConfig": "run",
    "BootstrapReport": "run",
    "CLASSIFIER_FILE": "outputs",
    "COCO_FILE": "outputs",
    "ClassifierProfile": "profiles",
    "ImageOutcome": "image",
    "MANIFEST_FILE": "outputs",
    "MASKS_DIR": "outputs",
    "PRETRAINED": "profiles",
    "SCRATCH": "profiles",
    "USER": "run",
    "build_bootstrap_classifier": "models",
    "build_bootstrap_segmenter": "models",
    "classifier_profile": "profiles",
    "export_outputs": "outputs",
    "merge_shards": "shards",
    "parse_shard": "shards",
    "prepare_classifier": "models",
    "process_image": "image",
    "read_base_mask": "image",
    "resolved_config": "profiles",
    "run_bootstrap": "run",
    "shard_entries": "shards",
}
"""Public name -> the submodule defining it, imported on first use (PEP 562), so that the command line
reads the classifier profiles without importing torch."""


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its submodule when first asked for."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value

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
    "export_outputs",
    "merge_shards",
    "parse_shard",
    "prepare_classifier",
    "process_image",
    "read_base_mask",
    "resolved_config",
    "run_bootstrap",
    "shard_entries",
]
