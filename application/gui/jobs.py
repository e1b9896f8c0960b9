"""Project jobs the review GUI starts: automatic labelling, a training round, a COCO export into the project.

Each takes an open :class:`annotate.store.ProjectStore` and reports progress through an optional
``on_progress(fraction, text)`` callback; paths come from the project's :class:`annotate.store.ProjectLayout`.
The model jobs take the GUI's :class:`models.ModelSettings` (device, weights folder) and its running
segmenter (a :class:`annotate.review.refine.SharedSegmenter`), so they run where the GUI runs and never load
a second model.

:class:`JobRunner` runs one model job at a time in a background thread, so the page stays usable: the page
polls :meth:`JobRunner.status` for the one progress area. Edits made meanwhile are kept: the bootstrap and
the rounds save with the version they read and leave an image alone when it changed, and neither relabels an
image a person edited since the last automatic pass unless asked (``relabel_edited``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from annotate.review.refine import SharedSegmenter
from annotate.store import ProjectStore, hand_edits
from core.errors import UserError
from models.settings import ModelSettings

logger = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]
"""Progress callback: fraction done in [0, 1] and a short description."""


class JobBusy(UserError, RuntimeError):
    """A job was asked for while another one runs."""


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """A snapshot of the runner: job ``number`` (0: none started yet), its title, progress and outcome."""

    number: int = 0
    title: str = ""
    running: bool = False
    fraction: float = 0.0
    text: str = ""
    result: str = ""  # the job's summary, once it finished
    error: str = ""  # why it failed, once it failed
    started: float = 0.0  # time.monotonic() at the start
    ended: float | None = None

    def elapsed(self, now: float | None = None) -> float:
        """Seconds the job ran (so far)."""
        end = self.ended if self.ended is not None else (time.monotonic() if now is None else now)
        return max(0.0, end - self.started) if self.number else 0.0


class JobRunner:
    """Runs one job at a time in a daemon thread and keeps its progress for whoever polls.

    ``start(title, work)`` runs ``work(on_progress) -> summary text``; an error ends the job with its message
    (the traceback of an unexpected one goes to the log). A second ``start`` while one runs raises
    :class:`JobBusy`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status = JobStatus()
        self._thread: threading.Thread | None = None

    def status(self) -> JobStatus:
        with self._lock:
            return self._status

    @property
    def running(self) -> bool:
        return self.status().running

    def start(self, title: str, work: Callable[[ProgressFn], str]) -> int:
        """Start ``work`` in the background; returns the job's number."""
        with self._lock:
            if self._status.running:
                raise JobBusy(f"{self._status.title} is still running; wait for it to finish")
            number = self._status.number + 1
            self._status = JobStatus(number, title, True, 0.0, "starting", started=time.monotonic())
            self._thread = threading.Thread(
                target=self._run, args=(number, work), name=f"dhr-job-{number}", daemon=True
            )
            self._thread.start()
        return number

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running job (if any); True when none runs afterwards."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def _update(self, number: int, **fields: Any) -> None:
        with self._lock:
            if self._status.number == number:
                self._status = dataclasses.replace(self._status, **fields)

    def _run(self, number: int, work: Callable[[ProgressFn], str]) -> None:
        def progress(fraction: float, text: str) -> None:
            self._update(number, fraction=min(1.0, max(0.0, float(fraction))), text=str(text))

        try:
            result = work(progress)
        except (UserError, ValueError, OSError, KeyError) as error:
            logger.info("job %d failed: %s", number, error)
            self._update(number, running=False, error=str(error), ended=time.monotonic())
        except Exception as error:  # noqa: BLE001 - a failed job must end as failed, never hang the page
            logger.exception("job %d failed", number)
            self._update(number, running=False, error=f"{type(error).__name__}: {error}", ended=time.monotonic())
        else:
            self._update(number, running=False, fraction=1.0, result=str(result), ended=time.monotonic())


