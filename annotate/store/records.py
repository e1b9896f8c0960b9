"""What a project store hands out and takes in: records, constants, errors, and their table rows.

Records are frozen dataclasses read from the database (:class:`ImageRecord`, :class:`InstanceRecord`,
:class:`Change`); :class:`NewInstance` is what callers save. :func:`instance_row` validates and encodes a
:class:`NewInstance` into a row of the ``instances`` table; :func:`instance_record` reads one back. Every save
writes all of an image's instances, so a compressed counts string found valid once is remembered
(:data:`CHECKED_COUNTS` of them) and not decoded again when the same instance is saved unchanged.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from annotate.rle import RLE, encode_mask, normalize_rle, rle_area, rle_bbox
from core.errors import UserError

STATUSES = ("new", "pseudo", "review", "accepted", "rejected")
"""Per-image status: new (untouched), pseudo (pseudo-labelled), review (in review), accepted, rejected."""
SOURCES = ("manual", "dhr", "sam", "grabcut", "import")
"""Where an instance came from: drawn by hand, DHR mask, SAM, GrabCut fallback, imported COCO file."""
RESERVED_CLASS_NAMES = ("background", "ignore")

IMAGE_COLUMNS = "id, file_name, width, height, sha256, status, confidence, version, updated_at, updated_by"
"""Columns of an image row, in the order :class:`ImageRecord` and the store's row indexing expect."""
INSTANCE_COLUMNS = (
    "id, image_id, class_id, counts, score, source, needs_review, reason, area, bbox, iscrowd, predicted_iou"
)
"""Columns of an instance row, in the order :func:`instance_record` expects."""


class VersionConflict(UserError, RuntimeError):
    """An edit based on an old version of an image: someone else saved the image in between."""

    def __init__(self, image_id: int, file_name: str, expected: int, current: int, by: str, at: str) -> None:
        self.image_id, self.file_name = image_id, file_name
        self.expected, self.current, self.changed_by, self.changed_at = expected, current, by, at
        super().__init__(
            f"image {image_id} ({file_name}) was changed by {by!r} at {at} (now version {current}); "
            f"this edit was based on version {expected} and was not saved. Reload the image and redo the edit."
        )


class HistoryEmpty(UserError, ValueError):
    """``undo`` with nothing to undo, or ``redo`` with nothing to redo."""


@dataclass(frozen=True)
class ImageRecord:
    """One image of the project. ``width``/``height`` are as displayed (EXIF rotation applied)."""

    id: int
    file_name: str  # POSIX path relative to the project root, e.g. "images/cat.jpg"
    width: int
    height: int
    sha256: str
    status: str
    confidence: float | None
    tags: tuple[str, ...]  # class names, in class-id order
    version: int
    tag_ids: tuple[int, ...] = ()
    updated_at: str = ""
    updated_by: str = ""


@dataclass(frozen=True)
class InstanceRecord:
    """One stored instance. ``rle`` is the compressed RLE dict of the full image size; bbox is COCO XYWH.

    ``score`` is the instance's rating in [0, 1] (it orders painting; see :class:`NewInstance`);
    ``predicted_iou`` the segmenter's own predicted IoU of the mask, None when no segmenter predicted it.
    """

    id: int
    image_id: int
    class_id: int
    rle: RLE
    score: float
    source: str
    needs_review: bool
    reason: str
    area: int = 0
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    iscrowd: bool = False  # a COCO crowd region: exported with iscrowd 1, ignore (255) in semantic masks
    predicted_iou: float | None = None

    def to_new(self) -> NewInstance:
        """This instance as a :class:`NewInstance` (to save it again, e.g. into another project)."""
        return NewInstance(
            self.class_id, self.rle, self.score, self.source, self.needs_review, self.reason, self.iscrowd,
            self.predicted_iou,
        )


@dataclass(frozen=True)
class NewInstance:
    """An instance to save: ``mask`` is an (H, W) bool array or an RLE dict of the image's size.

    ``score``: the rating of whoever made it, in [0, 1] (the labelling's blend of seed agreement and the
    segmenter's quality for pseudo-labels, the segmenter's predicted IoU for a reviewer's refinement, 1 by
    hand). ``predicted_iou``: the segmenter's own predicted IoU of this mask (SAM's IoU head, GrabCut's prompt
    agreement), None when no segmenter made it.
    """

    class_id: int
    mask: np.ndarray | RLE
    score: float = 1.0
    source: str = "manual"
    needs_review: bool = False
    reason: str = ""
    iscrowd: bool = False  # a crowd region (COCO ``iscrowd`` 1): one mask over many objects, never trained on
    predicted_iou: float | None = None

    @classmethod
    def from_instance(cls, instance: Any) -> NewInstance:
        """A :class:`NewInstance` from any object with the same fields (e.g. ``annotate.labeling.Instance``)."""
        return cls(
            instance.class_id,
            instance.mask,
            float(instance.score),
            instance.source,
            bool(instance.needs_review),
            instance.reason,
            bool(getattr(instance, "iscrowd", False)),
            getattr(instance, "predicted_iou", None),
        )


@dataclass(frozen=True)
class Change:
    """One line of the audit log: who did what to which image (and the version it produced), when."""

    id: int
    image_id: int | None
    version: int | None
    user: str
    action: str
    at: str
    detail: dict[str, Any]


def utc_now() -> str:
    """The current UTC time, ISO 8601 with milliseconds (the store's timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def check_user(user: str) -> str:
    """The name of who makes a change, stripped (ValueError when empty or not a string)."""
    if not isinstance(user, str) or not user.strip():
        raise ValueError("user must be a non-empty string naming who makes the change")
    return user.strip()


def check_status(status: str) -> str:
    """``status`` if it is one of :data:`STATUSES` (ValueError naming them otherwise)."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; statuses are {STATUSES}")
    return status


