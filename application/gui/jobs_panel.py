"""The review page's jobs: automatic labelling and training rounds in the background, one progress area, and
the segmenter switch.

A job runs in a :class:`application.gui.jobs.JobRunner` thread; its button returns at once, so every edit
control stays usable while it runs. One progress area (``#job``) is polled by a ``gr.Timer``; when the job
ends, each tab's queue is refreshed (and its open image reloaded when the job changed it). Before a job the
panel says how many images it will change and skip (``#job-plan``) and which models will run and what that
means for the labels (``#job-models``); after it, what ran and what was skipped.

``app.py`` places the parts (:func:`build_progress_area`, :func:`build_jobs_accordion`,
:func:`build_segmenter_picker`) and calls :func:`wire`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from annotate.review import provenance
from annotate.review.refine import SharedSegmenter
from annotate.review.view import Ui, bootstrap_targets, segmenter_banner
from application.gui.handlers import ReviewHandlers, guarded
from application.gui.jobs import JobRunner, JobStatus, bootstrap_plan, run_bootstrap, run_training_round

logger = logging.getLogger("dhr.app")

POLL_SECONDS = 1.0
"""How often each tab asks how the running job is doing."""
IDLE_POLL_SECONDS = 3.0
"""How often a tab looks for a job while none runs (each poll is a request, which a click would wait behind)."""
IDLE_TEXT = (
    "No job running. Automatic labelling and training rounds run in the background: keep reviewing meanwhile."
)
SCOPES = {"this": "This image", "shown": "Images shown", "all": "All images"}


@dataclasses.dataclass
class JobsPanel:
    """The components of the jobs area (built by the ``build_*`` functions, wired by :func:`wire`)."""

    job_md: Any = None
    plan_md: Any = None
    models_md: Any = None
    buttons: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps_nb: Any = None
    train_btn: Any = None
    redo_cb: Any = None
    edited_cb: Any = None
    segmenter_dd: Any = None
    banner_md: Any = None
    accordion: Any = None
    timer: Any = None
    seen: Any = None


def build_progress_area(panel: JobsPanel) -> None:
    """The one progress area of every job (place it where it stays in view)."""
    panel.job_md = gr.Markdown(IDLE_TEXT, elem_id="job")


def build_jobs_accordion(panel: JobsPanel) -> None:
    """The "Automatic labelling" accordion: buttons, options, the plan and the models note."""
    with gr.Accordion("Automatic labelling", open=False, elem_id="jobs-panel") as accordion:
        panel.models_md = gr.Markdown(elem_id="job-models")
        panel.plan_md = gr.Markdown(elem_id="job-plan")
        with gr.Row():
            for scope, label in SCOPES.items():
                panel.buttons[scope] = gr.Button(label, size="sm", elem_id=f"btn-boot-{scope}")
        with gr.Row():
            panel.steps_nb = gr.Number(value=2000, precision=0, minimum=1, label="Training steps")
            panel.train_btn = gr.Button("Run a training round", size="sm", elem_id="btn-train")
        panel.redo_cb = gr.Checkbox(value=False, label="Relabel images still in 'pseudo' status", elem_id="redo")
        panel.edited_cb = gr.Checkbox(
            value=False, label="Also relabel images edited by hand (their edits are replaced)", elem_id="relabel-edited"
        )
    panel.accordion = accordion
    panel.timer = gr.Timer(IDLE_POLL_SECONDS)
    panel.seen = gr.State(None)


def segmenter_choices(weights_dir: Any) -> tuple[list[str], list[str]]:
    """Registry segmenters usable now (no checkpoint needed, or its file present) and those whose file is missing."""
    from models.registry import entries
    from models.weights import is_present

    usable, missing = [], []
    for name, entry in entries("segmenter").items():
        (usable if entry.checkpoint is None or is_present(entry.checkpoint, weights_dir) else missing).append(name)
    return usable, missing


def segmenter_name(shared: SharedSegmenter) -> str:
    """The registry name of the running segmenter (its model id up to ``@``; ``grabcut`` for the fallback)."""
    if shared.segmenter is None:
        return "none"
    return "grabcut" if shared.is_fallback else shared.model_id.partition("@")[0]


def picker_choices(shared: SharedSegmenter, weights_dir: Any) -> list[str]:
    """The dropdown's choices: the usable registry segmenters, and the running one if it is not among them."""
    usable = segmenter_choices(weights_dir)[0]
    current = segmenter_name(shared)
    return usable + ([current] if current not in usable else [])


