"""Paths inside a project folder: image names relative to the root that never lead outside it.

A project keeps ``project.db`` (:data:`DB_NAME`) at its root and copies images from elsewhere into
``root/images/`` (:data:`IMAGES_DIR`). Stored image names are POSIX paths relative to the root; absolute paths,
``..`` and symlinks pointing outside the root are refused with a ``ValueError`` naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

DB_NAME = "project.db"
IMAGES_DIR = "images"


def check_relative_name(file_name: str) -> str:
    """Validate an image path stored in a project: relative, POSIX, no ``..``; returns it normalised."""
    if not isinstance(file_name, str) or not file_name or "\0" in file_name:
        raise ValueError(f"invalid image path {file_name!r}")
    if (
        PurePosixPath(file_name).is_absolute()
        or PureWindowsPath(file_name).is_absolute()
        or (PureWindowsPath(file_name).drive)
    ):
        raise ValueError(
            f"image path {file_name!r} is absolute; project paths are relative to the project root"
        )
    parts = PurePosixPath(file_name).parts
    if ".." in parts:
        raise ValueError(f"image path {file_name!r} leads outside the project root ('..')")
    normal = "/".join(part for part in parts if part != ".")
    if not normal:
        raise ValueError(f"invalid image path {file_name!r}")
    return normal


def inside_root(root: Path, path: Path) -> bool:
    """Whether ``path`` is ``root`` or below it (both absolute; compared as given, no resolving)."""
    return path == root or root in path.parents


def resolve_inside(root: Path, file_name: str) -> Path:
    """``root / file_name`` for a root-relative name, refusing anything that leads outside ``root``.

    ``root`` must be resolved (absolute, no symlinks); a symlink below it that points outside is refused.
    """
    path = root / check_relative_name(file_name)
    real = path.resolve()
    if not inside_root(root, real):
        raise ValueError(f"{path}: leads outside the project root {root} (symlink)")
    return path


def place_image(
    root: Path, source: Path, *, copy: bool, dest_name: str | None = None
) -> tuple[str, Path, Path]:
    """Where an existing image file ``source`` goes in the project at ``root`` (resolved).

    A file inside the root (by its path or through symlinks) stays in place, and must not be a symlink leading
    outside; a file elsewhere goes to ``images/<dest_name>`` (default: its own name) when ``copy`` is set.

    Returns:
        (stored name relative to the root, target path of the image in the project, resolved source path).

    Raises:
        ValueError: escaping symlink, a file outside the root with ``copy=False``, or the database file itself.
    """
    lexical = Path(os.path.abspath(source))
    real = source.resolve(strict=True)
    if inside_root(root, lexical) or inside_root(root, real):
        if not inside_root(root, real):
            raise ValueError(f"{source}: symlink leads outside the project root {root}")
        inside = lexical if inside_root(root, lexical) else real
        file_name = check_relative_name(inside.relative_to(root).as_posix())
    else:
        if not copy:
            raise ValueError(f"{source}: outside the project root {root}; pass copy=True to copy it in")
        file_name = copied_name(check_relative_name(dest_name or source.name))
    if file_name == DB_NAME or file_name.startswith(DB_NAME + "-"):
        raise ValueError(f"{source}: not an image")
    return file_name, root / file_name, real


def copied_name(name: str) -> str:
    """Stored name of an image copied into the project under ``name``: ``a/b.jpg`` -> ``images/a/b.jpg``."""
    return check_relative_name(f"{IMAGES_DIR}/{name}")


def source_name(file_name: str) -> str:
    """Inverse of :func:`copied_name`: ``images/a/b.jpg`` -> ``a/b.jpg``; other names are returned as given."""
    prefix = IMAGES_DIR + "/"
    return file_name[len(prefix) :] if file_name.startswith(prefix) else file_name


def png_name(file_name: str) -> str:
    """Name of the per-image PNG (semantic mask) of an image: ``a/b.jpg`` -> ``a/b.png`` (POSIX)."""
    return Path(file_name).with_suffix(".png").as_posix()


__all__ = [
    "DB_NAME",
    "IMAGES_DIR",
    "check_relative_name",
    "copied_name",
    "inside_root",
    "place_image",
    "png_name",
    "resolve_inside",
    "source_name",
]