@dataclasses.dataclass(frozen=True)
class BootstrapPlan:
    """What an automatic-labelling job will do: image ids it labels, and the names it skips with the reason."""

    label: tuple[int, ...]
    reset: tuple[int, ...]  # of ``label``: images in "pseudo" set back to "new" first
    skipped: dict[str, str]  # file name -> why it is left as it is

    def summary(self) -> str:
        """One line: how many images it labels and how many it skips, by reason."""
        reasons: dict[str, int] = {}
        for why in self.skipped.values():
            reasons[why] = reasons.get(why, 0) + 1
        line = f"labels {len(self.label)} image(s)"
        if reasons:
            line += ", skips " + ", ".join(f"{n} {why}" for why, n in reasons.items())
        return line


def bootstrap_plan(
    store: ProjectStore,
    image_ids: Sequence[int] | None = None,
    *,
    redo_pseudo: bool = False,
    relabel_edited: bool = False,
) -> BootstrapPlan:
    """Which of ``image_ids`` (None: all) an automatic-labelling job labels now, and which it skips and why.

    It labels images in status "new" with tags; with ``redo_pseudo`` also those in "pseudo", except the ones
    a person edited since the last automatic pass (unless ``relabel_edited``). Images in review, accepted or
    rejected never.
    """
    from annotate.bootstrap import USER as BOOTSTRAP_USER
    from annotate.store import IMAGES_DIR
    from annotate.store.authorship import TRAINING_USER

    records = store.list_images(order="name")
    known = {r.id for r in records}
    chosen = set(int(i) for i in image_ids) if image_ids is not None else known
    unknown = chosen - known
    if unknown:
        raise ValueError(f"no image with id(s) {sorted(unknown)} in project {store.root}")
    targets = [r for r in records if r.id in chosen]
    open_ids = [r.id for r in targets if r.status in ("pseudo", "review")]
    edited = hand_edits(store, (BOOTSTRAP_USER, TRAINING_USER), open_ids) if open_ids else {}
    label: list[int] = []
    reset: list[int] = []
    skipped: dict[str, str] = {}
    for r in targets:
        if not r.file_name.startswith(IMAGES_DIR + "/") or not r.tags:
            skipped[r.file_name] = "without tags (or outside images/)"
        elif r.status == "new":
            label.append(r.id)
        elif r.status in ("accepted", "rejected"):
            skipped[r.file_name] = "accepted or rejected"
        elif r.status == "pseudo" and redo_pseudo and (relabel_edited or r.id not in edited):
            label.append(r.id)
            reset.append(r.id)
        elif r.id in edited:
            skipped[r.file_name] = "edited by hand"
        else:
            skipped[r.file_name] = "already labelled" if r.status == "pseudo" else "in review"
    return BootstrapPlan(tuple(label), tuple(reset), skipped)