def build_segmenter_picker(panel: JobsPanel, shared: SharedSegmenter, weights_dir: Any) -> None:
    """The segmenter dropdown, listing the registry's segmenters whose checkpoints are present."""
    from models.weights import default_weights_dir

    missing = segmenter_choices(weights_dir)[1]
    current = segmenter_name(shared)
    choices = picker_choices(shared, weights_dir)
    info = (
        f"not available: {', '.join(missing)} (checkpoint not in {default_weights_dir(weights_dir)}; "
        "`dhr weights download NAME`)"
        if missing
        else None
    )
    panel.segmenter_dd = gr.Dropdown(
        choices, value=current, label="Segmenter", info=info, elem_id="segmenter-select", min_width=200
    )


class JobHandlers:
    """Events of the jobs area over the page's :class:`ReviewHandlers` (store, segmenter, settings, views)."""

    def __init__(self, review: ReviewHandlers, panel: JobsPanel, runner: JobRunner | None = None) -> None:
        self.review = review
        self.panel = panel
        self.page, self.pool, self.store = review.page, review.pool, review.store
        self.runner = runner if runner is not None else JobRunner()

    # ------------------------------------------------------------------ what a job would do
    def models_text(self) -> str:
        shared, settings = self.review.shared, self.review.settings
        boot = provenance.planned_bootstrap(
            self.store, settings.weights_dir, settings.download, shared.model_id, shared.is_fallback,
            self.review.bootstrap_options,
        )
        train = provenance.planned_training(
            settings.weights_dir, shared.model_id, shared.is_fallback, self.review.training_options
        )
        return boot.text("**Automatic labelling will use:**") + "\n\n" + train.text("**A training round will use:**")

    def _training_plan(self, relabel_edited: bool) -> Any:
        from training.rounds import RoundsConfig, relabel_plan

        options = {k: v for k, v in (self.review.training_options or {}).items() if k != "train"}
        return relabel_plan(self.store, RoundsConfig(**{**options, "relabel_edited": bool(relabel_edited)}))

    def plan_text(self, ui: Ui, redo: bool, relabel_edited: bool) -> str:
        lines = ["**Before you start:**"]
        for scope, label in SCOPES.items():
            try:
                targets = bootstrap_targets(ui, scope)
            except ValueError:
                continue  # no image open
            plan = bootstrap_plan(self.store, targets, redo_pseudo=bool(redo), relabel_edited=bool(relabel_edited))
            lines.append(f"- {label}: {plan.summary()}")
        lines.append(f"- Training round: {self._training_plan(relabel_edited).summary()}")
        return "\n".join(lines)

    @guarded
    def on_plan(self, ui: Ui, redo: bool, relabel_edited: bool) -> dict:
        return {self.panel.plan_md: self.plan_text(ui, redo, relabel_edited), self.panel.models_md: self.models_text()}

    # ------------------------------------------------------------------ starting jobs
    def _start(self, title: str, work: Callable[[Callable[[float, str], None]], str], first: str) -> dict:
        self.runner.start(title, work)
        return {self.panel.job_md: progress_markdown(self.runner.status()), self.page.message_md: first,
                self.panel.timer: POLL_SECONDS}

    def start_bootstrap(self, ui: Ui, scope: str, redo: bool, relabel_edited: bool) -> dict:
        review, store = self.review, self.store
        targets = bootstrap_targets(ui, scope)
        plan = bootstrap_plan(store, targets, redo_pseudo=bool(redo), relabel_edited=bool(relabel_edited))
        if not plan.label:
            raise ValueError(f"automatic labelling {plan.summary()}: nothing to do")
        user = ui.session.user
        before = provenance.planned_bootstrap(
            store, review.settings.weights_dir, review.settings.download, review.shared.model_id,
            review.shared.is_fallback, review.bootstrap_options,
        )

        def work(progress: Callable[[float, str], None]) -> str:
            progress(0.0, plan.summary())
            report, followed = run_bootstrap(
                store, targets, settings=review.settings, segmenter=review.shared, on_progress=progress,
                redo_pseudo=bool(redo), relabel_edited=bool(relabel_edited), user=user,
                **(review.bootstrap_options or {}),
            )
            return bootstrap_done_text(store, report, followed)

        first = f"automatic labelling started: it {plan.summary()}; keep reviewing meanwhile"
        return {**self._start("Automatic labelling", work, first),
                self.panel.models_md: before.text("**Automatic labelling uses:**")}

    def _bootstrap_handler(scope: str) -> Callable[..., dict]:  # noqa: N805 - a handler factory in the class body
        def handler(self: JobHandlers, ui: Ui, redo: bool, relabel_edited: bool) -> dict:
            return self.start_bootstrap(ui, scope, redo, relabel_edited)

        handler.__name__ = handler.__qualname__ = f"on_bootstrap_{scope}"
        return guarded(handler)

    on_bootstrap_this = _bootstrap_handler("this")
    on_bootstrap_shown = _bootstrap_handler("shown")
    on_bootstrap_all = _bootstrap_handler("all")
    del _bootstrap_handler

    @guarded
    def on_train(self, ui: Ui, steps: float, relabel_edited: bool) -> dict:
        from training.trainer import TrainConfig

        review, store = self.review, self.store
        options = dict(review.training_options or {})
        if steps:
            options["train"] = TrainConfig(steps=int(steps))
        options["relabel_edited"] = bool(relabel_edited)
        plan = self._training_plan(relabel_edited)

        def work(progress: Callable[[float, str], None]) -> str:
            progress(0.0, plan.summary())
            figures = run_training_round(
                store, settings=review.settings, segmenter=review.shared, on_progress=progress, **options
            )
            after = provenance.planned_training(
                review.settings.weights_dir, review.shared.model_id, review.shared.is_fallback, options
            )
            return training_done_text(figures) + "\n\n" + after.text("**It used:**")

        return self._start("Training round", work, f"training round started: it {plan.summary()}")

    # ------------------------------------------------------------------ polling
    def on_tick(self, ui: Ui | None, seen: dict | None) -> dict:
        """Each tab's poll: the progress area when it changed; the queue (and a relabelled open image) when a
        job ended since the tab last looked; the banner when another tab switched the segmenter."""
        status = self.runner.status()
        seen = dict(seen or {})
        out: dict = {}
        text = progress_markdown(status)
        if text != seen.get("text"):
            out[self.panel.job_md] = seen["text"] = text
        if "job" not in seen:
            seen["job"] = status.number - (1 if status.running else 0)
        elif not status.running and status.number > seen["job"]:
            seen["job"] = status.number
            if ui is not None:
                out.update(self._refresh(ui, status))
        interval = POLL_SECONDS if status.running else IDLE_POLL_SECONDS
        if seen.get("interval") != interval:
            out[self.panel.timer] = seen["interval"] = interval
        name = segmenter_name(self.review.shared)
        if seen.setdefault("segmenter", name) != name:
            seen["segmenter"] = name
            out.update(self._banner(name))
        out[self.panel.seen] = seen
        return out

    def _refresh(self, ui: Ui, status: JobStatus) -> dict:
        try:
            with self.pool.using(ui):
                s = ui.session
                out = self.review.queue_view(ui)
                if s.image_id is not None and self.store.image(s.image_id).version != s.version:
                    s.reload()
                    out.update(self.review.view(ui, f"{status.title} changed the open image: shown as it is now"))
                return out
        except Exception:  # noqa: BLE001 - a poll never fails the page
            logger.exception("the page could not be refreshed after the job")
            return {}

    def _banner(self, name: str) -> dict:
        shared = self.review.shared
        return {
            self.panel.banner_md: gr.Markdown(
                segmenter_banner(shared), elem_classes=["fallback"] if shared.is_fallback else []
            ),
            self.panel.segmenter_dd: gr.Dropdown(choices=picker_choices(shared, self.review.settings.weights_dir),
                                                 value=name),
        }

    # ------------------------------------------------------------------ segmenter switch
    @guarded
    def on_segmenter(self, ui: Ui, name: str) -> dict:
        from application.commands.gui import build_segmenter_for

        review = self.review
        if not name or name == segmenter_name(review.shared):
            return {}
        if self.runner.running:
            raise ValueError("wait for the running job to finish before switching the segmenter")
        settings = dataclasses.replace(review.settings, segmenter=name)
        built = build_segmenter_for(settings, self.store)  # loads the model once
        review.shared.replace(built.segmenter)
        review.settings = settings
        for inst in ui.session.instances:  # low-res answers of the old model are no prompt for the new one
            inst.logits = None
        return {**self._banner(name), self.page.message_md: f"segmenter switched to {name}"}


