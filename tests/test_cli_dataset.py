"""``dhr init`` with a dataset: class lists from a file, bad entries skipped once or a stop with --strict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.store import ProjectStore
from application import cli


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(data / name)
    (data / "tags.csv").write_text("file,tags\na.png,dog\nb.png,giraffe\nc.png,cat;dog\n")
    (data / "classes.txt").write_text("dog\ncat\n")
    return data


def test_init_reads_classes_from_a_file_and_reports_each_skipped_entry_once(tmp_path, capsys, caplog):
    data = _data(tmp_path)
    project = tmp_path / "p"
    argv = ["init", str(project), "--classes", str(data / "classes.txt"), "--images", str(data)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("giraffe") == 1 and "giraffe" not in caplog.text
    assert "1 dataset entry skipped" in out and "added 2 images" in out
    with ProjectStore.open(project) as store:
        assert store.classes == ["dog", "cat"]
        assert [(r.file_name, r.tags) for r in store.list_images()] == [
            ("images/a.png", ("dog",)),
            ("images/c.png", ("dog", "cat")),
        ]


def test_init_strict_stops_and_skip_bad_is_an_alias_of_the_default(tmp_path, capsys, caplog):
    data = _data(tmp_path)
    strict = tmp_path / "strict"
    assert cli.main(["init", str(strict), "--classes", "dog,cat", "--images", str(data), "--strict"]) == 2
    assert not strict.exists() and caplog.text.count("giraffe") == 1
    alias = tmp_path / "alias"
    assert cli.main(["init", str(alias), "--classes", "dog,cat", "--images", str(data), "--skip-bad"]) == 0
    assert "--skip-bad is the default" in capsys.readouterr().out
    with ProjectStore.open(alias) as store:
        assert len(store.list_images()) == 2


def test_init_with_new_classes_adds_unknown_tags_despite_a_class_file(tmp_path):
    data = _data(tmp_path)
    project = tmp_path / "p"
    argv = ["init", str(project), "--classes", "dog,cat", "--images", str(data), "--allow-new-classes"]
    assert cli.main(argv) == 0
    with ProjectStore.open(project) as store:
        assert store.classes == ["dog", "cat", "giraffe"] and len(store.list_images()) == 3


@pytest.mark.parametrize("extra", [[], ["--tags", "tags.csv"]])
def test_several_tag_files_in_a_dataset_folder_are_named(tmp_path, caplog, extra):
    data = _data(tmp_path)
    (data / "tags.json").write_text('{"a.png": ["dog"]}')
    argv = ["init", str(tmp_path / "p"), "--classes", "dog,cat", "--images", str(data)]
    argv += [extra[0], str(data / extra[1])] if extra else []
    rc = cli.main(argv)
    if extra:
        assert rc == 0
    else:
        assert rc == 2 and "tags.csv, tags.json" in caplog.text


def test_transparent_images_get_one_note_line(tmp_path, capsys):
    data = _data(tmp_path)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(data / "a.png")
    assert cli.main(["init", str(tmp_path / "p"), "--classes", "dog,cat", "--images", str(data)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "transparency" in line]
    assert notes == ["note: 1 image(s) with transparency are composited over white: a.png"]
