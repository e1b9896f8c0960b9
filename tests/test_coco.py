"""annotate.coco: COCO export/import round trips, pycocotools compatibility, foreign files, semantic masks."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from annotate.coco import export_coco, export_semantic_masks, import_coco, voc_palette
from annotate.rle import decode_rle, encode_mask
from annotate.store import NewInstance, ProjectStore

CLASSES = ["cat", "dog", "bird"]


def _disk(height: int, width: int, cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def _ring(height: int, width: int) -> np.ndarray:
    """A mask with a hole: RLE keeps it."""
    return _disk(height, width, 20, 20, 12) & ~_disk(height, width, 20, 20, 5)


@pytest.fixture
def source_project(tmp_path: Path) -> ProjectStore:
    """Three images with different statuses, tags, confidences, and instances (one with a hole)."""
    rng = np.random.default_rng(0)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    sizes = {"a.png": (48, 64), "b.jpg": (40, 40), "c.png": (30, 50)}
    store = ProjectStore.create(tmp_path / "src", CLASSES)
    ids = {}
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(incoming / name)
        ids[name] = store.add_image(incoming / name, ["cat", "dog"] if name == "a.png" else ["bird"])
    store.save_labels(
        ids["a.png"],
        [
            NewInstance(1, _ring(48, 64), score=0.875, source="sam"),
            NewInstance(
                2, _disk(48, 64, 30, 45, 9), score=0.5, source="dhr", needs_review=True, reason="small"
            ),
            NewInstance(2, _disk(48, 64, 8, 56, 4), score=0.25, source="manual"),
        ],
        user="ann",
        status="accepted",
        confidence=0.75,
    )
    store.save_labels(
        ids["b.jpg"], [NewInstance(3, _disk(40, 40, 20, 20, 15), score=0.625)], user="ann", status="review"
    )
    yield store
    store.close()


def _export_text(store: ProjectStore, path: Path, **kwargs) -> str:
    """The export's text, its time stamp (``info.date_created``) blanked."""
    export_coco(store, path, **kwargs)
    text = path.read_text()
    stamp = json.loads(text)["info"]["date_created"]
    return text.replace(stamp, "<time>", 1)


def test_export_fields(source_project: ProjectStore, tmp_path: Path) -> None:
    coco = export_coco(source_project, tmp_path / "out" / "all.json")
    assert json.loads((tmp_path / "out" / "all.json").read_text()) == coco
    from datetime import datetime, timedelta, timezone

    made = datetime.fromisoformat(coco["info"]["date_created"])  # an export says when it was made
    assert timedelta(0) <= datetime.now(timezone.utc) - made < timedelta(minutes=5)
    assert coco["categories"] == [{"id": i, "name": n, "supercategory": ""} for i, n in enumerate(CLASSES, 1)]
    assert [i["file_name"] for i in coco["images"]] == ["images/a.png", "images/b.jpg", "images/c.png"]
    assert coco["images"][0]["dhr_label"]["tags"] == ["cat", "dog"]
    assert [i["dhr_label"]["status"] for i in coco["images"]] == ["accepted", "review", "new"]
    assert [a["id"] for a in coco["annotations"]] == [1, 2, 3, 4]
    ring = coco["annotations"][0]
    truth = _ring(48, 64)
    assert ring["area"] == float(truth.sum()) and ring["iscrowd"] == 0
    np.testing.assert_array_equal(decode_rle(ring["segmentation"]), truth)
    rle = mask_utils.encode(np.asfortranarray(truth.astype(np.uint8)))
    assert ring["bbox"] == [float(v) for v in mask_utils.toBbox(rle)] == [8.0, 8.0, 25.0, 25.0]
    assert ring["dhr_label"] == {"score": 0.875, "predicted_iou": None, "source": "sam", "needs_review": False,
                                 "reason": ""}
    accepted = export_coco(source_project, tmp_path / "acc.json", accepted_only=True)
    assert [i["id"] for i in accepted["images"]] == [1] and len(accepted["annotations"]) == 3
    assert not list((tmp_path / "out").glob("*.tmp"))  # the temporary file was moved into place


