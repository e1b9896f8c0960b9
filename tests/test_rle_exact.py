"""RLE validation in exact integer arithmetic: run lengths that wrap a 64-bit sum to H x W never pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.coco import import_coco
from annotate.rle import MAX_RLE_PIXELS, encode_mask, normalize_rle, rle_area
from annotate.store import NewInstance, ProjectStore

H, W = 20, 30


def counts_string(runs: list[int]) -> str:
    """pycocotools' text encoding of ``runs``, for run lengths of any size (Python integers)."""
    out = []
    for i, run in enumerate(runs):
        x = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr(c + (0x20 if more else 0) + 48))
    return "".join(out)


WRAPPING = [H * W] + [2**58] * 64
"""Non-negative runs whose exact sum is H*W + 2**64: a 64-bit sum wraps to exactly H*W."""


def test_the_encoder_matches_pycocotools() -> None:
    mask = np.zeros((H, W), bool)
    mask[3:9, 4:20] = True
    mask[12:15, 1:3] = True
    assert counts_string(_runs(mask)) == encode_mask(mask)["counts"]


def _runs(mask: np.ndarray) -> list[int]:
    """Column-major run lengths of a mask, starting with background (as COCO RLE counts them)."""
    flat = mask.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(np.concatenate(([0], flat)))) + 0
    bounds = np.concatenate(([0], change, [flat.size]))
    return np.diff(bounds).tolist()


@pytest.mark.parametrize("seed", range(4))
def test_counts_strings_decode_to_the_exact_runs(seed: int) -> None:
    """Ragged masks (many runs, the running sums in numpy) and long runs decode to the runs that made them."""
    from annotate.rle import _string_runs

    rng = np.random.default_rng(seed)
    ragged = rng.random((97, 131)) > 0.5
    blocks = np.zeros((400, 300), bool)
    blocks[50:390, 20 + seed : 280] = True
    for mask in (ragged, blocks, ~blocks):
        counts = encode_mask(mask)["counts"]
        assert _string_runs(counts.encode("ascii")) == _runs(mask)
    assert _string_runs(counts_string(WRAPPING).encode("ascii")) == WRAPPING  # too large for int64 sums: Python's


def test_wrapping_runs_are_refused() -> None:
    assert int(np.array(WRAPPING, dtype=np.int64).sum()) == H * W  # what a 64-bit sum sees
    with pytest.raises(ValueError, match=rf"cover {H * W + 2**64} pixels"):
        normalize_rle({"size": [H, W], "counts": counts_string(WRAPPING)})
    with pytest.raises(ValueError, match=rf"cover {H * W + 2**64} pixels"):
        normalize_rle({"size": [H, W], "counts": [H * W] + [2**62] * 4})
    with pytest.raises(ValueError, match="negative"):
        normalize_rle({"size": [H, W], "counts": [H * W + 2**64, -(2**64)]})
    with pytest.raises(ValueError, match="cover"):
        normalize_rle({"size": [H, W], "counts": [10**30]})


@pytest.mark.parametrize(
    "size, message",
    [([2**20, 2**20], "too large"), ([10**30, 1], "too large"), ([True, 5], "positive integers")],
)
def test_sizes_beyond_32_bit_counts_are_refused(size, message) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_rle({"size": size, "counts": [size[0] * size[1]] if not isinstance(size[0], bool) else [5]})
    assert MAX_RLE_PIXELS == 2**32 - 1


def test_non_ascii_counts_are_refused_not_altered() -> None:
    good = encode_mask(np.ones((H, W), bool))["counts"]
    with pytest.raises(ValueError, match="ASCII"):
        normalize_rle({"size": [H, W], "counts": good[:-1] + "é"})


def test_valid_rles_still_pass_unchanged() -> None:
    mask = np.random.default_rng(0).random((H, W)) > 0.5
    rle = encode_mask(mask)
    assert normalize_rle(rle) == rle
    assert normalize_rle({"size": [H, W], "counts": _runs(mask)}) == rle
    assert rle_area(rle) == int(mask.sum())


@pytest.fixture
def project(tmp_path: Path) -> ProjectStore:
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "a.png")
    store = ProjectStore.create(tmp_path / "proj", ["cat"])
    store.add_image(tmp_path / "a.png", ["cat"])
    yield store
    store.close()


def test_the_store_refuses_a_wrapping_rle_and_stores_nothing(project: ProjectStore) -> None:
    image = project.list_images()[0]
    bad = {"size": [H, W], "counts": counts_string(WRAPPING)}
    with pytest.raises(ValueError, match=r"image 1 \(images/a\.png\), instance 0: RLE runs cover"):
        project.save_labels(image.id, [NewInstance(1, bad)], user="t")
    assert project.instances(image.id) == [] and project.image(image.id).version == image.version


def test_import_refuses_a_wrapping_rle_naming_file_and_annotation(
    project: ProjectStore, tmp_path: Path
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "images/a.png", "width": W, "height": H}],
                "categories": [{"id": 1, "name": "cat"}],
                "annotations": [
                    {
                        "id": 7,
                        "image_id": 1,
                        "category_id": 1,
                        "segmentation": {"size": [H, W], "counts": counts_string(WRAPPING)},
                    }
                ],
            }
        )
    )
    with pytest.raises(ValueError, match=rf"{path}: annotation 7 .*RLE runs cover"):
        import_coco(project, path)
    assert project.instances(1) == []


def test_a_saved_rle_is_decoded_once_and_still_refused_when_bad(project: ProjectStore, monkeypatch) -> None:
    """Every save writes all of an image's instances: counts already found valid for the image's size are not
    decoded again, the stored rows stay exact, and an invalid RLE is refused at every save."""
    from annotate.store import records

    records._checked_counts.cache_clear()
    decoded: list[str] = []

    def counting(rle, size=None):
        decoded.append(rle["counts"])
        return normalize_rle(rle, size)

    monkeypatch.setattr(records, "normalize_rle", counting)
    image = project.list_images()[0]
    mask = np.random.default_rng(1).random((H, W)) > 0.5
    rle = encode_mask(mask)
    for _ in range(3):
        project.save_labels(image.id, [NewInstance(1, rle)], user="t")
    assert decoded == [rle["counts"]]
    (stored,) = project.instances(image.id)
    assert stored.rle == rle and stored.area == int(mask.sum())
    ys, xs = np.nonzero(mask)
    assert stored.bbox == (float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1))
    bad = {"size": [H, W], "counts": counts_string(WRAPPING)}
    for _ in range(2):
        with pytest.raises(ValueError, match="RLE runs cover"):
            project.save_labels(image.id, [NewInstance(1, bad)], user="t")
    assert decoded.count(bad["counts"]) == 2
    wrong_size = {"size": [H, W + 1], "counts": rle["counts"]}  # the same counts, another size: checked again
    with pytest.raises(ValueError, match="does not match the image size"):
        project.save_labels(image.id, [NewInstance(1, wrong_size)], user="t")
    assert project.instances(image.id) == [stored] and project.image(image.id).version == image.version + 3
