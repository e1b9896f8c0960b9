"""One SQLite connection to a project database, shared by threads, with atomic transactions.

The connection runs in autocommit mode (``isolation_level=None``) with WAL journaling, ``synchronous=FULL``
and foreign keys on; opening it migrates an older database to the current schema (:mod:`annotate.store.schema`);
a current one is only read, so opening never waits for another process's writes. One re-entrant lock guards it
(``check_same_thread=False``): :meth:`Database.transaction` is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` however
deeply it nests; other processes wait up to ``busy_timeout``, then get :class:`ProjectBusy` naming the process
that holds the lock (:class:`annotate.store.health.WriterNote`).

Opening an existing database never creates or rewrites it: an empty, random, truncated or foreign file is
reported with :class:`DamagedProject` and left byte for byte as it was (:mod:`annotate.store.health`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from annotate.store.health import DamagedProject, WriterNote, check_database_file, damaged
from annotate.store.pending import PlacementJournal
from annotate.store.records import utc_now
from annotate.store.schema import SCHEMA_VERSION, migrate, schema_version

logger = logging.getLogger(__name__)

_Database = TypeVar("_Database", bound="Database")


class Database:
    """The locked connection of a project store (``self._db``; use it under ``self._lock``)."""

    def __init__(
        self, db_path: str | os.PathLike, *, busy_timeout: float = 30.0, create: bool = False
    ) -> None:
        """Open the database file at ``db_path`` (``create``: a new one, made if missing), migrating it if older.

        Raises:
            FileNotFoundError: no such file (without ``create``). DamagedProject: not a readable project
            database (the file is left untouched). ProjectBusy: a needed migration waited in vain for the lock.
        """
        self.db_path = db_path
        self.busy_timeout = float(busy_timeout)
        self._lock = threading.RLock()
        self._depth = 0
        self._writer = WriterNote(db_path)
        self._journal: PlacementJournal | None = None
        path = Path(db_path)
        if not create:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no project database here")
            check_database_file(path)
        uri = f"file:{quote(str(path.absolute()))}?mode={'rwc' if create else 'rw'}"
        try:
            self._db = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
        except sqlite3.Error as error:
            raise DamagedProject(f"{path}: cannot open the project database: {error}") from error
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            version = schema_version(self._db)
            if not create and version == 0:
                raise DamagedProject(
                    f"{path}: not a dhr-label project database (an SQLite file without the project's tables); "
                    "the file was left as it is"
                )
            mode = self._db.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    logger.warning("%s: WAL journal mode unavailable (got %s)", db_path, mode)
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            if version != SCHEMA_VERSION:  # older: upgrade; newer: migrate raises naming the versions
                migrate(self._db, str(db_path))
        except sqlite3.OperationalError as error:
            self._db.close()
            if _is_busy(error):
                raise self._writer.busy(db_path, self.busy_timeout, error) from error
            raise damaged(path, error) from error
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise damaged(path, error) from error
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
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as error:
                    if _is_busy(error):
                        raise self._writer.busy(self.db_path, self.busy_timeout, error) from error
                    raise
                self._writer.write(utc_now())
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    try:
                        self._db.execute("ROLLBACK")
                    finally:
                        self._end_placements(committed=False)
                        self._writer.clear()
                raise
            self._depth -= 1
            if outer:
                committed = False
                try:
                    self._db.execute("COMMIT")
                    committed = True
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                finally:
                    self._end_placements(committed=committed)
                    self._writer.clear()

    def will_place(self, names: list[str]) -> None:
        """Inside a transaction: the root-relative files it is about to create. They are deleted again if it
        rolls back, and by the next opening of the project if the process is killed before it commits
        (:mod:`annotate.store.pending`)."""
        with self._lock:
            if self._depth == 0:
                raise RuntimeError("will_place() needs an open transaction")
            if self._journal is None:
                self._journal = PlacementJournal(Path(self.db_path).parent)
            self._journal.declare(names)

    def _end_placements(self, *, committed: bool) -> None:
        if self._journal is not None:
            journal, self._journal = self._journal, None
            journal.committed() if committed else journal.rolled_back()

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


def _is_busy(error: sqlite3.OperationalError) -> bool:
    """Whether an SQLite error means another connection holds the lock ("database is locked" / "busy")."""
    text = str(error).lower()
    return "locked" in text or "busy" in text