def test_round_trip_is_identical(source_project: ProjectStore, tmp_path: Path) -> None:
    first = _export_text(source_project, tmp_path / "first.json")
    with ProjectStore.create(tmp_path / "fresh", CLASSES) as fresh:
        stored = import_coco(fresh, tmp_path / "first.json", image_dir=source_project.root)
        assert stored == 4
        assert (fresh.root / "images" / "b.jpg").read_bytes() == (
            source_project.root / "images" / "b.jpg"
        ).read_bytes()
        second = _export_text(fresh, tmp_path / "second.json")
        assert second == first
        # importing again into the same project resumes: same labels, previous ones kept in the undo history
        assert import_coco(fresh, tmp_path / "second.json") == 4
        assert _export_text(fresh, tmp_path / "third.json") == first
        assert fresh.can_undo(1)


def test_pycocotools_loads_and_self_ap_is_one(source_project: ProjectStore, tmp_path: Path) -> None:
    for polygons in (False, True):
        path = tmp_path / f"export-{polygons}.json"
        export_coco(source_project, path, polygons=polygons)
        with contextlib.redirect_stdout(io.StringIO()):
            ground_truth = COCO(str(path))
            assert sorted(ground_truth.getImgIds()) == [1, 2, 3] and len(ground_truth.getAnnIds()) == 4
            annotations = ground_truth.loadAnns(ground_truth.getAnnIds())
            results = [
                {
                    "image_id": a["image_id"],
                    "category_id": a["category_id"],
                    "segmentation": a["segmentation"],
                    "score": a["dhr_label"]["score"],
                }
                for a in annotations
            ]
            if (
                polygons
            ):  # results take RLE; rasterise the polygons the same way pycocotools does for the truth
                for a, result in zip(annotations, results, strict=True):
                    result["segmentation"] = ground_truth.annToRLE(a)
            detections = ground_truth.loadRes(results)
            evaluation = COCOeval(ground_truth, detections, iouType="segm")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        assert evaluation.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
        assert evaluation.stats[1] == pytest.approx(1.0)  # AP@.5


def test_polygon_export_matches_masks(source_project: ProjectStore, tmp_path: Path) -> None:
    from annotate.coco import ExportReport

    report = ExportReport()
    coco = export_coco(source_project, tmp_path / "poly.json", polygons=True, report=report)
    assert report.holes_as_rle == 1 and report.polygon_note().startswith("1 instance with holes written as RLE")
    records = [r for image in (1, 2) for r in source_project.instances(image)]
    for annotation, record in zip(coco["annotations"], records, strict=True):
        if record.class_id == 1:  # the ring: RLE, exactly as stored (a polygon would fill its hole)
            assert annotation["segmentation"]["counts"] == record.rle["counts"]
            assert annotation["area"] == float(record.area)
            continue
        assert isinstance(annotation["segmentation"], list)
        h, w = record.rle["size"]
        rle = mask_utils.merge(mask_utils.frPyObjects(annotation["segmentation"], h, w))
        back = mask_utils.decode(rle).astype(bool)
        truth = decode_rle(record.rle)
        iou = (back & truth).sum() / (back | truth).sum()
        assert iou > 0.99
        # area and bbox are those of the polygon written, as a COCO reader decodes it
        assert annotation["area"] == float(back.sum())
        assert annotation["bbox"] == [float(v) for v in mask_utils.toBbox(rle)]


def test_a_ring_round_trips_exactly_in_a_polygon_export(tmp_path: Path) -> None:
    """pycocotools reads the ring of a polygon export back with IoU 1.0: its hole is kept (as RLE)."""
    from pycocotools.coco import COCO

    from annotate.coco import ExportReport

    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "a.png")
    with ProjectStore.create(tmp_path / "p", CLASSES) as store:
        image_id = store.add_image(tmp_path / "a.png", ["cat"])
        ring, disk = _ring(48, 64), _disk(48, 64, 30, 50, 6)
        store.save_labels(image_id, [NewInstance(1, ring), NewInstance(2, disk)], user="t", status="accepted")
        report = ExportReport()
        export_coco(store, tmp_path / "poly.json", polygons=True, report=report)
    coco = COCO(str(tmp_path / "poly.json"))
    back = [coco.annToMask(a).astype(bool) for a in coco.loadAnns(coco.getAnnIds())]
    assert (back[0] & ring).sum() / (back[0] | ring).sum() == 1.0 and (back[0] & ~ring).sum() == 0
    assert (back[1] & disk).sum() / (back[1] | disk).sum() > 0.95  # a plain polygon
    assert isinstance(coco.loadAnns(coco.getAnnIds())[1]["segmentation"], list)
    assert report.holes_as_rle == 1


