"""COCO export of a project: one "instances" JSON file.

:func:`export_coco` writes:

- ``categories``: one per project class, ``id`` = class id (1..N), matched by ``name`` on import;
- ``images``: ``id`` = the project's image id, ``file_name`` relative to the project root (``images/a.jpg``),
  ``width``/``height`` as displayed, and the extra field ``dhr_label`` = {status, tags, confidence, sha256};
- ``annotations``: numbered 1..M in image order, ``segmentation`` = compressed RLE (``str`` counts) or, with
  ``polygons=True``, COCO polygons traced with OpenCV (holes are lost: RLE keeps them), ``area`` and ``bbox``
  (XYWH) computed by pycocotools from the geometry written (the RLE, or the polygons rasterised back),
  ``iscrowd`` (1 for crowd regions, which stay RLE even with ``polygons=True``, as COCO has them), and the
  extra field ``dhr_label`` = {score (the rating), predicted_iou (the segmenter's, or null), source, needs_review,
  reason}.

``info.date_created`` is the UTC time of the export: the file shows the labels as they were then.

The target must not be one of the project's own files (its database, images, cache: see
:mod:`annotate.store.protect`); such a target is refused before anything is written. With ``verify_images``
every image file is first checked against its recorded SHA-256, so an export never describes other pixels.

The file is written atomically (temporary file in the same folder, fsync, ``os.replace``): a reader sees the
old file or the new one, never half of one. The export reads the database in one transaction, so edits made
meanwhile by other sessions are either wholly in it or wholly absent.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from annotate.rle import decode_rle, has_holes, mask_to_polygons, polygon_area_bbox
from annotate.store.records import utc_now
from core.files import atomic_write_text, remove_stale_temporaries

if TYPE_CHECKING:
    from annotate.store import ProjectStore
    from annotate.store.records import InstanceRecord

logger = logging.getLogger(__name__)

EXTRA_KEY = "dhr_label"
"""Key of the extra field holding what COCO has no field for (status, tags, score, source, review flag...)."""


@dataclass
class ExportReport:
    """What an export changed on the way out: ``holes_filled`` counts the instances written as polygons whose
    mask had holes (outer-contour polygons fill them); ``crowd`` the crowd regions written (always as RLE)."""

    holes_filled: int = 0
    crowd: int = 0

    def polygon_note(self, lossless: str = "export RLE instead (the default, without --polygons)") -> str:
        """One line about the holes lost to polygons ("" when none were); ``lossless`` says how to keep them."""
        if not self.holes_filled:
            return ""
        count = self.holes_filled
        return (
            f"{count} instance{'' if count == 1 else 's'} lost {'its' if count == 1 else 'their'} holes as "
            f"polygons (area and bbox are the polygons'); to keep holes, {lossless}"
        )


def _polygons(record: InstanceRecord, tolerance: float, file_name: str, report: ExportReport) -> dict | None:
    """Segmentation, area and bbox of ``record`` as the polygons written, or None when it has no outline."""
    try:
        mask = decode_rle(record.rle)
        polygons = mask_to_polygons(mask, tolerance)
        if not polygons:
            return None
        area, bbox = polygon_area_bbox(polygons, *mask.shape)
        if has_holes(mask):
            report.holes_filled += 1
    except (ValueError, TypeError, MemoryError) as error:
        raise ValueError(f"image {file_name}, instance {record.id}: cannot trace polygons: {error}") from error
    return {"segmentation": polygons, "area": float(area), "bbox": bbox}


def _annotation(
    record: InstanceRecord,
    number: int,
    polygons: bool,
    tolerance: float,
    file_name: str,
    report: ExportReport,
) -> dict[str, Any]:
    geometry = _polygons(record, tolerance, file_name, report) if polygons and not record.iscrowd else None
    if geometry is None:  # RLE: lossless, and what COCO uses for crowd regions
        geometry = {
            "segmentation": {"size": list(record.rle["size"]), "counts": record.rle["counts"]},
            "area": float(record.area),
            "bbox": [float(v) for v in record.bbox],
        }
    report.crowd += int(record.iscrowd)
    return {
        "id": number,
        "image_id": record.image_id,
        "category_id": record.class_id,
        **geometry,
        "iscrowd": int(record.iscrowd),
        EXTRA_KEY: {
            "score": record.score,
            "predicted_iou": record.predicted_iou,
            "source": record.source,
            "needs_review": record.needs_review,
            "reason": record.reason,
        },
    }


def coco_dict(
    store: ProjectStore,
    *,
    accepted_only: bool = False,
    polygons: bool = False,
    polygon_tolerance: float = 0.25,
    verify_images: bool = False,
    report: ExportReport | None = None,
    description: str = "dhr-label export",
) -> dict[str, Any]:
    """The COCO dict :func:`export_coco` writes (see the module docstring for its fields); ``report``, when
    given, is filled in (:class:`ExportReport`); ``description`` is ``info.description``."""
    report = ExportReport() if report is None else report
    images, instances = store.snapshot("accepted" if accepted_only else None)
    if verify_images:
        store.check_image_files(images)
    coco: dict[str, Any] = {
        "info": {"description": description, "version": "1.0", "date_created": utc_now()},
        "licenses": [],
        "categories": [
            {"id": i, "name": name, "supercategory": ""} for i, name in enumerate(store.classes, 1)
        ],
        "images": [],
        "annotations": [],
    }
    number = 0
    for image in images:
        coco["images"].append(
            {
                "id": image.id,
                "file_name": image.file_name,
                "width": image.width,
                "height": image.height,
                EXTRA_KEY: {
                    "status": image.status,
                    "tags": list(image.tags),
                    "confidence": image.confidence,
                    "sha256": image.sha256,
                },
            }
        )
        for record in instances[image.id]:
            number += 1
            coco["annotations"].append(
                _annotation(record, number, polygons, polygon_tolerance, image.file_name, report)
            )
    return coco


def export_coco(
    store: ProjectStore,
    path: str | os.PathLike,
    *,
    accepted_only: bool = False,
    polygons: bool = False,
    polygon_tolerance: float = 0.25,
    verify_images: bool = False,
    report: ExportReport | None = None,
    description: str = "dhr-label export",
) -> dict[str, Any]:
    """Write the project (all images, or only accepted ones) as a COCO instances JSON file; returns the dict.

    ``polygon_tolerance``: Douglas-Peucker tolerance in pixels for ``polygons=True`` (see
    :func:`annotate.rle.mask_to_polygons`). ``verify_images``: refuse to export when an image file changed
    since it was added (:meth:`annotate.store.ProjectCatalog.check_image_files`). ``report``: filled with the
    instances whose holes polygons lost, and the crowd regions (:class:`ExportReport`).

    Raises:
        annotate.store.protect.ProtectedPath: ``path`` is one of the project's own files.
    """
    store.own_files().check_file(path, "COCO export")
    coco = coco_dict(
        store,
        accepted_only=accepted_only,
        polygons=polygons,
        polygon_tolerance=polygon_tolerance,
        verify_images=verify_images,
        report=report,
        description=description,
    )
    remove_stale_temporaries(path)  # left by an export that was killed
    atomic_write_text(path, json.dumps(coco, separators=(",", ":"), allow_nan=False))
    logger.info(
        "exported %d images, %d annotations to %s", len(coco["images"]), len(coco["annotations"]), path
    )
    return coco


__all__ = ["EXTRA_KEY", "ExportReport", "coco_dict", "export_coco"]
