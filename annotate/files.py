"""Atomic file writes and safe torch checkpoint files, in one place.

Files the product writes go through :func:`atomic_write`: the content is written to a hidden temporary
file in the target's folder (``.<name>.<random>.tmp``, created exclusively, so concurrent writers of one path
never share it), flushed to disk, then moved over the target with ``os.replace`` (atomic on POSIX and
Windows). A reader sees the old file or the new one, never half of one; concurrent writers leave one writer's
whole file; a failed or interrupted write (any exception, Ctrl-C included) removes the temporary file and
leaves the target as it was. Temporary files are created with the usual permissions (``0o666`` less the
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
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_TEMPORARY_ATTEMPTS = 100


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Lowercase hex SHA-256 of a file's bytes, read in chunks (a content hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def _temporary_beside(path: Path) -> Path:
    """Create (exclusively) and return an empty hidden file in ``path``'s folder: ``.<name>.<random>.tmp``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_TEMPORARY_ATTEMPTS):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temporary, flags, 0o666))
        except FileExistsError:
            continue
        return temporary
    raise FileExistsError(f"no free temporary file name beside {path}")


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
