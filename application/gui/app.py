"""dhr-label review GUI (Gradio): a thin layer of layout and events over :mod:`annotate.review.session`.

``python app.py`` opens the bundled demo project (created on first launch in ~/.cache/dhr-label/demo-project);
``python app.py --project DIR`` opens a project. Binds 127.0.0.1 unless ``--host`` says otherwise; use
``--auth user:pass`` or ``--auth-file FILE`` whenever the GUI is reachable by others.

What the page shows is computed in :mod:`annotate.review.view`, the page's key bindings and CSS are in
:mod:`annotate.review.assets`, and the launch settings come from :mod:`application.commands.gui`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import gradio as gr

from annotate.coco.exporter import DEFAULT_STATUSES
from annotate.review.assets import SHORTCUTS, START_HINT
from annotate.review.overlay import class_color
from annotate.review.refine import SharedSegmenter
from annotate.review.view import ADD_COLOR, CANVAS_HEIGHT, ERASE_COLOR, ORDERS, TOOL_CHOICES, segmenter_banner
from annotate.store import STATUSES
from application.commands.gui import (
    build_gui_parser,
    build_segmenter_for,
    default_user,
    launch_kwargs,
    model_settings,
    open_project,
)
from application.gui import jobs_panel
from application.gui.handlers import Page, ReviewHandlers
from core.errors import UserError
from models.settings import ModelSettings

logger = logging.getLogger("dhr.app")

CACHE_CLEANUP = (600, 1800)
"""Gradio's ``delete_cache``: every 10 minutes, delete the files it wrote more than 30 minutes ago."""


