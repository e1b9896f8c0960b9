"""COCO import into a project: a file written by :func:`annotate.coco.exporter.export_coco` or by another tool.

:func:`import_coco` checks everything before anything is written; then all changes are made in one
transaction:

- categories are matched by name (after ``category_map`` old name -> project name), not by id;
- an image whose ``file_name`` (or ``images/<file_name>``) is already in the project gets the imported labels
  (the previous ones stay in its undo history); other images are copied from ``image_dir`` into
  ``root/images/`` (``file_name`` is kept below ``images/``);
- images listed without annotations and without a ``dhr_label`` field are registered (if new) but not edited;
- another tool's images get the tags of their annotations' classes and status ``pseudo`` (``new`` when they
  have no annotations); annotation ``score`` fields are kept, the source is ``import``, crowd annotations
  (``iscrowd`` 1) stay crowd regions (stored with ``iscrowd``, exported as such, ignored in semantic masks).

Hostile or broken files end in one ``ValueError`` line naming the file and the annotation, before any native
code sees the data: RLE runs are checked in exact integers, polygon coordinates must lie within one image size
of the image (parts reaching outside the image are clipped to it, with a warning; a polygon entirely outside is
refused), numbers must be finite (``10**400`` included), ``area`` and ``bbox`` must not be negative, and a
file nested too deeply for the JSON reader is refused by name.
"""

from __future__ import annotations

import json
import logging
import os
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annotate.coco.exporter import EXTRA_KEY
from annotate.images import image_sha256, image_size
from annotate.rle import PolygonReport, normalize_rle, polygons_to_rle
from annotate.store.paths import IMAGES_DIR, check_relative_name, copied_name
from annotate.store.records import SOURCES, STATUSES, NewInstance
from annotate.store.schema import name_key
from core.files import atomic_copy

if TYPE_CHECKING:
    from annotate.store import ProjectStore

logger = logging.getLogger(__name__)


@dataclass
class _PlannedImage:
    """One image of the file, checked: where it comes from and what will be written."""

    coco_id: int
    file_name: str  # project-relative name
    width: int
    height: int
    existing_id: int | None
    source: Path | None  # file to copy in (None when the project has it already)
    extra: dict[str, Any] | None
    instances: list[NewInstance] = field(default_factory=list)
    classes: set[int] = field(default_factory=set)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else None


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a number or too large to be one (``10**400``)."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if np.isfinite(number) else None


_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict = 60, 60, 6, 6


def _mapped(name: str, category_map: Mapping[str, str]) -> str:
    return category_map.get(name, name)


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: COCO file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a JSON file ({error})") from error
    except RecursionError:
        raise ValueError(f"{path}: not a COCO file (nested too deeply to read)") from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise ValueError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: not a COCO file (no 'images' list)")
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise ValueError(f"{path}: '{key}' must be a list")
    return data


def _categories(
    data: dict,
    path: Path,
    store: ProjectStore,
    category_map: Mapping[str, str],
    used: set[int],
    allow_new_classes: bool,
) -> tuple[dict[int, str], list[str]]:
    """COCO category id -> project class name; and the class names to add (allow_new_classes)."""
    names: dict[int, str] = {}
    for category in data.get("categories", []):
        category_id = _int(category.get("id")) if isinstance(category, dict) else None
        name = category.get("name") if isinstance(category, dict) else None
        if category_id is None or not isinstance(name, str):
            raise ValueError(
                f"{path}: invalid category {_short.repr(category)} (needs an integer 'id' and a 'name')"
            )
        if category_id in names:
            raise ValueError(f"{path}: duplicate category id {category_id}")
        names[category_id] = name
    unknown_keys = sorted(set(category_map) - set(names.values()))
    if unknown_keys:
        raise ValueError(
            f"{path}: category map names {unknown_keys} are not categories of the file {sorted(names.values())}"
        )
    classes = set(store.classes)
    mapping: dict[int, str] = {}
    missing: list[str] = []
    for category_id, name in names.items():
        target = _mapped(name, category_map)
        if target not in classes and category_id in used:
            if not allow_new_classes:
                raise ValueError(
                    f"{path}: category {name!r} (id {category_id}) is used by annotations but is not a project "
                    f"class {sorted(classes)}; map it (category_map / --map {name}=CLASS) or allow new classes"
                )
            if target not in missing:
                missing.append(target)
        mapping[category_id] = target
    return mapping, missing


