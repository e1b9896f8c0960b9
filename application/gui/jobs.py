"""Project jobs the review GUI starts: automatic labelling, a training round, a COCO export into the project.

Each takes an open :class:`annotate.store.ProjectStore` and reports progress through an optional
``on_progress(fraction, text)`` callback; paths come from the project's :class:`annotate.store.ProjectLayout`.
The model jobs take the GUI's :class:`models.ModelSettings` (device, weights folder) and its running
segmenter (a :class:`annotate.review.refine.SharedSegmenter`), so they run where the GUI runs and never load
a second model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from annotate.review.refine import SharedSegmenter
from annotate.store import ProjectStore
from models.settings import ModelSettings

logger = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]
"""Progress callback: fraction done in [0, 1] and a short description."""


def run_bootstrap(
    store: ProjectStore,
    image_ids: Sequence[int] | None = None,
    *,
    settings: ModelSettings,
    segmenter: SharedSegmenter | None = None,
    on_progress: ProgressFn | None = None,
    redo_pseudo: bool = False,
    user: str = "local",
    **options: Any,
) -> Any:
    """Pseudo-label project images with ``annotate.bootstrap`` (classifier -> CAMs -> DHR -> segmenter).

    ``image_ids`` None means every image. Only images still "new" are labelled (the bootstrap never overwrites
    reviewed work); with ``redo_pseudo`` the chosen images in status "pseudo" are set back to "new" first.
    The classifier is trained once on every image of the project (``PROJECT/classifier.pt``, reused later).
    ``settings`` give device, weights folder and segmenter; ``segmenter`` is the GUI's running one (a lease of
    it labels the images; without it one is built from ``settings``). ``options`` are other
    :class:`annotate.bootstrap.BootstrapConfig` fields (``epochs``, ``uss``...).
    Returns the :class:`annotate.bootstrap.BootstrapReport`.
    """
    from annotate.bootstrap import BootstrapConfig, prepare_classifier
    from annotate.bootstrap import run_bootstrap as bootstrap_images
    from annotate.dataset import DatasetEntry, TaggedDataset
    from annotate.store import IMAGES_DIR

    prefix = IMAGES_DIR + "/"
    records = store.list_images(order="name")
    chosen = set(int(i) for i in image_ids) if image_ids is not None else {r.id for r in records}
    unknown = chosen - {r.id for r in records}
    if unknown:
        raise ValueError(f"no image with id(s) {sorted(unknown)} in project {store.root}")
    usable = [r for r in records if r.file_name.startswith(prefix) and r.tags]
    skipped = [r.file_name for r in records if r.id in chosen and r not in usable]
    if skipped:
        logger.warning(
            "not labelled automatically (outside %s or without tags): %s", prefix, ", ".join(skipped)
        )

    def entry(record: Any) -> DatasetEntry:
        return DatasetEntry(record.file_name[len(prefix) :], store.image_path(record.id), tuple(record.tags))

    classes = list(store.classes)
    everything = TaggedDataset(
        store.root / IMAGES_DIR, classes, [entry(r) for r in usable], source=store.root
    )
    targets = [r for r in usable if r.id in chosen]
    if not targets:
        raise ValueError("none of the chosen images can be labelled automatically (they need tags)")
    if redo_pseudo:
        for r in targets:
            if r.status == "pseudo":
                store.set_status(r.id, "new", user=user, expected_version=r.version)
    todo = sum(1 for r in targets if store.image(r.id).status == "new")
    if todo == 0:
        raise ValueError(
            "the chosen images are all labelled or reviewed already (only 'new' images are labelled)"
        )
    layout = store.layout
    config = BootstrapConfig(out=store.root, models=settings, embedding_cache=layout.embeddings_dir, **options)
    if on_progress is not None:
        on_progress(0.0, "classifier")
    prepare_classifier(everything, config, layout.classifier_file)
    done = [0]

    def image_done(file_name: str) -> None:
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0] / todo, f"labelled {file_name}")

    dataset = TaggedDataset(store.root / IMAGES_DIR, classes, [entry(r) for r in targets], source=store.root)
    lease = segmenter.lease() if segmenter is not None else None  # None: the bootstrap builds one from settings
    return bootstrap_images(dataset, config, segmenter=lease, on_image_done=image_done)


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
    rounds already done under ``PROJECT/training`` are kept, so each call adds one round. Progress inside the
    round is reported through tqdm bars (a GUI can track them).
    """
    from training.rounds import RoundsConfig, run_rounds

    out_dir = Path(options.get("out_dir") or store.layout.training_dir)
    done = len(list(out_dir.glob("round_*/metrics.json"))) if out_dir.is_dir() else 0
    config = RoundsConfig(**{**options, "rounds": done + 1})
    if on_progress is not None:
        on_progress(0.0, f"training round {done + 1}")
    lease = segmenter.lease() if segmenter is not None else None
    history = run_rounds(store.root, config, progress=True, settings=settings, segmenter=lease)
    if on_progress is not None:
        on_progress(1.0, f"training round {done + 1} done")
    return history[-1] if history else {}


def export_to_project(
    store: ProjectStore, *, accepted_only: bool = False, polygons: bool = False, report: Any = None
) -> tuple[Path, dict[str, Any]]:
    """Export the project's labels as COCO to ``PROJECT/exports/coco-{accepted|all}-YYYYmmdd-HHMMSS.json``.

    Returns the file's path and the COCO dict (:func:`annotate.coco.export_coco`); ``report`` (an
    :class:`annotate.coco.ExportReport`) is filled with what polygons lost.
    """
    from annotate.coco import export_coco

    stamp = time.strftime("%Y%m%d-%H%M%S")
    kind = "accepted" if accepted_only else "all"
    layout = store.layout
    path = store.resolve(layout.relative(layout.exports_dir / f"coco-{kind}-{stamp}.json"))  # no symlink out
    path.parent.mkdir(parents=True, exist_ok=True)
    coco = export_coco(
        store,
        path,
        accepted_only=bool(accepted_only),
        polygons=bool(polygons),
        verify_images=True,
        report=report,
    )
    return path, coco
