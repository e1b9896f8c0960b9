"""What a bootstrap run leaves and says: stamped outputs, a truthful manifest, unreadable images left out,
and merges of shards that refuse a missing share."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.bootstrap import merge_shards
from annotate.store import NewInstance, ProjectStore
from application import cli
from tests.synthetic_dataset import write_dataset

TINY = ["--backbone", "resnet_tiny", "--epochs", "2", "--crop-size", "48", "--batch-size", "2"]
FAST = ["--segmenter", "grabcut", "--uss", "color", "--no-progress", "--no-crf"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run over four images and a truncated JPEG checked by its header only: (out, stdout)."""
    data = write_dataset(tmp_path_factory.mktemp("data"), n=4, size=(56, 56), seed=1)
    buffer = data.image_dir / "broken.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (56, 56, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, quality=95)
    buffer.write_bytes(buffer.read_bytes()[: buffer.stat().st_size * 2 // 3])  # the header survives, pixels do not
    with data.tags_path.open("a") as tags:
        tags.write("broken.jpg,ball\n")
    out = tmp_path_factory.mktemp("run") / "out"
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        code = cli.main(["bootstrap", str(data.root), "--out", str(out), *TINY, *FAST, "--check-images", "header"])
    assert code == 0, text.getvalue()
    return out, text.getvalue(), data


def test_a_truncated_jpeg_is_left_out_and_reported_not_an_abort(run):
    out, stdout, _ = run
    assert "1 image(s) left out, they do not decode" in stdout and "broken.jpg" in stdout
    with ProjectStore.open(out) as store:
        names = [r.file_name for r in store.list_images()]
        assert len(names) == 4 and not any("broken" in n for n in names)  # never registered as 'new'
        assert {r.status for r in store.list_images()} == {"pseudo"}


def test_the_manifest_and_summary_say_which_classifier_ran(run):
    out, stdout, _ = run
    manifest = json.loads((out / "bootstrap.json").read_text())
    assert manifest["classifier"]["backbone"] == "resnet_tiny"
    assert manifest["classifier"]["pretrained"] is False and manifest["settings"]["pretrained"] is False
    assert "random weights (trained from scratch)" in manifest["classifier"]["summary"]
    summary = next(line for line in stdout.splitlines() if line.startswith("bootstrap:"))
    assert "classifier resnet_tiny from random weights" in summary


def test_outputs_are_stamped_exports_refreshed_by_the_next_run(run):
    out, _, data = run
    coco = json.loads((out / "coco.json").read_text())
    made = datetime.fromisoformat(coco["info"]["date_created"])
    assert "dhr bootstrap output" in coco["info"]["description"]
    note = (out / "masks" / "README.txt").read_text()
    assert coco["info"]["date_created"] in note and "dhr export" in note
    with ProjectStore.open(out) as store:  # a reviewer clears one image and accepts it
        first = store.list_images()[0]
        store.save_labels(first.id, [], user="ann", status="accepted")
    stem = Path(first.file_name).stem
    assert np.asarray(Image.open(out / "masks" / f"{stem}.png")).any()  # still the bootstrap's
    argv = ["bootstrap", str(data.root), "--out", str(out), *TINY, *FAST, "--check-images", "header"]
    assert cli.main(argv) == 0  # nothing left to label: the outputs are exported again from the store
    assert not np.asarray(Image.open(out / "masks" / f"{stem}.png")).any()
    again = json.loads((out / "coco.json").read_text())
    assert datetime.fromisoformat(again["info"]["date_created"]) >= made
    assert not [a for a in again["annotations"] if a["image_id"] == first.id]


def _fake_shard(folder: Path, image: Path, shard: tuple[int, int]) -> Path:
    with ProjectStore.create(folder, ["cat"]) as store:
        image_id = store.add_image(image, ["cat"], dest_name=f"{folder.name}.png")
        store.save_labels(image_id, [NewInstance(1, np.ones((6, 6), bool))], user="t", status="pseudo")
    (folder / "bootstrap.json").write_text(json.dumps({"shard": list(shard), "classes": ["cat"]}))
    return folder


def test_a_partial_merge_is_refused_unless_allowed(tmp_path, caplog):
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / "x.png")
    s0 = _fake_shard(tmp_path / "s0", tmp_path / "x.png", (0, 2))
    s1 = _fake_shard(tmp_path / "s1", tmp_path / "x.png", (1, 2))
    other = _fake_shard(tmp_path / "other", tmp_path / "x.png", (1, 3))
    assert cli.main(["merge-shards", str(tmp_path / "m0"), str(s0), "--no-progress"]) == 2
    assert "shard 1/2 missing" in caplog.text and "--allow-partial" in caplog.text
    assert not (tmp_path / "m0" / "project.db").exists()
    with pytest.raises(ValueError, match="different splits"):
        merge_shards(tmp_path / "m1", [s0, other], progress=False)
    with pytest.warns(UserWarning, match="shard 1/2 missing"):
        merge_shards(tmp_path / "m2", [s0], progress=False, allow_partial=True)
    assert cli.main(["merge-shards", str(tmp_path / "m3"), str(s0), str(s1), "--no-progress"]) == 0
    with ProjectStore.open(tmp_path / "m3") as merged:
        assert len(merged.list_images()) == 2
