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
- **Damage.** An empty, random, truncated or foreign ``project.db`` is refused with one line naming it and is
  never rewritten; opening a current database only reads it, so readers never wait for a writer.
- **Own files.** Exports refuse targets among the project's database, ``images/``, ``cache/`` and registered
  images; :meth:`load_image` checks each file against the SHA-256 recorded when it was added.
- **Undo/redo.** ``save_labels``, ``set_status`` and ``set_tags`` push the previous state; ``undo`` restores it
  as a new version, ``redo`` re-applies; a new edit clears the redo stack. The undo stack keeps the last
  ``history_limit`` states per image.

:class:`ProjectStore` adds versioned label edits and undo/redo to :class:`annotate.store.catalog.ProjectCatalog`
(classes, images, reading labels, audit log). The other parts live beside it: records and constants in
:mod:`annotate.store.records`, path safety in :mod:`annotate.store.paths`, the connection in
:mod:`annotate.store.db`, the undo/redo stacks in :mod:`annotate.store.history`, the schema in
:mod:`annotate.store.schema`. Their public names are importable from :mod:`annotate.store`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Collection, Sequence

from annotate.store.catalog import ProjectCatalog
from annotate.store.history import apply_state, capture_state, has_state, pop_state, push_state, record_edit
from annotate.store.records import (
    HistoryEmpty,
    NewInstance,
    VersionConflict,
    check_status,
    check_user,
    instance_row,
    utc_now,
)

logger = logging.getLogger(__name__)


class ProjectStore(ProjectCatalog):
    """An open project. Create with :meth:`create`, open with :meth:`open`; close with :meth:`close`."""

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        busy_timeout: float = 30.0,
        history_limit: int = 200,
        create: bool = False,
    ) -> None:
        """Open the database of ``root`` (use :meth:`create` / :meth:`open`)."""
        self.history_limit = int(history_limit)
        super().__init__(root, busy_timeout=busy_timeout, create=create)

    # ------------------------------------------------------------------ labels
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
            row = instance_row(instance, where, height, width, n_classes)
            if row is None:
                logger.info("%s: empty mask dropped", where)
            else:
                prepared.append(row)
        return prepared

    # ------------------------------------------------------------------ edits
    def _check_version(self, image_id: int, expected_version: int | None) -> tuple:
        row = self._image_row(image_id)
        if expected_version is not None and int(expected_version) != row[7]:
            raise VersionConflict(row[0], row[1], int(expected_version), row[7], row[9], row[8])
        return row

    def _bump(self, row: tuple, user: str, action: str, detail: dict) -> int:
        version = row[7] + 1
        self._db.execute(
            "UPDATE images SET version = ?, updated_at = ?, updated_by = ? WHERE id = ?",
            (version, utc_now(), user, row[0]),
        )
        self._log(row[0], version, user, action, detail)
        return version

    def _record_edit(self, row: tuple, kind: str) -> None:
        """Push the state of image ``row`` before an edit of ``kind`` onto its undo stack; clear its redo stack."""
        record_edit(self._db, row[0], row[5], row[6], kind, self.history_limit)

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
        user = check_user(user)
        if status is not None:
            check_status(status)
        if confidence is not None and not math.isfinite(float(confidence)):
            raise ValueError(f"confidence {confidence!r} is not finite")
        prepared = self._prepare(image_id, instances)
        with self.transaction():
            row = self._check_version(image_id, expected_version)
            self._record_edit(row, "labels")
            new_status = row[5] if status is None else status
            new_confidence = row[6] if confidence is None else float(confidence)
            apply_state(
                self._db,
                row[0],
                {"kind": "labels", "status": new_status, "confidence": new_confidence, "instances": prepared},
            )
            return self._bump(row, user, "save_labels", {"instances": len(prepared), "status": new_status})

    def set_status(
        self, image_id: int, status: str, *, user: str, expected_version: int | None = None
    ) -> int:
        """Change the status of an image; returns the new version (the current one if unchanged)."""
        user = check_user(user)
        check_status(status)
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
        user = check_user(user)
        with self.transaction():
            row = self._check_version(image_id, expected_version)
            tag_ids = self._tag_ids(f"image {row[1]!r}", tags, allow_new_classes, allow_empty_tags)
            self._record_edit(row, "tags")
            apply_state(
                self._db, row[0], {"kind": "tags", "status": row[5], "confidence": row[6], "tags": tag_ids}
            )
            return self._bump(row, user, "set_tags", {"tags": tag_ids})

    # ------------------------------------------------------------------ undo / redo
    def _move(
        self,
        image_id: int,
        source: str,
        target: str,
        user: str,
        expected_version: int | None,
        kinds: Collection[str] | None = None,
    ) -> int:
        """Pop the newest state of stack ``source`` (of one of ``kinds``), push the current one onto ``target``,
        apply the popped. With ``kinds`` the image keeps its current status (only that kind of edit moves)."""
        user = check_user(user)
        with self.transaction():
            row = self._check_version(image_id, expected_version)
            state = pop_state(self._db, row[0], source, kinds)
            if state is None:
                what = f" (no {' or '.join(sorted(kinds))} edit)" if kinds else ""
                raise HistoryEmpty(f"image {row[0]} ({row[1]}): nothing to {source}{what}")
            push_state(
                self._db,
                row[0],
                target,
                capture_state(self._db, row[0], row[5], row[6], state["kind"]),
                self.history_limit,
            )
            if kinds is not None:
                state = {**state, "status": row[5]}
            apply_state(self._db, row[0], state)
            return self._bump(row, user, source, {"kind": state["kind"], "status": state["status"]})

    def undo(
        self,
        image_id: int,
        *,
        user: str,
        expected_version: int | None = None,
        kinds: Collection[str] | None = None,
    ) -> int:
        """Restore the state before the last edit (as a new version); HistoryEmpty if there is none.

        ``kinds`` (e.g. ``("labels",)``): undo the last edit of those kinds only, keeping the image's status.
        """
        return self._move(image_id, "undo", "redo", user, expected_version, kinds)

    def redo(
        self,
        image_id: int,
        *,
        user: str,
        expected_version: int | None = None,
        kinds: Collection[str] | None = None,
    ) -> int:
        """Re-apply the last undone edit (as a new version; of ``kinds`` only, when given); HistoryEmpty if none."""
        return self._move(image_id, "redo", "undo", user, expected_version, kinds)

    def can_undo(self, image_id: int, kinds: Collection[str] | None = None) -> bool:
        with self._lock:
            return has_state(self._db, image_id, "undo", kinds)

    def can_redo(self, image_id: int, kinds: Collection[str] | None = None) -> bool:
        with self._lock:
            return has_state(self._db, image_id, "redo", kinds)


__all__ = ["ProjectStore"]
