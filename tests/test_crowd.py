"""Crowd regions (COCO ``iscrowd`` 1) from import to store, GUI edits, export and semantic PNGs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.coco import export_coco, export_semantic_masks, import_coco
from annotate.rle import encode_mask
from annotate.store import NewInstance, ProjectStore
from annotate.store import schema as store_schema

H, W = 20, 30


def _masks() -> tuple[np.ndarray, np.ndarray]:
    """(a person, a crowd region that half covers it)."""
    person = np.zeros((H, W), bool)
    person[2:10, 3:9] = True
    crowd = np.zeros((H, W), bool)
    crowd[5:18, 6:28] = True
    return person, crowd


@pytest.fixture
def imported(tmp_path: Path) -> ProjectStore:
    """A project that imported a foreign file with one person and one crowd region of people."""
    Image.fromarray(np.full((H, W, 3), 120, np.uint8)).save(tmp_path / "street.png")
    person, crowd = _masks()
    foreign = {
        "images": [{"id": 1, "file_name": "street.png", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": encode_mask(person)},
            {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": encode_mask(crowd)},
        ],
    }
    (tmp_path / "theirs.json").write_text(json.dumps(foreign))
    store = ProjectStore.create(tmp_path / "p", ["person"])
    import_coco(store, tmp_path / "theirs.json")
    yield store
    store.close()


def test_crowd_kept_from_import_through_store_export_and_png(imported: ProjectStore, tmp_path: Path) -> None:
    person, crowd = _masks()
    [record] = imported.list_images()
    stored = imported.instances(record.id)
    assert [i.iscrowd for i in stored] == [False, True]
    coco = export_coco(imported, tmp_path / "out.json")
    assert [a["iscrowd"] for a in coco["annotations"]] == [0, 1]
    polygons = export_coco(imported, tmp_path / "poly.json", polygons=True)
    assert isinstance(polygons["annotations"][0]["segmentation"], list)
    assert isinstance(polygons["annotations"][1]["segmentation"], dict)  # crowd regions stay RLE
    [png] = export_semantic_masks(imported, tmp_path / "sem")
    values = np.asarray(Image.open(png))
    assert (values[person] == 1).all()  # the person lies over the crowd region and keeps its class
    assert (values[crowd & ~person] == 255).all()  # the rest of the crowd is ignore, as training reads it
    assert (values[~crowd & ~person] == 0).all()
    np.testing.assert_array_equal(imported.semantic_mask(record.id), values)
    # a round trip keeps the flag
    with ProjectStore.create(tmp_path / "again", ["person"]) as again:
        import_coco(again, tmp_path / "out.json", image_dir=imported.root)
        assert [i.iscrowd for i in again.instances(again.list_images()[0].id)] == [False, True]


def test_the_store_paints_crowds_with_the_one_ignore_value_and_loads_no_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, annotate.store.semantic as s, dhr.labels as l; "
            "print(s.IGNORE_INDEX is l.IGNORE_INDEX, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["True", "False"], result.stderr


def test_gui_edits_and_undo_keep_the_crowd_flag(imported: ProjectStore) -> None:
    from annotate.review.session import ReviewSession
    from models.segmenters import build_segmenter

    [record] = imported.list_images()
    session = ReviewSession(imported, build_segmenter("grabcut"), user="ann")
    session.open_image(record.id)
    assert "crowd region" in session.describe(1)
    session.delete(0)  # saves the remaining (crowd) instance again through the session's own model
    assert [i.iscrowd for i in imported.instances(record.id)] == [True]
    imported.undo(record.id, user="ann")
    assert [i.iscrowd for i in imported.instances(record.id)] == [False, True]


def test_a_version_2_database_migrates_and_its_history_still_undoes(tmp_path: Path) -> None:
    Image.fromarray(np.full((H, W, 3), 50, np.uint8)).save(tmp_path / "a.png")
    person, _ = _masks()
    with ProjectStore.create(tmp_path / "old", ["person"]) as store:
        image_id = store.add_image(tmp_path / "a.png", ["person"], user="old")
        store.save_labels(image_id, [NewInstance(1, person)], user="old")
        store.save_labels(image_id, [], user="old")  # the undo stack holds the state with the person
    # make it what the previous release wrote: schema 2, no iscrowd column, 8-column history states
    db = sqlite3.connect(tmp_path / "old" / "project.db", isolation_level=None)
    db.execute("ALTER TABLE instances DROP COLUMN predicted_iou")  # added after it (schema 4)
    db.execute("ALTER TABLE instances DROP COLUMN iscrowd")
    for entry, state in db.execute("SELECT id, state FROM history").fetchall():
        state = json.loads(state)
        state["instances"] = [row[:8] for row in state.get("instances", [])]
        db.execute("UPDATE history SET state = ? WHERE id = ?", (json.dumps(state), entry))
    db.execute("PRAGMA user_version = 2")
    db.close()
    with ProjectStore.open(tmp_path / "old") as store:
        assert store.schema_version == store_schema.SCHEMA_VERSION == 4
        assert store.instances(image_id) == []
        store.undo(image_id, user="new")
        [instance] = store.instances(image_id)
        assert instance.iscrowd is False and instance.area == int(person.sum())
