"""What the review GUI shows, computed without Gradio: per-tab display state, the scaled canvas, texts and rows.

``app.py`` puts these values into its components. Images HWC uint8 RGB; canvas coordinates are pixels of the
image as sent to the browser (scaled by :func:`display_scale`); image coordinates are full-size XY pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from annotate.review.refine import SharedSegmenter
from annotate.review.session import ReviewSession
from annotate.store import STATUSES

DISPLAY_MAX_SIDE = 1600
"""Images larger than this (longest side, px) are sent scaled down; clicks are mapped back to full size."""
DISPLAY_MIN_SIDE = 640
"""Images smaller than this (longest side, px) are sent scaled up, to fill the canvas."""
CANVAS_HEIGHT = 460
"""Height (px) of the canvas and the brush editor: with the action row above it, the first screen of a
1366 x 768 window holds every action button and the message line."""
EDITOR_MAX_SIDE = 1024
"""The brush editor gets the image at most this large (longest side, px); strokes are mapped back to full size."""
ADD_COLOR, ERASE_COLOR = "rgb(40, 200, 40)", "rgb(230, 30, 30)"
"""Brush colours of the editor: green adds pixels to the instance, red erases them."""

ORDERS = {"least confident first": "confidence", "name": "name"}
"""Queue sort choices: label shown -> ``ReviewSession.queue`` order."""
TOOL_CHOICES = [
    ("Select (S)", "select"),
    ("Add + (P)", "positive"),
    ("Remove − (N)", "negative"),
    ("Box (B)", "box"),
    ("Merge pick (G)", "merge"),
]
"""Click tools: label shown -> ``ReviewSession.tool``."""


@dataclasses.dataclass
class Ui:
    """Per-browser-tab state: the editing session and the display settings."""

    session: ReviewSession
    opacity: float = 0.5
    hidden: set[int] = dataclasses.field(default_factory=set)
    status_filter: str | None = None
    order: str = "confidence"
    editor_key: tuple | None = None  # what the brush editor shows (image, version, selection): kept strokes
    # What the page was last sent of the queue (rows by image id) and of the "Merge with" choices: a reply
    # carries them again only when they changed.
    queue_shown: dict[int, list[Any]] = dataclasses.field(default_factory=dict)
    merge_shown: list[tuple[str, int]] | None = None


def segmenter_banner(segmenter: SharedSegmenter) -> str:
    """One line saying which segmenter answers the clicks; says plainly when it is the GrabCut fallback."""
    if segmenter.is_fallback:
        return f"⚠️ **GrabCut fallback in use.** {segmenter.message}"
    return f"Segmenter: **{segmenter.model_id}** (Segment Anything)"


def display_scale(image: np.ndarray) -> float:
    """Factor from full-size to displayed pixels: down to DISPLAY_MAX_SIDE, up to DISPLAY_MIN_SIDE."""
    side = max(image.shape[:2])
    return min(DISPLAY_MAX_SIDE, max(DISPLAY_MIN_SIDE, side)) / side


def display_image(ui: Ui) -> np.ndarray | None:
    """The open image with its overlay, resized by :func:`display_scale`: HWC uint8 RGB; None if none is open."""
    import cv2

    s = ui.session
    if s.image is None:
        return None
    scale = display_scale(s.image)
    if scale < 1.0:  # a large photo: draw at the (smaller) display size
        return s.render(opacity=ui.opacity, hidden_classes=ui.hidden, scale=scale)
    image = s.render(opacity=ui.opacity, hidden_classes=ui.hidden)  # a small one: draw, then enlarge
    if scale > 1.0:
        size = (int(round(image.shape[1] * scale)), int(round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return image


def image_point(index: tuple[float, float], image: np.ndarray) -> tuple[float, float]:
    """A clicked canvas pixel (column, row) -> XY in the full-size ``image`` (pixel centres line up)."""
    scale = display_scale(image)
    return (float(index[0]) + 0.5) / scale - 0.5, (float(index[1]) + 0.5) / scale - 0.5


def image_info(session: ReviewSession) -> str:
    """Markdown line about the open image: file, size, status, tags and version."""
    if session.image_id is None:
        return "No image open."
    record = session.store.image(session.image_id)
    tags = ", ".join(record.tags) or "none"
    return (
        f"**{record.file_name}** ({record.width}×{record.height}) · status **{record.status}** · "
        f"tags: {tags} · version {record.version}"
    )


def merge_options(session: ReviewSession) -> list[tuple[str, int]]:
    """Choices of the "Merge with" list, the selected instance left out: (label, instance index), the label
    "#n class · area px · source" as in the instance list, so instances of one class are told apart."""
    classes = session.classes
    return [
        (f"#{i + 1} {classes[inst.class_id - 1]} · {inst.area:,} px · {inst.source}", i)
        for i, inst in enumerate(session.instances)
        if i != session.selected and 1 <= inst.class_id <= len(classes)
    ]


def editor_scale(image: np.ndarray) -> float:
    """Factor from full-size pixels to the brush editor's (at most EDITOR_MAX_SIDE on the long side)."""
    return min(1.0, EDITOR_MAX_SIDE / max(image.shape[:2]))


