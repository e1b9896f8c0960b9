"""`dhr bootstrap` end to end on the synthetic dataset: quality, outputs, resume, shards + merge, options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from annotate.bootstrap import (
    BootstrapConfig,
    ImageOutcome,
    merge_shards,
    parse_shard,
    run_bootstrap,
    shard_entries,
)
from annotate.confidence import image_confidence
from annotate.dataset import load_dataset
from annotate.labeling import Instance
from annotate.store import NewInstance, ProjectStore
from application import cli
from dhr import DHRResult
from dhr.metrics import confusion_matrix, segmentation_scores
from models.classifier import cams_to_mask, compute_cams, load_classifier
from models.settings import ModelSettings
from tests.synthetic_dataset import CLASSES, write_dataset

N_IMAGES, SIZE = 12, (96, 96)
TINY = ["--backbone", "resnet_tiny", "--no-pretrained", "--epochs", "30", "--lr", "0.05", "--crop-size", "80"]
FAST = ["--segmenter", "grabcut", "--uss", "color", "--no-progress", "--check-images", "header"]


def _config(out: Path, **kwargs) -> BootstrapConfig:
    base = dict(
        out=out,
        backbone="resnet_tiny",
        pretrained=False,
        epochs=30,
        lr=0.05,
        crop_size=80,
        uss="color",
        progress=False,
    )
    models = {"segmenter": "grabcut"}
    for key in ("segmenter", "weights_dir", "download", "device"):
        if key in kwargs:
            models[key] = kwargs.pop(key)
    base.update(kwargs)
    return BootstrapConfig(models=ModelSettings(**models), **base)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), n=N_IMAGES, size=SIZE, seed=3)


@pytest.fixture(scope="module")
def reference(synthetic, tmp_path_factory):
    """One uninterrupted run through the CLI."""
    out = tmp_path_factory.mktemp("ref") / "out"
    code = cli.main(["bootstrap", str(synthetic.root), "--out", str(out), *TINY, *FAST])
    assert code == 0
    return out


def _masks(out: Path) -> dict[str, np.ndarray]:
    return {p.name: np.array(Image.open(p)) for p in sorted((out / "masks").glob("*.png"))}


def _coco_core(path: Path) -> dict:
    """The parts of a COCO file that describe the labels (no dates, no tool info)."""
    coco = json.loads(path.read_text())
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    anns = sorted(
        (
            names[a["image_id"]],
            a["category_id"],
            json.dumps(a["segmentation"], sort_keys=True),
            json.dumps(a.get("dhr_label")),
        )
        for a in coco["annotations"]
    )
    images = sorted(
        (im["file_name"], im["width"], im["height"], json.dumps(im.get("dhr_label"))) for im in coco["images"]
    )
    return {"images": images, "annotations": anns, "categories": coco["categories"]}


def test_end_to_end_quality_and_outputs(synthetic, reference):
    from pycocotools.coco import COCO

    coco = COCO(str(reference / "coco.json"))
    assert len(coco.getImgIds()) == N_IMAGES
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    tags_of = {s.name: {CLASSES.index(t) + 1 for t in s.tags} for s in synthetic.samples}
    for image in coco.loadImgs(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        found = {a["category_id"] for a in anns}
        assert found == tags_of[Path(image["file_name"]).name], image["file_name"]  # every tag, nothing else
        for a in anns:
            assert isinstance(a["segmentation"]["counts"], str)  # compressed RLE
            assert coco.annToMask(a).sum() == a["area"] > 0

    # pseudo-label mIoU beats the CAM-argmax baseline of the same classifier
    model, classes = load_classifier(reference / "classifier.pt")
    assert classes == list(CLASSES)
    masks = _masks(reference)
    ours = torch.zeros(4, 5, dtype=torch.int64)
    cam = torch.zeros(4, 5, dtype=torch.int64)
    for s in synthetic.samples:
        gt = torch.from_numpy(s.gt).long()
        ours += confusion_matrix(torch.from_numpy(masks[s.name]).long(), gt, 4)
        tags = sorted(tags_of[s.name])
        cams, _ = compute_cams(model, s.image, [t - 1 for t in tags])
        cam += confusion_matrix(cams_to_mask(cams, tags, 0.3), gt, 4)
    ours_scores, cam_scores = segmentation_scores(ours), segmentation_scores(cam)
    assert ours_scores["miou"] > cam_scores["miou"] + 0.05
    assert ours_scores["miou"] > 0.6

    with ProjectStore.open(reference) as store:
        records = store.list_images(order="confidence")
        assert len(records) == N_IMAGES and {r.status for r in records} == {"pseudo"}
        confidences = [r.confidence for r in records]
        assert confidences == sorted(confidences) and all(0 <= c <= 1 for c in confidences)
        first = records[0]
        semantic = store.semantic_mask(first.id)
        np.testing.assert_array_equal(semantic, masks[Path(first.file_name).name])
    manifest = json.loads((reference / "bootstrap.json").read_text())
    assert manifest["classes"] == list(CLASSES) and manifest["uss"] == "color"


def test_resume_after_interruption_equals_uninterrupted_run(synthetic, reference, tmp_path):
    out = tmp_path / "out"
    data = load_dataset(synthetic.root, progress=False)
    done: list[str] = []

    def stop_after_four(name: str) -> None:
        done.append(name)
        if len(done) == 4:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        run_bootstrap(data, _config(out), on_image_done=stop_after_four)
    assert (out / "classifier.pt").is_file() and not (out / "coco.json").exists()
    with ProjectStore.open(out) as store:
        assert sorted(r.status for r in store.list_images()).count("pseudo") == 4
    report = run_bootstrap(data, _config(out))
    assert report.skipped == done
    assert len(report.processed) == N_IMAGES - 4 and not set(report.processed) & set(done)
    # the same result as the uninterrupted run (the classifier is trained deterministically)
    ref_model, _ = load_classifier(reference / "classifier.pt")
    new_model, _ = load_classifier(out / "classifier.pt")
    for (k, a), b in zip(ref_model.state_dict().items(), new_model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)
    ref_masks, new_masks = _masks(reference), _masks(out)
    assert ref_masks.keys() == new_masks.keys()
    for name in ref_masks:
        np.testing.assert_array_equal(new_masks[name], ref_masks[name], err_msg=name)
    assert _coco_core(out / "coco.json") == _coco_core(reference / "coco.json")
    again = run_bootstrap(data, _config(out))  # a finished run does nothing
    assert again.processed == [] and len(again.skipped) == N_IMAGES


def test_shards_and_merge_equal_one_run(synthetic, reference, tmp_path):
    trained = tmp_path / "trained"
    assert (
        cli.main(["bootstrap", str(synthetic.root), "--out", str(trained), "--train-only", *TINY, *FAST]) == 0
    )
    assert sorted(p.name for p in trained.iterdir()) == ["classifier.pt"]
    shard_outs = []
    for i in range(3):
        out = tmp_path / f"shard{i}"
        args = ["bootstrap", str(synthetic.root), "--out", str(out), "--shard", f"{i}/3"]
        args += ["--classifier", str(trained / "classifier.pt"), *TINY, *FAST]
        assert cli.main(args) == 0
        shard_outs.append(out)
        with ProjectStore.open(out) as store:
            assert len(store.list_images()) == N_IMAGES // 3
    assert cli.main(["merge-shards", str(tmp_path / "merged"), *map(str, shard_outs), "--no-progress"]) == 0
    merged = tmp_path / "merged"
    assert _coco_core(merged / "coco.json") == _coco_core(reference / "coco.json")
    ref_masks, merged_masks = _masks(reference), _masks(merged)
    assert ref_masks.keys() == merged_masks.keys()
    assert all(np.array_equal(ref_masks[k], merged_masks[k]) for k in ref_masks)
    with ProjectStore.open(merged) as a, ProjectStore.open(reference) as b:
        conf_a = {r.file_name: r.confidence for r in a.list_images()}
        conf_b = {r.file_name: r.confidence for r in b.list_images()}
        assert conf_a == pytest.approx(conf_b)
    with pytest.raises(ValueError, match="two shards"):
        merge_shards(tmp_path / "again", [shard_outs[0], shard_outs[0]], progress=False)


def test_shard_split_is_deterministic_and_complete(synthetic):
    data = load_dataset(synthetic.root, progress=False)
    parts = [shard_entries(list(reversed(data.entries)), (i, 4)) for i in range(4)]
    names = sorted(e.file_name for p in parts for e in p)
    assert names == sorted(e.file_name for e in data.entries)
    assert [e.file_name for e in parts[1]] == ["img_001.png", "img_005.png", "img_009.png"]
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "1", "a/b", "-1/3"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_base_masks_from_another_method(synthetic, reference, tmp_path):
    """Ground-truth masks given as base masks: the pseudo-labels stay close to them."""
    data = load_dataset(synthetic.root, progress=False)
    names = [e.file_name for e in data.entries][:4]
    data.entries = data.entries[:4]
    config = _config(
        tmp_path / "out", classifier=reference / "classifier.pt", base_masks=synthetic.root / "gt"
    )
    run_bootstrap(data, config)
    confusion = torch.zeros(4, 5, dtype=torch.int64)
    for name in names:
        pred = np.array(Image.open(tmp_path / "out" / "masks" / name))
        confusion += confusion_matrix(
            torch.from_numpy(pred).long(), torch.from_numpy(synthetic.gt(name)).long(), 4
        )
    assert segmentation_scores(confusion)["miou"] > 0.8


def test_tiny_sam_segmenter_and_sam_features(synthetic, reference, tmp_path):
    from models.embedding_cache import EmbeddingCache
    from models.segmenters import SamSegmenter, build_tiny_sam

    data = load_dataset(synthetic.root, progress=False)
    data.entries = data.entries[:2]
    cache = EmbeddingCache(tmp_path / "cache")
    segmenter = SamSegmenter(build_tiny_sam(img_size=128), "tiny-sam-test", cache=cache)
    config = _config(tmp_path / "out", classifier=reference / "classifier.pt", uss="sam")
    report = run_bootstrap(data, config, segmenter=segmenter)
    assert report.uss == "sam" and len(report.processed) == 2
    assert (
        len(cache.entries()) == 2 and cache.misses == 2
    )  # one encoding per image, shared with the USS features
    with ProjectStore.open(tmp_path / "out") as store:
        for record in store.list_images():
            sources = {i.source for i in store.instances(record.id)}
            assert sources <= {"sam", "dhr"} and sources


def test_sam_features_without_sam_fall_back_to_color(synthetic, reference, tmp_path):
    from models.segmenters import SamSegmenter, build_segmenter, build_tiny_sam
    from models.uss import build_uss_provider

    data = load_dataset(synthetic.root, progress=False)
    data.entries = data.entries[:1]
    with pytest.warns(UserWarning, match="USS 'sam' needs a SAM segmenter"):
        report = run_bootstrap(
            data, _config(tmp_path / "o", classifier=reference / "classifier.pt", uss="sam")
        )
    assert report.uss == "color"
    config = _config(tmp_path / "p")
    assert build_uss_provider("auto", config.models, build_segmenter("grabcut")).name == "color"
    assert build_uss_provider("auto", config.models, SamSegmenter(build_tiny_sam(), "tiny")).name == "sam"


def test_reusing_an_output_folder_of_other_classes_fails(synthetic, reference, tmp_path):
    with ProjectStore.create(tmp_path / "out", ["cat", "dog"]):
        pass
    args = ["bootstrap", str(synthetic.root), "--out", str(tmp_path / "out"), *TINY, *FAST]
    assert cli.main(args) == 2
    assert (
        cli.main(["bootstrap", str(synthetic.root), "--out", str(tmp_path / "x"), "--shard", "3/3", *FAST])
        == 2
    )


def test_confidence_definition():
    heat = torch.zeros(2, 4, 4)
    heat[0, :, :2] = 1.0
    heat[1, :, 2:] = 0.5  # mean of the per-pixel max: 0.75
    dhr = DHRResult(
        torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long), heat, [0, 1], [], []
    )
    mask = np.ones((4, 4), bool)
    ok = Instance(1, mask, 0.9, "sam")
    flagged = Instance(1, mask, 0.9, "dhr", needs_review=True, reason="disagrees")
    assert image_confidence(dhr.heatmaps, [ok], [1]) == pytest.approx(0.75)
    assert image_confidence(dhr.heatmaps, [ok, flagged], [1]) == pytest.approx(0.75 * 0.75)
    assert image_confidence(dhr.heatmaps, [ok], [1, 2]) == pytest.approx(0.75 * 0.75)
    assert ImageOutcome.__dataclass_fields__.keys() >= {"confidence", "dhr", "labels"}


def test_dino_features_offline_name_the_missing_file(tmp_path):
    from models.uss import build_uss_provider

    config = _config(tmp_path / "o", weights_dir=tmp_path / "weights", download=False)
    with pytest.raises(FileNotFoundError, match="dino_deitsmall8_pretrain.pth"):
        build_uss_provider("dino_vits8", config.models, segmenter=None)


def test_bad_dataset_entries_are_skipped_or_stop_a_strict_run(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", n=3, size=(64, 64))
    with data.tags_path.open("a") as handle:
        handle.write("missing.png,ball\nimg_000.png,box\n")
    args = ["bootstrap", str(data.root), "--out", str(tmp_path / "strict"), *TINY, *FAST]
    assert cli.main([*args, "--strict"]) == 2
    assert not (tmp_path / "strict").exists()  # stopped before any work
    args[3] = str(tmp_path / "lenient")
    capsys.readouterr()
    assert cli.main([*args, "--epochs", "1"]) == 0
    assert "2 dataset entries skipped" in capsys.readouterr().out  # reported before the run
    with ProjectStore.open(tmp_path / "lenient") as store:
        assert [r.file_name for r in store.list_images()] == [f"images/img_00{i}.png" for i in range(3)]


def test_an_image_edited_during_the_run_keeps_the_reviewers_labels(synthetic, tmp_path):
    out = tmp_path / "out"
    data = load_dataset(synthetic.root, progress=False)
    last = sorted(e.file_name for e in data.entries)[-1]
    reviewer_mask = np.zeros(SIZE, bool)
    reviewer_mask[10:30, 10:30] = True

    def review_the_last_image(name: str) -> None:
        if len(done) == 0:  # while the run labels its first images, a reviewer saves the last one
            with ProjectStore.open(out) as other:
                record = next(r for r in other.list_images() if r.file_name.endswith(last))
                other.save_labels(record.id, [NewInstance(1, reviewer_mask)], user="reviewer",
                                  expected_version=record.version, status="review")
        done.append(name)

    done: list[str] = []
    report = run_bootstrap(data, _config(out), on_image_done=review_the_last_image)
    assert last in report.skipped and last not in report.processed
    with ProjectStore.open(out) as store:
        record = next(r for r in store.list_images() if r.file_name.endswith(last))
        assert record.status == "review"
        (instance,) = store.instances(record.id)
        np.testing.assert_array_equal(store.instance_mask(instance), reviewer_mask)
        png = np.asarray(Image.open(out / "masks" / (Path(last).stem + ".png")))
        np.testing.assert_array_equal(png, store.semantic_mask(record.id))


def test_no_cam_flip_reaches_the_run(synthetic, reference, tmp_path):
    """`--no-cam-flip` (half the CAM time) is what the run uses and records; the default keeps the flip."""
    out = tmp_path / "no-flip"
    args = ["bootstrap", str(synthetic.root), "--out", str(out), "--classifier", str(reference / "classifier.pt")]
    assert cli.main([*args, "--no-cam-flip", *FAST]) == 0
    assert json.loads((out / "bootstrap.json").read_text())["settings"]["cam_flip"] is False
    assert json.loads((reference / "bootstrap.json").read_text())["settings"]["cam_flip"] is True
    assert len(_masks(out)) == len(_masks(reference))
