"""The project's own files, which no export may write over.

A project owns its database (``project.db`` and the ``-wal``, ``-shm``, ``-journal`` files beside it), its
``images/`` folder, its ``cache/`` folder, its trash of removed images (``removed/``), its journal of files
being placed (``.pending/``) and every image file it has registered (images may also be registered in place
elsewhere under the root). :class:`OwnFiles` answers whether an output path would land on one of them, after
resolving symlinks, so an export target is refused before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from annotate.store.paths import DB_NAME, IMAGES_DIR
from core.errors import UserError

DB_SUFFIXES = ("", "-wal", "-shm", "-journal", "-writer")
"""Files of the database: the database itself, SQLite's side files, and the note naming the writer."""
CACHE_DIR = "cache"
REMOVED_DIR = "removed"
"""Where the files of images removed from the project are moved (nothing is deleted)."""
PENDING_DIR = ".pending"
"""Journals of image files being placed by a transaction not yet committed."""
OWN_DIRS = (IMAGES_DIR, CACHE_DIR, REMOVED_DIR, PENDING_DIR)


class ProtectedPath(UserError, ValueError):
    """An output path that would overwrite a file of the project itself."""


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(folder: Path, path: Path) -> bool:
    return path == folder or folder in path.parents


class OwnFiles:
    """The files and folders a project at ``root`` owns (``image_names``: its registered, root-relative names)."""

    def __init__(self, root: str | os.PathLike, image_names: Iterable[str]) -> None:
        self.root = _real(Path(root))
        self.files: dict[Path, str] = {}
        for suffix in DB_SUFFIXES:
            self.files[_real(self.root / f"{DB_NAME}{suffix}")] = (
                f"the project's database file {DB_NAME}{suffix}"
            )
        for name in image_names:
            self.files.setdefault(_real(self.root / name), f"the project's image {name}")
        self.dirs = {_real(self.root / name): name for name in OWN_DIRS}

    def why(self, path: str | os.PathLike) -> str | None:
        """Why ``path`` must not be written (it is or lies in one of the project's own files), or None."""
        real = _real(Path(path))
        if real in self.files:
            return f"it is {self.files[real]}"
        for folder, name in self.dirs.items():
            if _inside(folder, real):
                return f"it lies in the project's own {name}/ folder"
        return None

    def check_file(self, path: str | os.PathLike, what: str) -> Path:
        """``path`` if an output file may be written there; :class:`ProtectedPath` naming it otherwise."""
        reason = self.why(path)
        if reason is not None:
            raise ProtectedPath(f"{path}: refusing to write the {what} there: {reason} ({self.root})")
        return Path(path)

    def check_folder(self, folder: str | os.PathLike, targets: Iterable[Path], what: str) -> None:
        """Refuse an output ``folder`` that is the project folder or one of its own, or whose ``targets`` would be."""
        folder_path = Path(folder)
        real = _real(folder_path)
        reason = self.why(folder_path)
        if reason is None and real == self.root:
            reason = "it is the project folder itself"
        if reason is not None:
            raise ProtectedPath(f"{folder}: refusing to write the {what} there: {reason} ({self.root})")
        for target in targets:
            reason = self.why(target)
            if reason is not None:
                raise ProtectedPath(
                    f"{target}: refusing to write the {what} there: {reason} ({self.root}); "
                    "choose a folder outside the project's own files"
                )


__all__ = ["CACHE_DIR", "DB_SUFFIXES", "OWN_DIRS", "OwnFiles", "PENDING_DIR", "ProtectedPath", "REMOVED_DIR"]
