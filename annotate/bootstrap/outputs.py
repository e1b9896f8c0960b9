"""The output folder of a bootstrap run: file names, the project in it, mask PNGs and the COCO file.

Layout under ``out``: ``project.db`` + ``images/`` (a :class:`annotate.store.ProjectStore`), ``classifier.pt``,
``masks/<name>.png`` (semantic masks, uint8 class ids, 255 = ignore), ``coco.json`` and ``bootstrap.json``
(the manifest).

The store is the one source of truth. ``coco.json`` and ``masks/`` are exports of it, rewritten whole at the
end of every run (and merge) and stamped with that time (``info.date_created``; ``masks/README.txt``);
they do not follow later review or training (``dhr export`` writes the current labels).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from annotate.store.paths import DB_NAME, png_name, source_name
from core.files import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from annotate.store import ProjectStore

CLASSIFIER_FILE = "classifier.pt"
MANIFEST_FILE = "bootstrap.json"
COCO_FILE = "coco.json"
MASKS_DIR = "masks"
MASKS_NOTE = "README.txt"


def mask_path(root: Path, file_name: str) -> Path:
    """Semantic PNG of an image in a bootstrap folder: ``root/masks/<file_name stem>.png``."""
    return root / MASKS_DIR / png_name(file_name)


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    """Write an (H, W) class-id mask as a uint8 grey PNG, atomically."""
    from PIL import Image

    atomic_write(path, partial(Image.fromarray(mask.astype(np.uint8)).save, format="PNG"))


def open_project(out: Path, classes: list[str]) -> ProjectStore:
    """The project at ``out``: opened (its classes must be ``classes``) or created."""
    from annotate.store import ProjectStore

    if (out / DB_NAME).exists():
        store = ProjectStore.open(out)
        if store.classes != classes:
            raise ValueError(
                f"{out} holds a project with classes {store.classes}, the dataset has {classes}; "
                "use another --out folder"
            )
        return store
    out.mkdir(parents=True, exist_ok=True)
    return ProjectStore.create(out, classes)


def export_outputs(store: ProjectStore) -> Path:
    """Export the store to ``coco.json`` (RLE) and ``masks/`` (every labelled image), both stamped with the
    time they were made; returns the COCO file's path."""
    from annotate.coco import export_coco
    from annotate.store.semantic import paint_semantic

    path = store.root / COCO_FILE
    description = "dhr bootstrap output: the project's labels at date_created (dhr export writes the current ones)"
    coco = export_coco(store, path, description=description)  # written atomically
    images, instances = store.snapshot()
    for image in images:
        if image.status != "new":
            mask = paint_semantic(instances[image.id], image.height, image.width)
            write_mask_png(mask_path(store.root, source_name(image.file_name)), mask)
    made = coco["info"]["date_created"]
    atomic_write_text(
        store.root / MASKS_DIR / MASKS_NOTE,
        f"Semantic masks (uint8 class ids; 0 background, 255 ignore) of the project in {store.root},\n"
        f"as stored at {made} (UTC), written by dhr bootstrap / dhr merge-shards.\n"
        "Edits made later (review, training) are not in them: `dhr export PROJECT labels.json --semantic DIR`\n"
        "writes the current labels.\n",
    )
    return path
