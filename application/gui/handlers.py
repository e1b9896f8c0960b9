"""Event handlers of the review GUI (Gradio): each reads a tab's :class:`annotate.review.view.Ui`, calls the
editing session or a project job, and returns the updates of the page's components.

Imported only by ``app.py``, which builds the layout (:class:`Page` names its components) and wires the events.
A handler that fails on user input shows the error as a message (paths inside the project shown relative to
it); an edit conflict also pops up a warning and shows the newer labels. Loading the page never fails: an
image that cannot be opened is named in the message and offered for removal, and the queue still loads.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from annotate.review.brush import strokes_from_layers
from annotate.review.pool import SessionPool
from annotate.review.refine import SharedSegmenter
from annotate.review.session import EditConflict, ReviewSession
from annotate.review.view import (
    ORDERS,
    Ui,
    display_image,
    editor_background,
    editor_key,
    export_summary,
    image_info,
    image_point,
    merge_options,
    open_image_row,
    open_neighbour,
    parse_tags,
    progress_text,
    queue_rows,
)
from core.errors import UserError
from models.settings import ModelSettings

logger = logging.getLogger("dhr.app")


@dataclasses.dataclass
class Page:
    """The components of the review page that handlers update (built by ``app.build_app``)."""

    state: Any
    canvas: Any
    instances_df: Any
    image_md: Any
    merge_dd: Any
    class_dd: Any
    new_class_dd: Any
    message_md: Any
    queue_df: Any
    progress_md: Any
    editor: Any
    export_file: Any
    upload: Any
    job_md: Any
    remove_box: Any


USER_ERRORS = (UserError, ValueError, OSError, KeyError, sqlite3.Error)
"""Errors a handler shows as a message instead of failing (bad input, a busy or damaged project, a bad file);
any other error (torch's ``RuntimeError`` included) is logged with its traceback."""


def user_message(error: BaseException, root: Path, *, upload: Path | None = None) -> str:
    """One line for the page: paths inside the project relative to it, an upload by its own name only."""
    text = str(error)
    if isinstance(error, sqlite3.OperationalError) and "locked" in text:
        text = (
            "the project is busy: another program holds its database for writing; "
            f"nothing was saved, try again in a moment ({text})"
        )
    elif isinstance(error, sqlite3.Error):
        text = f"the project database cannot be read: {text}"
    if upload is not None:
        text = text.replace(str(upload), upload.name).replace(str(upload.parent) + os.sep, "")
    return text.replace(str(root) + os.sep, "").replace(str(root), "the project folder")


def guarded(fn: Callable[..., dict]) -> Callable[..., dict]:
    """Run a handler; a user error becomes a message, a version conflict a warning and a reload."""
    return _guard(fn, requeue=False)


def edit(fn: Callable[..., dict]) -> Callable[..., dict]:
    """A :func:`guarded` handler of a label edit whose event also fills the queue: its reply carries the queue
    when the edit (or the reload after a conflict) changed the open image's row there (its status, confidence
    or check), so an edit takes one request."""
    return _guard(fn, requeue=True)


def _guard(fn: Callable[..., dict], *, requeue: bool) -> Callable[..., dict]:
    """:func:`guarded` / :func:`edit`."""

    @functools.wraps(fn)
    def wrapper(self: ReviewHandlers, ui: Ui, *args: Any, **kwargs: Any) -> dict:
        if ui is None:
            return {self.page.message_md: "The page is still loading; try again."}
        try:
            with self.pool.using(ui):  # reads the image again if its memory was given to other tabs
                try:
                    out = fn(self, ui, *args, **kwargs) or {self.page.message_md: gr.skip()}
                except EditConflict as error:
                    gr.Warning(user_message(error, self.store.root))
                    out = self.view(ui, f"⚠️ {user_message(error, self.store.root)}")
                return {**out, **self.queue_if_changed(ui)} if requeue else out
        except USER_ERRORS as error:
            logger.info("%s: %s", fn.__name__, error)
            return {self.page.message_md: f"⚠️ {user_message(error, self.store.root)}"}

    return wrapper


class ReviewHandlers:
    """The page's event handlers over an open ``store`` and a shared segmenter.

    ``user`` is recorded with edits when the browser has no login; ``settings`` (device, weights folder,
    segmenter) go to the jobs, which run on ``shared``; ``bootstrap_options`` / ``training_options`` are :class:`annotate.bootstrap.BootstrapConfig` / :class:`training.rounds.RoundsConfig`
    fields used by the automatic-labelling and training buttons (their events: :mod:`application.gui.jobs_panel`).
    """

    def __init__(
        self,
        page: Page,
        store: Any,
        shared: SharedSegmenter,
        *,
        user: str = "local",
        settings: ModelSettings | None = None,
        bootstrap_options: dict[str, Any] | None = None,
        training_options: dict[str, Any] | None = None,
        pool: SessionPool | None = None,
    ) -> None:
        self.page = page
        self.pool = pool if pool is not None else SessionPool()
        self.store = store
        self.shared = shared
        self.user = user
        self.settings = settings or ModelSettings()
        self.classes = list(store.classes)
        self.bootstrap_options = bootstrap_options
        self.training_options = training_options

    # ------------------------------------------------------------------ view helpers
    def view(self, ui: Ui, message: str = "") -> dict:
        """The open image's part of the page. Dropdowns get plain values (a component update costs Gradio far
        more), "Merge with" its choices only when they changed; nothing is left picked there."""
        s = ui.session
        selected = s.instances[s.selected] if s.selected is not None else None
        return {
            self.page.canvas: display_image(ui),
            self.page.instances_df: s.instance_rows(),
            self.page.image_md: image_info(s),
            self.page.merge_dd: self._merge_update(ui),
            self.page.class_dd: selected.class_id if selected else None,
            self.page.new_class_dd: s.new_class,
            self.page.message_md: message,
        }

    def _merge_update(self, ui: Ui) -> Any:
        """The "Merge with" list emptied of its pick, with its choices when they differ from the last sent."""
        choices = merge_options(ui.session)
        if choices == ui.merge_shown:
            return None
        ui.merge_shown = choices
        return gr.Dropdown(choices=choices, value=None)

    def queue_view(self, ui: Ui) -> dict:
        """The queue and the progress line (the rows sent are remembered for :meth:`queue_if_changed`)."""
        rows = queue_rows(ui)
        ui.queue_shown = {row[0]: row for row in rows}
        return {self.page.queue_df: rows, self.page.progress_md: progress_text(ui.session)}

    def queue_if_changed(self, ui: Ui) -> dict:
        """:meth:`queue_view` when the open image's row differs from the one last sent, else nothing."""
        s = ui.session
        if s.image_id is None or open_image_row(ui) == ui.queue_shown.get(s.image_id):
            return {}
        return self.queue_view(ui)

    # ------------------------------------------------------------------ handlers
    def _open_failed(self, record_name: str, error: BaseException) -> str:
        """The message for an image that cannot be opened, pointing at its removal."""
        logger.warning("%s cannot be opened: %s", record_name, error)
        return (
            f"⚠️ {record_name} cannot be opened: {user_message(error, self.store.root)} · "
            "fix the file, or remove the image from the project under **Remove image**"
        )

    def on_load(self, request: gr.Request) -> dict:
        """A new tab: its session, the queue and the first image that opens. Never raises: an image that cannot
        be opened is named (and offered for removal), and the rest of the page still loads."""
        name = getattr(request, "username", None) or self.user
        ui = Ui(ReviewSession(self.store, self.shared, user=name))
        self.pool.opened(ui, getattr(request, "session_hash", None))
        with self.pool.using(ui):
            return self._load(ui)

    def _load(self, ui: Ui) -> dict:
        message, failed = "", ""
        try:
            rows = ui.session.queue(order=ui.order)
        except Exception as error:  # noqa: BLE001 - the page must load whatever the project says
            logger.exception("cannot list the project's images")
            rows, message = [], f"⚠️ cannot list the project's images: {user_message(error, self.store.root)}"
        if rows:
            try:
                ui.session.open_image(rows[0].image_id)
            except Exception as error:  # noqa: BLE001
                message, failed = self._open_failed(rows[0].file_name, error), rows[0].file_name
        elif not message:
            message = "The project has no images yet: add some under **Add images**."
        return {
            self.page.state: ui,
            **self._safe(lambda: self.view(ui, message), {self.page.message_md: message}),
            **self._safe(lambda: self.queue_view(ui), {}),
            self.page.remove_box: failed,
        }

    def on_unload(self, request: gr.Request) -> None:
        """The tab was closed: free its image now."""
        self.pool.closed(getattr(request, "session_hash", None))

    def _safe(self, build: Callable[[], dict], fallback: dict) -> dict:
        """``build()``, or ``fallback`` when it fails (logged): for the parts of the page that must always load."""
        try:
            return build()
        except Exception:  # noqa: BLE001
            logger.exception("part of the page could not be drawn")
            return fallback

    @guarded
    def on_prepare(self, ui: Ui) -> dict:
        s = ui.session
        if s.image is None:
            return {}
        started = time.perf_counter()
        s.prepare_segmenter()
        took = time.perf_counter() - started
        return (
            {self.page.message_md: f"image encoded for the segmenter in {took:.1f} s"} if took > 1.0 else {}
        )

    @guarded
    def on_queue_select(self, ui: Ui, evt: gr.SelectData) -> dict:
        row = evt.row_value
        if not row:
            return {}
        record = self.store.image(int(row[0]))
        try:
            ui.session.open_image(record.id)
        except (ValueError, OSError) as error:
            return {
                self.page.message_md: self._open_failed(record.file_name, error),
                self.page.remove_box: record.file_name,
            }
        return self.view(ui)

    @guarded
    def on_filter(self, ui: Ui, status: str, order: str) -> dict:
        ui.status_filter = None if status == "all" else status
        ui.order = ORDERS.get(order, "confidence")
        return self.queue_view(ui)

    @edit
    def on_click(self, ui: Ui, tool: str, evt: gr.SelectData) -> dict:
        s = ui.session
        if s.image is None:
            raise ValueError("no image is open")
        x, y = image_point(evt.index, s.image)
        s.tool = tool
        started = time.perf_counter()
        message = s.click(x, y)
        logger.debug(
            "click (%.0f, %.0f) with %s took %.0f ms", x, y, tool, 1e3 * (time.perf_counter() - started)
        )
        return self.view(ui, message)

    @guarded
    def on_tool(self, ui: Ui, tool: str) -> dict:
        ui.session.tool = tool
        ui.session.pending_corner = None
        return {self.page.canvas: display_image(ui)}

    @guarded
    def on_instance_select(self, ui: Ui, evt: gr.SelectData) -> dict:
        ui.session.select(int(evt.index[0]))
        return self.view(ui, ui.session.describe())

    @guarded
    def on_deselect(self, ui: Ui) -> dict:
        ui.session.select(None)
        return self.view(ui)

    @guarded
    def on_new_class(self, ui: Ui, class_id: int | None) -> dict:
        if class_id is not None:
            ui.session.new_class = int(class_id)
        return {}

    @edit
    def on_set_class(self, ui: Ui, class_id: int | None) -> dict:
        if class_id is None:
            raise ValueError("pick a class")
        ui.session.set_class(int(class_id))
        return self.view(ui, f"instance #{ui.session.selected + 1} is now {self.classes[int(class_id) - 1]}")

    @edit
    def on_delete(self, ui: Ui) -> dict:
        index = ui.session.selected
        ui.session.delete()
        return self.view(ui, f"deleted instance #{index + 1}")

    @edit
    def on_merge(self, ui: Ui, other: int | None) -> dict:
        s = ui.session
        if s.selected is None:
            raise ValueError("select the instance to keep first, then pick the one to merge into it")
        if other is None:
            raise ValueError("pick the instance to merge in 'Merge with'")
        index = s.merge(s.selected, int(other))
        return self.view(ui, f"merged into instance #{index + 1}")

    # ---------------------------------------------------------- clean-up (each one undo step)
    @edit
    def on_delete_class(self, ui: Ui, class_id: int | None) -> dict:
        if class_id is None:
            raise ValueError("pick the class whose instances to delete")
        return self.view(ui, ui.session.delete_class(int(class_id)))

    @edit
    def on_drop_fragments(self, ui: Ui, min_area: float | None) -> dict:
        if min_area is None or float(min_area) < 1:
            raise ValueError("type the size in pixels under which pieces are deleted (at least 1)")
        return self.view(ui, ui.session.drop_fragments(int(min_area)))

    @edit
    def on_keep_largest(self, ui: Ui) -> dict:
        return self.view(ui, ui.session.keep_largest())

    @edit
    def on_keep_largest_all(self, ui: Ui) -> dict:
        return self.view(ui, ui.session.keep_largest(every=True))

    # ---------------------------------------------------------- history and decisions
    @guarded
    def on_undo(self, ui: Ui) -> dict:
        text = ui.session.undo()
        return {**self.view(ui, text), **self.queue_view(ui)}

    @guarded
    def on_redo(self, ui: Ui) -> dict:
        text = ui.session.redo()
        return {**self.view(ui, text), **self.queue_view(ui)}

    def _decide(self, ui: Ui, status: str) -> dict:
        s = ui.session
        name = Path(s.store.image(s.image_id).file_name).name
        nxt = s.decide_and_next(status, status_filter=ui.status_filter, order=ui.order)
        verb = "accepted" if status == "accepted" else "rejected"
        message = f"{verb} {name}" + (
            "" if nxt is not None else "; every image in the queue is accepted or rejected"
        )
        return {**self.view(ui, message), **self.queue_view(ui)}

    @guarded
    def on_accept(self, ui: Ui) -> dict:
        return self._decide(ui, "accepted")

    @guarded
    def on_reject(self, ui: Ui) -> dict:
        return self._decide(ui, "rejected")

    @guarded
    def on_prev(self, ui: Ui) -> dict:
        open_neighbour(ui, -1)
        return self.view(ui)

    @guarded
    def on_next(self, ui: Ui) -> dict:
        open_neighbour(ui, 1)
        return self.view(ui)

    @guarded
    def on_display(self, ui: Ui, opacity: float | None, visible: list[int]) -> dict:
        """Opacity (dragged or typed; clamped to [0, 1]) and the classes shown."""
        try:
            value = float(opacity)
        except (TypeError, ValueError):
            raise ValueError(f"opacity must be a number between 0 and 1, got {opacity!r}") from None
        ui.opacity = min(1.0, max(0.0, value)) if value == value else ui.opacity
        ui.hidden = {i + 1 for i in range(len(self.classes))} - {int(v) for v in visible or []}
        message = "" if ui.opacity == value else f"opacity {value:g} is outside 0-1: {ui.opacity:g} is used"
        return {self.page.canvas: display_image(ui), self.page.message_md: message}

    # ---------------------------------------------------------- brush editor
    def _editor_value(self, ui: Ui) -> dict:
        ui.editor_key = editor_key(ui)
        return {"background": editor_background(ui), "layers": [], "composite": None}

    @guarded
    def on_brush_open(self, ui: Ui) -> dict:
        """Show the image in the brush editor (scaled down); strokes already painted on the same picture stay."""
        s = ui.session
        if s.image is None:
            return {}
        if ui.editor_key == editor_key(ui):
            return {self.page.editor: gr.skip()}  # the same picture: keep the strokes not yet applied
        return {self.page.editor: self._editor_value(ui)}

    @edit
    def on_brush_apply(self, ui: Ui, value: dict | None) -> dict:
        s = ui.session
        image = s.require_image()
        if not value or not value.get("layers"):
            raise ValueError("paint on the image first (green adds pixels, red erases them)")
        add, remove = strokes_from_layers(value["layers"], image.shape[:2])
        if not add.any() and not remove.any():
            raise ValueError("nothing painted: use the brush (green adds pixels, red erases them)")
        change = s.paint(add=add, remove=remove)
        return {
            **self.view(ui, f"instance #{s.selected + 1}: {change:+d} px"),
            self.page.editor: self._editor_value(ui),
        }

    @guarded
    def on_export(self, ui: Ui, statuses: list[str] | None, polygons: bool) -> dict:
        """Export the images of the chosen statuses into ``PROJECT/exports``; the message says what it took."""
        from annotate.coco import ExportReport, export_into_project, scope_summary

        if not statuses:
            raise ValueError("tick at least one status under 'Images to export'")
        report = ExportReport()
        path, coco = export_into_project(self.store, statuses=list(statuses), polygons=bool(polygons), report=report)
        scope = scope_summary(self.store.status_counts(), list(statuses))
        message = export_summary(self.store.root, path, coco, report, scope)
        return {self.page.export_file: gr.File(value=str(path), visible=True), self.page.message_md: message}

    @guarded
    def on_add_images(self, ui: Ui, files: list[Any] | None, tags_text: str) -> dict:
        """Add uploaded images, each decoded whole first: a truncated or unreadable one is refused by name."""
        if not files:
            raise ValueError("choose image files to add first")
        tags = parse_tags(tags_text, self.classes)
        added: list[str] = []
        refused: list[str] = []
        for f in files:
            path = Path(getattr(f, "name", f))
            try:
                self.store.add_image(path, tags, copy=True, verify=True, user=ui.session.user)
            except (ValueError, OSError) as error:
                logger.info("upload %s refused: %s", path.name, error)
                refused.append(user_message(error, self.store.root, upload=path))
            else:
                added.append(path.name)
        message = f"added {len(added)} image(s)" + (f": {', '.join(added)}" if added else "")
        if refused:
            message = f"⚠️ {message}; refused {len(refused)}: " + " · ".join(refused)
        return {**self.queue_view(ui), self.page.message_md: message, self.page.upload: None}

    @guarded
    def on_remove(self, ui: Ui, name: str) -> dict:
        """Remove the named image from the project (its file goes to ``removed/``, its labels to the change log)."""
        if not (name or "").strip():
            raise ValueError("type the name of the image to remove (as shown in the queue)")
        record = self.store.lookup_image(name)
        self.store.remove_images([record.id], user=ui.session.user)
        s = ui.session
        message = f"removed {record.file_name} from the project"
        if s.image_id == record.id or s.image_id is None:
            s.close_image()
            rows = s.queue(status=ui.status_filter, order=ui.order)
            if rows:
                try:
                    s.open_image(rows[0].image_id)
                except (ValueError, OSError) as error:
                    message += " · " + self._open_failed(rows[0].file_name, error)
        return {**self.view(ui, message), **self.queue_view(ui), self.page.remove_box: ""}
