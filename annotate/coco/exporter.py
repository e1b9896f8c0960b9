"""COCO export of a project: one "instances" JSON file.

:func:`export_coco` writes:

- ``categories``: one per project class, ``id`` = class id (1..N), matched by ``name`` on import;
- ``images``: ``id`` = the project's image id, ``file_name`` relative to the project root (``images/a.jpg``),
  ``width``/``height`` as displayed, and the extra field ``dhr_label`` = {status, tags, confidence, sha256};
- ``annotations``: numbered 1..M in image order, ``segmentation`` = compressed RLE (``str`` counts) or, with
  ``polygons=True``, COCO polygons traced with OpenCV, ``area`` and ``bbox`` (XYWH) computed by pycocotools from
  the geometry written (the RLE, or the polygons rasterised back), ``iscrowd`` (1 for crowd regions, which stay
  RLE even with ``polygons=True``, as COCO has them), and the extra field ``dhr_label`` = {score (the rating),
  predicted_iou (the segmenter's, or null), source, needs_review, reason}. COCO polygons cannot hold a hole (a
  reader fills every ring, and separate rings would be filled as separate objects), so with ``polygons=True``
  an instance whose mask has a hole is written as RLE instead, exactly; the report counts them.

Which images: ``statuses`` (e.g. ``("accepted", "review")``), or every image when None; the command line and the
GUI default to :data:`DEFAULT_STATUSES` and say what was included and left out (:func:`scope_summary`).

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annotate.rle import decode_rle, has_holes, mask_to_polygons, polygon_area_bbox
from annotate.store.records import utc_now
from core.files import atomic_write_text, remove_stale_temporaries

if TYPE_CHECKING:
    from annotate.store import ProjectStore
    from annotate.store.records import InstanceRecord

logger = logging.getLogger(__name__)

DEFAULT_STATUSES = ("accepted", "review")
"""Images a ``dhr export`` and the GUI's export include unless told otherwise: the ones a person accepted or
worked on (not untouched, pseudo-labelled or rejected ones)."""

EXTRA_KEY = "dhr_label"
"""Key of the extra field holding what COCO has no field for (status, tags, score, source, review flag...)."""


@dataclass
class ExportReport:
    """What an export did on the way out: ``holes_as_rle`` counts the instances with holes written as RLE in a
    polygon export (polygons cannot hold holes); ``crowd`` the crowd regions written (always as RLE)."""

    holes_as_rle: int = 0
    crowd: int = 0

    def polygon_note(self) -> str:
        """One line about the instances a polygon export wrote as RLE ("" when there were none)."""
        if not self.holes_as_rle:
            return ""
        count = self.holes_as_rle
        return (
            f"{count} instance{'' if count == 1 else 's'} with holes written as RLE, exactly "
            f"(COCO polygons cannot hold holes); every other instance is a polygon"
        )


def scope_summary(counts: dict[str, int], statuses: Sequence[str] | None) -> str:
    """One line saying which images an export takes: ``counts`` images per status (the store's
    ``status_counts()``), ``statuses`` those included (None: all)."""
    chosen = list(counts) if statuses is None else [s for s in counts if s in statuses]
    included = sum(counts[s] for s in chosen)
    inside = ", ".join(f"{s} {counts[s]}" for s in chosen) or "none"
    line = f"included {included} image{'' if included == 1 else 's'} ({inside})"
    left = [s for s in counts if s not in chosen and counts[s]]
    if left:
        line += "; left out " + ", ".join(f"{s} {counts[s]}" for s in left)
    return line


def _polygons(record: InstanceRecord, tolerance: float, file_name: str, report: ExportReport) -> dict | None:
    """Segmentation, area and bbox of ``record`` as the polygons written, or None when it has no outline or a
    hole (it is written as RLE then, and counted in ``report``)."""
    try:
        mask = decode_rle(record.rle)
        if has_holes(mask):
            report.holes_as_rle += 1
            return None
        polygons = mask_to_polygons(mask, tolerance)
        if not polygons:
            return None
        area, bbox = polygon_area_bbox(polygons, *mask.shape)
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
    statuses: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The COCO dict :func:`export_coco` writes (see the module docstring for its fields); ``report``, when
    given, is filled in (:class:`ExportReport`); ``description`` is ``info.description``. ``statuses``: the
    images' statuses to include (None: every image; ``accepted_only`` means ``("accepted",)``)."""
    report = ExportReport() if report is None else report
    images, instances = store.snapshot(chosen_statuses(statuses, accepted_only))
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
    statuses: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write the project (all images, or those of ``statuses``) as a COCO instances JSON file; returns the dict.

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
        statuses=statuses,
    )
    remove_stale_temporaries(path)  # left by an export that was killed
    atomic_write_text(path, json.dumps(coco, separators=(",", ":"), allow_nan=False))
    logger.info(
        "exported %d images, %d annotations to %s", len(coco["images"]), len(coco["annotations"]), path
    )
    return coco


def chosen_statuses(statuses: Sequence[str] | None, accepted_only: bool = False) -> list[str] | None:
    """The statuses an export takes (None: all), checked: ``accepted_only`` stands for ``["accepted"]``."""
    from annotate.store import STATUSES

    if accepted_only:
        return ["accepted"]
    if statuses is None:
        return None
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise ValueError(f"unknown status {unknown[0]!r}; choose among {', '.join(STATUSES)}")
    if not statuses:
        raise ValueError(f"choose at least one status to export ({', '.join(STATUSES)})")
    return list(statuses)


def export_into_project(
    store: ProjectStore,
    *,
    statuses: Sequence[str] | None = DEFAULT_STATUSES,
    polygons: bool = False,
    report: ExportReport | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Export COCO into ``PROJECT/exports/coco-{statuses|all}-{rle|polygons}-YYYYmmdd-HHMMSS.json`` (the GUI's
    export), image files checked against their SHA-256 first. Returns the path and the COCO dict."""
    import time

    scope = "all" if statuses is None else "-".join(chosen_statuses(statuses) or [])
    name = f"coco-{scope}-{'polygons' if polygons else 'rle'}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    layout = store.layout
    path = store.resolve(layout.relative(layout.exports_dir / name))  # never through a symlink out
    path.parent.mkdir(parents=True, exist_ok=True)
    coco = export_coco(
        store, path, statuses=statuses, polygons=bool(polygons), verify_images=True, report=report
    )
    return path, coco


__all__ = [
    "DEFAULT_STATUSES",
    "EXTRA_KEY",
    "ExportReport",
    "chosen_statuses",
    "coco_dict",
    "export_coco",
    "export_into_project",
    "scope_summary",
]
