"""Removing images from a project: all or nothing, files moved to removed/, labels kept in the change log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.store import NewInstance, ProjectStore
from application import cli

H, W = 16, 20


@pytest.fixture
def project(tmp_path: Path) -> Path:
    store = ProjectStore.create(tmp_path / "proj", ["cat"])
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((H, W, 3), 40 * i, np.uint8)).save(path)
        image_id = store.add_image(path, ["cat"])
        mask = np.zeros((H, W), bool)
        mask[1 : 3 + i, 2:9] = True
        store.save_labels(image_id, [NewInstance(1, mask, score=0.5)], user="t")
    root = store.root
    store.close()
    return root


def test_cli_remove_by_name_and_id(project: Path, capsys) -> None:
    with ProjectStore.open(project) as store:
        b = store.find_image("images/b.png")
    assert cli.main(["remove", str(project), "a.png", str(b.id)]) == 0
    assert "removed 2 image(s)" in capsys.readouterr().out
    with ProjectStore.open(project) as store:
        assert [r.file_name for r in store.list_images()] == ["images/c.png"]
        assert store.status_counts()["review"] + store.status_counts()["new"] == 1
        log = [c for c in store.changes() if c.action == "remove_image"]
        assert sorted(c.detail["file_name"] for c in log) == ["images/a.png", "images/b.png"]
        assert all(len(c.detail["instances"]) == 1 for c in log)  # the labels are kept in the log
        assert store.integrity_check() == "ok"
    assert sorted(p.name for p in (project / "removed").rglob("*.png")) == ["a.png", "b.png"]
    assert sorted(p.name for p in (project / "images").iterdir()) == ["c.png"]


def test_cli_remove_with_an_unknown_name_removes_nothing(project: Path, caplog) -> None:
    assert cli.main(["remove", str(project), "a.png", "zzz.png"]) == 2
    assert "no image 'zzz.png'" in caplog.text
    with ProjectStore.open(project) as store:
        assert len(store.list_images()) == 3
    assert not (project / "removed").exists()


def test_a_failed_removal_moves_the_files_back(project: Path, monkeypatch) -> None:
    with ProjectStore.open(project) as store:
        ids = [r.id for r in store.list_images()]
        original = store._log

        def fail_on_third(image_id, *args):
            if image_id == ids[2]:
                raise RuntimeError("disk full")
            return original(image_id, *args)

        monkeypatch.setattr(store, "_log", fail_on_third)
        with pytest.raises(RuntimeError, match="disk full"):
            store.remove_images(ids, user="t")
        assert len(store.list_images()) == 3
    assert sorted(p.name for p in (project / "images").iterdir()) == ["a.png", "b.png", "c.png"]
    assert list((project / "removed").rglob("*.png")) == []


def test_an_image_whose_file_is_gone_can_still_be_removed(project: Path) -> None:
    (project / "images" / "a.png").unlink()
    with ProjectStore.open(project) as store:
        assert store.remove_images([store.find_image("images/a.png").id], user="t") == ["images/a.png"]
        assert len(store.list_images()) == 2