def editor_background(ui: Ui) -> np.ndarray:
    """The brush editor's background: the overlay without clicks, drawn at :func:`editor_scale` (HWC uint8)."""
    s = ui.session
    return s.render(
        opacity=ui.opacity, hidden_classes=ui.hidden, show_points=False, scale=editor_scale(s.require_image())
    )


def editor_key(ui: Ui) -> tuple:
    """What the editor's picture depends on: strokes painted on it stay valid while this is unchanged."""
    s = ui.session
    return (s.image_id, s.version, s.selected, ui.opacity, tuple(sorted(ui.hidden)))


def _queue_row(image_id: int, file_name: str, status: str, confidence: float | None, check: str) -> list[Any]:
    """One row of the queue table (see :func:`queue_rows`)."""
    return [image_id, Path(file_name).name, status, None if confidence is None else round(float(confidence), 3), check]


def queue_rows(ui: Ui) -> list[list[Any]]:
    """Rows of the queue table: [id, file name, status, confidence rounded to 3 places or None, check], where
    check warns about automatic labels of low confidence or from rough models
    (:func:`annotate.review.provenance.review_checks`)."""
    from annotate.review.provenance import review_checks

    checks = review_checks(ui.session.store)
    return [
        _queue_row(r.image_id, r.file_name, r.status, r.confidence, checks.get(r.image_id, ""))
        for r in ui.session.queue(status=ui.status_filter, order=ui.order)
    ]


def open_image_row(ui: Ui) -> list[Any] | None:
    """The open image's row of the queue table as :func:`queue_rows` makes it now; None when no image is open
    or the status filter leaves it out."""
    from annotate.review.provenance import review_checks

    s = ui.session
    if s.image_id is None:
        return None
    record = s.store.image(s.image_id)
    if ui.status_filter is not None and record.status != ui.status_filter:
        return None
    check = review_checks(s.store, [record])[record.id]
    return _queue_row(record.id, record.file_name, record.status, record.confidence, check)


def progress_text(session: ReviewSession) -> str:
    """Markdown line: images reviewed (accepted or rejected) of the total, and the count of every status."""
    counts = session.progress()
    done = counts["accepted"] + counts["rejected"]
    parts = " · ".join(f"{k} {counts[k]}" for k in STATUSES)
    return f"**{done} / {counts['total']} reviewed** · {parts}"


def open_neighbour(ui: Ui, offset: int) -> int:
    """Open the image ``offset`` places after the open one in the shown queue (wrapping); returns its id. The
    image after it in the same direction is read and encoded in the background meanwhile (its first click is then
    not kept waiting for the encoder)."""
    s = ui.session
    rows = s.queue(status=ui.status_filter, order=ui.order)
    if not rows:
        raise ValueError("the queue is empty")
    ids = [r.image_id for r in rows]
    current = ids.index(s.image_id) if s.image_id in ids else -offset
    image_id = ids[(current + offset) % len(ids)]
    s.open_image(image_id)
    following = ids[(current + 2 * offset) % len(ids)]
    if following != image_id:
        s.prefetch_image(following)
    return image_id


def parse_tags(text: str | None, classes: list[str]) -> list[str]:
    """Comma-separated class names -> list; ValueError naming any name that is not a class of the project."""
    tags = [t.strip() for t in (text or "").split(",") if t.strip()]
    unknown = [t for t in tags if t not in classes]
    if unknown:
        raise ValueError(f"unknown tags {unknown}; the project's classes are {classes}")
    return tags


def bootstrap_targets(ui: Ui, scope: str) -> list[int] | None:
    """Image ids to label automatically: ``"this"`` (the open image), ``"shown"`` (the queue), else all (None)."""
    s = ui.session
    if scope == "this":
        s.require_image()
        return [s.image_id]
    if scope == "shown":
        return [r.image_id for r in s.queue(status=ui.status_filter, order=ui.order)]
    return None


def export_summary(root: Path, path: Path, coco: dict[str, Any], report: Any = None, scope: str = "") -> str:
    """One line about a COCO export written to ``path`` inside the project folder ``root``: which images it took
    (``scope``, from :func:`annotate.coco.scope_summary`) and, given the export's
    :class:`annotate.coco.ExportReport`, how many instances with holes a polygon export wrote as RLE."""
    line = (
        f"exported {len(coco.get('images', []))} images and {len(coco.get('annotations', []))} "
        f"instances to {path.relative_to(root)}"
    )
    parts = [line, scope, report.polygon_note() if report else ""]
    return "; ".join(p for p in parts if p)
