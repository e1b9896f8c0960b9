"""The output folder of a bootstrap run: file names, the project in it, mask PNGs and the COCO file.

Layout under ``out``: ``project.db`` + ``images/`` (a :class:`annotate.store.ProjectStore`), ``classifier.pt``,
``masks/<name>.png`` (semantic masks, uint8 class ids), ``coco.json`` and ``bootstrap.json`` (the manifest).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from annotate.files import atomic_write
from annotate.store.paths import DB_NAME, png_name

if TYPE_CHECKING:
    from annotate.store import ProjectStore

CLASSIFIER_FILE = "classifier.pt"
MANIFEST_FILE = "bootstrap.json"
COCO_FILE = "coco.json"
MASKS_DIR = "masks"


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
    """Write ``coco.json`` (RLE instances) of the store and return its path."""
    from annotate.coco import export_coco

    path = store.root / COCO_FILE
    export_coco(store, path)  # written atomically
    return path
