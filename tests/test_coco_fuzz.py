"""Malformed COCO files, each imported by ``dhr import-coco`` in a child process (a native crash fails the test,
not the suite): every case ends with exit code 2 and one line naming the file and the annotation."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.store import ProjectStore
from tests.test_rle_exact import WRAPPING, counts_string

H, W = 40, 50
REPO = Path(__file__).resolve().parent.parent
SQUARE = [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]


def _base() -> dict:
    return {
        "images": [{"id": 1, "file_name": "images/a.png", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "segmentation": [SQUARE], "iscrowd": 0}],
    }


def _annotation(**fields):
    def change(data: dict) -> None:
        data["annotations"][0].update(fields)

    return change


CASES = {
    "coordinate 1e8": _annotation(segmentation=[[10, 10, 1e8, 10, 30, 30]]),
    "coordinate 1e7": _annotation(segmentation=[[10, 10, 1e7, 1e7, 30, 30]]),
    "coordinate -1e12": _annotation(segmentation=[[-1e12, 10, 30, 10, 30, 30]]),
    "coordinate 10**400": _annotation(segmentation=[[10, 10, 10**400, 10, 30, 30]]),
    "coordinate NaN": _annotation(segmentation=[[10, 10, float("nan"), 10, 30, 30]]),
    "coordinate Infinity": _annotation(segmentation=[[10, 10, float("inf"), 10, 30, 30]]),
    "coordinate string": _annotation(segmentation=[[10, 10, "x", 10, 30, 30]]),
    "odd coordinates": _annotation(segmentation=[[10, 10, 30, 10, 30]]),
    "polygon not a list": _annotation(segmentation=[5]),
    "polygon entirely outside": _annotation(segmentation=[[W + 5, 1, W + 20, 1, W + 20, 9]]),
    "zigzag outline": _annotation(segmentation=[[v for _ in range(20000) for v in (0, 0, W, H)]]),
    "score 10**400": _annotation(score=10**400),
    "score string": _annotation(score="high"),
    "RLE counts 10**30": _annotation(segmentation={"size": [H, W], "counts": [10**30]}),
    "RLE counts 2**62": _annotation(segmentation={"size": [H, W], "counts": [H * W] + [2**62] * 4}),
    "RLE string wrapping int64": _annotation(
        segmentation={"size": [H, W], "counts": counts_string(WRAPPING)}
    ),
    "RLE size 10**30": _annotation(segmentation={"size": [10**30, 10**30], "counts": [1]}),
    "negative bbox": _annotation(bbox=[0, 0, -5, -5]),
    "negative area": _annotation(area=-3),
    "area 10**400": _annotation(area=10**400),
    "segmentation a number": _annotation(segmentation=3),
    "annotation id a list": _annotation(id=[1, 2]),
}
"""Cases of one bad annotation (id 7): the message must name it."""

FILE_CASES = {
    "nested 100000 deep": "[" * 100000 + "]" * 100000,
    "integer of 5000 digits": '{"images": [{"id": ' + "9" * 5000 + "}]}",
    "not json": "{images",
}
"""Cases of a bad file as a whole: the message must name the file."""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(folder / "a.png")
    with ProjectStore.create(folder / "proj", ["cat"]) as store:
        store.add_image(folder / "a.png", ["cat"])
        return store.root


def _import(project: Path, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "application.cli", "import-coco", str(project), str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def test_malformed_annotations_end_with_one_line(project: Path, tmp_path: Path) -> None:
    failures = []
    for name, change in CASES.items():
        data = copy.deepcopy(_base())
        change(data)
        path = tmp_path / f"{name.replace(' ', '_').replace('*', '')}.json"
        path.write_text(json.dumps(data))
        result = _import(project, path)
        lines = _lines(result)
        ok = (
            result.returncode == 2
            and len(lines) == 1
            and lines[0].startswith(f"ERROR dhr: {path}: annotation ")
            and ("annotation 7 " in lines[0] or name == "annotation id a list")
        )
        if not ok:
            failures.append(f"{name}: rc {result.returncode}, output {lines[-3:]}")
    with ProjectStore.open(project) as store:
        assert store.instances(1) == []  # nothing was imported
    assert not failures, "\n".join(failures)


def test_malformed_files_end_with_one_line(project: Path, tmp_path: Path) -> None:
    failures = []
    for name, text in FILE_CASES.items():
        path = tmp_path / f"{name.replace(' ', '_')}.json"
        path.write_text(text)
        result = _import(project, path)
        lines = _lines(result)
        if not (result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"ERROR dhr: {path}: ")):
            failures.append(f"{name}: rc {result.returncode}, output {lines[-3:]}")
    assert not failures, "\n".join(failures)


def test_a_polygon_partly_outside_is_clipped_with_a_warning(project: Path, tmp_path: Path) -> None:
    data = _base()
    data["annotations"][0]["segmentation"] = [[-20.0, 10.0, 30.0, 10.0, 30.0, 30.0, -20.0, 30.0]]
    path = tmp_path / "partly.json"
    path.write_text(json.dumps(data))
    result = _import(project, path)
    assert result.returncode == 0, result.stderr
    assert (
        "annotation 7 (image 1, images/a.png): polygon reaches outside the 50x40 image; clipped"
        in result.stderr
    )
    with ProjectStore.open(project) as store:
        (record,) = store.instances(1)
        assert record.bbox == (0.0, 10.0, 30.0, 20.0)
        assert 550 <= record.area <= 650  # the part inside the image, 30 x 20


def test_the_refusal_names_the_far_coordinate() -> None:
    from annotate.rle import checked_polygons

    with pytest.raises(
        ValueError, match=r"polygon 1 reaches 1e\+08, more than one image size outside the 50x40"
    ):
        checked_polygons([SQUARE, [10, 10, 1e8, 10, 30, 30]], H, W)
    assert checked_polygons([SQUARE], H, W) == [SQUARE]  # inside: untouched