def test_import_foreign_file_maps_categories_by_name(tmp_path: Path) -> None:
    images = tmp_path / "their_images"
    images.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "one.png")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(images / "two.png")
    kitty = np.zeros((20, 30), bool)
    kitty[2:8, 3:13] = True
    crowd = np.zeros((10, 10), bool)
    crowd[5:, :] = True
    # column-major uncompressed counts: 5 background, 5 foreground, per column
    uncompressed = {"size": [10, 10], "counts": [5] + [5, 5] * 9 + [5]}
    foreign = {
        "images": [
            {"id": 40, "file_name": "one.png", "width": 30, "height": 20},
            {"id": 41, "file_name": "two.png", "width": 10, "height": 10},
        ],
        "categories": [{"id": 7, "name": "kitty"}, {"id": 3, "name": "dog"}, {"id": 9, "name": "person"}],
        "annotations": [
            {
                "id": 100,
                "image_id": 40,
                "category_id": 7,
                "iscrowd": 0,
                "score": 0.3,
                "segmentation": [[3, 2, 13, 2, 13, 8, 3, 8]],
                "bbox": [3, 2, 10, 6],
                "area": 60,
            },
            {
                "id": 101,
                "image_id": 40,
                "category_id": 3,
                "iscrowd": 0,
                "segmentation": {"size": [20, 30], "counts": encode_mask(~kitty)["counts"]},
            },
            {"id": 102, "image_id": 41, "category_id": 3, "iscrowd": 1, "segmentation": uncompressed},
        ],
    }
    path = tmp_path / "theirs.json"
    path.write_text(json.dumps(foreign))
    with ProjectStore.create(tmp_path / "p", ["cat", "dog"]) as store:
        with pytest.raises(
            ValueError, match=r"category 'kitty' \(id 7\) is used by annotations but is not a project"
        ):
            import_coco(store, path)
        assert import_coco(store, path, category_map={"kitty": "cat"}, image_dir=images) == 3
        one, two = store.list_images()
        assert (one.file_name, one.tags, one.status) == ("images/one.png", ("cat", "dog"), "pseudo")
        first, second = store.instances(one.id)
        assert (first.class_id, first.score, first.source) == (1, 0.3, "import")
        np.testing.assert_array_equal(decode_rle(first.rle), kitty)  # polygon on pixel edges -> exact block
        assert (second.class_id, second.area) == (2, 600 - 60)
        (crowd_instance,) = store.instances(two.id)
        np.testing.assert_array_equal(decode_rle(crowd_instance.rle), crowd)
        assert crowd_instance.iscrowd and not crowd_instance.needs_review
        exported = export_coco(store, tmp_path / "ours.json")
        assert [c["name"] for c in exported["categories"]] == ["cat", "dog"]
        assert [a["category_id"] for a in exported["annotations"]] == [1, 2, 2]
        assert [a["iscrowd"] for a in exported["annotations"]] == [0, 0, 1]
    with ProjectStore.create(tmp_path / "q", ["dog"]) as store:
        with pytest.raises(ValueError, match=r"category map names \['cow'\] are not categories"):
            import_coco(store, path, category_map={"cow": "dog"}, image_dir=images)
        assert import_coco(store, path, image_dir=images, allow_new_classes=True) == 3
        assert store.classes == ["dog", "kitty"]  # unused 'person' is not added
        assert [r.class_id for r in store.instances(1)] == [2, 1]


