"""Tags CSVs in another separator or encoding are a format error naming the file, not empty tags."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotate.dataset import DatasetError, read_csv_tags


@pytest.mark.parametrize(
    "text, kind",
    [("file;tags\na.png;cat\nb.png;dog\n", "semicolon"), ("a.png\tcat;dog\nb.png\tdog\n", "tab")],
)
def test_another_separator_is_a_format_error(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "tags.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"^{path}: no line has a comma .* looks {kind}-separated"):
        read_csv_tags(path)


def test_utf16_with_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text("file,tags\nchâteau.png,cat;dog\n", encoding="utf-16")
    rows, problems = read_csv_tags(path)
    assert rows == [("château.png", ["cat", "dog"])] and problems == []


def test_latin1_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_bytes("château.png,cat\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=rf"^{path}: not UTF-8 text \(byte 0xe2 at offset 2"):
        read_csv_tags(path)


def test_plain_csv_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text("\ufefffile,tags\na.png, cat ; dog \nb.png,\n", encoding="utf-8")
    assert read_csv_tags(path) == ([("a.png", ["cat", "dog"]), ("b.png", [])], [])
