"""Semantic masks of a project: instances painted into one class-id map, and PNG export of those maps.

A semantic mask is (H, W) uint8: 0 background, class id where an instance is (instances painted in increasing
score, so the most confident is on top), 255 = ignore: crowd regions (``iscrowd``) always, instances flagged
for review on request.
:func:`export_semantic_masks` writes one PNG per image, Pillow "P" mode with the PASCAL VOC palette.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from annotate.rle import decode_rle
from annotate.store.paths import check_relative_name, png_name
from annotate.store.semantic import IGNORE_INDEX, paint_semantic  # not dhr.labels: no torch for an export
from core.files import atomic_write, remove_stale_temporaries

if TYPE_CHECKING:
    from annotate.store import ProjectStore

logger = logging.getLogger(__name__)

def voc_palette() -> list[int]:
    """The PASCAL VOC colour map as a flat list of 768 ints (index 0 black, 255 = (224, 224, 192))."""
    palette: list[int] = []
    for index in range(256):
        red = green = blue = 0
        code = index
        for bit in range(8):
            red |= ((code >> 0) & 1) << (7 - bit)
            green |= ((code >> 1) & 1) << (7 - bit)
            blue |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        palette += [red, green, blue]
    return palette


def semantic_png_path(out_dir: str | os.PathLike, file_name: str) -> Path:
    """Where :func:`export_semantic_masks` writes the mask of ``file_name``: ``out_dir/<file_name>.png``."""
    return Path(out_dir) / png_name(check_relative_name(file_name))


def check_semantic_folder(store: ProjectStore, out_dir: str | os.PathLike, images: Sequence) -> list[Path]:
    """Where the masks of ``images`` go in ``out_dir``; ProtectedPath when any is one of the project's own files."""
    targets = [semantic_png_path(out_dir, image.file_name) for image in images]
    store.own_files().check_folder(out_dir, targets, "semantic masks")
    return targets


def export_semantic_masks(
    store: ProjectStore,
    out_dir: str | os.PathLike,
    *,
    accepted_only: bool = False,
    ignore_review: bool = False,
    statuses: Sequence[str] | None = None,
) -> list[Path]:
    """Write one palette PNG of class ids per image; returns the paths written.

    Masks are (H, W) uint8: 0 background, class id where an instance is (highest score on top); with
    ``ignore_review`` the pixels of instances flagged ``needs_review`` are 255 (ignore). ``statuses``: the images'
    statuses to include (None: all; ``accepted_only`` means ``("accepted",)``). Each PNG is written
    to a temporary file and moved into place. An ``out_dir`` that is the project folder, or where any mask
    would land on one of the project's own files (its images, database, cache), is refused before anything
    is written (:class:`annotate.store.protect.ProtectedPath`).
    """
    from PIL import Image
    from tqdm import tqdm

    from annotate.coco.exporter import chosen_statuses

    images, instances = store.snapshot(chosen_statuses(statuses, accepted_only))
    targets = check_semantic_folder(store, out_dir, images)
    for folder in {target.parent for target in targets}:
        remove_stale_temporaries(folder)  # left by an export that was killed
    palette = voc_palette()
    written = []
    for image, path in tqdm(
        zip(images, targets, strict=True),
        total=len(images),
        desc="semantic masks",
        unit="image",
        disable=len(images) < 100,
    ):
        try:
            semantic = paint_semantic(instances[image.id], image.height, image.width)
            if ignore_review:
                for record in instances[image.id]:
                    if record.needs_review:
                        semantic[decode_rle(record.rle)] = IGNORE_INDEX
        except (ValueError, TypeError, MemoryError) as error:
            raise ValueError(f"image {image.file_name}: cannot paint its semantic mask: {error}") from error
        png = Image.fromarray(semantic, mode="L").convert("P")
        png.putpalette(palette)
        target = atomic_write(path, partial(png.save, format="PNG"))
        written.append(target)
    logger.info("wrote %d semantic masks to %s", len(written), out_dir)
    return written


__all__ = [
    "IGNORE_INDEX",
    "check_semantic_folder",
    "export_semantic_masks",
    "paint_semantic",
    "semantic_png_path",
    "voc_palette",
]
