"""A killed run leaves nothing behind for long: image copies the database never registered are removed when the
project is next opened, and temporary files of killed writers by the next export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.coco import export_coco
from annotate.store import ProjectStore

REPO = Path(__file__).resolve().parent.parent
N_IMAGES = 40


@pytest.fixture
def coco_file(tmp_path: Path) -> Path:
    """A COCO file of N_IMAGES images (no annotations) in its own folder."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    images = []
    for i in range(N_IMAGES):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            folder / f"img{i:03d}.png"
        )
        images.append({"id": i + 1, "file_name": f"img{i:03d}.png", "width": 64, "height": 48})
    path = folder / "labels.json"
    path.write_text(
        json.dumps({"images": images, "categories": [{"id": 1, "name": "cat"}], "annotations": []})
    )
    return path


def _files(root: Path) -> set[str]:
    """Every file under the project's images/ folder (hidden temporaries included)."""
    return {p.relative_to(root).as_posix() for p in (root / "images").rglob("*") if p.is_file()}


def _import(root: Path, path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "application.cli", "import-coco", str(root), str(path)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("kill_after", [1, N_IMAGES // 2, N_IMAGES - 1])
def test_a_killed_import_leaves_no_unknown_file(tmp_path: Path, coco_file: Path, kill_after: int) -> None:
    with ProjectStore.create(tmp_path / "proj", ["cat"]) as store:
        root = store.root
    process = _import(root, coco_file)
    deadline = time.time() + 120
    while len(_files(root)) < kill_after and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    left = _files(root)
    with ProjectStore.open(root) as store:  # the next opening cleans up
        known = {r.file_name for r in store.list_images()}
        assert _files(root) == known, f"killed with {len(left)} files placed"
        assert store.integrity_check() == "ok"
    assert not list((root / ".pending").iterdir())
    rerun = _import(root, coco_file)
    assert rerun.wait(120) == 0
    with ProjectStore.open(root) as store:
        assert len(store.list_images()) == N_IMAGES
        assert _files(root) == {r.file_name for r in store.list_images()}  # no .tmp left either


def test_a_rolled_back_transaction_removes_its_copies(tmp_path: Path, coco_file: Path) -> None:
    with ProjectStore.create(tmp_path / "proj", ["cat"]) as store:
        with pytest.raises(RuntimeError, match="late failure"):
            with store.transaction():
                for i in range(3):
                    store.add_image(coco_file.parent / f"img{i:03d}.png", ["cat"])
                assert len(_files(store.root)) == 3
                raise RuntimeError("late failure")
        assert _files(store.root) == set() and store.list_images() == []


def test_stale_export_temporaries_are_removed_on_the_next_export(tmp_path: Path, coco_file: Path) -> None:
    with ProjectStore.create(tmp_path / "proj", ["cat"]) as store:
        out = tmp_path / "out" / "labels.json"
        out.parent.mkdir()
        dead = out.parent / ".labels.json.999999999-deadbeef.tmp"  # a killed writer's (no such pid)
        live = out.parent / f".labels.json.{os.getpid()}-0123abcd.tmp"  # a writer still running
        young = out.parent / ".labels.json.999999998-00000000.tmp"
        for path in (dead, live, young):
            path.write_text("{half")
        old = time.time() - 3600
        os.utime(dead, (old, old))
        os.utime(live, (old, old))
        export_coco(store, out)
        assert sorted(p.name for p in out.parent.iterdir()) == sorted(["labels.json", live.name, young.name])


def test_a_long_image_name_fits_its_temporary_name(tmp_path: Path) -> None:
    name = "x" * 240 + ".png"
    source = tmp_path / "in" / name
    source.parent.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(source)
    with ProjectStore.create(tmp_path / "proj", ["cat"]) as store:
        store.add_image(source, ["cat"])
        assert (store.root / "images" / name).is_file()


def test_a_failed_init_into_an_existing_folder_leaves_only_what_was_there(
    tmp_path: Path, coco_file: Path, monkeypatch
) -> None:
    from application import cli

    root = tmp_path / "proj"
    (root / "images").mkdir(parents=True)
    (root / "images" / "mine.txt").write_text("the user's own file")
    (coco_file.parent / "tags.csv").write_text("".join(f"img{i:03d}.png,cat\n" for i in range(5)))
    original = ProjectStore.add_image
    calls = []

    def fail_on_fourth(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise ValueError("late failure")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ProjectStore, "add_image", fail_on_fourth)
    argv = ["init", str(root), "--classes", "cat", "--images", str(coco_file.parent)]
    assert cli.main(argv + ["--tags", str(coco_file.parent / "tags.csv")]) == 2
    assert sorted(p.name for p in (root / "images").iterdir()) == ["mine.txt"]  # 3 copies rolled back
    assert not (root / "project.db").exists()
