"""COCO import and export of a project, and semantic PNG masks: one place to import them from.

- :func:`export_coco` / :func:`coco_dict` (:mod:`annotate.coco.exporter`): the project as a COCO instances file,
  RLE or polygon segmentations, with an extra ``dhr_label`` field per image and per annotation;
- :func:`import_coco` (:mod:`annotate.coco.importer`): a COCO file from here or another tool into a project,
  checked whole before one transaction writes it;
- :func:`export_semantic_masks` (:mod:`annotate.coco.semantic`): one palette PNG of class ids per image.
"""

from __future__ import annotations

from annotate.coco.exporter import (
    DEFAULT_STATUSES,
    EXTRA_KEY,
    ExportReport,
    chosen_statuses,
    coco_dict,
    export_coco,
    export_into_project,
    scope_summary,
)
from annotate.coco.importer import import_coco
from annotate.coco.semantic import IGNORE_INDEX, export_semantic_masks, semantic_png_path, voc_palette

__all__ = [
    "DEFAULT_STATUSES",
    "EXTRA_KEY",
    "chosen_statuses",
    "export_into_project",
    "scope_summary",
    "ExportReport",
    "IGNORE_INDEX",
    "export_coco",
    "import_coco",
    "export_semantic_masks",
    "coco_dict",
    "voc_palette",
    "semantic_png_path",
]
