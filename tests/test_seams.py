"""The seams between layers: one project layout, one feature cache key, the GUI's settings and segmenter in
its jobs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from annotate.store import ProjectStore
from application import cli
from models import ModelSettings
from models.segmenters import SEGMENTERS, GrabCutSegmenter, SamSegmenter, build_tiny_sam
from models.uss import build_uss_provider
from tests.synthetic_dataset import write_dataset

N_IMAGES = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), n=N_IMAGES, size=(64, 64), seed=3, background="photo")


def _count_encoder_calls(monkeypatch) -> list[int]:
    """Register a tiny random SAM as "sam_vit_b"; returns a list that grows by one per encoded image."""
    calls: list[int] = []
    encode = SamSegmenter._encode

    def counted(self, image):
        calls.append(1)
        return encode(self, image)

    def build(weights_dir=None, device="cpu", cache=None, download=True):
        return SamSegmenter(build_tiny_sam(), "sam_vit_b@tiny", cache=cache)

    monkeypatch.setattr(SamSegmenter, "_encode", counted)
    monkeypatch.setitem(SEGMENTERS, "sam_vit_b", build)
    return calls


def test_bootstrap_then_gui_then_train_encode_each_image_once(data, tmp_path, monkeypatch):
    from annotate.review.session import ReviewSession
    from application.commands.gui import build_gui_parser, build_segmenter_for, model_settings

    calls = _count_encoder_calls(monkeypatch)
    project, weights = tmp_path / "project", tmp_path / "no-weights"
    weights.mkdir()
    common = ["--segmenter", "sam_vit_b", "--weights-dir", str(weights)]
    assert cli.main(["bootstrap", str(data.tags_path), "--images", str(data.image_dir), "--out", str(project),
                     "--backbone", "resnet_tiny", "--no-pretrained", "--epochs", "1", "--crop-size", "64",
                     "--uss", "sam", "--no-progress", "--no-download", *common]) == 0
    assert len(calls) == N_IMAGES

    with ProjectStore.open(project) as store:  # the review GUI opens every image
        args = build_gui_parser().parse_args(["--project", str(project), *common])
        session = ReviewSession(store, build_segmenter_for(model_settings(args), store), user="ann")
        for record in store.list_images():
            session.open_image(record.id)
            session.prepare_segmenter()
    assert len(calls) == N_IMAGES

    assert cli.main(["train", str(project), "--rounds", "1", "--steps", "2", "--batch-size", "2", "--crop-size",
                     "64", "--backbone", "resnet_tiny", "--no-pretrained", "--uss", "sam", "--scales", "1",
                     "--workers", "0", "--quiet", *common]) == 0
    assert len(calls) == N_IMAGES  # one encoder run per image in total
    features = [p.name for p in (project / "cache" / "features").iterdir()]
    assert features and all(name.startswith("sam_sam_vit_b@tiny") for name in features)  # SAM's own features
    assert not (project / ".cache").exists()  # one cache folder, the layout's


def test_changing_the_sam_variant_invalidates_the_uss_features(data, tmp_path):
    from models.embedding_cache import EmbeddingCache
    from training.data import USSFeatureCache, precompute_uss_features, project_entries

    store = ProjectStore.create(tmp_path / "p", list(data.classes))
    for sample in data.samples:
        store.add_image(data.image_dir / sample.name, list(sample.tags))
    layout, settings = store.layout, ModelSettings()
    embeddings = EmbeddingCache(layout.embeddings_dir)
    vit_b = SamSegmenter(build_tiny_sam(seed=0), "sam_vit_b@ec2df6273261", cache=embeddings)
    vit_h = SamSegmenter(build_tiny_sam(seed=1, prompt_dim=16), "sam_vit_h@a7bf3b02f3eb", cache=embeddings)
    entries = project_entries(store)

    first = build_uss_provider("sam", settings, vit_b)
    cache_b = USSFeatureCache(layout.features_dir, first.feature_id)
    assert precompute_uss_features(store, entries, first, cache_b, progress=False) == N_IMAGES

    second = build_uss_provider("sam", settings, vit_h)
    assert second.feature_id != first.feature_id
    cache_h = USSFeatureCache(layout.features_dir, second.feature_id)
    assert not any(e.sha256 in cache_h for e in entries)  # nothing of ViT-B is offered to ViT-H
    assert precompute_uss_features(store, entries, second, cache_h, progress=False) == N_IMAGES
    image = store.load_image(entries[0].image_id)
    torch.testing.assert_close(cache_h.get(entries[0].sha256), second.features(image).half().float())
    assert cache_h.get(entries[0].sha256).shape[0] == 16 and cache_b.get(entries[0].sha256).shape[0] == 32
    assert build_uss_provider("color", dataclasses.replace(settings)).feature_id.startswith("color:stride=")
    store.close()


@pytest.fixture
def gui(tmp_path, data):
    """A GUI's handlers started with ``--device cuda:1 --segmenter grabcut`` over a tagged project."""
    from application.commands.gui import build_gui_parser, build_segmenter_for, model_settings
    from application.gui.handlers import Page, ReviewHandlers
    from application.gui.jobs_panel import JobHandlers, JobsPanel

    store = ProjectStore.create(tmp_path / "gui", list(data.classes))
    for sample in data.samples:
        store.add_image(data.image_dir / sample.name, list(sample.tags))
    args = build_gui_parser().parse_args(["--project", str(store.root), "--device", "cuda:1",
                                          "--segmenter", "grabcut"])
    settings = model_settings(args)
    shared = build_segmenter_for(dataclasses.replace(settings, device="cpu"), store)  # GrabCut: no device
    page = Page(**{f.name: f.name for f in dataclasses.fields(Page)})
    handlers = ReviewHandlers(page, store, shared, user="ann", settings=settings,
                              bootstrap_options={"backbone": "resnet_tiny", "pretrained": False, "epochs": 1,
                                                 "crop_size": 64, "uss": "color", "progress": False})
    panel = JobsPanel(**{f.name: f.name for f in dataclasses.fields(JobsPanel)})
    handlers.jobs = JobHandlers(handlers, panel)
    yield handlers
    handlers.jobs.runner.wait(600)
    store.close()


