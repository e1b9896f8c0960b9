"""A damaged project database is reported and left untouched; opening never waits for another process's writes."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.store import NewInstance, ProjectStore
from annotate.store.health import DamagedProject, ProjectBusy
from application import cli

H, W = 16, 20


def _project(root: Path) -> Path:
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root.parent / "a.png")
    with ProjectStore.create(root, ["cat"]) as store:
        image_id = store.add_image(root.parent / "a.png", ["cat"])
        mask = np.zeros((H, W), bool)
        mask[2:5, 3:9] = True
        store.save_labels(image_id, [NewInstance(1, mask)], user="t")
    return root


def _random_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (x)")
    db.commit()
    db.close()


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda p: p.write_bytes(b""), "empty file, 0 bytes"),
        (lambda p: p.write_bytes(os.urandom(8192)), "not an SQLite database file"),
        (lambda p: p.write_bytes(p.read_bytes()[: 4096 + 100]), "truncated"),
        (lambda p: (p.unlink(), _random_sqlite(p)), "not a dhr-label project database"),
    ],
    ids=["zero-byte", "random", "truncated", "foreign-sqlite"],
)
@pytest.mark.parametrize("command", ["status", "export", "gui-open"])
def test_a_damaged_database_is_reported_and_left_as_it_is(tmp_path, damage, problem, command, caplog) -> None:
    root = _project(tmp_path / "proj")
    db = root / "project.db"
    for side in ("project.db-wal", "project.db-shm"):
        (root / side).unlink(missing_ok=True)
    with sqlite3.connect(db) as checkpoint:  # everything in the main file before damaging it
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for side in ("project.db-wal", "project.db-shm"):
        (root / side).unlink(missing_ok=True)
    damage(db)
    before = db.read_bytes()
    if command == "gui-open":
        from application.commands.gui import build_gui_parser, open_project

        with pytest.raises(DamagedProject) as error:
            open_project(build_gui_parser().parse_args(["--project", str(root)]))
        message = str(error.value)
    else:
        argv = (
            ["status", str(root)] if command == "status" else ["export", str(root), str(tmp_path / "o.json")]
        )
        assert cli.main(argv) == 2
        message = caplog.records[-1].getMessage()
    assert message.startswith(f"{db}: ") and problem in message and "\n" not in message
    assert db.read_bytes() == before  # byte for byte
    assert not (tmp_path / "o.json").exists()


def test_read_only_commands_never_create_a_database(tmp_path, caplog) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert cli.main(["status", str(root)]) == 2
    assert cli.main(["export", str(root), str(tmp_path / "o.json")]) == 2
    assert sorted(os.listdir(root)) == []
    with pytest.raises(FileNotFoundError):
        ProjectStore.open(root)
    assert sorted(os.listdir(root)) == []


def _hold_write_lock(root: str, ready, release) -> None:
    store = ProjectStore.open(root)
    with store.transaction():
        store._db.execute("UPDATE images SET updated_by = 'holder'")
        ready.set()
        release.wait(60)
    store.close()


def test_readers_do_not_wait_for_a_writer_and_a_blocked_writer_names_it(tmp_path, capsys) -> None:
    root = _project(tmp_path / "proj")
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_write_lock, args=(str(root), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        started = time.perf_counter()
        with ProjectStore.open(root, busy_timeout=30) as store:
            assert len(store.list_images()) == 1 and store.status_counts()["new"] == 1
            assert store.image(1).updated_by == "t"  # the holder's edit is not committed
        assert cli.main(["status", str(root)]) == 0
        assert "| total | 1 |" in capsys.readouterr().out
        assert cli.main(["export", str(root), str(tmp_path / "o.json")]) == 0
        took = time.perf_counter() - started
        assert took < 5.0, f"readers waited {took:.1f} s for the writer"
        with ProjectStore.open(root, busy_timeout=0.5) as store:
            with pytest.raises(ProjectBusy, match=rf"the project is busy: process {holder.pid} \("):
                store.set_status(1, "accepted", user="me")
            assert store.image(1).status == "new"
    finally:
        release.set()
        holder.join(60)
    assert holder.exitcode == 0
    assert not (root / "project.db-writer").exists()  # the note goes with the lock
