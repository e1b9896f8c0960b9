"""annotate.store: the project database (paths, tags, labels, versions, undo/redo, crash safety, migrations)."""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import signal
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from annotate.labeling import Instance
from annotate.rle import decode_rle, encode_mask
from annotate.store import (
    STATUSES,
    HistoryEmpty,
    NewInstance,
    ProjectStore,
    VersionConflict,
    check_relative_name,
)
from annotate.store import schema as store_schema
from annotate.store.paths import copied_name, png_name, source_name

H, W = 24, 32


def _write_image(path: Path, seed: int = 0, size: tuple[int, int] = (H, W)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture
def project(tmp_path: Path) -> ProjectStore:
    store = ProjectStore.create(tmp_path / "proj", ["cat", "dog", "bird"])
    yield store
    store.close()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "incoming"
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        _write_image(folder / name, seed=i)
    return folder


# ---------------------------------------------------------------- project and classes
def test_create_open_and_classes(tmp_path: Path) -> None:
    with ProjectStore.create(tmp_path / "p", ["cat", " dog "]) as store:
        assert store.classes == ["cat", "dog"]
        assert store.class_id("dog") == 2
        assert store.schema_version == store_schema.SCHEMA_VERSION == 4
        mode = sqlite3.connect(store.db_path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    with pytest.raises(ValueError, match="already exists"):
        ProjectStore.create(tmp_path / "p", ["x"])
    with ProjectStore.open(tmp_path / "p") as store:
        assert store.classes == ["cat", "dog"]
        with pytest.raises(ValueError, match=r"unknown class 'cow'.*\['cat', 'dog'\]"):
            store.class_id("cow")
    with pytest.raises(FileNotFoundError, match="dhr init"):
        ProjectStore.open(tmp_path / "nothing")
    for bad in (["cat", "Cat"], ["background"], [""], []):
        with pytest.raises(ValueError):
            ProjectStore.create(tmp_path / f"bad{len(bad)}{bad[:1]}", bad)


# ---------------------------------------------------------------- images and paths
def test_add_image_copies_and_records(project: ProjectStore, outside: Path) -> None:
    image_id = project.add_image(outside / "a.png", ["dog", "cat", "dog"], user="ann")
    record = project.image(image_id)
    assert record.file_name == "images/a.png"
    assert (record.width, record.height) == (W, H)
    assert record.tags == ("cat", "dog") and record.tag_ids == (1, 2)
    assert record.status == "new" and record.version == 1 and record.updated_by == "ann"
    assert project.image_path(image_id) == project.root / "images" / "a.png"
    np.testing.assert_array_equal(project.load_image(image_id), np.asarray(Image.open(outside / "a.png")))
    # a file already inside the root is registered in place, not copied
    inside = _write_image(project.root / "images" / "sub" / "z.png", seed=9)
    second = project.add_image(inside, ["bird"], copy=False)
    assert project.image(second).file_name == "images/sub/z.png"
    assert project.find_image("images/sub/z.png").id == second
    assert project.find_image("images/none.png") is None


def test_add_image_refusals(project: ProjectStore, outside: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"outside the project root.*copy=True"):
        project.add_image(outside / "a.png", ["cat"], copy=False)
    with pytest.raises(ValueError, match=r"image 'images/a.png': unknown tag 'cow'"):
        project.add_image(outside / "a.png", ["cat", "cow"])
    with pytest.raises(ValueError, match=r"image 'images/a.png': empty tag list"):
        project.add_image(outside / "a.png", [])
    assert project.list_images() == [] and not (project.root / "images" / "a.png").exists()
    assert project.add_image(outside / "a.png", [], allow_empty_tags=True) == 1
    with pytest.raises(ValueError, match=r"duplicate image name: 'images/a.png' is already image 1"):
        project.add_image(outside / "a.png", ["cat"])
    _write_image(tmp_path / "other" / "A.JPG")
    with pytest.raises(ValueError, match=r"collides with 'images/a.png' \(image 1\)"):
        project.add_image(tmp_path / "other" / "A.JPG", ["cat"])
    third = project.add_image(outside / "b.png", ["cow"], allow_new_classes=True)
    assert project.classes == ["cat", "dog", "bird", "cow"] and project.image(third).tag_ids == (4,)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        project.add_image(outside / "nope.png", ["cat"])


def test_path_escapes_refused(project: ProjectStore, outside: Path) -> None:
    for name in ("../x.png", "images/../../x.png", "/etc/passwd", "C:\\x.png", ""):
        with pytest.raises(ValueError):
            check_relative_name(name)
        with pytest.raises(ValueError):
            project.resolve(name)
    assert check_relative_name("./images//a.png") == "images/a.png"
    # a symlink inside the root that leads outside is refused when adding ...
    link = project.root / "images" / "link.png"
    link.symlink_to(outside / "c.png")
    with pytest.raises(ValueError, match="symlink leads outside"):
        project.add_image(link, ["cat"])
    # ... and when an image registered earlier is later replaced by such a link
    image_id = project.add_image(outside / "a.png", ["cat"])
    path = project.image_path(image_id)
    path.unlink()
    path.symlink_to(outside / "b.png")
    with pytest.raises(ValueError, match="outside the project root"):
        project.image_path(image_id)
    with pytest.raises(ValueError, match="outside the project root"):
        project.load_image(image_id)


def test_copied_and_mask_names() -> None:
    assert copied_name("sub/./a.jpg") == "images/sub/a.jpg"
    assert source_name(copied_name("sub/a.jpg")) == "sub/a.jpg"
    assert source_name("elsewhere/a.jpg") == "elsewhere/a.jpg"  # registered in place: kept as it is
    assert png_name("images/sub/a.b.JPG") == "images/sub/a.b.png" and png_name("noext") == "noext.png"
    with pytest.raises(ValueError, match="outside the project root"):
        copied_name("../a.jpg")


# ---------------------------------------------------------------- labels
def test_save_labels_stores_masks_area_bbox(project: ProjectStore, outside: Path) -> None:
    image_id = project.add_image(outside / "a.png", ["cat", "dog"])
    low, high = _box(2, 10, 3, 20), _box(5, 15, 10, 30)
    version = project.save_labels(
        image_id,
        [
            NewInstance(1, low, score=0.4, source="sam"),
            NewInstance(2, encode_mask(high), score=0.9, source="dhr", needs_review=True, reason="small"),
            NewInstance(1, np.zeros((H, W), bool)),  # empty masks are dropped
        ],
        user="ann",
        expected_version=1,
        status="pseudo",
        confidence=0.25,
    )
    assert version == 2
    stored = project.instances(image_id)
    assert [(r.class_id, r.source, r.needs_review, r.reason) for r in stored] == [
        (1, "sam", False, ""),
        (2, "dhr", True, "small"),
    ]
    np.testing.assert_array_equal(project.instance_mask(stored[0]), low)
    np.testing.assert_array_equal(decode_rle(stored[1].rle), high)
    assert stored[0].area == 8 * 17 and stored[0].bbox == (3.0, 2.0, 17.0, 8.0)
    assert stored[1].rle["size"] == [H, W] and isinstance(stored[1].rle["counts"], str)
    semantic = project.semantic_mask(image_id)
    assert semantic.dtype == np.uint8 and semantic.shape == (H, W)
    assert semantic[6, 12] == 2  # overlap goes to the higher score
    assert semantic[3, 4] == 1 and semantic[20, 1] == 0
    assert int((semantic > 0).sum()) == int((low | high).sum())
    record = project.image(image_id)
    assert (record.status, record.confidence, record.version) == ("pseudo", 0.25, 2)


def test_instances_copy_between_images_and_from_labelling(project: ProjectStore, outside: Path) -> None:
    first = project.add_image(outside / "a.png", ["cat", "dog"])
    second = project.add_image(outside / "b.png", ["cat", "dog"])
    mask = _box(4, 9, 2, 30)
    labelled = Instance(2, mask, 0.75, "sam", True, "disagrees with DHR")
    project.save_labels(first, [NewInstance.from_instance(labelled)], user="ann")
    (record,) = project.instances(first)
    assert (record.class_id, record.score, record.source, record.needs_review, record.reason) == (
        2,
        0.75,
        "sam",
        True,
        "disagrees with DHR",
    )
    project.save_labels(second, [r.to_new() for r in project.instances(first)], user="ann")
    (copy,) = project.instances(second)
    assert copy.rle == record.rle and (copy.area, copy.bbox) == (5 * 28, (2.0, 4.0, 28.0, 5.0))
    assert (copy.class_id, copy.score, copy.source, copy.needs_review, copy.reason) == (
        2,
        0.75,
        "sam",
        True,
        "disagrees with DHR",
    )


def test_save_labels_rejects_bad_input_without_writing(project: ProjectStore, outside: Path) -> None:
    image_id = project.add_image(outside / "a.png", ["cat"])
    bad = [
        (NewInstance(1, np.ones((H + 1, W), bool)), r"instance 0: mask shape \(25, 32\) does not match"),
        (NewInstance(4, _box(0, 2, 0, 2)), r"class_id 4 outside 1..3"),
        (NewInstance(0, _box(0, 2, 0, 2)), r"class_id 0 outside"),
        (NewInstance(1, _box(0, 2, 0, 2), source="magic"), "unknown source"),
        (NewInstance(1, _box(0, 2, 0, 2), score=float("nan")), "not finite"),
        (NewInstance(1, encode_mask(np.ones((H, W + 1), bool))), "does not match the image size"),
        (NewInstance(1, {"size": [H, W], "counts": "zz"}), r"image 1 \(images/a.png\)"),
    ]
    for instance, message in bad:
        with pytest.raises(ValueError, match=message):
            project.save_labels(image_id, [instance], user="ann")
    with pytest.raises(ValueError, match="unknown status"):
        project.save_labels(image_id, [], user="ann", status="done")
    with pytest.raises(ValueError, match="user"):
        project.save_labels(image_id, [], user=" ")
    with pytest.raises(ValueError, match="no image with id 99"):
        project.save_labels(99, [], user="ann")
    assert project.image(image_id).version == 1 and project.instances(image_id) == []


def test_list_images_filters_and_orders(project: ProjectStore, outside: Path) -> None:
    ids = [project.add_image(outside / name, ["cat"]) for name in ("c.png", "a.png", "b.png")]
    project.save_labels(ids[0], [], user="u", status="pseudo", confidence=0.9)
    project.save_labels(ids[1], [], user="u", status="pseudo", confidence=0.1)
    project.set_status(ids[2], "accepted", user="u")
    assert [r.file_name for r in project.list_images()] == ["images/a.png", "images/b.png", "images/c.png"]
    assert [r.id for r in project.list_images(order="confidence")] == [ids[1], ids[0], ids[2]]
    assert [r.id for r in project.list_images(status="pseudo", order="id")] == ids[:2]
    assert [r.id for r in project.list_images(status=["accepted", "new"])] == [ids[2]]
    assert project.status_counts() == {"new": 0, "pseudo": 2, "review": 0, "accepted": 1, "rejected": 0}
    assert set(project.status_counts()) == set(STATUSES)
    with pytest.raises(ValueError, match="unknown order"):
        project.list_images(order="size")


# ---------------------------------------------------------------- versions and undo
def test_version_conflict_in_one_process(project: ProjectStore, outside: Path, tmp_path: Path) -> None:
    image_id = project.add_image(outside / "a.png", ["cat"])
    with ProjectStore.open(project.root) as other:  # a second browser session / process
        seen = other.image(image_id).version
        project.save_labels(image_id, [NewInstance(1, _box(0, 4, 0, 4))], user="ann", expected_version=seen)
        with pytest.raises(VersionConflict, match=r"changed by 'ann'.*based on version 1") as caught:
            other.save_labels(image_id, [NewInstance(1, _box(5, 9, 5, 9))], user="bob", expected_version=seen)
        assert (caught.value.expected, caught.value.current, caught.value.changed_by) == (1, 2, "ann")
        with pytest.raises(VersionConflict):
            other.set_status(image_id, "accepted", user="bob", expected_version=seen)
        with pytest.raises(VersionConflict):
            other.undo(image_id, user="bob", expected_version=seen)
    np.testing.assert_array_equal(project.instance_mask(project.instances(image_id)[0]), _box(0, 4, 0, 4))
    assert project.image(image_id).status == "new"


def test_undo_redo(project: ProjectStore, outside: Path) -> None:
    image_id = project.add_image(outside / "a.png", ["cat", "dog"])
    first, second = _box(0, 5, 0, 5), _box(10, 20, 10, 20)
    assert not project.can_undo(image_id)
    with pytest.raises(HistoryEmpty, match="nothing to undo"):
        project.undo(image_id, user="u")
    project.save_labels(image_id, [NewInstance(1, first)], user="u", status="pseudo")  # v2
    project.save_labels(image_id, [NewInstance(2, second, score=0.5)], user="u")  # v3
    project.set_status(image_id, "accepted", user="u")  # v4

    def state() -> tuple:
        record = project.image(image_id)
        masks = [(r.class_id, int(r.area)) for r in project.instances(image_id)]
        return record.status, masks, record.version

    assert state() == ("accepted", [(2, 100)], 4)
    assert project.undo(image_id, user="u") == 5 and state() == ("pseudo", [(2, 100)], 5)
    assert project.undo(image_id, user="u") == 6 and state() == ("pseudo", [(1, 25)], 6)
    assert project.undo(image_id, user="u") == 7 and state() == ("new", [], 7)
    assert not project.can_undo(image_id) and project.can_redo(image_id)
    assert project.redo(image_id, user="u") == 8 and state() == ("pseudo", [(1, 25)], 8)
    assert project.redo(image_id, user="u") == 9 and state() == ("pseudo", [(2, 100)], 9)
    assert project.undo(image_id, user="u") == 10 and state() == ("pseudo", [(1, 25)], 10)
    # a new edit clears the redo stack
    project.save_labels(image_id, [], user="u")
    assert not project.can_redo(image_id)
    with pytest.raises(HistoryEmpty, match="nothing to redo"):
        project.redo(image_id, user="u")
    assert project.undo(image_id, user="u") == 12 and state() == ("pseudo", [(1, 25)], 12)
    # tags edits are undoable too
    project.set_tags(image_id, ["bird"], user="u")
    assert project.image(image_id).tags == ("bird",)
    project.undo(image_id, user="u")
    assert project.image(image_id).tags == ("cat", "dog")
    actions = [c.action for c in project.changes(image_id)]
    assert actions[:3] == ["undo", "set_tags", "undo"] and actions[-1] == "add_image"
    assert all(c.user == "u" for c in project.changes(image_id)[:-1])


def test_history_limit(tmp_path: Path, outside: Path) -> None:
    with ProjectStore.create(tmp_path / "p", ["cat"], history_limit=3) as store:
        image_id = store.add_image(outside / "a.png", ["cat"])
        for k in range(1, 7):
            store.save_labels(image_id, [NewInstance(1, _box(0, k, 0, 1))], user="u")
        undone = 0
        while store.can_undo(image_id):
            store.undo(image_id, user="u")
            undone += 1
        assert undone == 3 and store.instances(image_id)[0].area == 3


def test_threads_share_one_store(project: ProjectStore, outside: Path) -> None:
    ids = [project.add_image(outside / name, ["cat"]) for name in ("a.png", "b.png", "c.png")]
    errors: list[BaseException] = []

    def worker(image_id: int) -> None:
        try:
            for k in range(1, 16):
                version = project.image(image_id).version
                project.save_labels(
                    image_id, [NewInstance(1, _box(0, k, 0, 2))], user="t", expected_version=version
                )
                project.list_images()
        except BaseException as error:  # collected and re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [project.image(i).version for i in ids] == [16, 16, 16]
    assert [project.instances(i)[0].area for i in ids] == [30, 30, 30]


# ---------------------------------------------------------------- processes: conflicts and crashes
def _stale_writer(root: str, image_id: int, barrier, results, row: int) -> None:
    with ProjectStore.open(root) as store:
        version = store.image(image_id).version
        barrier.wait(timeout=30)
        try:
            new = store.save_labels(
                image_id, [NewInstance(1, _box(row, row + 2, 0, 4))], user=f"p{row}", expected_version=version
            )
            results.put(("ok", row, new))
        except VersionConflict as error:
            results.put(("conflict", row, str(error)))


def test_two_processes_with_stale_versions(project: ProjectStore, outside: Path) -> None:
    image_id = project.add_image(outside / "a.png", ["cat"])
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=_stale_writer, args=(str(project.root), image_id, barrier, results, row))
        for row in (0, 10)
    ]
    for process in processes:
        process.start()
    outcomes = sorted(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    assert [o[0] for o in outcomes] == ["conflict", "ok"]
    winner_row = outcomes[1][1]
    assert outcomes[1][2] == 2 and "based on version 1" in outcomes[0][2]
    stored = project.instances(image_id)
    assert len(stored) == 1
    np.testing.assert_array_equal(project.instance_mask(stored[0]), _box(winner_row, winner_row + 2, 0, 4))


def _endless_writer(root: str, image_id: int, confirmed) -> None:
    with ProjectStore.open(root) as store:
        k, version = 0, store.image(image_id).version
        while True:
            k += 1
            mask = _box(0, 1 + k % H, 0, 1 + k % W)
            version = store.save_labels(
                image_id, [NewInstance(1, mask, score=k / 1000)], user="w", expected_version=version
            )
            # a second commit per loop; the status always changes
            version = store.set_status(
                image_id, STATUSES[k % len(STATUSES)], user="w", expected_version=version
            )
            confirmed.put((k, version))


def test_killed_writer_loses_at_most_the_edit_in_flight(project: ProjectStore, outside: Path) -> None:
    image_id = project.add_image(outside / "a.png", ["cat"])
    project.close()
    context = multiprocessing.get_context("spawn")
    confirmed = context.Queue()
    process = context.Process(target=_endless_writer, args=(str(project.root), image_id, confirmed))
    process.start()
    last = 0
    deadline = time.monotonic() + 60
    while last < 25 and time.monotonic() < deadline and process.is_alive():
        try:
            last = max(last, confirmed.get(timeout=1)[0])
        except queue.Empty:
            continue
    os.kill(process.pid, signal.SIGKILL)
    process.join(timeout=30)
    assert process.exitcode == -signal.SIGKILL
    while not confirmed.empty():
        last = max(last, confirmed.get()[0])
    assert last >= 25
    with ProjectStore.open(project.root) as store:
        assert store.integrity_check() == "ok"
        record = store.image(image_id)
        saves = [c for c in store.changes(image_id) if c.action == "save_labels"]
        # every confirmed edit is present, at most one more (the one in flight) may be
        assert len(saves) in (last, last + 1)
        k = len(saves)
        instance = store.instances(image_id)[0]
        assert instance.score == pytest.approx(k / 1000)
        np.testing.assert_array_equal(store.instance_mask(instance), _box(0, 1 + k % H, 0, 1 + k % W))
        assert record.version in (2 * k, 2 * k + 1)
        assert store.undo(image_id, user="after") == record.version + 1  # history usable after the crash


# ---------------------------------------------------------------- migrations
def test_migrate_v1_database(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "old"
    (root / "images").mkdir(parents=True)
    _write_image(root / "images" / "a.png")
    db = sqlite3.connect(root / "project.db", isolation_level=None)
    assert store_schema.migrate(db, target=1) == 1
    mask = _box(3, 9, 4, 12)
    counts = encode_mask(mask)["counts"]
    db.executescript(
        f"""
        BEGIN;
        INSERT INTO classes (id, name) VALUES (1, 'cat'), (2, 'dog');
        INSERT INTO images (id, file_name, width, height, sha256, status, version, updated_at, updated_by)
            VALUES (1, 'images/a.png', {W}, {H}, 'x', 'pseudo', 3, '2020-01-01', 'old');
        INSERT INTO image_tags VALUES (1, 2);
        INSERT INTO instances (image_id, class_id, counts, score, source, needs_review, reason)
            VALUES (1, 2, '{counts}', 0.5, 'dhr', 1, 'legacy');
        COMMIT;
        """
    )
    assert store_schema.schema_version(db) == 1
    db.close()
    with ProjectStore.open(root) as store:
        assert store.schema_version == 4
        record = store.image(1)
        assert (record.status, record.version, record.tags, record.confidence) == (
            "pseudo",
            3,
            ("dog",),
            None,
        )
        (instance,) = store.instances(1)
        rle = {"size": [H, W], "counts": counts.encode()}
        assert instance.area == int(mask_utils.area(rle)) == 48
        assert list(instance.bbox) == [float(v) for v in mask_utils.toBbox(rle)]
        assert (instance.needs_review, instance.reason, instance.iscrowd) == (True, "legacy", False)
        _write_image(tmp_path / "x" / "A.jpg")
        with pytest.raises(ValueError, match="collides"):  # name keys were backfilled
            store.add_image(tmp_path / "x" / "A.jpg", ["cat"])
        store.save_labels(1, [], user="new", expected_version=3)
        store.undo(1, user="new")
        np.testing.assert_array_equal(store.instance_mask(store.instances(1)[0]), mask)


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.db"
    db = sqlite3.connect(path, isolation_level=None)

    def broken(connection: sqlite3.Connection) -> None:
        connection.execute("CREATE TABLE half (x)")
        raise RuntimeError("disk full")

    monkeypatch.setattr(store_schema, "MIGRATIONS", [store_schema.MIGRATIONS[0], broken])
    monkeypatch.setattr(store_schema, "SCHEMA_VERSION", 2)
    with pytest.raises(RuntimeError, match="disk full"):
        store_schema.migrate(db)
    assert store_schema.schema_version(db) == 1
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half" not in tables and "images" in tables


def test_newer_database_refused(tmp_path: Path) -> None:
    with ProjectStore.create(tmp_path / "p", ["cat"]):
        pass
    db = sqlite3.connect(tmp_path / "p" / "project.db", isolation_level=None)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(RuntimeError, match="schema version 99, newer"):
        ProjectStore.open(tmp_path / "p")


def test_change_log_is_json(project: ProjectStore, outside: Path) -> None:
    image_id = project.add_image(outside / "a.png", ["cat"], user="ann")
    project.set_status(image_id, "review", user="bob")
    latest = project.changes(image_id, limit=1)[0]
    assert (latest.user, latest.action, latest.version, latest.detail) == (
        "bob",
        "set_status",
        2,
        {"from": "new", "to": "review"},
    )
    assert json.loads(json.dumps(latest.detail)) == latest.detail
    assert project.set_status(image_id, "review", user="bob") == 2  # unchanged status: no new version