def run_bootstrap(
    store: ProjectStore,
    image_ids: Sequence[int] | None = None,
    *,
    settings: ModelSettings,
    segmenter: SharedSegmenter | None = None,
    on_progress: ProgressFn | None = None,
    redo_pseudo: bool = False,
    relabel_edited: bool = False,
    user: str = "local",
    **options: Any,
) -> tuple[Any, BootstrapPlan]:
    """Pseudo-label project images with ``annotate.bootstrap`` (classifier -> CAMs -> DHR -> segmenter).

    ``image_ids`` None means every image. Only images still "new" are labelled (the bootstrap never overwrites
    reviewed work); with ``redo_pseudo`` the chosen images in status "pseudo" are set back to "new" first,
    except those a person edited since the last automatic pass (unless ``relabel_edited``): see
    :func:`bootstrap_plan`.
    The classifier is trained once on every image of the project (``PROJECT/classifier.pt``, reused later).
    ``settings`` give device, weights folder and segmenter; ``segmenter`` is the GUI's running one (a lease of
    it labels the images; without it one is built from ``settings``). ``options`` are other
    :class:`annotate.bootstrap.BootstrapConfig` fields (``epochs``, ``uss``...).
    Returns the :class:`annotate.bootstrap.BootstrapReport` and the :class:`BootstrapPlan` it followed.
    """
    from annotate.bootstrap import BootstrapConfig, prepare_classifier
    from annotate.bootstrap import run_bootstrap as bootstrap_images
    from annotate.dataset import DatasetEntry, TaggedDataset
    from annotate.store import IMAGES_DIR

    prefix = IMAGES_DIR + "/"
    plan = bootstrap_plan(store, image_ids, redo_pseudo=redo_pseudo, relabel_edited=relabel_edited)
    if plan.skipped:
        logger.info("automatic labelling %s", plan.summary())
    records = store.list_images(order="name")
    usable = [r for r in records if r.file_name.startswith(prefix) and r.tags]

    def entry(record: Any) -> DatasetEntry:
        return DatasetEntry(record.file_name[len(prefix) :], store.image_path(record.id), tuple(record.tags))

    classes = list(store.classes)
    everything = TaggedDataset(
        store.root / IMAGES_DIR, classes, [entry(r) for r in usable], source=store.root
    )
    if not plan.label:
        raise ValueError(
            "nothing to label: the chosen images are labelled, reviewed or without tags "
            "(only 'new' images are labelled; tick the relabel option for 'pseudo' ones)"
        )
    for image_id in plan.reset:
        store.set_status(image_id, "new", user=user, expected_version=store.image(image_id).version)
    targets = [store.image(i) for i in plan.label]
    todo = sum(1 for r in targets if r.status == "new")
    layout = store.layout
    config = BootstrapConfig(out=store.root, models=settings, embedding_cache=layout.embeddings_dir, **options)
    if on_progress is not None:
        on_progress(0.0, f"training the classifier on {len(usable)} tagged image(s)" if not
                    layout.classifier_file.is_file() else "loading the classifier")
    trained_now = not layout.classifier_file.is_file()
    prepare_classifier(everything, config, layout.classifier_file)  # on every tagged image, not only the targets
    done = [0]

    def image_done(file_name: str) -> None:
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0] / todo, f"labelled {file_name}")

    dataset = TaggedDataset(store.root / IMAGES_DIR, classes, [entry(r) for r in targets], source=store.root)
    lease = segmenter.lease() if segmenter is not None else None  # None: the bootstrap builds one from settings
    report = bootstrap_images(
        dataset, config, segmenter=lease, on_image_done=image_done, classifier_trained=trained_now
    )
    return report, plan


def run_training_round(
    store: ProjectStore,
    *,
    settings: ModelSettings,
    segmenter: SharedSegmenter | None = None,
    on_progress: ProgressFn | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run the project's next recursive training round (``training.rounds``); returns that round's figures.

    ``settings`` give device, weights folder and segmenter; ``segmenter`` is the GUI's running one (a lease of
    it relabels the images). ``options`` are :class:`training.rounds.RoundsConfig` fields (``train``...);
    rounds already done under ``PROJECT/training`` are kept, so each call adds one round; ``relabel_edited``
    (a RoundsConfig field) also relabels images a person edited. ``on_progress`` hears every training step and
    relabelled image.
    """
    from training.rounds import RoundsConfig, run_rounds

    out_dir = Path(options.get("out_dir") or store.layout.training_dir)
    done = len(list(out_dir.glob("round_*/metrics.json"))) if out_dir.is_dir() else 0
    config = RoundsConfig(**{**options, "rounds": done + 1})
    if on_progress is not None:
        on_progress(0.0, f"training round {done + 1}")
    lease = segmenter.lease() if segmenter is not None else None
    history = run_rounds(
        store.root, config, progress=False, settings=settings, segmenter=lease, on_progress=on_progress
    )
    if on_progress is not None:
        on_progress(1.0, f"training round {done + 1} done")
    return history[-1] if history else {}