def build_app(
    store: Any,
    segmenter: Any,
    *,
    user: str = "local",
    settings: ModelSettings | None = None,
    bootstrap_options: dict[str, Any] | None = None,
    training_options: dict[str, Any] | None = None,
) -> Any:
    """The Gradio Blocks of the review GUI over an open ``store`` and a segmenter (bare or shared).

    ``settings`` (device, weights folder, segmenter) are handed to the automatic-labelling and training jobs,
    which run on the page's own segmenter; ``bootstrap_options`` / ``training_options`` are further
    :class:`annotate.bootstrap.BootstrapConfig` / :class:`training.rounds.RoundsConfig` fields of those jobs.
    """
    shared = segmenter if isinstance(segmenter, SharedSegmenter) else SharedSegmenter(segmenter)
    classes = list(store.classes)
    class_choices = [(name, i + 1) for i, name in enumerate(classes)]
    swatches = " ".join(
        f"<span style='color:rgb{class_color(i + 1)}'>■</span> {name}" for i, name in enumerate(classes)
    )

    # ------------------------------------------------------------------ layout
    # Rendered images and uploads in Gradio's cache are deleted once they are half an hour old.
    # At 1366 x 768 the action buttons and the message line sit above the canvas, inside the first screen.
    with gr.Blocks(title="dhr-label review", fill_width=True, delete_cache=CACHE_CLEANUP) as demo:
        state = gr.State(None)
        jobs = jobs_panel.JobsPanel()
        with gr.Row(equal_height=False, elem_id="header"):
            gr.Markdown("### dhr-label · review")
            jobs.banner_md = gr.Markdown(
                segmenter_banner(shared),
                elem_id="segmenter-status",
                elem_classes=["fallback"] if shared.is_fallback else [],
            )
            jobs_panel.build_segmenter_picker(jobs, shared, (settings or ModelSettings()).weights_dir)
        gr.Markdown(START_HINT, elem_id="start-hint")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=260):
                with gr.Row():
                    status_dd = gr.Dropdown(
                        ["all", *STATUSES], value="all", label="Show", elem_id="status-filter"
                    )
                    order_radio = gr.Radio(list(ORDERS), value="least confident first", label="Sort")
                progress_md = gr.Markdown(elem_id="progress")
                jobs_panel.build_progress_area(jobs)
                queue_df = gr.Dataframe(
                    headers=["id", "image", "status", "conf.", "check"],
                    datatype=["number", "str", "str", "number", "str"],
                    interactive=False,
                    max_height=360,
                    column_widths=["11%", "37%", "18%", "14%", "20%"],
                    wrap=False,
                    label="Image queue (click a row to open it)",
                    elem_id="queue",
                )
                jobs_panel.build_jobs_accordion(jobs)
                with gr.Accordion("Export COCO", open=False):
                    export_statuses = gr.CheckboxGroup(
                        list(STATUSES),
                        value=list(DEFAULT_STATUSES),
                        label="Images to export, by status",
                        elem_id="export-statuses",
                    )
                    polygons_cb = gr.Checkbox(
                        value=False, label="Polygons instead of RLE (instances with holes stay RLE)"
                    )
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
                with gr.Accordion("Remove image", open=False, elem_id="remove-panel"):
                    remove_box = gr.Textbox(
                        label="Image to remove (name or id; its file is kept in removed/)",
                        placeholder="images/photo.jpg",
                        elem_id="remove-name",
                    )
                    remove_btn = gr.Button(
                        "Remove from project", size="sm", variant="stop", elem_id="btn-remove"
                    )
            # ---------------------------------------------------------- editing area: actions, canvas, brush
            with gr.Column(scale=3, min_width=480):
                image_md = gr.Markdown(elem_id="image-info")
                with gr.Row(elem_id="actions"):
                    prev_btn = gr.Button("← Previous", size="sm", elem_id="btn-prev")
                    next_btn = gr.Button("Next →", size="sm", elem_id="btn-next")
                    undo_btn = gr.Button("Undo edit (Z)", size="sm", elem_id="btn-undo")
                    redo_btn = gr.Button("Redo edit (Y)", size="sm", elem_id="btn-redo")
                    reject_btn = gr.Button(
                        "Reject & next (R)", size="sm", variant="stop", elem_id="btn-reject"
                    )
                    accept_btn = gr.Button(
                        "Accept & next (A)", size="sm", variant="primary", elem_id="btn-accept"
                    )
                message_md = gr.Markdown(elem_id="message")
                tool_radio = gr.Radio(
                    TOOL_CHOICES, value="positive", show_label=False, elem_id="tool", container=False
                )
                with gr.Tabs():
                    with gr.Tab("Click", id="click-tab"):
                        canvas = gr.Image(
                            type="numpy",
                            format="jpeg",
                            interactive=False,
                            show_label=False,
                            buttons=["fullscreen"],
                            height=CANVAS_HEIGHT,
                            elem_id="canvas",
                        )
                    with gr.Tab("Brush / eraser", id="brush-tab") as brush_tab:
                        gr.Markdown(
                            "Paint **green** to add pixels to the selected instance, **red** to erase "
                            "them (pick the colour in the brush menu), then press **Apply**; strokes stay "
                            "until applied. With nothing selected, green strokes start a new instance.",
                            elem_id="brush-help",
                        )
                        editor = gr.ImageEditor(
                            type="numpy",
                            image_mode="RGBA",
                            sources=[],
                            transforms=[],
                            layers=False,
                            brush=gr.Brush(colors=[ADD_COLOR, ERASE_COLOR], color_mode="fixed"),
                            eraser=False,  # Gradio's eraser only wipes unapplied strokes: red erases pixels
                            height=CANVAS_HEIGHT,
                            show_label=False,
                            elem_id="editor",
                        )
                        brush_btn = gr.Button("Apply", variant="primary", elem_id="btn-brush-apply")
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
            # ---------------------------------------------------------- editing area: instances and clean-up
            with gr.Column(scale=1, min_width=320):
                new_class_dd = gr.Dropdown(
                    class_choices, value=1, label="Class for new instances", elem_id="new-class"
                )
                instances_df = gr.Dataframe(
                    headers=["#", "class", "score", "from", "px"],
                    datatype=["str", "str", "number", "str", "number"],
                    interactive=False,
                    max_height=300,
                    label="Instances (click a row, or the canvas with Select, to select)",
                    elem_id="instances",
                )
                class_dd = gr.Dropdown(
                    class_choices, value=None, label="Class of the selected instance", elem_id="class-select"
                )
                with gr.Row():
                    deselect_btn = gr.Button("Deselect (Esc)", size="sm", elem_id="btn-deselect")
                    delete_btn = gr.Button("Delete (D)", size="sm", variant="stop", elem_id="btn-delete")
                with gr.Row():
                    merge_dd = gr.Dropdown(
                        [], value=None, label="Merge with (or the Merge pick tool)", elem_id="merge-with"
                    )
                    merge_btn = gr.Button("Merge (M)", size="sm", elem_id="btn-merge")
                with gr.Accordion("Clean up (each one undo step)", open=True, elem_id="cleanup"):
                    with gr.Row():
                        bulk_class_dd = gr.Dropdown(
                            class_choices, value=None, label="Class", elem_id="bulk-class"
                        )
                        delete_class_btn = gr.Button(
                            "Delete all of class", size="sm", variant="stop", elem_id="btn-delete-class"
                        )
                    with gr.Row():
                        fragment_nb = gr.Number(
                            value=100, precision=0, minimum=1, label="Pieces under (px)", elem_id="fragment-px"
                        )
                        fragments_btn = gr.Button("Delete pieces", size="sm", elem_id="btn-fragments")
                    with gr.Row():
                        largest_btn = gr.Button("Largest piece: selected", size="sm", elem_id="btn-largest")
                        largest_all_btn = gr.Button("Largest piece: all", size="sm", elem_id="btn-largest-all")
                with gr.Accordion("Keyboard shortcuts", open=False):
                    gr.Markdown(SHORTCUTS, elem_id="shortcuts")

        page = Page(
            state=state,
            canvas=canvas,
            instances_df=instances_df,
            image_md=image_md,
            merge_dd=merge_dd,
            class_dd=class_dd,
            new_class_dd=new_class_dd,
            message_md=message_md,
            queue_df=queue_df,
            progress_md=progress_md,
            editor=editor,
            export_file=export_file,
            upload=upload,
            job_md=jobs.job_md,
            remove_box=remove_box,
        )
        h = ReviewHandlers(
            page,
            store,
            shared,
            user=user,
            settings=settings,
            bootstrap_options=bootstrap_options,
            training_options=training_options,
        )
        view_outputs = [canvas, instances_df, image_md, merge_dd, class_dd, new_class_dd, message_md]
        queue_outputs = [queue_df, progress_md]
        both = view_outputs + queue_outputs
        # Edits of every tab run one at a time (they share the store and the segmenter), without a spinner.
        fast = {"show_progress": "hidden", "concurrency_id": "edit"}

        demo.unload(h.on_unload)
        demo.load(h.on_load, None, [state, *both, remove_box]).then(h.on_prepare, state, [message_md])
        queue_df.select(h.on_queue_select, state, [*view_outputs, remove_box]).then(
            h.on_prepare, state, [message_md]
        )
        status_dd.input(h.on_filter, [state, status_dd, order_radio], queue_outputs + [message_md])
        order_radio.input(h.on_filter, [state, status_dd, order_radio], queue_outputs + [message_md])
        # ---------------------------------------------------------- editing events
        # Edits fill the queue too: their one reply carries it when the image's row there changed.
        canvas.select(h.on_click, [state, tool_radio], both, trigger_mode="multiple", **fast)
        tool_radio.input(h.on_tool, [state, tool_radio], [canvas, message_md], **fast)
        instances_df.select(h.on_instance_select, state, view_outputs, **fast)
        deselect_btn.click(h.on_deselect, state, view_outputs, **fast)
        new_class_dd.input(h.on_new_class, [state, new_class_dd], [message_md])
        class_dd.input(h.on_set_class, [state, class_dd], both, **fast)
        delete_btn.click(h.on_delete, state, both, **fast)
        merge_btn.click(h.on_merge, [state, merge_dd], both, **fast)
        delete_class_btn.click(h.on_delete_class, [state, bulk_class_dd], both, **fast)
        fragments_btn.click(h.on_drop_fragments, [state, fragment_nb], both, **fast)
        largest_btn.click(h.on_keep_largest, state, both, **fast)
        largest_all_btn.click(h.on_keep_largest_all, state, both, **fast)
        undo_btn.click(h.on_undo, state, both, **fast)
        redo_btn.click(h.on_redo, state, both, **fast)
        accept_btn.click(h.on_accept, state, both, concurrency_id="edit").then(
            h.on_prepare, state, [message_md]
        )
        reject_btn.click(h.on_reject, state, both, concurrency_id="edit").then(
            h.on_prepare, state, [message_md]
        )
        prev_btn.click(h.on_prev, state, view_outputs).then(h.on_prepare, state, [message_md])
        next_btn.click(h.on_next, state, view_outputs).then(h.on_prepare, state, [message_md])
        # A dragged slider and a typed value both count; only the last of a burst of changes is drawn.
        opacity.change(
            h.on_display, [state, opacity, visible_cb], [canvas, message_md], trigger_mode="always_last", **fast
        )
        visible_cb.input(h.on_display, [state, opacity, visible_cb], [canvas, message_md], **fast)
        brush_tab.select(h.on_brush_open, state, [editor, message_md])
        brush_btn.click(h.on_brush_apply, [state, editor], [*both, editor], concurrency_id="edit")
        # ---------------------------------------------------------- project events
        export_btn.click(h.on_export, [state, export_statuses, polygons_cb], [export_file, message_md])
        add_btn.click(h.on_add_images, [state, upload, tags_box], [*queue_outputs, message_md, upload])
        remove_btn.click(h.on_remove, [state, remove_box], [*both, remove_box], concurrency_id="edit")
        jobs_panel.wire(jobs, jobs_panel.JobHandlers(h, jobs), state, view_outputs, queue_outputs)
    return demo


def main(argv: list[str] | None = None) -> int:
    """Entry of ``python app.py``: parse options, open the project and the segmenter, serve the GUI."""
    args = build_gui_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        store = open_project(args)
        settings = model_settings(args)
        shared = build_segmenter_for(settings, store)
        kwargs = launch_kwargs(args, store)
    except (UserError, ValueError, OSError) as error:
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
        settings=settings,
    )
    demo.queue(default_concurrency_limit=1)
    demo.launch(**kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
