"""dhr-label review GUI (Gradio): a thin layer of layout and events over :mod:`annotate.session`.

``python app.py`` opens the bundled demo project (created on first launch in ~/.cache/dhr-label/demo-project);
``python app.py --project DIR`` opens a project. Binds 127.0.0.1 unless ``--host`` says otherwise; use
``--auth user:pass`` or ``--auth-file FILE`` whenever the GUI is reachable by others.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from annotate.cli_gui import build_gui_parser, default_user, logins_from_args, open_project
from annotate.session import (
    STATUSES,
    EditConflict,
    ReviewSession,
    SharedSegmenter,
    class_color,
    project_path,
    run_bootstrap,
    run_training_round,
    strokes_from_layers,
)

logger = logging.getLogger("dhr.app")

DISPLAY_MAX_SIDE = 1600
"""Images larger than this (longest side, px) are sent scaled down; clicks are mapped back to full size."""
DISPLAY_MIN_SIDE = 640
"""Images smaller than this (longest side, px) are sent scaled up, to fill the canvas."""

ORDERS = {"least confident first": "confidence", "name": "name"}
TOOL_CHOICES = [
    ("Select (S)", "select"),
    ("Add + (P)", "positive"),
    ("Remove − (N)", "negative"),
    ("Box (B)", "box"),
]

SHORTCUTS = """
| Key | Action |
|---|---|
| **S** / **P** / **N** / **B** | tool: select / add point / remove point / box |
| **A** | accept and go to the next image |
| **R** | reject image |
| **D** or **Delete** | delete selected instance |
| **M** | merge selected with the instance picked in "Merge with" |
| **Z** or **Ctrl+Z** | undo |
| **Y** or **Ctrl+Shift+Z** | redo |
| **Esc** | deselect |
| **←** / **→** | previous / next image |
"""

SHORTCUTS_JS = """
() => {
  if (window.__dhrShortcuts) { return; }
  window.__dhrShortcuts = true;
  const click = (id) => { const el = document.getElementById(id); if (el) { el.click(); } };
  const tool = (value) => {
    const el = document.querySelector('#tool input[value="' + value + '"]');
    if (el) { el.click(); }
  };
  document.addEventListener('keydown', (event) => {
    const t = event.target;
    const tag = t && t.tagName ? t.tagName.toLowerCase() : '';
    const typing = tag === 'textarea' || tag === 'select' || (t && t.isContentEditable) ||
      (tag === 'input' && !['radio', 'checkbox', 'range', 'button'].includes(t.type));
    if (typing || event.altKey || event.metaKey) { return; }
    const key = event.key.toLowerCase();
    let action = null;
    if (event.ctrlKey) {
      if (key === 'z' && !event.shiftKey) { action = () => click('btn-undo'); }
      else if (key === 'y' || (key === 'z' && event.shiftKey)) { action = () => click('btn-redo'); }
    } else {
      const table = {
        's': () => tool('select'), 'p': () => tool('positive'), 'n': () => tool('negative'),
        'b': () => tool('box'), 'a': () => click('btn-accept'),
        'r': () => click('btn-reject'), 'd': () => click('btn-delete'), 'delete': () => click('btn-delete'),
        'm': () => click('btn-merge'), 'z': () => click('btn-undo'), 'y': () => click('btn-redo'),
        'escape': () => click('btn-deselect'), 'arrowleft': () => click('btn-prev'),
        'arrowright': () => click('btn-next'),
      };
      action = table[key] || null;
    }
    if (action) { event.preventDefault(); action(); }
  });
}
"""

CSS = """
#canvas img { cursor: crosshair; }
#segmenter-status.fallback { border-left: 4px solid #e67e22; padding-left: 8px; }
#message { min-height: 1.6em; }
#shortcuts, #shortcuts table { font-size: 0.8em; }
#instances table, #queue table { font-size: 0.85em; }
#shortcuts td, #shortcuts th { padding: 2px 6px; }
"""


@dataclasses.dataclass
class Ui:
    """Per-browser-tab state: the editing session and the display settings."""

    session: ReviewSession
    opacity: float = 0.5
    hidden: set[int] = dataclasses.field(default_factory=set)
    status_filter: str | None = None
    order: str = "confidence"


def segmenter_banner(segmenter: SharedSegmenter) -> str:
    """One line saying which segmenter answers the clicks; says plainly when it is the GrabCut fallback."""
    if segmenter.is_fallback:
        return f"⚠️ **GrabCut fallback in use.** {segmenter.message}"
    return f"Segmenter: **{segmenter.model_id}** (Segment Anything)"


def display_scale(image: np.ndarray) -> float:
    """Factor from full-size to displayed pixels: down to DISPLAY_MAX_SIDE, up to DISPLAY_MIN_SIDE."""
    side = max(image.shape[:2])
    return min(DISPLAY_MAX_SIDE, max(DISPLAY_MIN_SIDE, side)) / side


def build_app(
    store: Any,
    segmenter: Any,
    *,
    user: str = "local",
    bootstrap_options: dict[str, Any] | None = None,
    training_options: dict[str, Any] | None = None,
) -> Any:
    """The Gradio Blocks of the review GUI over an open ``store`` and a segmenter (bare or shared).

    ``bootstrap_options`` / ``training_options`` are :class:`annotate.bootstrap.BootstrapConfig` /
    :class:`training.rounds.RoundsConfig` fields used by the automatic-labelling and training buttons.
    """
    import cv2

    shared = segmenter if isinstance(segmenter, SharedSegmenter) else SharedSegmenter(segmenter)
    classes = list(store.classes)
    class_choices = [(name, i + 1) for i, name in enumerate(classes)]
    swatches = " ".join(
        f"<span style='color:rgb{class_color(i + 1)}'>■</span> {name}" for i, name in enumerate(classes)
    )

    # ------------------------------------------------------------------ view helpers
    def canvas_value(ui: Ui) -> np.ndarray | None:
        s = ui.session
        if s.image is None:
            return None
        image = s.render(opacity=ui.opacity, hidden_classes=ui.hidden)
        scale = display_scale(image)
        if scale != 1.0:
            size = (int(round(image.shape[1] * scale)), int(round(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        return image

    def info_text(ui: Ui) -> str:
        s = ui.session
        if s.image_id is None:
            return "No image open."
        record = s.store.image(s.image_id)
        tags = ", ".join(record.tags) or "none"
        return (
            f"**{record.file_name}** ({record.width}×{record.height}) · status **{record.status}** · "
            f"tags: {tags} · version {record.version}"
        )

    def merge_choices(ui: Ui) -> Any:
        s = ui.session
        choices = [
            (f"#{i + 1} {classes[inst.class_id - 1]}", i)
            for i, inst in enumerate(s.instances)
            if i != s.selected and 1 <= inst.class_id <= len(classes)
        ]
        return gr.Dropdown(choices=choices, value=None)

    def view(ui: Ui, message: str = "") -> dict:
        s = ui.session
        selected = s.instances[s.selected] if s.selected is not None else None
        return {
            canvas: canvas_value(ui),
            instances_df: s.instance_rows(),
            image_info: info_text(ui),
            merge_dd: merge_choices(ui),
            class_dd: gr.Dropdown(value=selected.class_id if selected else None),
            new_class_dd: gr.Dropdown(value=s.new_class),
            message_md: message,
        }

    def queue_view(ui: Ui) -> dict:
        s = ui.session
        rows = [
            [
                r.image_id,
                Path(r.file_name).name,
                r.status,
                None if r.confidence is None else round(float(r.confidence), 3),
            ]
            for r in s.queue(status=ui.status_filter, order=ui.order)
        ]
        counts = s.progress()
        done = counts["accepted"] + counts["rejected"]
        parts = " · ".join(f"{k} {counts[k]}" for k in STATUSES)
        return {
            queue_df: rows,
            progress_md: f"**{done} / {counts['total']} reviewed** · {parts}",
        }

    def guarded(fn: Callable[..., dict]) -> Callable[..., dict]:
        """Run a handler; a user error becomes a message, a version conflict a warning and a reload."""

        @functools.wraps(fn)
        def wrapper(ui: Ui, *args: Any, **kwargs: Any) -> dict:
            if ui is None:
                return {message_md: "The page is still loading; try again."}
            try:
                return fn(ui, *args, **kwargs) or {message_md: gr.skip()}
            except EditConflict as error:
                gr.Warning(str(error))
                return view(ui, f"⚠️ {error}")
            except (ValueError, RuntimeError, FileNotFoundError, KeyError) as error:
                logger.info("%s: %s", fn.__name__, error)
                return {message_md: f"⚠️ {error}"}

        return wrapper

    # ------------------------------------------------------------------ handlers
    def on_load(request: gr.Request) -> dict:
        name = getattr(request, "username", None) or user
        ui = Ui(ReviewSession(store, shared, user=name))
        rows = ui.session.queue(order=ui.order)
        message = ""
        if rows:
            ui.session.open_image(rows[0].image_id)
        else:
            message = "The project has no images yet: add some under **Add images**."
        return {state: ui, **view(ui, message), **queue_view(ui)}

    @guarded
    def on_prepare(ui: Ui) -> dict:
        s = ui.session
        if s.image is None:
            return {}
        started = time.perf_counter()
        s.prepare_segmenter()
        took = time.perf_counter() - started
        return {message_md: f"image encoded for the segmenter in {took:.1f} s"} if took > 1.0 else {}

    @guarded
    def on_queue_select(ui: Ui, evt: gr.SelectData) -> dict:
        row = evt.row_value
        if not row:
            return {}
        ui.session.open_image(int(row[0]))
        return view(ui)

    @guarded
    def on_filter(ui: Ui, status: str, order: str) -> dict:
        ui.status_filter = None if status == "all" else status
        ui.order = ORDERS.get(order, "confidence")
        return queue_view(ui)

    @guarded
    def on_click(ui: Ui, tool: str, evt: gr.SelectData) -> dict:
        s = ui.session
        if s.image is None:
            raise ValueError("no image is open")
        scale = display_scale(s.image)
        x, y = (float(evt.index[0]) + 0.5) / scale - 0.5, (float(evt.index[1]) + 0.5) / scale - 0.5
        s.tool = tool
        started = time.perf_counter()
        message = s.click(x, y)
        logger.debug(
            "click (%.0f, %.0f) with %s took %.0f ms", x, y, tool, 1e3 * (time.perf_counter() - started)
        )
        return view(ui, message)

    @guarded
    def on_tool(ui: Ui, tool: str) -> dict:
        ui.session.tool = tool
        ui.session.pending_corner = None
        return {canvas: canvas_value(ui)}

    @guarded
    def on_instance_select(ui: Ui, evt: gr.SelectData) -> dict:
        ui.session.select(int(evt.index[0]))
        return view(ui, ui.session.describe())

    @guarded
    def on_deselect(ui: Ui) -> dict:
        ui.session.select(None)
        return view(ui)

    @guarded
    def on_new_class(ui: Ui, class_id: int | None) -> dict:
        if class_id is not None:
            ui.session.new_class = int(class_id)
        return {}

    @guarded
    def on_set_class(ui: Ui, class_id: int | None) -> dict:
        if class_id is None:
            raise ValueError("pick a class")
        ui.session.set_class(int(class_id))
        return view(ui, f"instance #{ui.session.selected + 1} is now {classes[int(class_id) - 1]}")

    @guarded
    def on_delete(ui: Ui) -> dict:
        index = ui.session.selected
        ui.session.delete()
        return view(ui, f"deleted instance #{index + 1}")

    @guarded
    def on_merge(ui: Ui, other: int | None) -> dict:
        s = ui.session
        if s.selected is None:
            raise ValueError("select the instance to keep first, then pick the one to merge into it")
        if other is None:
            raise ValueError("pick the instance to merge in 'Merge with'")
        index = s.merge(s.selected, int(other))
        return view(ui, f"merged into instance #{index + 1}")

    @guarded
    def on_undo(ui: Ui) -> dict:
        ui.session.undo()
        return {**view(ui, "undone"), **queue_view(ui)}

    @guarded
    def on_redo(ui: Ui) -> dict:
        ui.session.redo()
        return {**view(ui, "redone"), **queue_view(ui)}

    @guarded
    def on_accept(ui: Ui) -> dict:
        s = ui.session
        name = Path(s.store.image(s.image_id).file_name).name
        nxt = s.accept_and_next(status_filter=ui.status_filter, order=ui.order)
        message = f"accepted {name}" + ("" if nxt is not None else "; every image in the queue is accepted")
        return {**view(ui, message), **queue_view(ui)}

    @guarded
    def on_reject(ui: Ui) -> dict:
        ui.session.set_status("rejected")
        return {**view(ui, "image rejected"), **queue_view(ui)}

    def step(ui: Ui, offset: int) -> dict:
        s = ui.session
        rows = s.queue(status=ui.status_filter, order=ui.order)
        if not rows:
            raise ValueError("the queue is empty")
        ids = [r.image_id for r in rows]
        current = ids.index(s.image_id) if s.image_id in ids else -offset
        s.open_image(ids[(current + offset) % len(ids)])
        return view(ui)

    @guarded
    def on_prev(ui: Ui) -> dict:
        return step(ui, -1)

    @guarded
    def on_next(ui: Ui) -> dict:
        return step(ui, 1)

    @guarded
    def on_display(ui: Ui, opacity: float, visible: list[int]) -> dict:
        ui.opacity = float(opacity)
        ui.hidden = {i + 1 for i in range(len(classes))} - {int(v) for v in visible or []}
        return {canvas: canvas_value(ui)}

    @guarded
    def on_brush_open(ui: Ui) -> dict:
        s = ui.session
        if s.image is None:
            return {}
        background = s.render(opacity=ui.opacity, hidden_classes=ui.hidden, show_points=False)
        return {editor: {"background": background, "layers": [], "composite": None}}

    @guarded
    def on_brush_apply(ui: Ui, value: dict | None) -> dict:
        s = ui.session
        image = s.require_image()
        if not value or not value.get("layers"):
            raise ValueError("paint on the image first (green adds pixels, red removes them)")
        add, remove = strokes_from_layers(value["layers"], image.shape[:2])
        if not add.any() and not remove.any():
            raise ValueError("nothing painted: use the brush (green adds pixels, red removes them)")
        change = s.paint(add=add, remove=remove)
        background = s.render(opacity=ui.opacity, hidden_classes=ui.hidden, show_points=False)
        return {
            **view(ui, f"instance #{s.selected + 1}: {change:+d} px"),
            editor: {"background": background, "layers": [], "composite": None},
        }

    @guarded
    def on_export(ui: Ui, accepted_only: bool, polygons: bool) -> dict:
        from annotate.coco import export_coco

        stamp = time.strftime("%Y%m%d-%H%M%S")
        kind = "accepted" if accepted_only else "all"
        path = project_path(store.root, f"exports/coco-{kind}-{stamp}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        coco = export_coco(store, path, accepted_only=bool(accepted_only), polygons=bool(polygons))
        message = (
            f"exported {len(coco.get('images', []))} images and {len(coco.get('annotations', []))} "
            f"instances to {path.relative_to(store.root)}"
        )
        return {export_file: gr.File(value=str(path), visible=True), message_md: message}

    @guarded
    def on_add_images(ui: Ui, files: list[Any] | None, tags_text: str) -> dict:
        if not files:
            raise ValueError("choose image files to add first")
        tags = [t.strip() for t in (tags_text or "").split(",") if t.strip()]
        unknown = [t for t in tags if t not in classes]
        if unknown:
            raise ValueError(f"unknown tags {unknown}; the project's classes are {classes}")
        added = 0
        for f in files:
            path = Path(getattr(f, "name", f))
            store.add_image(path, tags, copy=True)
            added += 1
        return {**queue_view(ui), message_md: f"added {added} image(s)", upload: None}

    def bootstrap_job(ui: Ui, scope: str, redo: bool, progress: gr.Progress) -> dict:
        s = ui.session
        if scope == "this":
            s.require_image()
            ids: list[int] | None = [s.image_id]
        elif scope == "shown":
            ids = [r.image_id for r in s.queue(status=ui.status_filter, order=ui.order)]
        else:
            ids = None
        report = run_bootstrap(
            store,
            ids,
            on_progress=lambda fraction, text: progress(float(fraction), desc=text),
            redo_pseudo=bool(redo),
            user=s.user,
            **(bootstrap_options or {}),
        )
        text = (
            f"automatic labelling: {len(report.processed)} image(s) labelled, "
            f"{len(report.skipped)} left as they were (already labelled or reviewed)"
        )
        if s.image_id is not None:
            s.reload()
        return {**view(ui, text), **queue_view(ui), job_md: text}

    @guarded
    def on_bootstrap_this(ui: Ui, redo: bool, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> dict:  # noqa: B008
        return bootstrap_job(ui, "this", redo, progress)

    @guarded
    def on_bootstrap_shown(ui: Ui, redo: bool, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> dict:  # noqa: B008
        return bootstrap_job(ui, "shown", redo, progress)

    @guarded
    def on_bootstrap_all(ui: Ui, redo: bool, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> dict:  # noqa: B008
        return bootstrap_job(ui, "all", redo, progress)

    @guarded
    def on_train(ui: Ui, steps: float, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> dict:  # noqa: B008
        from training.trainer import TrainConfig

        s = ui.session
        options = dict(training_options or {})
        if steps:
            options["train"] = TrainConfig(steps=int(steps))
        figures = run_training_round(
            store, on_progress=lambda fraction, text: progress(float(fraction), desc=text), **options
        )
        shown = {k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        text = "training round finished: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items())
        if s.image_id is not None:
            s.reload()
        return {**view(ui, text), **queue_view(ui), job_md: text}

    # ------------------------------------------------------------------ layout
    with gr.Blocks(title="dhr-label review", fill_width=True) as demo:
        state = gr.State(None)
        with gr.Row(equal_height=False):
            gr.Markdown("### dhr-label · review")
            gr.Markdown(
                segmenter_banner(shared),
                elem_id="segmenter-status",
                elem_classes=["fallback"] if shared.is_fallback else [],
            )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=280):
                with gr.Row():
                    status_dd = gr.Dropdown(
                        ["all", *STATUSES], value="all", label="Show", elem_id="status-filter"
                    )
                    order_radio = gr.Radio(list(ORDERS), value="least confident first", label="Sort")
                progress_md = gr.Markdown(elem_id="progress")
                queue_df = gr.Dataframe(
                    headers=["id", "image", "status", "conf."],
                    datatype=["number", "str", "str", "number"],
                    interactive=False,
                    max_height=360,
                    label="Image queue (click a row to open it)",
                    elem_id="queue",
                )
                with gr.Accordion("Automatic labelling", open=False):
                    with gr.Row():
                        boot_this_btn = gr.Button("This image", size="sm", elem_id="btn-boot-this")
                        boot_shown_btn = gr.Button("Images shown", size="sm", elem_id="btn-boot-shown")
                        boot_all_btn = gr.Button("All images", size="sm", elem_id="btn-boot-all")
                    with gr.Row():
                        steps_nb = gr.Number(value=2000, precision=0, minimum=1, label="Training steps")
                        train_btn = gr.Button("Run a training round", size="sm", elem_id="btn-train")
                    redo_cb = gr.Checkbox(value=False, label="Relabel images still in 'pseudo' status")
                    job_md = gr.Markdown(elem_id="job")
                with gr.Accordion("Export COCO", open=True):
                    with gr.Row():
                        accepted_cb = gr.Checkbox(value=False, label="Accepted images only")
                        polygons_cb = gr.Checkbox(value=False, label="Polygons instead of RLE")
                    export_btn = gr.Button("Export", variant="secondary", elem_id="btn-export")
                    export_file = gr.File(
                        label="Download", interactive=False, visible=False, elem_id="export-file"
                    )
                with gr.Accordion("Add images", open=False):
                    upload = gr.File(
                        file_count="multiple", file_types=["image"], label="Images", elem_id="upload"
                    )
                    tags_box = gr.Textbox(
                        label="Tags (comma separated class names)",
                        placeholder=", ".join(classes[:3]),
                        elem_id="upload-tags",
                    )
                    add_btn = gr.Button("Add to project", size="sm", elem_id="btn-add")
            with gr.Column(scale=3, min_width=480):
                image_info = gr.Markdown(elem_id="image-info")
                tool_radio = gr.Radio(TOOL_CHOICES, value="positive", label="Click tool", elem_id="tool")
                with gr.Tabs():
                    with gr.Tab("Click", id="click-tab"):
                        canvas = gr.Image(
                            type="numpy",
                            format="jpeg",
                            interactive=False,
                            show_label=False,
                            buttons=["fullscreen"],
                            height=DISPLAY_MIN_SIDE,
                            elem_id="canvas",
                        )
                    with gr.Tab("Brush / eraser", id="brush-tab") as brush_tab:
                        gr.Markdown(
                            "Paint **green** to add pixels to the selected instance, **red** to remove "
                            "them, then press **Apply**. With nothing selected, green strokes start a new "
                            "instance."
                        )
                        editor = gr.ImageEditor(
                            type="numpy",
                            image_mode="RGBA",
                            sources=[],
                            transforms=[],
                            layers=False,
                            brush=gr.Brush(
                                colors=["rgb(40, 200, 40)", "rgb(230, 30, 30)"], color_mode="fixed"
                            ),
                            eraser=gr.Eraser(),
                            height=DISPLAY_MIN_SIDE,
                            show_label=False,
                            elem_id="editor",
                        )
                        brush_btn = gr.Button("Apply", variant="primary", elem_id="btn-brush-apply")
                with gr.Row():
                    prev_btn = gr.Button("← Previous", size="sm", elem_id="btn-prev")
                    next_btn = gr.Button("Next →", size="sm", elem_id="btn-next")
                    undo_btn = gr.Button("Undo (Z)", size="sm", elem_id="btn-undo")
                    redo_btn = gr.Button("Redo (Y)", size="sm", elem_id="btn-redo")
                    reject_btn = gr.Button("Reject (R)", size="sm", variant="stop", elem_id="btn-reject")
                    accept_btn = gr.Button(
                        "Accept & next (A)", size="sm", variant="primary", elem_id="btn-accept"
                    )
                message_md = gr.Markdown(elem_id="message")
                with gr.Row():
                    opacity = gr.Slider(
                        0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity", elem_id="opacity"
                    )
                    visible_cb = gr.CheckboxGroup(
                        class_choices,
                        value=[c for _, c in class_choices],
                        label="Show classes",
                        elem_id="visible",
                    )
                gr.HTML(f"<div style='font-size:0.85em'>{swatches}</div>")
            with gr.Column(scale=1, min_width=340):
                new_class_dd = gr.Dropdown(
                    class_choices, value=1, label="Class for new instances", elem_id="new-class"
                )
                instances_df = gr.Dataframe(
                    headers=["#", "class", "score", "from", "px"],
                    datatype=["str", "str", "number", "str", "number"],
                    interactive=False,
                    max_height=360,
                    label="Instances (click a row to select)",
                    elem_id="instances",
                )
                class_dd = gr.Dropdown(
                    class_choices, value=None, label="Class of the selected instance", elem_id="class-select"
                )
                with gr.Row():
                    deselect_btn = gr.Button("Deselect (Esc)", size="sm", elem_id="btn-deselect")
                    delete_btn = gr.Button("Delete (D)", size="sm", variant="stop", elem_id="btn-delete")
                with gr.Row():
                    merge_dd = gr.Dropdown([], value=None, label="Merge with", elem_id="merge-with")
                    merge_btn = gr.Button("Merge (M)", size="sm", elem_id="btn-merge")
                with gr.Accordion("Keyboard shortcuts", open=True):
                    gr.Markdown(SHORTCUTS, elem_id="shortcuts")

        view_outputs = [canvas, instances_df, image_info, merge_dd, class_dd, new_class_dd, message_md]
        queue_outputs = [queue_df, progress_md]
        both = view_outputs + queue_outputs
        # Edits of every tab run one at a time (they share the store and the segmenter), without a spinner.
        fast = {"show_progress": "hidden", "concurrency_id": "edit"}

        demo.load(on_load, None, [state, *both]).then(on_prepare, state, [message_md])
        queue_df.select(on_queue_select, state, view_outputs).then(on_prepare, state, [message_md])
        status_dd.input(on_filter, [state, status_dd, order_radio], queue_outputs + [message_md])
        order_radio.input(on_filter, [state, status_dd, order_radio], queue_outputs + [message_md])
        canvas.select(on_click, [state, tool_radio], view_outputs, trigger_mode="multiple", **fast)
        tool_radio.input(on_tool, [state, tool_radio], [canvas, message_md], **fast)
        instances_df.select(on_instance_select, state, view_outputs, **fast)
        deselect_btn.click(on_deselect, state, view_outputs, **fast)
        new_class_dd.input(on_new_class, [state, new_class_dd], [message_md])
        class_dd.input(on_set_class, [state, class_dd], view_outputs, **fast)
        delete_btn.click(on_delete, state, view_outputs, **fast)
        merge_btn.click(on_merge, [state, merge_dd], view_outputs, **fast)
        undo_btn.click(on_undo, state, both, **fast)
        redo_btn.click(on_redo, state, both, **fast)
        accept_btn.click(on_accept, state, both, concurrency_id="edit").then(on_prepare, state, [message_md])
        reject_btn.click(on_reject, state, both, concurrency_id="edit")
        prev_btn.click(on_prev, state, view_outputs).then(on_prepare, state, [message_md])
        next_btn.click(on_next, state, view_outputs).then(on_prepare, state, [message_md])
        opacity.release(on_display, [state, opacity, visible_cb], [canvas, message_md], **fast)
        visible_cb.input(on_display, [state, opacity, visible_cb], [canvas, message_md], **fast)
        brush_tab.select(on_brush_open, state, [editor, message_md])
        brush_btn.click(on_brush_apply, [state, editor], [*view_outputs, editor], concurrency_id="edit")
        export_btn.click(on_export, [state, accepted_cb, polygons_cb], [export_file, message_md])
        add_btn.click(on_add_images, [state, upload, tags_box], [*queue_outputs, message_md, upload])
        job_outputs = [*both, job_md]
        boot_this_btn.click(on_bootstrap_this, [state, redo_cb], job_outputs, concurrency_id="jobs")
        boot_shown_btn.click(on_bootstrap_shown, [state, redo_cb], job_outputs, concurrency_id="jobs")
        boot_all_btn.click(on_bootstrap_all, [state, redo_cb], job_outputs, concurrency_id="jobs")
        train_btn.click(on_train, [state, steps_nb], job_outputs, concurrency_id="jobs")
    return demo


def build_segmenter_for(args: Any, store: Any) -> SharedSegmenter:
    """The segmenter asked for on the command line, with an embedding cache inside the project."""
    from annotate.embedding_cache import EmbeddingCache
    from annotate.segmenters import build_segmenter

    cache = EmbeddingCache(project_path(store.root, "cache/embeddings"))
    seg = build_segmenter(name=args.segmenter, weights_dir=args.weights_dir, device=args.device, cache=cache)
    return SharedSegmenter(seg)


def launch_kwargs(args: Any, store: Any) -> dict[str, Any]:
    """Keyword arguments of ``Blocks.launch`` for the parsed command line."""
    exports = project_path(store.root, "exports")
    exports.mkdir(parents=True, exist_ok=True)
    return {
        "server_name": args.host,
        "server_port": args.port,
        "auth": logins_from_args(args),
        "auth_message": "dhr-label: log in to review" if logins_from_args(args) else None,
        "allowed_paths": [str(exports)],
        "js": SHORTCUTS_JS,
        "css": CSS,
        "footer_links": [],
        "ssr_mode": False,
        "show_error": True,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry of ``python app.py``: parse options, open the project and the segmenter, serve the GUI."""
    args = build_gui_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        store = open_project(args)
        shared = build_segmenter_for(args, store)
        kwargs = launch_kwargs(args, store)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        logger.error("%s", error)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and not kwargs["auth"]:
        logger.warning(
            "serving on %s without a login: anyone who can reach it can edit the labels "
            "(use --auth user:pass or --auth-file FILE)",
            args.host,
        )
    logger.info("project: %s (%d images)", store.root, len(store.list_images()))
    demo = build_app(
        store,
        shared,
        user=default_user(args),
        bootstrap_options={
            "segmenter": args.segmenter,
            "weights_dir": args.weights_dir,
            "device": args.device,
        },
        training_options={"segmenter": args.segmenter, "weights_dir": args.weights_dir},
    )
    demo.queue(default_concurrency_limit=1)
    demo.launch(**kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
