"""SQLite schema of a project database and its migrations.

The schema version is ``PRAGMA user_version``. ``MIGRATIONS[i]`` upgrades a database from version ``i`` to
``i + 1``; :func:`migrate` applies the missing ones in order, each in its own transaction together with the
new ``user_version``, so a database is always at one whole version (never half-migrated). A new schema change
is one more function appended to the list; released functions are never edited.

Version 1: meta, classes, images (file, size, content hash, status, version, who and when), image_tags,
instances (RLE counts, class, score, source, review flag and reason), changes (audit log).
Version 2: images.confidence (for review ordering); instances.area and instances.bbox (computed by pycocotools,
backfilled for existing rows); the per-image undo/redo history table;
images.name_key (duplicate-name check); indexes.
Version 3: instances.iscrowd (COCO crowd regions: kept through import and export, ignored in semantic masks).
Version 4: instances.predicted_iou (the segmenter's own predicted IoU of the mask, apart from the ``score`` rating;
NULL for masks no segmenter predicted).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import PurePosixPath

from annotate.rle import rle_area, rle_bbox
from core.errors import UserError


class SchemaTooNew(UserError, RuntimeError):
    """The project database was written by a later release of this program."""


def _v1(db: sqlite3.Connection) -> None:
    """Initial schema."""
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("CREATE TABLE classes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    db.execute(
        """CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            file_name TEXT NOT NULL UNIQUE,
            width INTEGER NOT NULL CHECK (width > 0),
            height INTEGER NOT NULL CHECK (height > 0),
            sha256 TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'new'
                CHECK (status IN ('new', 'pseudo', 'review', 'accepted', 'rejected')),
            version INTEGER NOT NULL DEFAULT 1,
            updated_at TEXT NOT NULL,
            updated_by TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE image_tags (
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            class_id INTEGER NOT NULL REFERENCES classes(id),
            PRIMARY KEY (image_id, class_id)
        )"""
    )
    db.execute(
        """CREATE TABLE instances (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            class_id INTEGER NOT NULL REFERENCES classes(id),
            counts TEXT NOT NULL,
            score REAL NOT NULL,
            source TEXT NOT NULL,
            needs_review INTEGER NOT NULL DEFAULT 0,
            reason TEXT NOT NULL DEFAULT ''
        )"""
    )
    db.execute(
        """CREATE TABLE changes (
            id INTEGER PRIMARY KEY,
            image_id INTEGER,
            version INTEGER,
            user TEXT NOT NULL,
            action TEXT NOT NULL,
            at TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        )"""
    )


def _v2(db: sqlite3.Connection) -> None:
    """Review confidence, cached area/bbox per instance, undo/redo history, indexes."""
    db.execute("ALTER TABLE images ADD COLUMN confidence REAL")
    db.execute("ALTER TABLE instances ADD COLUMN area INTEGER")
    db.execute("ALTER TABLE instances ADD COLUMN bbox TEXT")
    db.execute("ALTER TABLE images ADD COLUMN name_key TEXT")
    db.execute(
        """CREATE TABLE history (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            stack TEXT NOT NULL CHECK (stack IN ('undo', 'redo')),
            state TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX instances_by_image ON instances (image_id, id)")
    db.execute("CREATE INDEX history_by_image ON history (image_id, stack, id)")
    db.execute("CREATE INDEX changes_by_image ON changes (image_id, id)")
    db.execute("CREATE INDEX images_by_status ON images (status)")
    db.execute("CREATE INDEX images_by_name_key ON images (name_key)")
    for image_id, file_name in db.execute("SELECT id, file_name FROM images").fetchall():
        db.execute("UPDATE images SET name_key = ? WHERE id = ?", (name_key(file_name), image_id))
    rows = db.execute(
        "SELECT instances.id, instances.counts, images.height, images.width "
        "FROM instances JOIN images ON images.id = instances.image_id"
    ).fetchall()
    for instance_id, counts, height, width in rows:
        rle = {"size": [height, width], "counts": counts}
        db.execute(
            "UPDATE instances SET area = ?, bbox = ? WHERE id = ?",
            (rle_area(rle), json.dumps(rle_bbox(rle)), instance_id),
        )


def _v3(db: sqlite3.Connection) -> None:
    """Crowd regions: instances.iscrowd (0 for every existing instance)."""
    db.execute("ALTER TABLE instances ADD COLUMN iscrowd INTEGER NOT NULL DEFAULT 0")


def name_key(file_name: str) -> str:
    """Key under which two image names collide: lower-case relative path without its suffix.

    ``images/a.jpg``, ``images/A.JPG`` and ``images/a.png`` share a key: they would overwrite each other on
    case-insensitive file systems and in per-image outputs (semantic masks are named ``<stem>.png``).
    """
    return str(PurePosixPath(file_name).with_suffix("")).lower()


def _v4(db: sqlite3.Connection) -> None:
    """A model's predicted IoU beside the rating: instances.predicted_iou (NULL for every existing instance)."""
    db.execute("ALTER TABLE instances ADD COLUMN predicted_iou REAL")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3, _v4]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    """``PRAGMA user_version`` of an open database."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, path: str = "", target: int | None = None) -> int:
    """Upgrade ``db`` (a connection in autocommit mode, ``isolation_level=None``) to version ``target``
    (default: the newest, :data:`SCHEMA_VERSION`).

    Each step runs in a ``BEGIN IMMEDIATE`` transaction that also sets ``user_version``; a failure rolls the
    step back and leaves the database at the previous whole version. A database already at ``target`` is only
    read (no write lock is taken). Concurrent openers are safe: the version is re-read inside the write lock.
    Returns the final version.

    Raises:
        SchemaTooNew: the database is newer than this code (written by a later release).
    """
    target = SCHEMA_VERSION if target is None else target
    if target > SCHEMA_VERSION:
        raise ValueError(f"unknown schema version {target}; this code knows up to {SCHEMA_VERSION}")
    version = schema_version(db)  # a read: a current database is never locked for writing
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path}: project database has schema version {version}, newer than this program's "
            f"{SCHEMA_VERSION}; upgrade dhr-label to open it"
        )
    if version >= target:
        return version
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(db)
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{path}: project database has schema version {version}, newer than this program's "
                    f"{SCHEMA_VERSION}; upgrade dhr-label to open it"
                )
            if version >= target:
                db.execute("COMMIT")
                return version
            MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version = {version + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
