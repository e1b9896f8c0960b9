"""Atomic file writes and safe torch checkpoint files, in one place.

Files the product writes go through :func:`atomic_write`: the content is written to a hidden temporary
file in the target's folder (``.<name>.<pid>-<random>.tmp``, created exclusively, so concurrent writers of one
path never share it; a long name is shortened so the temporary name still fits the file system's 255 bytes),
flushed to disk, then moved over the target with ``os.replace`` (atomic on POSIX and Windows). A reader sees the old file or the new one, never half of one; concurrent writers leave one writer's
whole file; a failed or interrupted write (any exception, Ctrl-C included) removes the temporary file and
leaves the target as it was. A writer killed outright leaves its temporary file behind:
:func:`remove_stale_temporaries` removes those of dead processes on the next run. Temporary files are created with the usual permissions (``0o666`` less the
umask), unlike ``tempfile.mkstemp``'s ``0o600``, so a file moved into a shared project stays readable by the
others.

Torch files are written with :func:`save_torch` and read with :func:`load_torch`, which uses
``torch.load(..., weights_only=True)``: tensors, containers and plain values load; a pickled object is refused
with a ``ValueError`` naming the file instead of running its code.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_TEMPORARY_ATTEMPTS = 100
_NAME_BYTES = 200
"""Longest part of a target's name kept in its temporary's name (255-byte names leave room for the rest)."""
STALE_AFTER_S = 600.0
"""A dead writer's temporary file is removed once it is this old (a writer on another machine may still own it)."""


_TEMPORARY = re.compile(r"^\..+\.(?:(\d+)-)?[0-9a-f]{8}\.tmp$")
"""Names of temporary files: ``.<name>.<pid>-<8 hex>.tmp`` (older releases: without ``<pid>-``)."""


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (True when it exists but belongs to someone else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def temporary_prefix(name: str) -> str:
    """``.<name>.``, the name cut to :data:`_NAME_BYTES` bytes (on a character boundary) when longer."""
    encoded = name.encode("utf-8", errors="surrogateescape")
    if len(encoded) > _NAME_BYTES:
        name = encoded[:_NAME_BYTES].decode("utf-8", errors="ignore")
    return f".{name}."


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Lowercase hex SHA-256 of a file's bytes, read in chunks (a content hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def _temporary_beside(path: Path) -> Path:
    """Create (exclusively) and return an empty hidden file in ``path``'s folder: ``.<name>.<pid>-<random>.tmp``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    prefix = temporary_prefix(path.name)
    for _ in range(_TEMPORARY_ATTEMPTS):
        temporary = path.with_name(f"{prefix}{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temporary, flags, 0o666))
        except FileExistsError:
            continue
        return temporary
    raise FileExistsError(f"no free temporary file name beside {path}")


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is the name of a temporary file :func:`atomic_write` creates."""
    return _TEMPORARY.match(name) is not None


def _stale(entry: os.DirEntry, prefix: str, now: float, min_age_s: float) -> bool:
    """Whether ``entry`` is a temporary file (of a target named by ``prefix``, or any) left by a dead writer."""
    name = entry.name
    match = _TEMPORARY.match(name)
    if not name.startswith(prefix) or match is None or not entry.is_file(follow_symlinks=False):
        return False
    owner = match.group(1)
    if owner is not None and (int(owner) == os.getpid() or process_alive(int(owner))):
        return False
    return now - entry.stat(follow_symlinks=False).st_mtime >= min_age_s


def remove_stale_temporaries(
    path: str | os.PathLike, *, min_age_s: float = STALE_AFTER_S, recursive: bool = False
) -> int:
    """Remove temporary files that writers killed outright left behind; returns how many.

    ``path`` is a target file (its own temporaries are removed) or a folder (every temporary file in it, and
    below it with ``recursive``). A temporary counts as stale when its writer (the pid in its name) no longer
    runs here and it is at least ``min_age_s`` seconds old.
    """
    path = Path(path)
    now = time.time()
    folder_given = path.is_dir()
    folders = [path] if folder_given else [path.parent]
    prefix = "." if folder_given else temporary_prefix(path.name)
    removed = 0
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if recursive and entry.is_dir(follow_symlinks=False):
                folders.append(Path(entry.path))
            elif _stale(entry, prefix, now, min_age_s):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except OSError:
                    pass
    return removed


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); folders that cannot be opened or synced are skipped."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, fsync: bool = True) -> Path:
    """Write ``path`` atomically: ``write(temporary)`` fills a hidden file beside it, which replaces ``path``.

    ``write`` receives the temporary file's path (it exists, empty) and may open, truncate or overwrite it;
    it may raise to abandon the write (the temporary file is then removed and ``path`` is untouched). With
    ``fsync`` the data and the rename are flushed to disk before returning (use False for caches, whose
    readers recover from a lost entry). The target's folder is created if needed. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(path)
    try:
        write(temporary)
        if fsync:
            _fsync_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_folder(path.parent)
    return path


def atomic_write_text(
    path: str | os.PathLike, text: str, *, encoding: str = "utf-8", fsync: bool = True
) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); returns ``path``."""
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding=encoding), fsync=fsync)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); returns ``path``."""
    return atomic_write(path, lambda temporary: temporary.write_bytes(data), fsync=fsync)


def atomic_copy(source: str | os.PathLike, target: str | os.PathLike, *, fsync: bool = True) -> Path:
    """Copy the content of ``source`` to ``target`` atomically (no half copy under ``target``); returns it."""
    return atomic_write(target, lambda temporary: shutil.copyfile(source, temporary), fsync=fsync)


def save_torch(payload: Any, path: str | os.PathLike, *, fsync: bool = True) -> Path:
    """``torch.save(payload)`` to ``path`` atomically (see :func:`atomic_write`); returns ``path``.

    Keep ``payload`` to tensors, containers and plain values so that :func:`load_torch` can read it back.
    """
    import torch

    return atomic_write(path, lambda temporary: torch.save(payload, temporary), fsync=fsync)


def load_torch(
    path: str | os.PathLike, *, what: str = "checkpoint", map_location: str | torch.device = "cpu"
) -> Any:
    """Read a torch file with ``torch.load(..., weights_only=True)``; tensors are mapped to ``map_location``.

    ``what`` names the file in errors: FileNotFoundError("<what> not found: <path>") when it is missing (or
    not a file), ValueError("cannot read <what> <path> as a weights-only torch file: <error>") when it is
    truncated, not a torch file, or holds pickled objects other than tensors and plain values.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:  # removed since the check (another process evicted or replaced it)
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        raise ValueError(f"cannot read {what} {path} as a weights-only torch file: {error}") from error