def _segmentation(annotation: dict, height: int, width: int, where: str) -> dict:
    segmentation = annotation.get("segmentation")
    try:
        if isinstance(segmentation, dict):
            return normalize_rle(segmentation, (height, width))
        if isinstance(segmentation, list) and segmentation:
            report = PolygonReport()
            rle = polygons_to_rle(segmentation, height, width, report)
            if report.dropped == len(segmentation):
                raise ValueError(f"the polygon lies entirely outside the {width}x{height} image")
            if report.clipped or report.dropped:
                logger.warning(
                    "%s: polygon reaches outside the %dx%d image; clipped to it", where, width, height
                )
            return rle
    except (ValueError, TypeError, OverflowError) as error:
        raise ValueError(f"{where}: bad segmentation: {error}") from error
    raise ValueError(
        f"{where}: no segmentation (RLE dict or polygon list needed; boxes alone cannot be imported)"
    )


def _check_box_and_area(annotation: dict, where: str) -> None:
    """``area`` and ``bbox``, when given, must be finite and not negative (they are recomputed from the mask)."""
    if "area" in annotation and annotation["area"] is not None:
        area = _finite(annotation["area"])
        if area is None or area < 0:
            raise ValueError(f"{where}: area {_short.repr(annotation['area'])} is not a non-negative number")
    if "bbox" in annotation and annotation["bbox"] is not None:
        box = annotation["bbox"]
        values = [_finite(v) for v in box] if isinstance(box, list) and len(box) == 4 else [None]
        if any(v is None for v in values) or values[2] < 0 or values[3] < 0:
            raise ValueError(f"{where}: bbox {_short.repr(box)} is not [x, y, width, height] with sizes >= 0")


def _plan_images(
    data: dict, path: Path, store: ProjectStore, image_dir: Path | None
) -> dict[int, _PlannedImage]:
    search = [image_dir] if image_dir is not None else [path.parent, store.root]
    plans: dict[int, _PlannedImage] = {}
    keys = {name_key(record.file_name): record.file_name for record in store.list_images()}
    taken: set[str] = set()  # project names already claimed by an image of the file
    missing: list[str] = []
    for entry in data["images"]:
        coco_id = _int(entry.get("id")) if isinstance(entry, dict) else None
        if coco_id is None:
            raise ValueError(f"{path}: image entry without an integer id: {_short.repr(entry)}")
        if coco_id in plans:
            raise ValueError(f"{path}: duplicate image id {coco_id}")
        raw = entry.get("file_name")
        width, height = _int(entry.get("width")), _int(entry.get("height"))
        if not isinstance(raw, str) or not raw or not width or not height or width < 1 or height < 1:
            raise ValueError(
                f"{path}: image {coco_id} needs a file_name and positive integer width and height"
            )
        try:
            original = check_relative_name(raw.replace("\\", "/"))
        except ValueError as error:
            raise ValueError(f"{path}: image {coco_id}: {error}") from error
        candidates = (
            [original] if original.startswith(f"{IMAGES_DIR}/") else [copied_name(original), original]
        )
        existing = next((r for r in map(store.find_image, candidates) if r is not None), None)
        file_name = candidates[0] if existing is None else existing.file_name
        if file_name in taken:
            raise ValueError(f"{path}: image {coco_id}: {raw!r} is listed twice")
        taken.add(file_name)
        source = None
        if existing is not None:
            if (existing.width, existing.height) != (width, height):
                raise ValueError(
                    f"{path}: image {coco_id} ({raw}) is {width}x{height} in the file but "
                    f"{existing.width}x{existing.height} in the project"
                )
        else:
            key = name_key(file_name)
            if key in keys:
                raise ValueError(f"{path}: image {coco_id}: name {file_name!r} collides with {keys[key]!r}")
            keys[key] = file_name
            source = next((folder / original for folder in search if (folder / original).is_file()), None)
            if source is None:
                missing.append(raw)
                continue
            actual = image_size(source)
            if actual != (width, height):
                raise ValueError(
                    f"{path}: image {coco_id}: {source} is {actual[0]}x{actual[1]} but the file says {width}x{height}"
                )
            target = store.resolve(file_name)
            if target.exists() and image_sha256(target) != image_sha256(source):
                raise ValueError(f"{path}: image {coco_id}: {target} already exists with different content")
        extra = entry.get(EXTRA_KEY) if isinstance(entry.get(EXTRA_KEY), dict) else None
        plans[coco_id] = _PlannedImage(
            coco_id, file_name, width, height, None if existing is None else existing.id, source, extra
        )
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        folders = " or ".join(str(folder) for folder in search)
        raise FileNotFoundError(f"{path}: {len(missing)} image file(s) not found in {folders}: {shown}")
    return plans


