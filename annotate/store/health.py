"""Plain words for a project database that cannot be used: damaged, not a project, or busy.

- :func:`check_database_file` looks at a database file before SQLite opens it (size, the SQLite header, the
  page count the header promises), so an empty, random or truncated file is reported and never rewritten;
- :class:`WriterNote` is the small ``project.db-writer`` file the process holding the write lock keeps beside
  the database, so one kept waiting can say which process holds the project;
- :class:`DamagedProject` and :class:`ProjectBusy` are the errors, each one line naming the file.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

from core.errors import UserError
from core.files import process_alive

SQLITE_MAGIC = b"SQLite format 3\x00"


class DamagedProject(UserError, RuntimeError):
    """The project database is not a readable project database; the file was left untouched."""


class ProjectBusy(UserError, RuntimeError):
    """Another process kept the project's write lock for longer than the wait allowed."""


def _damaged(path: Path, problem: str) -> DamagedProject:
    return DamagedProject(
        f"{path}: damaged project database ({problem}); the file was left as it is: restore it from a backup, "
        "or move it away to start a new project"
    )


def check_database_file(path: Path) -> None:
    """Raise :class:`DamagedProject` when ``path`` is empty, not an SQLite file, or shorter than its header says."""
    size = path.stat().st_size
    if size == 0:
        raise _damaged(path, "empty file, 0 bytes")
    with path.open("rb") as handle:
        header = handle.read(100)
    if not header.startswith(SQLITE_MAGIC):
        raise _damaged(path, "not an SQLite database file")
    if len(header) < 100:
        raise _damaged(path, f"truncated: {size} bytes, shorter than the 100-byte header")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    wal = Path(f"{path}-wal")
    pending_wal = wal.is_file() and wal.stat().st_size > 0  # a checkpoint cut short finishes from the WAL
    if header[24:28] == header[92:96] and size < pages * page_size and not pending_wal:
        raise _damaged(path, f"truncated: {size} bytes of {pages * page_size}")


def damaged(path: str | os.PathLike, error: BaseException) -> DamagedProject:
    """:class:`DamagedProject` for an SQLite error met while opening or reading ``path``."""
    return _damaged(Path(path), f"sqlite: {error}")


def _program() -> str:
    """What this process is, without its options (which may hold a password): ``app.py`` or ``cli status``."""
    words = [os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"]
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        words.append(sys.argv[1])
    return " ".join(words)


class WriterNote:
    """``<database>-writer``: which process holds the write lock (written after taking it, removed on release)."""

    def __init__(self, db_path: str | os.PathLike) -> None:
        self.path = Path(f"{db_path}-writer")

    def write(self, since: str) -> None:
        """Say that this process holds the write lock since ``since`` (best effort: never fails an edit)."""
        note = {"pid": os.getpid(), "host": socket.gethostname(), "program": _program(), "since": since}
        try:
            self.path.write_text(json.dumps(note), encoding="utf-8")
        except OSError:
            pass

    def clear(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass

    def holder(self) -> str:
        """Words naming the process that holds the lock, as far as the note tells."""
        try:
            note = json.loads(self.path.read_text(encoding="utf-8"))
            pid, host = int(note["pid"]), str(note["host"])
        except (OSError, ValueError, KeyError, TypeError):
            return "another program"
        if host == socket.gethostname() and not process_alive(pid):
            return "another program"
        where = "" if host == socket.gethostname() else f" on {host}"
        return f"process {pid}{where} ({note.get('program', '?')}, since {note.get('since', '?')})"

    def busy(self, db_path: str | os.PathLike, waited: float, error: BaseException) -> ProjectBusy:
        """The error for a write that waited ``waited`` seconds for the lock in vain."""
        return ProjectBusy(
            f"{db_path}: the project is busy: {self.holder()} holds it for writing and did not let go within "
            f"{waited:g} s; nothing was saved, try again when it has finished ({error})"
        )


__all__ = ["DamagedProject", "ProjectBusy", "WriterNote", "check_database_file", "damaged"]