def _one_object_file(
    file_name: str, mask: np.ndarray, *, image_id: int = 1, category: tuple[int, str] = (1, "cat")
) -> dict:
    """A foreign COCO dict: one image ``file_name`` of the mask's size with one RLE object of ``category``."""
    height, width = mask.shape
    return {
        "images": [{"id": image_id, "file_name": file_name, "width": width, "height": height}],
        "categories": [{"id": category[0], "name": category[1]}],
        "annotations": [
            {"id": 1, "image_id": image_id, "category_id": category[0], "segmentation": encode_mask(mask)}
        ],
    }


def _valid_file(tmp_path: Path) -> tuple[Path, dict]:
    folder = tmp_path / "imgs"
    folder.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(folder / "x.png")
    mask = np.zeros((10, 12), bool)
    mask[1:4, 1:4] = True
    return folder, _one_object_file("x.png", mask)


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda d: d["annotations"][0].update(image_id=5), ValueError, "unknown image id 5"),
        (lambda d: d["annotations"][0].update(category_id=8), ValueError, "unknown category id 8"),
        (
            lambda d: d["annotations"][0]["segmentation"].update(size=[11, 12]),
            ValueError,
            r"annotation 1 \(image 1, images/x.png\): bad segmentation: RLE size 11x12 does not match the image size 10x12",
        ),
        (
            lambda d: d["annotations"][0]["segmentation"].update(counts="0"),
            ValueError,
            "RLE runs cover 0 pixels",
        ),
        (lambda d: d["annotations"][0].pop("segmentation"), ValueError, "no segmentation"),
        (
            lambda d: d["images"][0].update(file_name="missing.png"),
            FileNotFoundError,
            r"1 image file\(s\) not found.*missing.png",
        ),
        (lambda d: d["images"][0].update(file_name="../imgs/x.png"), ValueError, "outside the project root"),
        (lambda d: d["images"][0].update(width=13), ValueError, "is 12x10 but the file says 13x10"),
        (lambda d: d["images"].append(dict(d["images"][0])), ValueError, "duplicate image id 1"),
        (lambda d: d["categories"][0].update(name="cow"), ValueError, "'cow' .* not a project class"),
        (lambda d: d.pop("images"), ValueError, "not a COCO file"),
    ],
)
def test_import_errors_before_writing(tmp_path: Path, change, error, message) -> None:
    folder, data = _valid_file(tmp_path)
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with ProjectStore.create(tmp_path / "p", ["cat"]) as store:
        with pytest.raises(error, match=message):
            import_coco(store, path, image_dir=folder)
        assert store.list_images() == []
        assert list((store.root / "images").iterdir()) == []
    (tmp_path / "junk.json").write_text("{")
    with ProjectStore.open(tmp_path / "p") as store, pytest.raises(ValueError, match="not a JSON file"):
        import_coco(store, tmp_path / "junk.json")


def test_import_rolls_back_on_late_failure(tmp_path: Path) -> None:
    folder, data = _valid_file(tmp_path)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(folder / "y.png")
    data["images"].append(
        {"id": 2, "file_name": "y.png", "width": 12, "height": 10, "dhr_label": {"tags": ["cow"]}}
    )
    path = tmp_path / "late.json"
    path.write_text(json.dumps(data))
    with ProjectStore.create(tmp_path / "p", ["cat"]) as store:
        with pytest.raises(ValueError, match=r"image 2 \(images/y.png\): unknown tags \['cow'\]"):
            import_coco(store, path, image_dir=folder)
        assert store.list_images() == [] and list((store.root / "images").iterdir()) == []


def test_semantic_masks(source_project: ProjectStore, tmp_path: Path) -> None:
    paths = export_semantic_masks(source_project, tmp_path / "sem")
    assert [p.relative_to(tmp_path / "sem").as_posix() for p in paths] == [
        "images/a.png",
        "images/b.png",
        "images/c.png",
    ]
    png = Image.open(paths[0])
    assert png.mode == "P" and png.size == (64, 48)
    assert png.getpalette()[:6] == [0, 0, 0, 128, 0, 0] and voc_palette()[255 * 3 : 256 * 3] == [
        224,
        224,
        192,
    ]
    values = np.asarray(png)
    np.testing.assert_array_equal(values, source_project.semantic_mask(1))
    assert values[20, 10] == 1 and values[20, 20] == 0 and values[30, 45] == 2
    assert set(np.unique(np.asarray(Image.open(paths[2])))) == {0}
    ignored = export_semantic_masks(source_project, tmp_path / "ign", accepted_only=True, ignore_review=True)
    assert len(ignored) == 1
    values = np.asarray(Image.open(ignored[0]))
    assert values[30, 45] == 255 and values[20, 10] == 1


