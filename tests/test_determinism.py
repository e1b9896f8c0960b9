"""The same seed gives the same labels: `dhr bootstrap` twice, and `dhr train` twice on copies of one project."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from application import cli
from tests.synthetic_dataset import write_dataset

BOOTSTRAP = ["--backbone", "resnet_tiny", "--no-pretrained", "--epochs", "3", "--crop-size", "64",
             "--segmenter", "grabcut", "--uss", "color", "--no-progress", "--check-images", "header",
             "--no-download"]
TRAIN = ["--rounds", "1", "--steps", "4", "--batch-size", "2", "--crop-size", "64", "--backbone", "resnet_tiny",
         "--no-pretrained", "--segmenter", "grabcut", "--scales", "1", "--workers", "0", "--quiet", "--no-download"]


def _masks(project: Path) -> dict[str, np.ndarray]:
    """Semantic masks (H, W) uint8 of a project by file name."""
    return {p.name: np.array(Image.open(p)) for p in sorted((project / "masks").glob("*.png"))}


def _labels(project: Path) -> dict[str, tuple]:
    """Every image's stored instances (class, RLE counts, score, source) by file name."""
    from annotate.store import ProjectStore

    with ProjectStore.open(project) as store:
        return {
            r.file_name: tuple((i.class_id, i.rle["counts"], round(i.score, 6), i.source) for i in store.instances(r.id))
            for r in store.list_images()
        }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), n=6, size=(64, 64), seed=5, background="photo")


def _bootstrap(data, out: Path, seed: int) -> Path:
    weights = out.parent / "no-weights"
    weights.mkdir(exist_ok=True)
    code = cli.main(["bootstrap", str(data.tags_path), "--images", str(data.image_dir), "--out", str(out),
                     "--seed", str(seed), "--weights-dir", str(weights), *BOOTSTRAP])
    assert code == 0
    return out


def test_bootstrap_twice_gives_identical_labels(data, tmp_path):
    first = _bootstrap(data, tmp_path / "a", seed=1)
    second = _bootstrap(data, tmp_path / "b", seed=1)
    masks_a, masks_b = _masks(first), _masks(second)
    assert len(masks_a) == 6 and masks_a.keys() == masks_b.keys()
    assert all(np.array_equal(masks_a[k], masks_b[k]) for k in masks_a)
    assert _labels(first) == _labels(second)
    assert any((m > 0).any() for m in masks_a.values())  # not trivially equal: something was labelled


def _train_twice(data, tmp_path: Path, global_seeds: tuple[int, int]) -> tuple[dict, dict, dict]:
    """Bootstrap once, then `dhr train` on two copies; the global torch generator is set to ``global_seeds``
    before each run. Returns (labels before, labels of run a, labels of run b)."""
    start = _bootstrap(data, tmp_path / "start", seed=2)
    runs = []
    for name, global_seed in zip(("a", "b"), global_seeds, strict=True):
        project = tmp_path / name
        shutil.copytree(start, project)
        with torch.random.fork_rng():
            torch.manual_seed(global_seed)
            code = cli.main(["train", str(project), "--seed", "3", "--weights-dir", str(tmp_path / "no-weights"),
                             *TRAIN])
        assert code == 0
        runs.append(_labels(project))
    return _labels(start), runs[0], runs[1]


def test_train_twice_gives_identical_labels(data, tmp_path):
    """Two `dhr train` processes: each starts with torch's fixed default generator state (seeded here alike)."""
    before, first, second = _train_twice(data, tmp_path, (0, 0))
    assert first == second
    assert first != before  # the round relabelled the images


def test_train_labels_do_not_depend_on_the_global_generator(data, tmp_path):
    _, first, second = _train_twice(data, tmp_path, (0, 1))
    assert first == second