def progress_markdown(status: JobStatus) -> str:
    """The progress area's text for a runner status."""
    if status.number == 0:
        return IDLE_TEXT
    took = _duration(status.elapsed())
    if status.running:
        filled = int(round(20 * status.fraction))
        bar = "▰" * filled + "▱" * (20 - filled)
        return f"⏳ **{status.title}** · {bar} {100 * status.fraction:.0f} % · {status.text} · {took}"
    if status.error:
        return f"❌ **{status.title}** failed after {took}: {status.error}"
    return f"✅ **{status.title}** finished in {took}. {status.result}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def bootstrap_done_text(store: Any, report: Any, plan: Any) -> str:
    """What an automatic-labelling job did, what it skipped and why, and which models ran."""
    line = f"{len(report.processed)} image(s) labelled"
    kept = [name for name in report.skipped]
    if kept:
        line += f"; {len(kept)} left as they were (edited meanwhile or already labelled): {', '.join(kept[:8])}"
    if plan.skipped:
        by_reason: dict[str, list[str]] = {}
        for name, why in plan.skipped.items():
            by_reason.setdefault(why, []).append(name.rpartition("/")[2])
        line += "; skipped " + "; ".join(f"{len(v)} {why}: {', '.join(v[:8])}" for why, v in by_reason.items())
    ran = provenance.bootstrap_ran(store)
    return line + ("\n\n" + ran.text("**Models used:**") if ran is not None else "")