# ---------------------------------------------------------------- command line
def test_cli_init_import_export_status(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from application import cli

    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "sub/b.png"]):
        Image.fromarray(np.full((12, 16, 3), 40 * i, np.uint8)).save(data / name)
    (data / "tags.csv").write_text("file,tags\na.png,cat;dog\nsub/b.png,dog\n")
    project = tmp_path / "proj"
    assert (
        cli.main(
            [
                "init",
                str(project),
                "--classes",
                "cat,dog",
                "--images",
                str(data),
                "--tags",
                str(data / "tags.csv"),
            ]
        )
        == 0
    )
    assert "added 2 images" in capsys.readouterr().out
    with ProjectStore.open(project) as store:
        assert [(r.file_name, r.tags) for r in store.list_images()] == [
            ("images/a.png", ("cat", "dog")),
            ("images/sub/b.png", ("dog",)),
        ]
    # an unknown tag: nothing is created, the error names the image and the tag
    (data / "bad.csv").write_text("a.png,cat;cow\n")
    bad = tmp_path / "bad"
    assert (
        cli.main(
            ["init", str(bad), "--classes", "cat,dog", "--images", str(data), "--tags", str(data / "bad.csv")]
        )
        == 2
    )
    assert not bad.exists()
    assert (
        cli.main(
            [
                "init",
                str(bad),
                "--classes",
                "cat,dog",
                "--images",
                str(data),
                "--tags",
                str(data / "bad.csv"),
                "--allow-new-classes",
            ]
        )
        == 0
    )
    with ProjectStore.open(bad) as store:
        assert store.classes == ["cat", "dog", "cow"] and store.list_images()[0].tags == ("cat", "cow")

    mask = np.zeros((12, 16), bool)
    mask[2:6, 3:9] = True
    foreign = _one_object_file("a.png", mask, image_id=5, category=(7, "kitty"))
    (tmp_path / "f.json").write_text(json.dumps(foreign))
    assert cli.main(["import-coco", str(project), str(tmp_path / "f.json"), "--map", "kitty=cat"]) == 0
    assert "imported 1 annotations" in capsys.readouterr().out
    assert cli.main(["import-coco", str(project), str(tmp_path / "f.json"), "--map", "kitty"]) == 2
    assert cli.main(["status", str(project)]) == 0
    out = capsys.readouterr().out
    assert "| pseudo | 1 |" in out and "| new | 1 |" in out and "| total | 2 |" in out
    out_json = tmp_path / "exp" / "coco.json"
    assert cli.main(["export", str(project), str(out_json)]) == 0  # by default only reviewed work
    assert capsys.readouterr().out.startswith("included 0 images (review 0, accepted 0); left out new 1, pseudo 1")
    assert json.loads(out_json.read_text())["images"] == []
    assert cli.main(["export", str(project), str(out_json), "--all", "--semantic", str(tmp_path / "sem")]) == 0
    assert capsys.readouterr().out.startswith("included 2 images (new 1, pseudo 1")
    exported = json.loads(out_json.read_text())
    assert len(exported["images"]) == 2 and exported["annotations"][0]["category_id"] == 1
    semantic = np.asarray(Image.open(tmp_path / "sem" / "images" / "a.png"))
    np.testing.assert_array_equal(semantic, mask.astype(np.uint8))
    assert cli.main(["export", str(project), str(out_json), "--accepted-only", "--polygons"]) == 0
    assert json.loads(out_json.read_text())["images"] == []