def _no_second_model(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a job loaded a second segmenter")

    monkeypatch.setattr("models.segmenters.build_segmenter", refuse)


def test_gui_jobs_get_the_gui_device_and_its_segmenter(gui, monkeypatch):
    import annotate.bootstrap
    import training.rounds

    _no_second_model(monkeypatch)
    seen: dict[str, object] = {}

    def bootstrap(dataset, config, *, segmenter=None, on_image_done=None, classifier_trained=False):
        seen["bootstrap"] = (config.models.device, segmenter)
        return annotate.bootstrap.BootstrapReport([], [], 0, config.out, None, config.out, "", "")

    def rounds(root, config, ctx=None, gt=None, progress=True, *, settings=None, segmenter=None, on_progress=None):
        seen["rounds"] = (settings.device, segmenter)
        return [{"round": 1}]

    monkeypatch.setattr(annotate.bootstrap, "prepare_classifier", lambda *a, **k: None)
    monkeypatch.setattr(annotate.bootstrap, "run_bootstrap", bootstrap)
    monkeypatch.setattr(training.rounds, "run_rounds", rounds)
    ui = gui.on_load(None)["state"]
    gui.jobs.on_bootstrap_all(ui, False, False)
    assert gui.jobs.runner.wait(60) and not gui.jobs.runner.status().error
    gui.jobs.on_train(ui, 2, False)
    assert gui.jobs.runner.wait(60) and not gui.jobs.runner.status().error
    for job in ("bootstrap", "rounds"):
        device, segmenter = seen[job]
        assert device == "cuda:1"
        assert segmenter.shared is gui.shared  # a lease of the GUI's own segmenter


def test_a_gui_bootstrap_labels_with_the_gui_segmenter(gui, monkeypatch):
    _no_second_model(monkeypatch)
    gui.settings = dataclasses.replace(gui.settings, device="cpu")
    assert isinstance(gui.shared.segmenter, GrabCutSegmenter)
    ui = gui.on_load(None)["state"]
    started = gui.jobs.on_bootstrap_all(ui, False, False)
    assert "it labels 3 image(s)" in started["message_md"]  # said before the run: what it will change
    assert gui.jobs.runner.wait(300)
    status = gui.jobs.runner.status()
    assert not status.error and status.result.startswith("3 image(s) labelled")
    assert "classifier resnet_tiny trained from scratch" in status.result and "GrabCut fallback" in status.result
    assert "expect rough masks" in status.result  # and what that means for the labels
    statuses = {r.status for r in gui.store.list_images()}
    assert statuses == {"pseudo"}
    # bootstrap.json records what ran: this job trained the classifier (from scratch), it loaded none
    manifest = json.loads((gui.store.root / "bootstrap.json").read_text())
    assert manifest["classifier"]["pretrained"] is False and manifest["settings"]["pretrained"] is False
    assert manifest["classifier"]["loaded_from"] is None and "loaded from" not in manifest["classifier"]["summary"]
    sources = {i.source for r in gui.store.list_images() for i in gui.store.instances(r.id)}
    assert "grabcut" in sources and sources <= {"grabcut", "dhr"}  # the GUI's GrabCut (or the DHR seed kept)


def test_importing_the_store_loads_no_export_code():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import annotate.store"],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    loaded = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line]
    assert "annotate.store" in loaded
    assert not [m for m in loaded if m.startswith(("annotate.coco", "training", "annotate.bootstrap"))]
    assert np.all([not m.startswith("gradio") for m in loaded])


def test_a_rating_and_a_predicted_iou_are_stored_apart(tmp_path):
    from annotate.review.refine import EditableInstance, SharedSegmenter, refine_instance
    from annotate.store import NewInstance

    store = ProjectStore.create(tmp_path / "p", ["cat"])
    image = np.zeros((32, 32, 3), np.uint8)
    image[8:24, 8:24] = 200
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "a.png")
    image_id = store.add_image(tmp_path / "a.png", ["cat"])
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    store.save_labels(image_id, [NewInstance(1, mask, score=0.4, source="sam", predicted_iou=0.9)], user="t")
    (record,) = store.instances(image_id)
    assert (record.score, record.predicted_iou) == (pytest.approx(0.4), pytest.approx(0.9))
    store.save_labels(image_id, [NewInstance(1, mask, score=1.0)], user="t")
    assert store.instances(image_id)[0].predicted_iou is None  # painted by hand: no model prediction
    store.undo(image_id, user="t")
    assert store.instances(image_id)[0].predicted_iou == pytest.approx(0.9)

    inst = EditableInstance(class_id=1, mask=np.zeros((32, 32), bool), points=np.array([[16.0, 16.0]]),
                            labels=np.array([1]))
    refine_instance(SharedSegmenter(GrabCutSegmenter()), "a", image, inst)
    assert inst.predicted_iou is not None and inst.to_new().predicted_iou == inst.predicted_iou

    from annotate.coco import coco_dict

    extra = coco_dict(store)["annotations"][0]["dhr_label"]
    assert extra["score"] == pytest.approx(0.4) and extra["predicted_iou"] == pytest.approx(0.9)
    store.close()
