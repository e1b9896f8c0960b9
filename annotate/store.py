"""The annotation project: one folder with ``project.db`` (SQLite, WAL) and the images under it.

What is stored: images (path relative to the project root, displayed width and height, SHA-256 of the file),
the class list (class id = index + 1; 0 is background), image tags, instances (compressed RLE, class, score,
source, review flag and reason; area and XYWH bbox computed by pycocotools), a per-image status
(:data:`STATUSES`), a version number per image, who changed what and when (``changes``), and a per-image
undo/redo history.

Guarantees:

- **Crash safety.** Every edit is one SQLite transaction committed before the call returns (``synchronous=FULL``),
  so killing the process loses at most the edit in flight; the database is never half-written.
- **No silent overwrite.** Every image has a version, bumped by each edit. An edit passed
  ``expected_version`` that no longer matches (another session saved in between) is refused with
  :class:`VersionConflict`; the check and the write happen under SQLite's write lock, across processes too.
- **Threads.** One connection per store (``check_same_thread=False``) guarded by a re-entrant lock; several
  stores (processes, sessions) on one project wait for each other up to ``busy_timeout`` seconds.
- **Paths.** Image paths are relative to the root and never lead outside it: absolute paths, ``..`` and
  symlinks pointing outside are refused. Images from outside the root are copied to ``root/images/``.
- **Names.** Two images whose names differ only in case or suffix (``a.jpg`` / ``A.png``) are refused with an
  error naming both: they would collide on case-insensitive disks and in per-image outputs.
- **Tags.** Unknown tags are an error naming the image and the tag unless ``allow_new_classes=True`` (the tag is
  then appended to the class list); an empty tag list is an error unless ``allow_empty_tags=True``.
- **Undo/redo.** ``save_labels``, ``set_status`` and ``set_tags`` push the previous state; ``undo`` restores it
  as a new version, ``redo`` re-applies; a new edit clears the redo stack. The undo stack keeps the last
  ``history_limit`` states per image.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from annotate.files import atomic_copy
from annotate.images import image_sha256, image_size
from annotate.images import load_image as _load_image_file
from annotate.rle import RLE, decode_rle, encode_mask, normalize_rle, rle_area, rle_bbox
from annotate.store_schema import SCHEMA_VERSION, migrate, name_key, schema_version

logger = logging.getLogger(__name__)

STATUSES = ("new", "pseudo", "review", "accepted", "rejected")
"""Per-image status: new (untouched), pseudo (pseudo-labelled), review (in review), accepted, rejected."""
SOURCES = ("manual", "dhr", "sam", "grabcut", "import")
"""Where an instance came from: drawn by hand, DHR mask, SAM, GrabCut fallback, imported COCO file."""
DB_NAME = "project.db"
IMAGES_DIR = "images"
RESERVED_CLASS_NAMES = ("background", "ignore")


class VersionConflict(RuntimeError):
    """An edit based on an old version of an image: someone else saved the image in between."""

    def __init__(self, image_id: int, file_name: str, expected: int, current: int, by: str, at: str) -> None:
        self.image_id, self.file_name = image_id, file_name
        self.expected, self.current, self.changed_by, self.changed_at = expected, current, by, at
        super().__init__(
            f"image {image_id} ({file_name}) was changed by {by!r} at {at} (now version {current}); "
            f"this edit was based on version {expected} and was not saved. Reload the image and redo the edit."
        )


class HistoryEmpty(ValueError):
    """``undo`` with nothing to undo, or ``redo`` with nothing to redo."""


@dataclass(frozen=True)
class ImageRecord:
    """One image of the project. ``width``/``height`` are as displayed (EXIF rotation applied)."""

    id: int
    file_name: str  # POSIX path relative to the project root, e.g. "images/cat.jpg"
    width: int
    height: int
    sha256: str
    status: str
    confidence: float | None
    tags: tuple[str, ...]  # class names, in class-id order
    version: int
    tag_ids: tuple[int, ...] = ()
    updated_at: str = ""
    updated_by: str = ""


@dataclass(frozen=True)
class InstanceRecord:
    """One stored instance. ``rle`` is the compressed RLE dict of the full image size; bbox is COCO XYWH."""

    id: int
    image_id: int
    class_id: int
    rle: RLE
    score: float
    source: str
    needs_review: bool
    reason: str
    area: int = 0
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class NewInstance:
    """An instance to save: ``mask`` is an (H, W) bool array or an RLE dict of the image's size."""

    class_id: int
    mask: np.ndarray | RLE
    score: float = 1.0
    source: str = "manual"
    needs_review: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Change:
    """One line of the audit log: who did what to which image (and the version it produced), when."""

    id: int
    image_id: int | None
    version: int | None
    user: str
    action: str
    at: str
    detail: dict[str, Any]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _check_user(user: str) -> str:
    if not isinstance(user, str) or not user.strip():
        raise ValueError("user must be a non-empty string naming who makes the change")
    return user.strip()


