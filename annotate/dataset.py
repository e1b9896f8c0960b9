"""Tagged image datasets: reading image-level tags from CSV, JSON, VOC XML or COCO, and validating them.

Formats (``format="auto"`` picks by the path):

- **CSV** (``*.csv``): rows ``file,tags`` with ``;`` between tags; a ``file,tags`` header line is optional.
- **JSON mapping** (``*.json``): ``{"a.jpg": ["cat", "dog"], ...}`` (a ``"cat;dog"`` string also works), or
  ``{"classes": [...], "tags": {"a.jpg": [...]}}`` to give the class list.
- **VOC** (a folder of ``*.xml``): each file's ``<filename>`` and the ``<object><name>`` entries as tags.
- **COCO** (``*.json`` with ``images``, ``annotations``, ``categories``): an image's tags are the categories
  of its annotations; the class list is the categories, in id order.

The class list comes from ``classes`` if given, else from a ``classes.txt`` beside the tags (one name a line,
class ids in its order; a leading ``background`` line is class 0 and dropped), else from the file (COCO
categories, JSON ``classes``), else from the tags (sorted). With a class list, a tag outside it is an
``unknown_tag`` problem (the entry is skipped, or the run stops with ``strict``); only without one do new tags
become classes. ``load_dataset`` validates everything before any heavy work and reports every problem
at once: missing files, unreadable images, unknown tags, empty tags, duplicate names (equal up to case and
suffix, as the project store sees them) or unsafe names. Bad entries are
skipped with a warning listing them, or, with ``strict=True``, a ``DatasetError`` lists them all. Images with
transparency are listed in ``TaggedDataset.transparent`` (they are composited over white when read).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from annotate.store.schema import name_key
from core.errors import UserError

logger = logging.getLogger(__name__)

FORMATS = ("auto", "csv", "json", "voc", "coco")
PROBLEM_KINDS = (
    "format",  # the tags file itself is malformed (bad row, bad XML)
    "missing_file",
    "unreadable_image",
    "unknown_tag",
    "empty_tags",
    "duplicate_name",
    "unsafe_name",  # absolute path or ".." component: would leave the image folder
)
TAG_FILE_NAMES = ("tags.csv", "tags.json", "annotations.json", "instances.json", "Annotations")
CLASS_FILE_NAME = "classes.txt"
BACKGROUND_NAMES = ("background", "_background_", "__background__")
IMAGE_DIR_NAMES = ("images", "JPEGImages")


@dataclass(frozen=True)
class DatasetEntry:
    """One usable image: its name relative to the image folder, its path, and its tags (class names)."""

    file_name: str
    path: Path
    tags: tuple[str, ...]


@dataclass(frozen=True)
class DatasetProblem:
    """A problem with one entry (``file_name``) or with the tags source (``file_name`` None)."""

    kind: str
    file_name: str | None
    message: str

    def __str__(self) -> str:
        where = self.file_name if self.file_name is not None else "(tags file)"
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class TaggedDataset:
    """A validated dataset: ``entries`` sorted by file name, ``problems`` of the skipped ones."""

    image_dir: Path
    classes: list[str]
    entries: list[DatasetEntry]
    problems: list[DatasetProblem] = field(default_factory=list)
    source: Path | None = None
    class_source: str = "the tags"  # where the class list came from: a file, "the tags file", "the tags"
    transparent: list[str] = field(default_factory=list)  # images with alpha, composited over white when read
    checked: str = "decode"  # how deeply the images were checked: "decode", "header" or "none"

    def without(self, names: set[str], problems: Sequence[DatasetProblem] = ()) -> TaggedDataset:
        """This dataset less the entries named (``problems`` saying why are added to :attr:`problems`)."""
        entries = [e for e in self.entries if e.file_name not in names]
        return dataclasses.replace(self, entries=entries, problems=[*self.problems, *problems])

    def problem_report(self) -> list[str]:
        """One line per skipped entry, under a heading line (no lines when nothing was skipped)."""
        if not self.problems:
            return []
        count = len(self.problems)
        heading = f"{self.source}: {count} dataset entr{'y' if count == 1 else 'ies'} skipped:"
        return [heading] + [f"  - {p}" for p in self.problems]

    def notes(self) -> list[str]:
        """One line about what reading the images will change (transparency composited over white), if any."""
        if not self.transparent:
            return []
        count, shown = len(self.transparent), ", ".join(self.transparent[:5])
        more = f" and {count - 5} more" if count > 5 else ""
        return [f"note: {count} image(s) with transparency are composited over white: {shown}{more}"]

    def class_id(self, name: str) -> int:
        """Class id of a tag (index in ``classes`` + 1)."""
        return self.classes.index(name) + 1

    def tag_ids(self, entry: DatasetEntry) -> list[int]:
        """Sorted class ids (>= 1) of an entry's tags."""
        return sorted(self.class_id(t) for t in entry.tags)

    def targets(self) -> np.ndarray:
        """(M, N) float32 multi-hot matrix of the entries' tags (column j = class id j + 1)."""
        out = np.zeros((len(self.entries), len(self.classes)), dtype=np.float32)
        for i, entry in enumerate(self.entries):
            for t in entry.tags:
                out[i, self.classes.index(t)] = 1.0
        return out


