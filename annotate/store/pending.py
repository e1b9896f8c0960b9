"""A journal of the image files a transaction places in the project, so that a killed run leaves no orphans.

Image files are copied into the project inside the transaction that registers them. Before the first copy the
transaction writes the names it is about to create into ``.pending/<pid>-<random>.txt`` (one name a line,
after a header naming the process). When the transaction commits the journal is deleted; when it rolls back the
files it created are deleted with it. When the process is killed in between, the journal stays: the next time
the project is opened, :func:`recover_placements` deletes every file of a dead process's journal that the
database does not know (and the temporary files of those copies), then the journal.

A journal is written with ``flush`` but without ``fsync``: it survives a killed process, not a power cut
(which may then leave an orphan copy, never a lost image).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from annotate.store.paths import resolve_inside
from annotate.store.protect import PENDING_DIR
from core.files import is_temporary_name, process_alive, temporary_prefix

logger = logging.getLogger(__name__)


class PlacementJournal:
    """The names of the files one transaction of the project at ``root`` creates (root-relative)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path: Path | None = None
        self.names: set[str] = set()
        self._handle: IO[str] | None = None

    def declare(self, names: Iterable[str]) -> None:
        """Write down ``names`` before their files are created (call inside the transaction)."""
        new = [name for name in dict.fromkeys(names) if name not in self.names]
        if not new:
            return
        if self._handle is None:
            folder = self.root / PENDING_DIR
            folder.mkdir(exist_ok=True)
            self.path = folder / f"{os.getpid()}-{secrets.token_hex(4)}.txt"
            self._handle = self.path.open("x", encoding="utf-8")
            self._handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
        self._handle.write("".join(f"{name}\n" for name in new))
        self._handle.flush()
        self.names.update(new)

    def committed(self) -> None:
        """The transaction committed: its files are registered; the journal goes."""
        self._close()

    def rolled_back(self) -> None:
        """The transaction rolled back: delete the files it created, then the journal."""
        _remove_files(self.root, sorted(self.names))
        self._close()

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
        self.names = set()


def _remove_files(root: Path, names: list[str]) -> list[str]:
    """Delete the project files ``names`` and the temporary files of their copies; returns the names deleted."""
    removed: list[str] = []
    prefixes: dict[Path, set[str]] = {}
    for name in names:
        try:
            path = resolve_inside(root, name)
        except ValueError:
            continue
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(name)
        prefixes.setdefault(path.parent, set()).add(temporary_prefix(path.name))
    for folder, starts in prefixes.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if is_temporary_name(entry.name) and any(entry.name.startswith(p) for p in starts):
                Path(entry.path).unlink(missing_ok=True)
    return removed


def _owner_alive(header: str) -> bool:
    try:
        owner = json.loads(header)
        pid, host = int(owner["pid"]), str(owner["host"])
    except (ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname():
        return True  # another machine's run: leave it to that machine
    return pid == os.getpid() or process_alive(pid)


def _stale_journals(root: Path) -> list[tuple[Path, list[str]]]:
    """The journals of runs that no longer run, with their lines (header first)."""
    folder = root / PENDING_DIR
    if not folder.is_dir():
        return []
    stale = []
    for journal in sorted(folder.glob("*.txt")):
        try:
            lines = journal.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        if lines and not _owner_alive(lines[0]):
            stale.append((journal, lines))
    return stale


def has_stale_journals(root: Path) -> bool:
    """Whether a killed run left a journal to finish (a cheap look, without the database)."""
    return bool(_stale_journals(root))


def recover_placements(root: Path, known: Callable[[str], bool]) -> list[str]:
    """Finish the journals of killed runs: delete their files the database does not ``known``; returns them."""
    removed: list[str] = []
    for journal, lines in _stale_journals(root):
        orphans = [name for name in lines[1:] if name and not known(name)]
        removed += _remove_files(root, orphans)
        journal.unlink(missing_ok=True)
    if removed:
        logger.warning(
            "%s: removed %d image file(s) left by an interrupted run that never registered them: %s",
            root,
            len(removed),
            ", ".join(removed[:5]) + (" ..." if len(removed) > 5 else ""),
        )
    return removed


__all__ = ["PlacementJournal", "has_stale_journals", "recover_placements"]
