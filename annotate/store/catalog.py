"""The catalogue of a project: its classes, its images and their tags, reading labels, and the audit log.

:class:`ProjectCatalog` is the read side of :class:`annotate.store.ProjectStore` plus what only grows the
project (creating it, adding classes and images); the store adds versioned label edits and undo/redo on top.
Image files are placed by :mod:`annotate.store.paths` (never outside the root; files from elsewhere are
copied to ``root/images/``); two names that differ only in case or suffix are refused.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from annotate.images import image_sha256, image_size
from annotate.images import load_image as _load_image_file
from annotate.rle import decode_rle
from annotate.store.db import Database
from annotate.store.layout import ProjectLayout
from annotate.store.paths import (
    DB_NAME,
    IMAGES_DIR,
    check_relative_name,
    place_image,
    resolve_inside,
)
from annotate.store.pending import has_stale_journals, recover_placements
from annotate.store.protect import REMOVED_DIR, OwnFiles
from annotate.store.records import (
    IMAGE_COLUMNS,
    INSTANCE_COLUMNS,
    STATUSES,
    Change,
    ImageRecord,
    InstanceRecord,
    check_class_name,
    check_status,
    check_user,
    image_record,
    instance_record,
    utc_now,
)
from annotate.store.schema import name_key
from annotate.store.semantic import paint_semantic
from core.files import atomic_copy

logger = logging.getLogger(__name__)

_Catalog = TypeVar("_Catalog", bound="ProjectCatalog")


class ProjectCatalog(Database):
    """Classes, images and stored labels of the project at ``root`` (open with ``create`` / ``open``)."""

    def __init__(self, root: str | os.PathLike, *, busy_timeout: float = 30.0, create: bool = False) -> None:
        """Open the database of ``root`` (use :meth:`create` / :meth:`open`)."""
        self.root = Path(root).resolve()
        super().__init__(self.root / DB_NAME, busy_timeout=busy_timeout, create=create)
        if has_stale_journals(self.root):
            try:
                self._recover_placements()
            except BaseException:
                self.close()
                raise

    def _recover_placements(self) -> None:
        """Delete image files that a killed run copied in but never registered (under the write lock, so a run
        still placing files is waited for)."""

        def known(name: str) -> bool:
            return (
                self._db.execute("SELECT 1 FROM images WHERE file_name = ?", (name,)).fetchone() is not None
            )

        with self.transaction():
            recover_placements(self.root, known)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(
        cls: type[_Catalog], root: str | os.PathLike, classes: Sequence[str], **kwargs: Any
    ) -> _Catalog:
        """Create a project folder (may exist, but must not hold a project) with the given class names."""
        root = Path(root)
        if (root / DB_NAME).exists():
            raise ValueError(f"{root / DB_NAME}: a project already exists here")
        names = [check_class_name(name) for name in classes]
        if not names:
            raise ValueError("a project needs at least one class")
        duplicates = sorted({n for n in names if [m.lower() for m in names].count(n.lower()) > 1})
        if duplicates:
            raise ValueError(f"duplicate class names: {duplicates}")
        root.mkdir(parents=True, exist_ok=True)
        (root / IMAGES_DIR).mkdir(exist_ok=True)
        store = cls(root, create=True, **kwargs)
        try:
            with store.transaction():
                if store._db.execute("SELECT COUNT(*) FROM classes").fetchone()[0]:
                    raise ValueError(f"{store.db_path}: a project already exists here")
                store._db.executemany(
                    "INSERT INTO classes (id, name) VALUES (?, ?)", list(enumerate(names, 1))
                )
                store._db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("format", "dhr-label project"), ("created_at", utc_now())],
                )
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open(cls: type[_Catalog], root: str | os.PathLike, **kwargs: Any) -> _Catalog:
        """Open an existing project (migrating an older database to the current schema); never creates one.

        Raises:
            FileNotFoundError: no project database. annotate.store.health.DamagedProject: an empty, random,
            truncated or foreign database file (left untouched).
        """
        path = Path(root) / DB_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no project here (create one with `dhr init`)")
        return cls(root, create=False, **kwargs)

    # ------------------------------------------------------------------ classes
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
        name = check_class_name(name)
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
        user = check_user(user)
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"{source}: image file not found")
        file_name, target, real = place_image(self.root, source, copy=copy, dest_name=dest_name)
        copied: Path | None = None
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
            tag_ids = self._tag_ids(f"image {file_name!r}", tags, allow_new_classes, allow_empty_tags)
            if target != real and not target.exists():
                self.will_place([file_name])
                atomic_copy(real, target)
                copied = target
            elif target != real and image_sha256(target) != digest:
                raise ValueError(f"{source}: duplicate image name: {target} exists with different content")
            try:
                now = utc_now()
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

    def lookup_image(self, name_or_id: str | int) -> ImageRecord:
        """The image named ``name_or_id``: its id, its stored name (``images/a.jpg``) or its name as added
        (``a.jpg``); ValueError naming it when the project has no such image."""
        text = str(name_or_id).strip()
        if text.isdigit():
            with self._lock:
                row = self._db.execute("SELECT id FROM images WHERE id = ?", (int(text),)).fetchone()
            if row is not None:
                return self.image(row[0])
        for candidate in (text, f"{IMAGES_DIR}/{text}"):
            try:
                record = self.find_image(candidate)
            except ValueError:
                record = None
            if record is not None:
                return record
        raise ValueError(f"{self.root}: no image {text!r} in the project")

    def remove_images(self, image_ids: Sequence[int], *, user: str = "system") -> list[str]:
        """Remove images from the project in one transaction; returns their names.

        Their rows, tags, instances and history go; the change log keeps each one's name, hash, status and
        instances (class, RLE counts, score, source), and a file the project holds in ``images/`` is moved to
        ``removed/<time>/`` rather than deleted. On any failure nothing is removed and moved files go back.
        """
        user = check_user(user)
        moved: list[tuple[Path, Path]] = []
        stamp = time.strftime("%Y%m%d-%H%M%S")
        names: list[str] = []
        try:
            with self.transaction():
                for image_id in dict.fromkeys(int(i) for i in image_ids):
                    row = self._image_row(image_id)
                    kept = self._db.execute(
                        "SELECT class_id, counts, score, source, needs_review, reason FROM instances "
                        "WHERE image_id = ? ORDER BY id",
                        (row[0],),
                    ).fetchall()
                    self._db.execute("DELETE FROM images WHERE id = ?", (row[0],))
                    detail = {"file_name": row[1], "sha256": row[4], "status": row[5], "instances": kept}
                    self._log(row[0], row[7], user, "remove_image", detail)
                    names.append(row[1])
                    source = self.resolve(row[1])
                    if row[1].startswith(IMAGES_DIR + "/") and (source.exists() or source.is_symlink()):
                        target = self.root / REMOVED_DIR / stamp / row[1]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        if target.exists():
                            raise ValueError(f"{target}: exists already; nothing was removed")
                        os.replace(source, target)
                        moved.append((source, target))
        except BaseException:
            for source, target in reversed(moved):
                try:
                    os.replace(target, source)
                except OSError as error:  # pragma: no cover - the file is still in the trash, named here
                    logger.error("%s: could not be moved back to %s: %s", target, source, error)
            raise
        return names

    def _image_row(self, image_id: int) -> tuple:
        """The :data:`IMAGE_COLUMNS` row of an image (ValueError if the id is unknown)."""
        row = self._db.execute(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?", (int(image_id),)
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
        return [image_record(row, tags.get(row[0], []), names) for row in rows]

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
            check_status(value)
        where = f"WHERE status IN ({','.join('?' * len(statuses))})" if statuses else ""
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {IMAGE_COLUMNS} FROM images {where} ORDER BY {orders[order]}", statuses
            ).fetchall()
            return self._records(rows) if rows else []

    def status_counts(self) -> dict[str, int]:
        """Number of images per status (every status present, zeros included)."""
        with self._lock:
            counts = dict(self._db.execute("SELECT status, COUNT(*) FROM images GROUP BY status").fetchall())
        return {status: int(counts.get(status, 0)) for status in STATUSES}

    @property
    def layout(self) -> ProjectLayout:
        """Where the project's caches, outputs and training rounds live (:class:`ProjectLayout`)."""
        return ProjectLayout(self.root)

    def resolve(self, file_name: str) -> Path:
        """Absolute path of a root-relative name, refusing anything that leads outside the root."""
        return resolve_inside(self.root, file_name)

    def image_path(self, image_id: int) -> Path:
        """Absolute path of an image file; never outside the root (ValueError otherwise)."""
        with self._lock:
            file_name = self._image_row(image_id)[1]
        return self.resolve(file_name)

    def load_image(self, image_id: int, *, verify: bool = True) -> np.ndarray:
        """Pixels of an image: (H, W, 3) uint8 RGB, EXIF rotation applied.

        With ``verify`` the file's SHA-256 must still be the one recorded when it was added
        (:class:`annotate.images.ImageChanged`, naming the file, otherwise): the labels were drawn on those pixels.
        """
        with self._lock:
            row = self._image_row(image_id)
        return _load_image_file(self.resolve(row[1]), sha256=row[4] if verify else None)

    def changed_images(self, records: Sequence[ImageRecord] | None = None) -> list[str]:
        """Names of the images (all, or ``records``) whose file is missing or no longer has its recorded SHA-256."""
        changed = []
        for record in self.list_images(order="id") if records is None else records:
            path = self.resolve(record.file_name)
            if not path.is_file() or image_sha256(path) != record.sha256:
                changed.append(record.file_name)
        return changed

    def check_image_files(self, records: Sequence[ImageRecord] | None = None) -> None:
        """Raise :class:`annotate.images.ImageChanged` naming the image files that changed since they were added."""
        from annotate.images import ImageChanged

        changed = self.changed_images(records)
        if changed:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            raise ImageChanged(
                f"{self.root}: {len(changed)} image file(s) missing or changed since they were added to the "
                f"project: {shown}; restore the originals or remove those images from the project"
            )

    def own_files(self) -> OwnFiles:
        """The project's own files (database, image folder, cache, registered images), which no output may replace."""
        with self._lock:
            names = [row[0] for row in self._db.execute("SELECT file_name FROM images")]
        return OwnFiles(self.root, names)

    # ------------------------------------------------------------------ instances
    def instances(self, image_id: int) -> list[InstanceRecord]:
        """Instances of an image, in saved order."""
        with self._reading() as db:
            row = self._image_row(image_id)
            rows = db.execute(
                f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE image_id = ? ORDER BY id", (row[0],)
            ).fetchall()
        return [instance_record(r, (row[3], row[2])) for r in rows]

    def snapshot(
        self, status: str | Sequence[str] | None = None
    ) -> tuple[list[ImageRecord], dict[int, list[InstanceRecord]]]:
        """Images (ordered by id) and their instances read in one consistent transaction (for exports)."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        with self._reading() as db:
            images = sorted(self.list_images(statuses or None, order="id"), key=lambda r: r.id)
            sizes = {r.id: (r.height, r.width) for r in images}
            by_image: dict[int, list[InstanceRecord]] = {r.id: [] for r in images}
            rows = db.execute(f"SELECT {INSTANCE_COLUMNS} FROM instances ORDER BY image_id, id").fetchall()
            for row in rows:
                if row[1] in sizes:
                    by_image[row[1]].append(instance_record(row, sizes[row[1]]))
        return images, by_image

    @staticmethod
    def instance_mask(record: InstanceRecord) -> np.ndarray:
        """(H, W) bool mask of a stored instance."""
        return decode_rle(record.rle)

    def semantic_mask(self, image_id: int) -> np.ndarray:
        """(H, W) uint8 class ids: instances painted in increasing score (highest on top), 0 = background."""
        record = self.image(image_id)
        return paint_semantic(self.instances(image_id), record.height, record.width)

    def _log(self, image_id: int | None, version: int | None, user: str, action: str, detail: dict) -> None:
        self._db.execute(
            "INSERT INTO changes (image_id, version, user, action, at, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (image_id, version, user, action, utc_now(), json.dumps(detail, sort_keys=True)),
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