# ---------------------------------------------------------------- RLE helpers
def test_rle_round_trip_area_bbox_against_pycocotools() -> None:
    from annotate.rle import normalize_rle, rle_area, rle_bbox

    rng = np.random.default_rng(3)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        mask = rng.random((h, w)) < rng.random()
        rle = encode_mask(mask)
        assert isinstance(rle["counts"], str) and rle["size"] == [h, w]
        json.dumps(rle)  # JSON-safe
        np.testing.assert_array_equal(decode_rle(rle), mask)
        reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle_area(rle) == int(mask.sum()) == int(mask_utils.area(reference))
        assert rle_bbox(rle) == [float(v) for v in mask_utils.toBbox(reference)]
        assert normalize_rle(rle, (h, w)) == rle
        # uncompressed counts of the same mask give the same compressed RLE
        flat = mask.T.reshape(-1).astype(np.int8)
        changes = np.flatnonzero(np.diff(flat)) + 1
        runs = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
        if flat[0]:
            runs = [0] + runs
        assert normalize_rle({"size": [h, w], "counts": runs}) == rle


@pytest.mark.parametrize(
    "rle, message",
    [
        ({"size": [4, 5], "counts": [7, 2, 2]}, "cover 11 pixels but its size 4x5 has 20"),
        ({"size": [4, 5], "counts": [25, -5]}, "negative"),
        ({"size": [4, 5], "counts": "zz"}, "invalid character"),
        ({"size": [4, 5], "counts": "a"}, "ends in the middle"),
        ({"size": [4], "counts": "5"}, "size must be"),
        ({"size": [4, 5], "counts": 3.0}, "string or a list"),
        ({"counts": "5"}, "'size' and 'counts'"),
    ],
)
def test_normalize_rle_refuses_bad_input(rle, message) -> None:
    from annotate.rle import normalize_rle

    with pytest.raises(ValueError, match=message):
        normalize_rle(rle)


def test_polygons_follow_pixel_edges() -> None:
    from annotate.rle import mask_to_polygons, polygons_to_rle

    rng = np.random.default_rng(4)
    for _ in range(20):
        mask = np.zeros((50, 70), bool)
        for _ in range(3):
            mask |= _disk(50, 70, rng.uniform(5, 45), rng.uniform(5, 65), rng.uniform(2, 10))
        mask[0, 0] = mask[49, 69] = True  # single pixels at the borders survive
        back = decode_rle(polygons_to_rle(mask_to_polygons(mask), 50, 70))
        assert (back & mask).sum() / (back | mask).sum() > 0.995
        assert back[0, 0] and back[49, 69]
    block = np.zeros((10, 10), bool)
    block[2:5, 3:8] = True
    np.testing.assert_array_equal(decode_rle(polygons_to_rle(mask_to_polygons(block), 10, 10)), block)
    assert mask_to_polygons(np.zeros((4, 4), bool)) == []
    disk = _disk(60, 60, 30, 30, 20)
    exact, thinned = mask_to_polygons(disk, tolerance=0.0), mask_to_polygons(disk)
    assert len(thinned[0]) < len(exact[0])
    np.testing.assert_array_equal(decode_rle(polygons_to_rle(exact, 60, 60)), disk)
    with pytest.raises(ValueError, match="at least 3 points"):
        polygons_to_rle([[1, 2, 3, 4]], 10, 10)


def test_holes_kept_as_rle_by_polygon_exports_are_reported_by_the_cli_and_the_gui(
    source_project: ProjectStore, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from annotate.coco import ExportReport
    from annotate.review.view import export_summary
    from application import cli

    root = source_project.root
    source_project.close()
    assert cli.main(["export", str(root), str(tmp_path / "poly.json"), "--polygons"]) == 0
    out = capsys.readouterr().out
    assert "note: 1 instance with holes written as RLE, exactly (COCO polygons cannot hold holes)" in out
    assert cli.main(["export", str(root), str(tmp_path / "rle.json")]) == 0
    assert "note:" not in capsys.readouterr().out
    report = ExportReport(holes_as_rle=2)
    line = export_summary(root, root / "exports" / "x.json", {"images": [], "annotations": []}, report)
    assert "2 instances with holes written as RLE" in line
