"""``dhr eval --json``: the scores file's folder is made first, or the command stops before printing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from annotate.coco import export_coco
from annotate.store import NewInstance, ProjectStore
from application import cli


def _project(tmp_path: Path) -> tuple[Path, Path]:
    """A labelled project and its own labels as a COCO ground-truth file."""
    mask = np.zeros((10, 12), bool)
    mask[2:7, 3:9] = True
    Image.fromarray(np.full((10, 12, 3), 70, np.uint8)).save(tmp_path / "a.png")
    with ProjectStore.create(tmp_path / "p", ["cat"]) as store:
        image_id = store.add_image(tmp_path / "a.png", ["cat"])
        store.save_labels(image_id, [NewInstance(1, mask)], user="ann", status="accepted")
        export_coco(store, tmp_path / "gt.json")
    return tmp_path / "p", tmp_path / "gt.json"


def test_eval_json_into_a_missing_folder_creates_it(tmp_path: Path, capsys) -> None:
    project, gt = _project(tmp_path)
    target = tmp_path / "reports" / "today" / "scores.json"
    assert cli.main(["eval", str(project), "--gt", str(gt), "--json", str(target)]) == 0
    assert capsys.readouterr().out.strip()  # the scores table
    assert json.loads(target.read_text())["miou"] == 1.0


def test_eval_json_that_cannot_be_written_fails_before_printing(tmp_path: Path, capsys, caplog) -> None:
    project, gt = _project(tmp_path)
    (tmp_path / "blocker").write_text("a file where the folder should be")
    target = tmp_path / "blocker" / "scores.json"
    assert cli.main(["eval", str(project), "--gt", str(gt), "--json", str(target)]) == 2
    assert capsys.readouterr().out == "" and "blocker" in caplog.text