def _plan_annotations(
    data: dict,
    path: Path,
    plans: dict[int, _PlannedImage],
    classes: dict[int, str],
    class_ids: dict[str, int],
) -> None:
    seen: set[Any] = set()
    for index, annotation in enumerate(data.get("annotations", [])):
        if not isinstance(annotation, dict):
            raise ValueError(f"{path}: annotation {index} is not an object")
        label = annotation.get("id", f"#{index}")
        if _int(label) is None and not isinstance(label, str):
            raise ValueError(f"{path}: annotation #{index}: id {_short.repr(label)} is not an integer")
        if label in seen:
            raise ValueError(f"{path}: duplicate annotation id {label}")
        seen.add(label)
        image_id, category_id = _int(annotation.get("image_id")), _int(annotation.get("category_id"))
        plan = plans.get(image_id) if image_id is not None else None
        if plan is None:
            raise ValueError(f"{path}: annotation {label}: unknown image id {annotation.get('image_id')!r}")
        if category_id not in classes:
            raise ValueError(
                f"{path}: annotation {label}: unknown category id {annotation.get('category_id')!r}"
            )
        where = f"{path}: annotation {_short.repr(label)} (image {plan.coco_id}, {plan.file_name})"
        _check_box_and_area(annotation, where)
        rle = _segmentation(annotation, plan.height, plan.width, where)
        extra = annotation.get(EXTRA_KEY) if isinstance(annotation.get(EXTRA_KEY), dict) else {}
        crowd = bool(annotation.get("iscrowd", 0))
        score = extra.get("score", annotation.get("score", 1.0))
        source = extra.get("source", "import")
        if _finite(score) is None:
            raise ValueError(f"{where}: score {_short.repr(score)} is not a finite number")
        predicted = extra.get("predicted_iou")
        if predicted is not None and (_finite(predicted) is None or not 0.0 <= _finite(predicted) <= 1.0):
            raise ValueError(f"{where}: predicted_iou {_short.repr(predicted)} is not a number in [0, 1]")
        if not isinstance(source, str) or source not in SOURCES:
            raise ValueError(f"{where}: unknown source {_short.repr(source)}; sources are {SOURCES}")
        class_id = class_ids[classes[category_id]]
        plan.instances.append(
            NewInstance(
                class_id,
                rle,
                score=_finite(score),
                source=source,
                needs_review=bool(extra.get("needs_review", False)),
                reason=str(extra.get("reason", "")),
                iscrowd=crowd,
                predicted_iou=None if predicted is None else _finite(predicted),
            )
        )
        plan.classes.add(class_id)


