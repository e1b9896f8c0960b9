"""``dhr accept | reject | review``: review decisions from the command line, then an accepted-only export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.store import NewInstance, ProjectStore
from application import cli


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Four pseudo-labelled images with confidences 0.9, 0.2, 0.5 and none."""
    root = tmp_path / "p"
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:6] = True
    with ProjectStore.create(root, ["cat"]) as store:
        for name, confidence in (("street_1.png", 0.9), ("street_2.png", 0.2), ("yard.png", 0.5), ("x.png", None)):
            Image.fromarray(np.full((8, 8, 3), 60, np.uint8)).save(tmp_path / name)
            image_id = store.add_image(tmp_path / name, ["cat"])
            flagged = name == "yard.png"
            store.save_labels(
                image_id,
                [NewInstance(1, mask, needs_review=flagged)],
                user="bootstrap",
                status="pseudo",
                confidence=confidence,
            )
    return root


def test_accept_by_glob_and_name_then_export_accepted_only(project: Path, tmp_path: Path, capsys) -> None:
    assert cli.main(["accept", str(project), "street_*.png", "images/x.png"]) == 0
    assert "accepted 3 image(s)" in capsys.readouterr().out
    assert cli.main(["reject", str(project), "3"]) == 0  # by id: yard.png
    with ProjectStore.open(project) as store:
        assert {r.file_name: r.status for r in store.list_images()} == {
            "images/street_1.png": "accepted",
            "images/street_2.png": "accepted",
            "images/x.png": "accepted",
            "images/yard.png": "rejected",
        }
        assert store.changes(limit=1)[0].user == "cli"
    out = tmp_path / "accepted.json"
    assert cli.main(["export", str(project), str(out), "--accepted-only"]) == 0
    coco = json.loads(out.read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == [
        "images/street_1.png",
        "images/street_2.png",
        "images/x.png",
    ]
    assert len(coco["annotations"]) == 3


def test_a_name_that_matches_nothing_changes_nothing(project: Path, caplog) -> None:
    assert cli.main(["accept", str(project), "street_1.png", "nope_*.jpg"]) == 2
    assert "'nope_*.jpg'" in caplog.text and "nothing changed" in caplog.text
    with ProjectStore.open(project) as store:
        assert {r.status for r in store.list_images()} == {"pseudo"}


def test_review_lists_the_queue_least_confident_first(project: Path, capsys) -> None:
    assert cli.main(["review", str(project)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "images/" in line]
    assert [line.split("|")[2].strip() for line in lines] == [
        "images/street_2.png",
        "images/yard.png",
        "images/street_1.png",
        "images/x.png",
    ]
    assert lines[1].rstrip(" |").endswith("1")  # yard.png: one instance flagged for review
    cli.main(["accept", str(project), "street_2.png"])
    capsys.readouterr()
    assert cli.main(["review", str(project), "--status", "pseudo"]) == 0
    assert "street_2" not in capsys.readouterr().out
