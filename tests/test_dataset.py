"""Tag formats and validation of tagged datasets (annotate.dataset)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotate.dataset import DatasetError, load_dataset
from tests.synthetic_dataset import CLASSES, write_dataset


@pytest.mark.parametrize("fmt", ["csv", "json", "voc", "coco"])
def test_every_format_gives_the_same_entries(tmp_path, fmt):
    ds = write_dataset(tmp_path, n=6, size=(48, 48), fmt=fmt)
    data = load_dataset(tmp_path, check_images="header", progress=False)
    assert data.source == ds.tags_path
    assert data.image_dir == ds.image_dir
    assert data.classes == list(CLASSES)
    assert [e.file_name for e in data.entries] == [s.name for s in ds.samples]
    assert [e.tags for e in data.entries] == [s.tags for s in ds.samples]
    assert data.problems == []
    expected = np.array([[c in s.tags for c in CLASSES] for s in ds.samples], np.float32)
    np.testing.assert_array_equal(data.targets(), expected)
    assert data.tag_ids(data.entries[1]) == [2, 3]  # box, tag


def test_tags_file_given_directly_and_csv_without_header(tmp_path):
    write_dataset(tmp_path, n=3, size=(32, 32), fmt="csv")
    (tmp_path / "plain.csv").write_text("img_002.png, box ; ball \nimg_000.png,ball\n")
    data = load_dataset(tmp_path / "plain.csv", images=tmp_path / "images", progress=False)
    assert [(e.file_name, e.tags) for e in data.entries] == [
        ("img_000.png", ("ball",)),
        ("img_002.png", ("ball", "box")),
    ]
    assert data.classes == ["ball", "box"]


def test_json_with_class_list_orders_classes(tmp_path):
    write_dataset(tmp_path, n=2, size=(32, 32), fmt="csv")
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps(
            {"classes": ["tag", "box", "ball"], "tags": {"img_000.png": "ball", "img_001.png": ["box"]}}
        )
    )
    data = load_dataset(tmp_path, tags=path, progress=False)
    assert data.classes == ["tag", "box", "ball"]
    assert data.tag_ids(data.entries[0]) == [3]
    assert data.tag_ids(data.entries[1]) == [2]


def _bad_dataset(tmp_path):
    ds = write_dataset(tmp_path, n=4, size=(40, 40), fmt="csv")
    (ds.image_dir / "corrupt.png").write_bytes(b"not an image at all")
    good = (ds.image_dir / "img_000.png").read_bytes()
    (ds.image_dir / "truncated.png").write_bytes(good[: len(good) // 2])
    rows = [
        "file,tags",
        "img_000.png,ball",
        "img_001.png,box;tag",
        "missing.png,ball",
        "corrupt.png,ball",
        "truncated.png,ball",
        "img_002.png,ball;unicorn",
        "img_003.png,",
        "img_000.png,box",
        "IMG_001.jpg,ball",
        "../outside.png,ball",
    ]
    ds.tags_path.write_text("\n".join(rows) + "\n")
    return ds


def test_every_problem_is_reported_at_once_and_bad_entries_skipped(tmp_path):
    _bad_dataset(tmp_path)
    with pytest.warns(UserWarning, match="8 problem"):
        data = load_dataset(tmp_path, classes=list(CLASSES), progress=False)
    kinds = {(p.file_name, p.kind) for p in data.problems}
    assert kinds == {
        ("missing.png", "missing_file"),
        ("corrupt.png", "unreadable_image"),
        ("truncated.png", "unreadable_image"),
        ("img_002.png", "unknown_tag"),
        ("img_003.png", "empty_tags"),
        ("img_000.png", "duplicate_name"),
        ("IMG_001.jpg", "duplicate_name"),
        ("../outside.png", "unsafe_name"),
    }
    assert [(e.file_name, e.tags) for e in data.entries] == [
        ("img_000.png", ("ball",)),
        ("img_001.png", ("box", "tag")),
    ]
    unknown = next(p for p in data.problems if p.kind == "unknown_tag")
    assert "unicorn" in unknown.message


def test_strict_mode_raises_listing_all_problems(tmp_path):
    _bad_dataset(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path, classes=list(CLASSES), strict=True, progress=False)
    assert len(info.value.problems) == 8
    message = str(info.value)
    for name in ("missing.png", "corrupt.png", "truncated.png", "img_002.png", "img_003.png", "outside.png"):
        assert name in message


def test_header_check_misses_truncation_that_decode_catches(tmp_path):
    _bad_dataset(tmp_path)
    with pytest.warns(UserWarning):
        data = load_dataset(tmp_path, classes=list(CLASSES), check_images="header", progress=False)
    assert "truncated.png" not in {p.file_name for p in data.problems if p.kind == "unreadable_image"}


def test_inferred_classes_include_unrecognised_tags(tmp_path):
    write_dataset(tmp_path, n=2, size=(32, 32))
    (tmp_path / "tags.csv").write_text("file,tags\nimg_000.png,zebra;ball\nimg_001.png,box\n")
    data = load_dataset(tmp_path, progress=False)
    assert data.classes == ["ball", "box", "zebra"]
    assert data.entries[0].tags == ("ball", "zebra")


def test_unusable_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no tags found"):
        load_dataset(tmp_path / "empty")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(bad)
    write_dataset(tmp_path / "d", n=1, size=(32, 32))
    (tmp_path / "d" / "tags.csv").write_text("file,tags\nnope.png,ball\n")
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="no usable images"):
        load_dataset(tmp_path / "d", progress=False)
    with pytest.raises(ValueError, match="format"):
        load_dataset(tmp_path / "d", format="xls")


def test_malformed_voc_and_coco_entries_are_reported(tmp_path):
    write_dataset(tmp_path, n=3, size=(32, 32), fmt="voc")
    (tmp_path / "Annotations" / "broken.xml").write_text("<annotation><filename>x.png")
    with pytest.warns(UserWarning):
        data = load_dataset(tmp_path, progress=False)
    assert [(p.file_name, p.kind) for p in data.problems] == [("broken.xml", "format")]
    assert len(data.entries) == 3

    coco_root = tmp_path / "c"
    ds = write_dataset(coco_root, n=3, size=(32, 32), fmt="coco")
    coco = json.loads(ds.tags_path.read_text())
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 2]  # image 2 loses its tags
    ds.tags_path.write_text(json.dumps(coco))
    with pytest.warns(UserWarning):
        data = load_dataset(coco_root, progress=False)
    assert [(p.file_name, p.kind) for p in data.problems] == [("img_001.png", "empty_tags")]
    assert data.classes == list(CLASSES)


# ---------------------------------------------------------------- class lists beside the tags
def _giraffe_dataset(tmp_path):
    """Three tagged images, one of them tagged with a class the user's list does not have."""
    write_dataset(tmp_path, n=3, size=(32, 32))
    (tmp_path / "tags.csv").write_text(
        "file,tags\nimg_000.png,tag;ball\nimg_001.png,giraffe\nimg_002.png,box\n"
    )


