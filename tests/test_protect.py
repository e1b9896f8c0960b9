"""Exports never write over the project's own files, and a changed image file is caught when it is loaded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.coco import export_coco, export_semantic_masks
from annotate.images import ImageChanged
from annotate.store import NewInstance, ProjectStore
from annotate.store.protect import ProtectedPath
from application import cli

H, W = 20, 30


def _digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (the project's bytes, to compare before and after)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A closed project of three PNG images (a semantic mask of ``images/a.png`` is named ``a.png`` too)."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    store = ProjectStore.create(tmp_path / "proj", ["cat", "dog"])
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        pixels = np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(incoming / name)
        image_id = store.add_image(incoming / name, ["cat"])
        mask = np.zeros((H, W), bool)
        mask[2:9, 3:12] = True
        store.save_labels(image_id, [NewInstance(1, mask)], user="t", status="accepted")
    root = store.root
    store.close()
    return root


@pytest.mark.parametrize(
    "target",
    ["project.db", "project.db-wal", "project.db-shm", "images/a.png", "images/new.json", "cache/x.json"],
)
def test_export_onto_the_project_is_refused(project: Path, target: str, caplog) -> None:
    before = _digests(project)
    assert cli.main(["export", str(project), str(project / target)]) == 2
    assert f"{project / target}: refusing to write the COCO export there" in caplog.text
    assert _digests(project) == before
    assert not (project / target).exists() or target in ("project.db", "images/a.png")


def test_semantic_masks_into_the_project_are_refused_before_the_json(
    project: Path, tmp_path: Path, caplog
) -> None:
    before = _digests(project)
    out = tmp_path / "out.json"
    for folder in (project, project / "images", project / "cache" / "m"):
        assert cli.main(["export", str(project), str(out), "--semantic", str(folder)]) == 2
        assert _digests(project) == before  # 0 of 3 images overwritten
        assert not out.exists()  # nothing written: the JSON waits for every target to be checked
    assert "refusing to write the semantic masks there" in caplog.text
    with ProjectStore.open(project) as store:
        with pytest.raises(ProtectedPath, match="the project folder itself"):
            export_semantic_masks(store, project)
        with pytest.raises(ProtectedPath, match="database file project.db"):
            export_coco(store, project / "project.db")
    assert _digests(project) == before


def test_a_symlink_into_the_project_is_refused(project: Path, tmp_path: Path) -> None:
    link = tmp_path / "looks-elsewhere"
    os.symlink(project / "images", link)
    before = _digests(project)
    with ProjectStore.open(project) as store:
        with pytest.raises(ProtectedPath, match="images/ folder"):
            export_semantic_masks(store, link)
        with pytest.raises(ProtectedPath, match="image images/b.png"):
            export_coco(store, link / "b.png")
    assert _digests(project) == before


def test_an_image_registered_in_place_is_protected(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "photos").mkdir(parents=True)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "photos" / "x.png")
    with ProjectStore.create(root, ["cat"]) as store:
        store.add_image(root / "photos" / "x.png", ["cat"])
        with pytest.raises(ProtectedPath, match="image photos/x.png"):
            export_coco(store, root / "photos" / ".." / "photos" / "x.png")
        with pytest.raises(ProtectedPath, match="the project folder itself"):
            export_semantic_masks(store, root / "photos" / "..")
        export_semantic_masks(store, tmp_path / "masks")  # elsewhere: fine
        assert (tmp_path / "masks" / "photos" / "x.png").is_file()


def test_exports_outside_the_project_still_work(project: Path, tmp_path: Path) -> None:
    assert (
        cli.main(["export", str(project), str(tmp_path / "o.json"), "--semantic", str(tmp_path / "m")]) == 0
    )
    assert sorted(p.name for p in (tmp_path / "m" / "images").iterdir()) == ["a.png", "b.png", "c.png"]
    assert cli.main(["export", str(project), str(project / "exports" / "o.json")]) == 0  # exports/ is fine


def test_a_changed_image_is_caught_when_loaded_and_exported(project: Path, tmp_path: Path, caplog) -> None:
    from annotate.review.session import ReviewSession

    with ProjectStore.open(project) as store:
        record = store.find_image("images/b.png")
        good = store.load_image(record.id)
        assert good.shape == (H, W, 3)
        Image.fromarray(np.full((H, W, 3), 7, np.uint8)).save(project / "images" / "b.png")  # same size
        with pytest.raises(ImageChanged, match=r"images/b\.png: the file changed since it was added"):
            store.load_image(record.id)
        session = ReviewSession(store, None)
        with pytest.raises(ImageChanged, match=r"b\.png"):
            session.open_image(record.id)
        assert store.changed_images() == ["images/b.png"]
        assert store.load_image(record.id, verify=False)[0, 0, 0] == 7
    assert cli.main(["export", str(project), str(tmp_path / "o.json")]) == 2
    assert "1 image file(s) missing or changed" in caplog.text and "images/b.png" in caplog.text
    assert not (tmp_path / "o.json").exists()
    assert cli.main(["export", str(project), str(tmp_path / "o.json"), "--no-image-check"]) == 0