def check_class_name(name: str) -> str:
    """A class name, stripped: non-empty, not reserved, without commas (ValueError otherwise)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"invalid class name {name!r}")
    name = name.strip()
    if name.lower() in RESERVED_CLASS_NAMES:
        raise ValueError(f"class name {name!r} is reserved (class 0 is background, 255 is ignore)")
    if "," in name:
        raise ValueError(f"class name {name!r} must not contain a comma")
    return name


CHECKED_COUNTS = 1024
"""How many validated compressed counts strings (with their image size) :func:`instance_row` remembers."""


@functools.lru_cache(maxsize=CHECKED_COUNTS)
def _checked_counts(counts: str, height: int, width: int) -> tuple[int, str]:
    """(area, bbox JSON) of compressed ``counts`` of an (height, width) mask, validated by
    :func:`annotate.rle.normalize_rle` on the first call (ValueError, not remembered, when invalid). A string
    never changes, so the answer stays true for the same counts and size."""
    rle = normalize_rle({"size": [height, width], "counts": counts}, (height, width))
    return rle_area(rle), json.dumps(rle_bbox(rle))


def _is_size(size: Any, height: int, width: int) -> bool:
    """Whether an RLE's ``size`` is exactly ``[height, width]`` as two integers (not bools)."""
    return (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in size)
        and (int(size[0]), int(size[1])) == (height, width)
    )


def _encoded_mask(mask: np.ndarray | RLE, where: str, height: int, width: int) -> tuple[str, int, str]:
    """(compressed counts, area, bbox JSON) of an instance's mask of an (height, width) image: an (H, W) bool
    array is encoded, an RLE dict validated (``where`` names the instance in error messages)."""
    if isinstance(mask, dict):
        counts = mask.get("counts")
        if type(counts) is str and counts.isascii() and _is_size(mask.get("size"), height, width):
            try:
                return (counts, *_checked_counts(counts, height, width))
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from error
        try:
            rle = normalize_rle(mask, (height, width))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error
    else:
        array = np.asarray(mask)
        if array.shape != (height, width):
            raise ValueError(
                f"{where}: mask shape {array.shape} does not match the image ({height}, {width})"
            )
        rle = encode_mask(array)
    return rle["counts"], rle_area(rle), json.dumps(rle_bbox(rle))


def instance_row(instance: NewInstance, where: str, height: int, width: int, n_classes: int) -> tuple | None:
    """Validate and encode an instance of an (height, width) image into an ``instances`` row.

    Returns ``(class_id, counts, score, source, needs_review, reason, area, bbox JSON, iscrowd, predicted_iou)``,
    or None for
    an empty mask. ``where`` names the instance in error messages.
    """
    if not isinstance(instance, NewInstance):
        raise TypeError(f"{where}: expected NewInstance, got {type(instance).__name__}")
    class_id = instance.class_id
    if isinstance(class_id, (bool, np.bool_)) or not isinstance(class_id, (int, np.integer)):
        raise TypeError(f"{where}: class_id must be an int, got {class_id!r}")
    if not 1 <= int(class_id) <= n_classes:
        raise ValueError(f"{where}: class_id {class_id} outside 1..{n_classes}")
    score = float(instance.score)
    if not math.isfinite(score):
        raise ValueError(f"{where}: score {instance.score!r} is not finite")
    predicted = instance.predicted_iou
    if predicted is not None and not (math.isfinite(float(predicted)) and 0.0 <= float(predicted) <= 1.0):
        raise ValueError(f"{where}: predicted_iou {predicted!r} is not a number in [0, 1]")
    if instance.source not in SOURCES:
        raise ValueError(f"{where}: unknown source {instance.source!r}; sources are {SOURCES}")
    counts, area, bbox = _encoded_mask(instance.mask, where, height, width)
    if not 0 <= area <= height * width:  # cannot happen for a validated RLE; never store one that says so
        raise ValueError(f"{where}: mask area {area} outside 0..{height * width}")
    if area == 0:
        return None
    return (
        int(class_id),
        counts,
        score,
        instance.source,
        int(bool(instance.needs_review)),
        str(instance.reason),
        area,
        bbox,
        int(bool(instance.iscrowd)),
        None if predicted is None else float(predicted),
    )


def instance_record(row: Sequence[Any], size: Sequence[int]) -> InstanceRecord:
    """An :class:`InstanceRecord` from a row of :data:`INSTANCE_COLUMNS` of an image of ``size`` (H, W)."""
    return InstanceRecord(
        id=row[0],
        image_id=row[1],
        class_id=row[2],
        rle={"size": list(size), "counts": row[3]},
        score=row[4],
        source=row[5],
        needs_review=bool(row[6]),
        reason=row[7],
        area=int(row[8]),
        bbox=tuple(json.loads(row[9])),
        iscrowd=bool(row[10]),
        predicted_iou=None if row[11] is None else float(row[11]),
    )


def image_record(row: Sequence[Any], tag_ids: Sequence[int], names: dict[int, str]) -> ImageRecord:
    """An :class:`ImageRecord` from a row of :data:`IMAGE_COLUMNS`, its tag class ids and the class names."""
    return ImageRecord(
        id=row[0],
        file_name=row[1],
        width=row[2],
        height=row[3],
        sha256=row[4],
        status=row[5],
        confidence=row[6],
        tags=tuple(names[c] for c in tag_ids),
        version=row[7],
        tag_ids=tuple(tag_ids),
        updated_at=row[8],
        updated_by=row[9],
    )