def test_without_a_class_list_the_tags_give_the_classes(tmp_path):
    _giraffe_dataset(tmp_path)
    data = load_dataset(tmp_path, progress=False)
    assert data.classes == ["ball", "box", "giraffe", "tag"]  # sorted tags: the current behaviour
    assert data.problems == [] and data.class_source == "the tags"


def test_a_class_list_beside_the_tags_fixes_ids_and_reports_unknown_tags(tmp_path):
    _giraffe_dataset(tmp_path)
    (tmp_path / "classes.txt").write_text("background\ntag\nbox\n\n# the user's order\nball\n")
    with pytest.warns(UserWarning, match="1 problem"):
        data = load_dataset(tmp_path, progress=False)
    assert data.classes == ["tag", "box", "ball"]  # ids in the file's order, giraffe not added
    assert data.class_source == str(tmp_path / "classes.txt")
    assert data.class_id("ball") == 3
    assert [(e.file_name, e.tags) for e in data.entries] == [
        ("img_000.png", ("tag", "ball")),
        ("img_002.png", ("box",)),
    ]
    [problem] = data.problems
    assert (problem.kind, problem.file_name) == ("unknown_tag", "img_001.png")
    assert "giraffe" in str(problem) and "classes.txt" in str(problem) and "\n" not in str(problem)
    lines = data.problem_report()
    assert len(lines) == 2 and "1 dataset entry skipped" in lines[0]
    with pytest.raises(DatasetError, match="giraffe"):
        load_dataset(tmp_path, progress=False, strict=True)


def test_an_explicit_class_list_wins_over_the_file_beside_the_tags(tmp_path):
    _giraffe_dataset(tmp_path)
    (tmp_path / "classes.txt").write_text("tag\nbox\nball\n")
    data = load_dataset(tmp_path, classes=["ball", "box", "tag", "giraffe"], progress=False)
    assert data.classes == ["ball", "box", "tag", "giraffe"] and data.problems == []


def test_bad_class_files_and_several_tag_files_are_errors_naming_them(tmp_path):
    from annotate.dataset import read_class_file

    _giraffe_dataset(tmp_path)
    (tmp_path / "classes.txt").write_text("ball\nbox\nball\n")
    with pytest.raises(DatasetError, match=r"classes\.txt.*ball more than once"):
        load_dataset(tmp_path, progress=False)
    (tmp_path / "classes.txt").write_text("# nothing\n")
    with pytest.raises(DatasetError, match="names no class"):
        read_class_file(tmp_path / "classes.txt")
    (tmp_path / "classes.txt").unlink()
    (tmp_path / "tags.json").write_text(json.dumps({"img_000.png": ["ball"]}))
    with pytest.raises(DatasetError, match=r"several tag sources \(tags\.csv, tags\.json\)"):
        load_dataset(tmp_path, progress=False)
    assert len(load_dataset(tmp_path, tags=tmp_path / "tags.json", progress=False).entries) == 1


def test_warn_false_leaves_the_report_to_the_caller(tmp_path, recwarn, caplog):
    _bad_dataset(tmp_path)
    data = load_dataset(tmp_path, classes=list(CLASSES), progress=False, warn=False)
    assert len(data.problems) == 8
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    assert "missing.png" not in caplog.text  # nothing logged: the caller prints the report once
    assert len(data.problem_report()) == 9


def test_a_header_check_leaves_truncated_images_to_a_later_decode(tmp_path):
    from annotate.dataset import undecodable

    _bad_dataset(tmp_path)
    with pytest.warns(UserWarning):
        data = load_dataset(tmp_path, classes=list(CLASSES), check_images="header", progress=False)
    assert data.checked == "header" and "truncated.png" in [e.file_name for e in data.entries]
    late = undecodable(data.entries)
    assert [(p.file_name, p.kind) for p in late] == [("truncated.png", "unreadable_image")]
    rest = data.without({p.file_name for p in late}, late)
    assert "truncated.png" not in [e.file_name for e in rest.entries] and late[0] in rest.problems
    assert len(rest.entries) == len(data.entries) - 1 and data.entries != rest.entries
