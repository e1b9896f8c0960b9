"""The GUI's jobs without a browser: one background job at a time, what a job will change and skip, what the
page says about the models, the queue's checks, and the segmenter switch."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.store import NewInstance, ProjectStore


def _project(tmp_path: Path, names=("a", "b", "c", "d")) -> ProjectStore:
    store = ProjectStore.create(tmp_path / "proj", ["cat", "dog"])
    for i, name in enumerate(names):
        path = tmp_path / "in" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
        store.add_image(path, ["cat"])
    return store


def _mask(x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((24, 32), bool)
    mask[4:20, x0:x1] = True
    return mask


def test_one_job_at_a_time_and_its_outcome():
    from application.gui.jobs import JobBusy, JobRunner

    runner = JobRunner()
    go = threading.Event()

    def work(progress):
        progress(0.5, "half way")
        assert go.wait(30)
        return "done: 3 images"

    assert runner.start("Automatic labelling", work) == 1
    for _ in range(100):
        if runner.status().text == "half way":
            break
        threading.Event().wait(0.01)
    status = runner.status()
    assert status.running and status.fraction == 0.5 and status.text == "half way"
    with pytest.raises(JobBusy, match="Automatic labelling is still running"):
        runner.start("Training round", lambda progress: "never")
    go.set()
    assert runner.wait(30)
    status = runner.status()
    assert (status.number, status.running, status.result, status.error) == (1, False, "done: 3 images", "")

    def fails(progress):
        raise ValueError("none of the images has tags")

    runner.start("Automatic labelling", fails)
    assert runner.wait(30)
    assert runner.status().error == "none of the images has tags" and runner.status().number == 2
    from application.gui.jobs_panel import progress_markdown

    assert progress_markdown(runner.status()).startswith("❌ **Automatic labelling** failed after")


def test_a_labelling_plan_skips_reviewed_and_hand_edited_images(tmp_path):
    from application.gui.jobs import bootstrap_plan

    store = _project(tmp_path)
    new, auto, mine, done = (r.id for r in store.list_images(order="name"))
    store.save_labels(auto, [NewInstance(1, _mask(2, 10), source="grabcut")], user="bootstrap", status="pseudo")
    store.save_labels(mine, [NewInstance(1, _mask(2, 10), source="grabcut")], user="bootstrap", status="pseudo")
    store.save_labels(mine, [NewInstance(1, _mask(2, 20))], user="ann", status="pseudo")  # hand edit, still pseudo
    store.set_status(done, "accepted", user="ann")

    plan = bootstrap_plan(store)
    assert plan.label == (new,) and plan.reset == ()
    assert plan.skipped == {"images/b.png": "already labelled", "images/c.png": "edited by hand",
                            "images/d.png": "accepted or rejected"}
    plan = bootstrap_plan(store, redo_pseudo=True)
    assert plan.label == (new, auto) and plan.reset == (auto,)
    assert plan.summary() == "labels 2 image(s), skips 1 edited by hand, 1 accepted or rejected"
    plan = bootstrap_plan(store, redo_pseudo=True, relabel_edited=True)
    assert plan.label == (new, auto, mine) and plan.reset == (auto, mine)
    with pytest.raises(ValueError, match=r"no image with id\(s\) \[99\]"):
        bootstrap_plan(store, [99])
    store.close()


def test_the_page_says_which_models_run_and_flags_rough_labels(tmp_path):
    from annotate.review.provenance import planned_bootstrap, planned_training, review_checks
    from models.weights import CHECKPOINTS

    store = _project(tmp_path)
    empty = tmp_path / "no-weights"
    note = planned_bootstrap(store, empty, False, "grabcut", True)
    assert note.rough
    assert note.lines[0] == ("classifier resnet_small trained from scratch on 4 tagged image(s) (no ImageNet "
                             "weights): its CAMs find objects roughly")
    assert "GrabCut fallback, no Segment Anything checkpoint" in note.lines[1]
    assert "expect rough masks" in note.text("Automatic labelling will use:")
    assert "trained from scratch" in planned_training(empty, "grabcut", True).lines[0]

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / CHECKPOINTS["resnet50"].filename).write_bytes(b"present")
    note = planned_bootstrap(store, weights, False, "sam_vit_b@abc", False)
    assert not note.rough and note.lines[0].startswith("classifier resnet50 fine-tuned from ImageNet weights")
    assert note.lines[1] == "Segment Anything sam_vit_b@abc" and "Segment Anything image embedding" in note.lines[2]
    assert not planned_training(weights, "sam_vit_b@abc", False).rough

    low, good, mine, _ = (r.id for r in store.list_images(order="name"))
    store.save_labels(low, [], user="bootstrap", status="pseudo", confidence=0.3)
    store.save_labels(good, [], user="bootstrap", status="pseudo", confidence=0.9)
    store.save_labels(mine, [], user="ann", status="review", confidence=0.2)
    assert review_checks(store) == {low: "⚠ low confidence", good: "", mine: "", 4: ""}
    manifest = {"classifier": {"backbone": "resnet_small", "pretrained": False}, "segmenter": "grabcut",
                "uss": "color"}
    (store.root / "bootstrap.json").write_text(json.dumps(manifest))
    checks = review_checks(store)
    assert checks[low] == "⚠ low confidence, rough models" and checks[good] == "⚠ rough models"
    assert checks[mine] == ""  # a person's labels are theirs to judge
    store.close()


@pytest.fixture
def jobs(tmp_path):
    from annotate.review.refine import SharedSegmenter
    from application.gui.handlers import Page, ReviewHandlers
    from application.gui.jobs_panel import JobHandlers, JobsPanel
    from models.segmenters import GrabCutSegmenter
    from models.settings import ModelSettings

    store = _project(tmp_path)
    page = Page(**{f.name: f.name for f in dataclasses.fields(Page)})
    settings = ModelSettings(weights_dir=str(tmp_path / "weights"), segmenter="grabcut")
    review = ReviewHandlers(page, store, SharedSegmenter(GrabCutSegmenter()), user="ann", settings=settings)
    handlers = JobHandlers(review, JobsPanel(**{f.name: f.name for f in dataclasses.fields(JobsPanel)}))
    yield handlers
    handlers.runner.wait(30)
    store.close()


def test_the_segmenter_list_comes_from_the_registry_and_a_switch_loads_once(jobs, tmp_path, monkeypatch):
    from application.gui.jobs_panel import segmenter_choices, segmenter_name
    from models.registry import names
    from models.segmenters import SEGMENTERS, SamSegmenter, build_tiny_sam
    from models.weights import CHECKPOINTS

    weights = tmp_path / "weights"
    weights.mkdir()
    usable, missing = segmenter_choices(weights)
    assert usable == ["grabcut"] and sorted(usable + missing) == sorted(names("segmenter"))
    (weights / CHECKPOINTS["sam_vit_b"].filename).write_bytes(b"present")
    usable, missing = segmenter_choices(weights)
    assert "sam_vit_b" in usable and "sam_vit_b" not in missing

    built: list[str] = []

    def build(weights_dir=None, device="cpu", cache=None, download=True):
        built.append(str(weights_dir))
        return SamSegmenter(build_tiny_sam(), "sam_vit_b@tiny", cache=cache)

    monkeypatch.setitem(SEGMENTERS, "sam_vit_b", build)
    ui = jobs.review.on_load(None)["state"]
    shared = jobs.review.shared
    out = jobs.on_segmenter(ui, "sam_vit_b")
    assert built == [str(weights)] and shared.model_id == "sam_vit_b@tiny" and segmenter_name(shared) == "sam_vit_b"
    assert out["message_md"] == "segmenter switched to sam_vit_b"
    assert "sam_vit_b@tiny" in out["banner_md"].value and jobs.review.settings.segmenter == "sam_vit_b"
    jobs.on_segmenter(ui, "sam_vit_b")
    assert len(built) == 1  # choosing the running one again loads nothing
    ui.session.add_point(16, 12)  # the new model answers the clicks
    assert ui.session.instances[-1].source == "sam"

    go = threading.Event()
    jobs.runner.start("Training round", lambda progress: str(go.wait(30)))
    refused = jobs.on_segmenter(ui, "grabcut")
    assert "wait for the running job to finish" in refused["message_md"] and segmenter_name(shared) == "sam_vit_b"
    go.set()
    assert jobs.runner.wait(30)


def test_a_finished_job_refreshes_each_tab_once(jobs):
    from application.gui.jobs_panel import IDLE_POLL_SECONDS, POLL_SECONDS

    ui = jobs.review.on_load(None)["state"]
    first = jobs.on_tick(ui, None)
    seen = first["seen"]
    assert first["job_md"].startswith("No job running") and "queue_df" not in first
    assert first["timer"] == IDLE_POLL_SECONDS  # with no job running the tab polls slowly
    assert jobs.on_tick(ui, seen) == {"seen": seen}  # nothing changed: nothing sent
    image_id = ui.session.image_id
    go = threading.Event()

    def work(progress):
        go.wait(30)
        jobs.store.save_labels(image_id, [NewInstance(1, _mask(2, 10))], user="bootstrap", status="pseudo")
        return "1 image(s) labelled"

    jobs.runner.start("Automatic labelling", work)
    running = jobs.on_tick(ui, seen)
    assert running["timer"] == POLL_SECONDS and "Automatic labelling" in running["job_md"]  # a job: fast polls
    seen = running["seen"]
    go.set()
    assert jobs.runner.wait(30)
    done = jobs.on_tick(ui, seen)
    assert done["timer"] == IDLE_POLL_SECONDS
    assert "finished" in done["job_md"] and "1 image(s) labelled" in done["job_md"]
    assert [row[2] for row in done["queue_df"] if row[0] == image_id] == ["pseudo"]  # the queue is refreshed
    assert "changed the open image" in done["message_md"] and len(ui.session.instances) == 1  # and reloaded
    assert "queue_df" not in jobs.on_tick(ui, done["seen"])  # once
