"""One SQLite connection to a project database, shared by threads, with atomic transactions.

The connection runs in autocommit mode (``isolation_level=None``) with WAL journaling, ``synchronous=FULL``
and foreign keys on; opening it migrates the database to the current schema (:mod:`annotate.store.schema`).
One re-entrant lock guards it (``check_same_thread=False``): :meth:`Database.transaction` is one
``BEGIN IMMEDIATE`` ... ``COMMIT`` however deeply it nests; other processes wait up to ``busy_timeout``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from annotate.store.schema import migrate, schema_version

logger = logging.getLogger(__name__)

_Database = TypeVar("_Database", bound="Database")


class Database:
    """The locked connection of a project store (``self._db``; use it under ``self._lock``)."""

    def __init__(self, db_path: str | os.PathLike, *, busy_timeout: float = 30.0) -> None:
        """Open (creating if needed) and migrate the database file at ``db_path``."""
        self.db_path = db_path
        self._lock = threading.RLock()
        self._depth = 0
        self._db = sqlite3.connect(
            str(db_path), isolation_level=None, check_same_thread=False, timeout=busy_timeout
        )
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("%s: WAL journal mode unavailable (got %s)", db_path, mode)
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            migrate(self._db, str(db_path))
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self: _Database) -> _Database:
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

    def integrity_check(self) -> str:
        """SQLite ``PRAGMA integrity_check`` result ("ok" when the file is sound)."""
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])