def _image_state(
    plan: _PlannedImage, path: Path, store: ProjectStore, category_map: Mapping[str, str]
) -> tuple:
    """(tags, status, confidence) to write for an image, from its dhr_label field or its annotations."""
    names = store.classes
    if plan.extra is None:
        tags = sorted({names[c - 1] for c in plan.classes})
        return tags, ("pseudo" if plan.instances else "new"), None
    status = plan.extra.get("status", "pseudo" if plan.instances else "new")
    if status not in STATUSES:
        raise ValueError(f"{path}: image {plan.coco_id}: unknown status {status!r}; statuses are {STATUSES}")
    tags = plan.extra.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError(f"{path}: image {plan.coco_id}: tags must be a list of class names")
    tags = [_mapped(t, category_map) for t in tags]
    unknown = [t for t in tags if t not in names]
    if unknown:
        raise ValueError(
            f"{path}: image {plan.coco_id} ({plan.file_name}): unknown tags {unknown}; classes are {names}"
        )
    confidence = plan.extra.get("confidence")
    if confidence is not None and _finite(confidence) is None:
        raise ValueError(
            f"{path}: image {plan.coco_id}: confidence {_short.repr(confidence)} is not a finite number"
        )
    return tags, status, None if confidence is None else _finite(confidence)


def import_coco(
    store: ProjectStore,
    path: str | os.PathLike,
    *,
    category_map: Mapping[str, str] | None = None,
    image_dir: str | os.PathLike | None = None,
    user: str = "import",
    allow_new_classes: bool = False,
) -> int:
    """Import a COCO instances file into ``store``; returns the number of annotations stored.

    Args:
        category_map: old category name -> project class name (categories are matched by name).
        image_dir: folder the file's ``file_name`` paths are relative to, for images not yet in the project
            (default: the COCO file's folder, then the project root).
        allow_new_classes: append categories unknown to the project as new classes instead of failing.

    Raises:
        ValueError: inconsistent file (unknown image or category ids, RLE of the wrong size, bad polygons,
            unknown categories, ...); FileNotFoundError: image files missing. Nothing is written then.
    """
    path = Path(path)
    category_map = dict(category_map or {})
    data = _load(path)
    used = {_int(a.get("category_id")) for a in data.get("annotations", []) if isinstance(a, dict)}
    categories, new_classes = _categories(data, path, store, category_map, used, allow_new_classes)
    plans = _plan_images(data, path, store, Path(image_dir) if image_dir is not None else None)
    class_ids = {name: i for i, name in enumerate(store.classes + new_classes, 1)}
    _plan_annotations(data, path, plans, categories, class_ids)
    copied: list[Path] = []
    try:
        with store.transaction():
            for name in new_classes:
                store.add_class(name, user=user)
            states = {
                coco_id: _image_state(plan, path, store, category_map) for coco_id, plan in plans.items()
            }
            placing = [
                p for p in plans.values() if p.source is not None and not store.resolve(p.file_name).exists()
            ]
            store.will_place([plan.file_name for plan in placing])  # removed again if this run dies
            for plan in placing:
                target = store.resolve(plan.file_name)
                atomic_copy(plan.source, target)
                copied.append(target)
            stored = 0
            for coco_id, plan in plans.items():
                tags, status, confidence = states[coco_id]
                edit = bool(plan.instances) or plan.extra is not None
                if plan.existing_id is None:
                    image_id = store.add_image(
                        store.resolve(plan.file_name), tags, copy=False, user=user, allow_empty_tags=True
                    )
                elif edit:
                    image_id = plan.existing_id
                    current = set(store.image(image_id).tags)
                    wanted = set(tags) if plan.extra is not None else set(tags) | current
                    if wanted != current:
                        store.set_tags(image_id, sorted(wanted), user=user, allow_empty_tags=True)
                if edit:
                    store.save_labels(
                        image_id, plan.instances, user=user, status=status, confidence=confidence
                    )
                    stored += len(store.instances(image_id))
    except BaseException:
        for target in copied:
            target.unlink(missing_ok=True)
        raise
    logger.info("imported %d annotations on %d images from %s", stored, len(plans), path)
    return stored


__all__ = ["import_coco"]