class DatasetError(UserError, ValueError):
    """The dataset cannot be used (or has problems, in strict mode); ``problems`` lists them all."""

    def __init__(self, message: str, problems: Sequence[DatasetProblem] = ()) -> None:
        self.problems = list(problems)
        lines = [message] + [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------------------------------------- readers


def _split_tags(value) -> list[str]:
    """Tags from a ``"a;b"`` string or a list of strings, stripped, empty ones dropped."""
    if value is None:
        return []
    items = value.split(";") if isinstance(value, str) else list(value)
    return [str(t).strip() for t in items if str(t).strip()]


def _csv_text(path: Path) -> str:
    """The text of a tags CSV: UTF-8 (with or without a BOM) or UTF-16 with its BOM; DatasetError otherwise."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise DatasetError(
                f"{path}: not readable as UTF-16 text ({error.reason} at byte {error.start})"
            ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}, as Latin-1 or "
            "another legacy encoding writes it); save the tags file as UTF-8"
        ) from None


def _check_separator(path: Path, rows: list[list[str]]) -> None:
    """DatasetError when no line has a comma but lines hold tabs or ';': the file uses another separator."""
    lines = [row for row in rows if row and any(c.strip() for c in row)]
    if not lines or any(len(row) > 1 for row in lines):
        return
    for separator, name in (("\t", "tab"), (";", "semicolon")):
        if any(separator in row[0] for row in lines):
            raise DatasetError(
                f"{path}: no line has a comma between file and tags; the file looks {name}-separated. "
                "Write each line as file,tag1;tag2 (a comma after the file, ';' between tags)"
            )


def read_csv_tags(path: Path) -> tuple[list[tuple[str, list[str]]], list[DatasetProblem]]:
    """Rows ``file,tags`` of a CSV file -> ([(file_name, tags)], problems).

    The file is UTF-8 (a BOM is allowed) or UTF-16 with a BOM; another encoding, or a file separated by tabs
    or ``;`` instead of a comma, is a :class:`DatasetError` naming the file.
    """
    rows: list[tuple[str, list[str]]] = []
    problems: list[DatasetProblem] = []
    table = list(csv.reader(io.StringIO(_csv_text(path), newline="")))
    _check_separator(path, table)
    for line_no, row in enumerate(table, start=1):
        if not row or all(not c.strip() for c in row):
            continue
        if line_no == 1 and [c.strip().lower() for c in row[:2]] == ["file", "tags"]:
            continue
        if len(row) > 2:
            problems.append(
                DatasetProblem(
                    "format",
                    row[0].strip() or None,
                    f"{path.name} line {line_no}: {len(row)} columns, expected 2 (file,tags)",
                )
            )
            continue
        rows.append((row[0].strip(), _split_tags(row[1] if len(row) > 1 else "")))
    return rows, problems


def read_json_tags(
    path: Path, data: dict | None = None
) -> tuple[list[tuple[str, list[str]]], list[str] | None, list[DatasetProblem]]:
    """A JSON mapping file -> ([(file_name, tags)], class list or None, problems)."""
    data = _read_json(path) if data is None else data
    classes = None
    mapping = data
    if isinstance(data, dict) and "tags" in data and isinstance(data["tags"], dict):
        mapping = data["tags"]
        if "classes" in data:
            classes = [str(c) for c in data["classes"]]
    if not isinstance(mapping, dict):
        raise DatasetError(f"{path}: expected a JSON object mapping file names to tag lists")
    rows, problems = [], []
    for name, value in mapping.items():
        if not isinstance(value, (str, list)) or (
            isinstance(value, list) and not all(isinstance(v, str) for v in value)
        ):
            problems.append(
                DatasetProblem(
                    "format", str(name), f"tags must be a list of strings or a ';' string, got {value!r}"
                )
            )
            continue
        rows.append((str(name), _split_tags(value)))
    return rows, classes, problems


def read_coco_tags(
    path: Path, data: dict | None = None
) -> tuple[list[tuple[str, list[str]]], list[str], list[DatasetProblem]]:
    """A COCO file -> ([(file_name, categories of its annotations)], category names in id order, problems)."""
    data = _read_json(path) if data is None else data
    try:
        categories = sorted(data["categories"], key=lambda c: int(c["id"]))
        names = {int(c["id"]): str(c["name"]) for c in categories}
        images = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
    except (KeyError, TypeError, ValueError) as error:
        raise DatasetError(f"{path}: malformed COCO file ({error!r})") from error
    tags: dict[int, set[str]] = {i: set() for i in images}
    problems: list[DatasetProblem] = []
    for ann in data.get("annotations", []):
        try:
            image_id, cat = int(ann["image_id"]), int(ann["category_id"])
        except (KeyError, TypeError, ValueError):
            problems.append(
                DatasetProblem("format", None, f"annotation {ann.get('id', '?')} lacks image_id/category_id")
            )
            continue
        if image_id not in images:
            problems.append(
                DatasetProblem(
                    "format", None, f"annotation {ann.get('id', '?')} refers to unknown image id {image_id}"
                )
            )
            continue
        tags[image_id].add(names.get(cat, f"<category {cat}>"))
    rows = [(images[i], sorted(tags[i])) for i in sorted(images)]
    return rows, [names[k] for k in sorted(names)], problems


def read_voc_tags(folder: Path) -> tuple[list[tuple[str, list[str]]], list[DatasetProblem]]:
    """A folder of VOC XML files -> ([(filename, object names)], problems)."""
    import xml.etree.ElementTree as ET

    rows, problems = [], []
    files = sorted(folder.glob("*.xml"))
    if not files:
        raise DatasetError(f"{folder}: no VOC .xml files in this folder")
    for xml in files:
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as error:
            problems.append(DatasetProblem("format", xml.name, f"cannot parse XML: {error}"))
            continue
        name = (root.findtext("filename") or "").strip() or xml.stem + ".jpg"
        objects = sorted({(o.findtext("name") or "").strip() for o in root.iter("object")} - {""})
        rows.append((name, objects))
    return rows, problems


def read_class_file(path: str | Path) -> list[str]:
    """Class names of a class list file: one a line, blank lines and ``#`` comments skipped.

    A first line naming the background (``background``, ``_background_``, ``__background__``) is class 0 and
    dropped, so the other names keep their line numbers as class ids. Raises DatasetError naming the file
    when it is unreadable, empty or lists a name twice.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read the class list ({error})") from None
    names = [line.split("#", 1)[0].strip() for line in lines]
    names = [name for name in names if name]
    if names and names[0].lower() in BACKGROUND_NAMES:
        names = names[1:]
    if not names:
        raise DatasetError(f"{path}: the class list names no class")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise DatasetError(f"{path}: class list names {', '.join(twice)} more than once")
    return names


def class_file_beside(source: Path) -> Path | None:
    """The ``classes.txt`` beside a tags source (in the file's folder; for a VOC folder, in it or its parent)."""
    folders = [source, source.parent] if source.is_dir() else [source.parent]
    return next((f / CLASS_FILE_NAME for f in folders if (f / CLASS_FILE_NAME).is_file()), None)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from error


def detect_format(path: Path) -> str:
    """The format of a tags source path: "csv", "json", "voc" or "coco"."""
    if path.is_dir():
        return "voc"
    if path.suffix.lower() == ".csv":
        return "csv"
    if path.suffix.lower() == ".json":
        data = _read_json(path)
        is_coco = isinstance(data, dict) and all(
            isinstance(data.get(k), list) for k in ("images", "categories")
        )
        return "coco" if is_coco else "json"
    raise DatasetError(f"{path}: unknown tags format (expected .csv, .json or a folder of VOC .xml files)")


def resolve_sources(
    dataset: str | Path, tags: str | Path | None = None, images: str | Path | None = None
) -> tuple[Path, Path]:
    """(tags source, image folder) of a dataset given as a folder or a tags file.

    A folder is searched for ``tags.csv``, ``tags.json``, ``annotations.json``, ``instances.json`` or an
    ``Annotations`` folder (a DatasetError naming them when it holds more than one); images are in ``images/`` or ``JPEGImages/`` beside the tags when present, else in
    the dataset folder itself.
    """
    dataset = Path(dataset)
    if not dataset.exists():
        raise FileNotFoundError(f"dataset not found: {dataset}")
    if tags is not None:
        source = Path(tags)
    elif dataset.is_file():
        source = dataset
    else:
        candidates = [dataset / n for n in TAG_FILE_NAMES if (dataset / n).exists()]
        if not candidates and any(dataset.glob("*.xml")):
            candidates = [dataset]
        if not candidates:
            raise DatasetError(
                f"{dataset}: no tags found (looked for {', '.join(TAG_FILE_NAMES)} or *.xml files)"
            )
        if len(candidates) > 1:
            raise DatasetError(
                f"{dataset}: several tag sources ({', '.join(c.name for c in candidates)}); "
                "name the one to use with --tags"
            )
        source = candidates[0]
    if not source.exists():
        raise FileNotFoundError(f"tags source not found: {source}")
    if images is not None:
        image_dir = Path(images)
    else:
        base = dataset if dataset.is_dir() else dataset.parent
        image_dir = next((base / n for n in IMAGE_DIR_NAMES if (base / n).is_dir()), base)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    return source, image_dir


# ---------------------------------------------------------------------------------------------- validation


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return not name or p.is_absolute() or ".." in p.parts or (len(name) > 1 and name[1] == ":")


def load_dataset(
    dataset: str | Path,
    *,
    tags: str | Path | None = None,
    images: str | Path | None = None,
    classes: Sequence[str] | None = None,
    format: str = "auto",
    strict: bool = False,
    check_images: str = "decode",
    progress: bool = True,
    warn: bool = True,
    new_classes: bool = False,
) -> TaggedDataset:
    """Read and validate a tagged dataset; returns the usable entries and every problem found.

    ``dataset``: a folder (see ``resolve_sources``) or a tags file / VOC folder. ``classes``: the class list
    (tags outside it are unknown); default a ``classes.txt`` beside the tags, else the file's own list, else
    inferred from the tags. ``check_images``: "decode" reads every image (catches truncated files), "header"
    reads headers only, "none" only checks existence. ``strict``: raise ``DatasetError`` listing all problems
    instead of skipping bad entries. ``warn``: one ``UserWarning`` listing the skipped entries; callers that
    print :meth:`TaggedDataset.problem_report` themselves pass False, so each problem is shown once.
    ``new_classes``: tags outside the class list are appended to it (sorted) instead of being problems.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown tags format {format!r}; choose one of {FORMATS}")
    if check_images not in ("decode", "header", "none"):
        raise ValueError(f"check_images must be 'decode', 'header' or 'none', got {check_images!r}")
    source, image_dir = resolve_sources(dataset, tags, images)
    fmt = detect_format(source) if format == "auto" else format
    file_classes: list[str] | None = None
    if fmt == "csv":
        rows, problems = read_csv_tags(source)
    elif fmt == "json":
        rows, file_classes, problems = read_json_tags(source)
    elif fmt == "coco":
        rows, file_classes, problems = read_coco_tags(source)
    else:
        rows, problems = read_voc_tags(source)
    class_file = class_file_beside(source) if classes is None else None
    if classes is not None:
        class_list, class_source = [str(c).strip() for c in classes], "the given class list"
    elif class_file is not None:
        class_list, class_source = read_class_file(class_file), str(class_file)
    elif file_classes is not None:
        class_list, class_source = file_classes, str(source)
    else:
        class_list, class_source = sorted({t for _, ts in rows for t in ts}), "the tags"
    if new_classes:
        class_list += sorted({t for _, ts in rows for t in ts} - set(class_list))
    if len(set(class_list)) != len(class_list):
        raise DatasetError(f"{source}: duplicate class names in the class list {class_list}")
    if not class_list:
        raise DatasetError(f"{source}: no classes (no entry has a tag)", problems)
    known = set(class_list)
    seen: dict[str, str] = {}
    candidates: list[tuple[str, list[str]]] = []
    for name, row_tags in rows:
        key = name_key(
            name.replace("\\", "/")
        )  # a.jpg, A.JPG and a.png collide (case-insensitive disks, masks)
        if _unsafe(name):
            problems.append(
                DatasetProblem("unsafe_name", name, "absolute path or '..' would leave the image folder")
            )
            continue
        if key in seen:
            problems.append(
                DatasetProblem(
                    "duplicate_name",
                    name,
                    f"same name as {seen[key]!r} up to case and suffix; kept the first",
                )
            )
            continue
        seen[key] = name
        if not row_tags:
            problems.append(DatasetProblem("empty_tags", name, "no tags"))
            continue
        unknown = [t for t in row_tags if t not in known]
        if unknown:
            message = f"tags not in the class list ({class_source}): {', '.join(unknown)}"
            problems.append(DatasetProblem("unknown_tag", name, message))
            continue
        candidates.append((name, sorted(set(row_tags), key=class_list.index)))
    transparent: list[str] = []
    entries = _check_files(candidates, image_dir, check_images, problems, progress, transparent)
    entries.sort(key=lambda e: e.file_name)
    result = TaggedDataset(
        image_dir, class_list, entries, problems, source, class_source, sorted(transparent), check_images
    )
    if problems:
        summary = f"{source}: {len(problems)} problem(s); {len(entries)} usable image(s) of {len(rows)}"
        if strict:
            raise DatasetError(summary, problems)
        if warn:
            warnings.warn(
                summary + " (bad entries skipped):\n" + "\n".join(f"  - {p}" for p in problems), stacklevel=2
            )
    if not entries:
        raise DatasetError(f"{source}: no usable images", problems)
    return result


def undecodable(entries: Sequence[DatasetEntry], progress: bool = False) -> list[DatasetProblem]:
    """An ``unreadable_image`` problem for each entry whose image does not decode whole (e.g. a truncated
    JPEG that passed a header check)."""
    from tqdm.auto import tqdm

    from annotate.images import load_image

    problems = []
    for entry in tqdm(entries, desc="decoding images", unit="img", disable=not progress):
        try:
            load_image(entry.path)
        except (ValueError, OSError) as error:
            problems.append(DatasetProblem("unreadable_image", entry.file_name, str(error)))
    return problems


def _check_files(
    candidates,
    image_dir: Path,
    mode: str,
    problems: list[DatasetProblem],
    progress: bool,
    transparent: list[str],
) -> list[DatasetEntry]:
    """The candidates whose image file exists (and reads, unless ``mode`` is "none"); problems and the names of
    images with transparency are appended to the lists given."""
    from tqdm.auto import tqdm

    from annotate.images import has_transparency, image_size, load_image

    entries = []
    for name, row_tags in tqdm(
        candidates, desc="checking images", unit="img", disable=not progress or mode == "none"
    ):
        path = image_dir / name
        if not path.is_file():
            problems.append(DatasetProblem("missing_file", name, f"image file not found: {path}"))
            continue
        if mode != "none":
            try:
                (load_image if mode == "decode" else image_size)(path)
                if has_transparency(path):
                    transparent.append(name)
            except (ValueError, OSError) as error:
                problems.append(DatasetProblem("unreadable_image", name, str(error)))
                continue
        entries.append(DatasetEntry(name, path, tuple(row_tags)))
    return entries