def training_done_text(figures: dict[str, Any]) -> str:
    """What a training round did: images relabelled, kept as edited by hand, pixels changed."""
    kept = list(figures.get("kept_edited") or [])
    line = f"round {figures.get('round', '?')}: {figures.get('relabelled', 0)} image(s) relabelled"
    if kept:
        names = ", ".join(k.rpartition("/")[2] for k in kept[:8])
        line += f", {len(kept)} kept as edited by hand ({names})"
    if "changed_fraction" in figures:
        line += f", {100 * float(figures['changed_fraction']):.1f} % of pixels changed"
    conf = figures.get("mean_confidence")
    if isinstance(conf, float) and conf == conf:
        line += f", mean confidence {conf:.3f}"
    return line


def wire(panel: JobsPanel, handlers: JobHandlers, state: Any, view_outputs: list, queue_outputs: list) -> None:
    """Connect the jobs area's events. Starting a job and polling never wait for edits, nor edits for them;
    ``view_outputs`` / ``queue_outputs`` are the components :meth:`ReviewHandlers.view` / ``queue_view`` fill."""
    quick = {"show_progress": "hidden", "concurrency_id": "jobs"}
    options = [state, panel.redo_cb, panel.edited_cb]
    plan_outputs = [panel.plan_md, panel.models_md, handlers.page.message_md]
    start_outputs = [panel.job_md, panel.models_md, handlers.page.message_md, panel.timer]
    for scope, button in panel.buttons.items():
        button.click(getattr(handlers, f"on_bootstrap_{scope}"), options, start_outputs, **quick)
    panel.train_btn.click(handlers.on_train, [state, panel.steps_nb, panel.edited_cb], start_outputs, **quick)
    panel.accordion.expand(handlers.on_plan, options, plan_outputs, **quick)
    panel.redo_cb.input(handlers.on_plan, options, plan_outputs, **quick)
    panel.edited_cb.input(handlers.on_plan, options, plan_outputs, **quick)
    tick_outputs = [
        panel.job_md, panel.seen, panel.banner_md, panel.segmenter_dd, panel.timer, *queue_outputs, *view_outputs,
    ]
    panel.timer.tick(
        handlers.on_tick, [state, panel.seen], tick_outputs, show_progress="hidden", concurrency_id="poll",
        concurrency_limit=None,
    )
    panel.segmenter_dd.input(
        handlers.on_segmenter, [state, panel.segmenter_dd], [panel.banner_md, panel.segmenter_dd,
                                                              handlers.page.message_md],
        concurrency_id="edit", show_progress="hidden",
    )


__all__ = [
    "JobHandlers",
    "JobsPanel",
    "build_jobs_accordion",
    "build_progress_area",
    "build_segmenter_picker",
    "progress_markdown",
    "segmenter_choices",
    "wire",
]