def check_relative_name(file_name: str) -> str:
    """Validate an image path stored in a project: relative, POSIX, no ``..``; returns it normalised."""
    if not isinstance(file_name, str) or not file_name or "\0" in file_name:
        raise ValueError(f"invalid image path {file_name!r}")
    if (
        PurePosixPath(file_name).is_absolute()
        or PureWindowsPath(file_name).is_absolute()
        or (PureWindowsPath(file_name).drive)
    ):
        raise ValueError(
            f"image path {file_name!r} is absolute; project paths are relative to the project root"
        )
    parts = PurePosixPath(file_name).parts
    if ".." in parts:
        raise ValueError(f"image path {file_name!r} leads outside the project root ('..')")
    normal = "/".join(part for part in parts if part != ".")
    if not normal:
        raise ValueError(f"invalid image path {file_name!r}")
    return normal


class ProjectStore:
    """An open project. Create with :meth:`create`, open with :meth:`open`; close with :meth:`close`."""

    def __init__(
        self, root: str | os.PathLike, *, busy_timeout: float = 30.0, history_limit: int = 200
    ) -> None:
        """Open the database of ``root`` (use :meth:`create` / :meth:`open`)."""
        self.root = Path(root).resolve()
        self.db_path = self.root / DB_NAME
        self.history_limit = int(history_limit)
        self._lock = threading.RLock()
        self._depth = 0
        self._db = sqlite3.connect(
            str(self.db_path), isolation_level=None, check_same_thread=False, timeout=busy_timeout
        )
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("%s: WAL journal mode unavailable (got %s)", self.db_path, mode)
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            migrate(self._db, str(self.db_path))
        except BaseException:
            self._db.close()
            raise

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, root: str | os.PathLike, classes: Sequence[str], **kwargs: Any) -> ProjectStore:
        """Create a project folder (may exist, but must not hold a project) with the given class names."""
        root = Path(root)
        if (root / DB_NAME).exists():
            raise ValueError(f"{root / DB_NAME}: a project already exists here")
        names = [cls._check_class_name(name) for name in classes]
        if not names:
            raise ValueError("a project needs at least one class")
        duplicates = sorted({n for n in names if [m.lower() for m in names].count(n.lower()) > 1})
        if duplicates:
            raise ValueError(f"duplicate class names: {duplicates}")
        root.mkdir(parents=True, exist_ok=True)
        (root / IMAGES_DIR).mkdir(exist_ok=True)
        store = cls(root, **kwargs)
        try:
            with store.transaction():
                if store._db.execute("SELECT COUNT(*) FROM classes").fetchone()[0]:
                    raise ValueError(f"{store.db_path}: a project already exists here")
                store._db.executemany(
                    "INSERT INTO classes (id, name) VALUES (?, ?)", list(enumerate(names, 1))
                )
                store._db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("format", "dhr-label project"), ("created_at", _now())],
                )
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open(cls, root: str | os.PathLike, **kwargs: Any) -> ProjectStore:
        """Open an existing project (migrating an older database to the current schema)."""
        path = Path(root) / DB_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no project here (create one with `dhr init`)")
        return cls(root, **kwargs)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ProjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self._db)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several edits into one atomic write (``BEGIN IMMEDIATE`` ... ``COMMIT``); re-entrant.

        Everything inside is committed together or, on an exception, rolled back together. Other threads
        wait; other processes wait up to ``busy_timeout``.
        """
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                try:
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several SELECTs (joins the current transaction if any)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN")
            self._depth += 1
            try:
                yield self._db
            finally:
                self._depth -= 1
                if outer:
                    self._db.execute("COMMIT")

    # ------------------------------------------------------------------ classes
    @staticmethod
    def _check_class_name(name: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"invalid class name {name!r}")
        name = name.strip()
        if name.lower() in RESERVED_CLASS_NAMES:
            raise ValueError(f"class name {name!r} is reserved (class 0 is background, 255 is ignore)")
        if "," in name:
            raise ValueError(f"class name {name!r} must not contain a comma")
        return name

    @property
    def classes(self) -> list[str]:
        """Class names; class id = index + 1."""
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT name FROM classes ORDER BY id")]

    def class_id(self, name: str) -> int:
        """Class id of a class name (ValueError naming the known classes if absent)."""
        with self._lock:
            row = self._db.execute("SELECT id FROM classes WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ValueError(f"unknown class {name!r}; project classes are {self.classes}")
        return int(row[0])

    def add_class(self, name: str, *, user: str = "system") -> int:
        """Append a class (id = number of classes + 1); returns its id."""
        name = self._check_class_name(name)
        with self.transaction():
            known = {n.lower() for n in self.classes}
            if name.lower() in known:
                raise ValueError(f"class {name!r} already exists")
            new_id = len(known) + 1
            self._db.execute("INSERT INTO classes (id, name) VALUES (?, ?)", (new_id, name))
            self._log(None, None, user, "add_class", {"class_id": new_id, "name": name})
        return new_id

    def _tag_ids(
        self, image_label: str, tags: Sequence[str], allow_new_classes: bool, allow_empty: bool
    ) -> list[int]:
        """Resolve tag names to class ids (inside a transaction when new classes may be added)."""
        if isinstance(tags, str):
            raise TypeError(f"{image_label}: tags must be a sequence of class names, not a string")
        if not tags and not allow_empty:
            raise ValueError(
                f"{image_label}: empty tag list; give at least one class tag, or pass allow_empty_tags=True "
                "for a background-only image"
            )
        ids: list[int] = []
        for tag in tags:
            row = self._db.execute("SELECT id FROM classes WHERE name = ?", (str(tag).strip(),)).fetchone()
            if row is None:
                if not allow_new_classes:
                    raise ValueError(
                        f"{image_label}: unknown tag {tag!r}; project classes are {self.classes} "
                        "(pass allow_new_classes=True to add it)"
                    )
                row = (self.add_class(str(tag)),)
            if row[0] not in ids:
                ids.append(int(row[0]))
        return sorted(ids)

    # ------------------------------------------------------------------ images
    def _inside_root(self, path: Path) -> bool:
        return path == self.root or self.root in path.parents

    def add_image(
        self,
        path: str | os.PathLike,
        tags: Sequence[str],
        *,
        copy: bool = True,
        user: str = "system",
        allow_new_classes: bool = False,
        allow_empty_tags: bool = False,
        verify: bool = False,
        dest_name: str | None = None,
    ) -> int:
        """Register an image file; returns its id.

        A file already inside the project root is registered in place (a symlink must not lead outside the
        root); a file elsewhere is copied to ``root/images/<dest_name>`` (default: the file's own name; a
        relative path such as ``sub/a.jpg`` keeps a folder structure) with ``copy=True``, or refused.
        ``verify`` decodes the whole image to catch truncated files now (otherwise only the header is read).

        Raises:
            FileNotFoundError: no such file. ImageError: unreadable image. ValueError: path outside the root
            with ``copy=False``, escaping symlink, duplicate name, unknown or empty tags.
        """
        user = _check_user(user)
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"{source}: image file not found")
        lexical = Path(os.path.abspath(source))
        real = source.resolve(strict=True)
        copied: Path | None = None
        if self._inside_root(lexical) or self._inside_root(real):
            if not self._inside_root(real):
                raise ValueError(f"{source}: symlink leads outside the project root {self.root}")
            inside = lexical if self._inside_root(lexical) else real
            file_name = check_relative_name(inside.relative_to(self.root).as_posix())
            target = self.root / file_name
        else:
            if not copy:
                raise ValueError(
                    f"{source}: outside the project root {self.root}; pass copy=True to copy it in"
                )
            file_name = check_relative_name(f"{IMAGES_DIR}/{check_relative_name(dest_name or source.name)}")
            target = self.root / file_name
        label = f"image {file_name!r}"
        if file_name == DB_NAME or file_name.startswith(DB_NAME + "-"):
            raise ValueError(f"{source}: not an image")
        width, height = image_size(source)
        if verify:
            _load_image_file(source)
        digest = image_sha256(source)
        with self.transaction():
            clash = self._db.execute(
                "SELECT id, file_name FROM images WHERE name_key = ?", (name_key(file_name),)
            ).fetchone()
            if clash is not None:
                same = clash[1] == file_name
                raise ValueError(
                    f"{source}: duplicate image name: {file_name!r} "
                    + ("is already image" if same else f"collides with {clash[1]!r} (image")
                    + f" {clash[0]}{'' if same else ')'}; rename the file"
                )
            tag_ids = self._tag_ids(label, tags, allow_new_classes, allow_empty_tags)
            if target != real and not target.exists():
                atomic_copy(real, target)
                copied = target
            elif target != real and image_sha256(target) != digest:
                raise ValueError(f"{source}: duplicate image name: {target} exists with different content")
            try:
                now = _now()
                cursor = self._db.execute(
                    "INSERT INTO images (file_name, name_key, width, height, sha256, status, version, updated_at,"
                    " updated_by) VALUES (?, ?, ?, ?, ?, 'new', 1, ?, ?)",
                    (file_name, name_key(file_name), width, height, digest, now, user),
                )
                image_id = int(cursor.lastrowid)
                self._db.executemany(
                    "INSERT INTO image_tags (image_id, class_id) VALUES (?, ?)",
                    [(image_id, c) for c in tag_ids],
                )
                self._log(image_id, 1, user, "add_image", {"file_name": file_name, "tags": tag_ids})
            except BaseException:
                if copied is not None:
                    copied.unlink(missing_ok=True)
                raise
        return image_id

    def _image_row(self, image_id: int) -> sqlite3.Row | tuple:
        row = self._db.execute(
            "SELECT id, file_name, width, height, sha256, status, confidence, version, updated_at, updated_by "
            "FROM images WHERE id = ?",
            (int(image_id),),
        ).fetchone()
        if row is None:
            raise ValueError(f"no image with id {image_id} in project {self.root}")
        return row

    def _records(self, rows: list[tuple]) -> list[ImageRecord]:
        names = dict(self._db.execute("SELECT id, name FROM classes").fetchall())
        tags: dict[int, list[int]] = {}
        if len(rows) == 1:
            query = self._db.execute(
                "SELECT image_id, class_id FROM image_tags WHERE image_id = ? ORDER BY class_id",
                (rows[0][0],),
            )
        else:
            query = self._db.execute("SELECT image_id, class_id FROM image_tags ORDER BY image_id, class_id")
        for image_id, class_id in query:
            tags.setdefault(image_id, []).append(class_id)
        return [
            ImageRecord(
                id=row[0],
                file_name=row[1],
                width=row[2],
                height=row[3],
                sha256=row[4],
                status=row[5],
                confidence=row[6],
                tags=tuple(names[c] for c in tags.get(row[0], [])),
                version=row[7],
                tag_ids=tuple(tags.get(row[0], [])),
                updated_at=row[8],
                updated_by=row[9],
            )
            for row in rows
        ]

    def image(self, image_id: int) -> ImageRecord:
        """The record of one image (ValueError if the id is unknown)."""
        with self._reading():
            return self._records([self._image_row(image_id)])[0]

    def find_image(self, file_name: str) -> ImageRecord | None:
        """The image registered under ``file_name`` (relative to the root), or None."""
        with self._reading() as db:
            row = db.execute(
                "SELECT id FROM images WHERE file_name = ?", (check_relative_name(file_name),)
            ).fetchone()
            return None if row is None else self._records([self._image_row(row[0])])[0]

    def list_images(
        self, status: str | Sequence[str] | None = None, order: str = "name"
    ) -> list[ImageRecord]:
        """Images, optionally of some statuses, ordered by ``name``, ``id`` or ``confidence``.

        ``confidence`` puts the least confident first (images without a confidence last), for review.
        """
        orders = {
            "name": "file_name",
            "id": "id",
            "confidence": "confidence IS NULL, confidence, file_name",
        }
        if order not in orders:
            raise ValueError(f"unknown order {order!r}; choose from {sorted(orders)}")
        statuses = [status] if isinstance(status, str) else list(status or [])
        for value in statuses:
            if value not in STATUSES:
                raise ValueError(f"unknown status {value!r}; statuses are {STATUSES}")
        where = f"WHERE status IN ({','.join('?' * len(statuses))})" if statuses else ""
        with self._reading() as db:
            rows = db.execute(
                "SELECT id, file_name, width, height, sha256, status, confidence, version, updated_at, updated_by "
                f"FROM images {where} ORDER BY {orders[order]}",
                statuses,
            ).fetchall()
            return self._records(rows) if rows else []

    def status_counts(self) -> dict[str, int]:
        """Number of images per status (every status present, zeros included)."""
        with self._lock:
            counts = dict(self._db.execute("SELECT status, COUNT(*) FROM images GROUP BY status").fetchall())
        return {status: int(counts.get(status, 0)) for status in STATUSES}

    def resolve(self, file_name: str) -> Path:
        """Absolute path of a root-relative name, refusing anything that leads outside the root."""
        path = self.root / check_relative_name(file_name)
        real = path.resolve()
        if not self._inside_root(real):
            raise ValueError(f"{path}: leads outside the project root {self.root} (symlink)")
        return path

    def image_path(self, image_id: int) -> Path:
        """Absolute path of an image file; never outside the root (ValueError otherwise)."""
        with self._lock:
            file_name = self._image_row(image_id)[1]
        return self.resolve(file_name)

    def load_image(self, image_id: int) -> np.ndarray:
        """Pixels of an image: (H, W, 3) uint8 RGB, EXIF rotation applied."""
        return _load_image_file(self.image_path(image_id))

    # ------------------------------------------------------------------ instances
    def _instance_records(
        self, rows: Sequence[tuple], sizes: dict[int, tuple[int, int]]
    ) -> list[InstanceRecord]:
        return [
            InstanceRecord(
                id=row[0],
                image_id=row[1],
                class_id=row[2],
                rle={"size": list(sizes[row[1]]), "counts": row[3]},
                score=row[4],
                source=row[5],
                needs_review=bool(row[6]),
                reason=row[7],
                area=int(row[8]),
                bbox=tuple(json.loads(row[9])),
            )
            for row in rows
        ]

    _INSTANCE_COLUMNS = "id, image_id, class_id, counts, score, source, needs_review, reason, area, bbox"

    def instances(self, image_id: int) -> list[InstanceRecord]:
        """Instances of an image, in saved order."""
        with self._reading() as db:
            row = self._image_row(image_id)
            rows = db.execute(
                f"SELECT {self._INSTANCE_COLUMNS} FROM instances WHERE image_id = ? ORDER BY id", (row[0],)
            ).fetchall()
        return self._instance_records(rows, {row[0]: (row[3], row[2])})

    def snapshot(
        self, status: str | Sequence[str] | None = None
    ) -> tuple[list[ImageRecord], dict[int, list[InstanceRecord]]]:
        """Images (ordered by id) and their instances read in one consistent transaction (for exports)."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        with self._reading() as db:
            images = sorted(self.list_images(statuses or None, order="id"), key=lambda r: r.id)
            sizes = {r.id: (r.height, r.width) for r in images}
            by_image: dict[int, list[InstanceRecord]] = {r.id: [] for r in images}
            rows = db.execute(
                f"SELECT {self._INSTANCE_COLUMNS} FROM instances ORDER BY image_id, id"
            ).fetchall()
            for record in self._instance_records([r for r in rows if r[1] in sizes], sizes):
                by_image[record.image_id].append(record)
        return images, by_image

    @staticmethod
    def instance_mask(record: InstanceRecord) -> np.ndarray:
        """(H, W) bool mask of a stored instance."""
        return decode_rle(record.rle)

    def semantic_mask(self, image_id: int) -> np.ndarray:
        """(H, W) uint8 class ids: instances painted in increasing score (highest on top), 0 = background."""
        record = self.image(image_id)
        return paint_semantic(self.instances(image_id), record.height, record.width)

    def _prepare(self, image_id: int, instances: Sequence[NewInstance]) -> list[tuple]:
        """Validate and encode instances for an image; returns rows for the instances table.

        The encoding runs outside the lock so other threads are not held up by large masks.
        """
        with self._reading() as db:
            image_id, file_name, width, height = self._image_row(image_id)[:4]
            n_classes = db.execute("SELECT COUNT(*) FROM classes").fetchone()[0]
        prepared = []
        for index, instance in enumerate(instances):
            where = f"image {image_id} ({file_name}), instance {index}"
            if not isinstance(instance, NewInstance):
                raise TypeError(f"{where}: expected NewInstance, got {type(instance).__name__}")
            class_id = instance.class_id
            if isinstance(class_id, (bool, np.bool_)) or not isinstance(class_id, (int, np.integer)):
                raise TypeError(f"{where}: class_id must be an int, got {class_id!r}")
            if not 1 <= int(class_id) <= n_classes:
                raise ValueError(f"{where}: class_id {class_id} outside 1..{n_classes}")
            score = float(instance.score)
            if not math.isfinite(score):
                raise ValueError(f"{where}: score {instance.score!r} is not finite")
            if instance.source not in SOURCES:
                raise ValueError(f"{where}: unknown source {instance.source!r}; sources are {SOURCES}")
            if isinstance(instance.mask, dict):
                try:
                    rle = normalize_rle(instance.mask, (height, width))
                except ValueError as error:
                    raise ValueError(f"{where}: {error}") from error
            else:
                mask = np.asarray(instance.mask)
                if mask.shape != (height, width):
                    raise ValueError(
                        f"{where}: mask shape {mask.shape} does not match the image ({height}, {width})"
                    )
                rle = encode_mask(mask)
            area = rle_area(rle)
            if area == 0:
                logger.info("%s: empty mask dropped", where)
                continue
            prepared.append(
                (
                    int(class_id),
                    rle["counts"],
                    score,
                    instance.source,
                    int(bool(instance.needs_review)),
                    str(instance.reason),
                    area,
                    json.dumps(rle_bbox(rle)),
                )
            )
        return prepared

    # ------------------------------------------------------------------ edits
    def _log(self, image_id: int | None, version: int | None, user: str, action: str, detail: dict) -> None:
        self._db.execute(
            "INSERT INTO changes (image_id, version, user, action, at, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (image_id, version, user, action, _now(), json.dumps(detail, sort_keys=True)),
        )

    def _check_version(self, image_id: int, expected_version: int | None) -> tuple:
        row = self._image_row(image_id)
        if expected_version is not None and int(expected_version) != row[7]:
            raise VersionConflict(row[0], row[1], int(expected_version), row[7], row[9], row[8])
        return row

    def _bump(self, row: tuple, user: str, action: str, detail: dict) -> int:
        version = row[7] + 1
        self._db.execute(
            "UPDATE images SET version = ?, updated_at = ?, updated_by = ? WHERE id = ?",
            (version, _now(), user, row[0]),
        )
        self._log(row[0], version, user, action, detail)
        return version

    def _state(self, row: tuple, kind: str) -> dict:
        """Current state of an image for the history: status + confidence (+ instances or tags by ``kind``)."""
        state: dict[str, Any] = {"kind": kind, "status": row[5], "confidence": row[6]}
        if kind == "labels":
            state["instances"] = [
                list(r)
                for r in self._db.execute(
                    "SELECT class_id, counts, score, source, needs_review, reason, area, bbox FROM instances "
                    "WHERE image_id = ? ORDER BY id",
                    (row[0],),
                )
            ]
        elif kind == "tags":
            state["tags"] = [
                r[0]
                for r in self._db.execute("SELECT class_id FROM image_tags WHERE image_id = ?", (row[0],))
            ]
        return state

    def _apply(self, image_id: int, state: dict) -> None:
        self._db.execute(
            "UPDATE images SET status = ?, confidence = ? WHERE id = ?",
            (state["status"], state["confidence"], image_id),
        )
        if state["kind"] == "labels":
            self._db.execute("DELETE FROM instances WHERE image_id = ?", (image_id,))
            self._db.executemany(
                "INSERT INTO instances (image_id, class_id, counts, score, source, needs_review, reason, area, bbox)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(image_id, *values) for values in state["instances"]],
            )
        elif state["kind"] == "tags":
            self._db.execute("DELETE FROM image_tags WHERE image_id = ?", (image_id,))
            self._db.executemany(
                "INSERT INTO image_tags (image_id, class_id) VALUES (?, ?)",
                [(image_id, c) for c in state["tags"]],
            )

    def _push(self, image_id: int, stack: str, state: dict) -> None:
        self._db.execute(
            "INSERT INTO history (image_id, stack, state, created_at) VALUES (?, ?, ?, ?)",
            (image_id, stack, json.dumps(state), _now()),
        )
        if stack == "undo":
            self._db.execute(
                "DELETE FROM history WHERE image_id = ? AND stack = 'undo' AND id NOT IN "
                "(SELECT id FROM history WHERE image_id = ? AND stack = 'undo' ORDER BY id DESC LIMIT ?)",
                (image_id, image_id, self.history_limit),
            )

    def _record_edit(self, row: tuple, kind: str) -> None:
        """Push the state before an edit onto the undo stack and clear the redo stack."""
        self._push(row[0], "undo", self._state(row, kind))
        self._db.execute("DELETE FROM history WHERE image_id = ? AND stack = 'redo'", (row[0],))

    def save_labels(
        self,
        image_id: int,
        instances: Sequence[NewInstance],
        *,
        user: str,
        expected_version: int | None = None,
        status: str | None = None,
        confidence: float | None = None,
    ) -> int:
        """Replace the instances of an image (and optionally its status / confidence); returns the new version.

        Masks are (H, W) bool arrays or RLE dicts of the image's size; empty masks are dropped (logged).
        ``expected_version`` (the version the edit was based on) makes a stale save raise
        :class:`VersionConflict` without writing anything; None skips the check.
        """
        user = _check_user(user)
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; statuses are {STATUSES}")
        if confidence is not None and not math.isfinite(float(confidence)):
            raise ValueError(f"confidence {confidence!r} is not finite")
        prepared = self._prepare(image_id, instances)
        with self.transaction():
            row = self._check_version(image_id, expected_version)
            self._record_edit(row, "labels")
            new_status = row[5] if status is None else status
            new_confidence = row[6] if confidence is None else float(confidence)
            self._apply(
                row[0],
                {"kind": "labels", "status": new_status, "confidence": new_confidence, "instances": prepared},
            )
            return self._bump(row, user, "save_labels", {"instances": len(prepared), "status": new_status})

    def set_status(
        self, image_id: int, status: str, *, user: str, expected_version: int | None = None
    ) -> int:
        """Change the status of an image; returns the new version (the current one if unchanged)."""
        user = _check_user(user)
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; statuses are {STATUSES}")
        with self.transaction():
            row = self._check_version(image_id, expected_version)
            if row[5] == status:
                return row[7]
            self._record_edit(row, "status")
            self._db.execute("UPDATE images SET status = ? WHERE id = ?", (status, row[0]))
            return self._bump(row, user, "set_status", {"from": row[5], "to": status})

    def set_tags(
        self,
        image_id: int,
        tags: Sequence[str],
        *,
        user: str,
        expected_version: int | None = None,
        allow_new_classes: bool = False,
        allow_empty_tags: bool = False,
    ) -> int:
        """Replace the tags (class names) of an image; returns the new version."""
        user = _check_user(user)
        with self.transaction():
            row = self._check_version(image_id, expected_version)
            tag_ids = self._tag_ids(f"image {row[1]!r}", tags, allow_new_classes, allow_empty_tags)
            self._record_edit(row, "tags")
            self._apply(row[0], {"kind": "tags", "status": row[5], "confidence": row[6], "tags": tag_ids})
            return self._bump(row, user, "set_tags", {"tags": tag_ids})

    def _move(self, image_id: int, source: str, target: str, user: str, expected_version: int | None) -> int:
        user = _check_user(user)
        with self.transaction():
            row = self._check_version(image_id, expected_version)
            entry = self._db.execute(
                "SELECT id, state FROM history WHERE image_id = ? AND stack = ? ORDER BY id DESC LIMIT 1",
                (row[0], source),
            ).fetchone()
            if entry is None:
                raise HistoryEmpty(
                    f"image {row[0]} ({row[1]}): nothing to {'undo' if source == 'undo' else 'redo'}"
                )
            state = json.loads(entry[1])
            self._db.execute("DELETE FROM history WHERE id = ?", (entry[0],))
            self._push(row[0], target, self._state(row, state["kind"]))
            self._apply(row[0], state)
            return self._bump(row, user, source, {"kind": state["kind"], "status": state["status"]})

    def undo(self, image_id: int, *, user: str, expected_version: int | None = None) -> int:
        """Restore the state before the last edit (as a new version); HistoryEmpty if there is none."""
        return self._move(image_id, "undo", "redo", user, expected_version)

    def redo(self, image_id: int, *, user: str, expected_version: int | None = None) -> int:
        """Re-apply the last undone edit (as a new version); HistoryEmpty if there is none."""
        return self._move(image_id, "redo", "undo", user, expected_version)

    def can_undo(self, image_id: int) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM history WHERE image_id = ? AND stack = 'undo' LIMIT 1", (int(image_id),)
                ).fetchone()
                is not None
            )

    def can_redo(self, image_id: int) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM history WHERE image_id = ? AND stack = 'redo' LIMIT 1", (int(image_id),)
                ).fetchone()
                is not None
            )

    def changes(self, image_id: int | None = None, limit: int | None = None) -> list[Change]:
        """Audit log, newest first: every edit with its user, time and resulting version."""
        where, params = ("WHERE image_id = ?", [int(image_id)]) if image_id is not None else ("", [])
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, image_id, version, user, action, at, detail FROM changes {where} ORDER BY id DESC{tail}",
                params,
            ).fetchall()
        return [Change(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def integrity_check(self) -> str:
        """SQLite ``PRAGMA integrity_check`` result ("ok" when the file is sound)."""
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])


def paint_semantic(instances: Sequence[InstanceRecord], height: int, width: int) -> np.ndarray:
    """(H, W) uint8 class-id map: instances painted in increasing score, so the most confident is on top."""
    semantic = np.zeros((height, width), np.uint8)
    for record in sorted(instances, key=lambda r: (r.score, r.id)):
        x, y, w, h = (int(round(v)) for v in record.bbox)
        window = (
            slice(y, y + h),
            slice(x, x + w),
        )  # paint inside the box only: the rest of the mask is empty
        semantic[window][decode_rle(record.rle)[window]] = record.class_id
    return semantic


__all__ = [
    "STATUSES",
    "SOURCES",
    "SCHEMA_VERSION",
    "Change",
    "HistoryEmpty",
    "ImageRecord",
    "InstanceRecord",
    "NewInstance",
    "ProjectStore",
    "VersionConflict",
    "check_relative_name",
    "paint_semantic",
]
