"""The bundled demo project: four real photographs with image-level tags and labels to review.

:func:`ensure_demo_project` builds it on first use in a writable directory (default
``~/.cache/dhr-label/demo-project``) by copying the files under ``assets/demo`` into a new
:class:`annotate.store.ProjectStore`, with the labels of ``assets/demo/labels.json`` (made with the review
tools, status "review", recorded as user ``demo``: ``scripts/make_demo_labels.py``); the assets themselves are
only read. A run stopped half-way is completed on the next call, and an existing demo project is opened as it
is (with the labels already made in it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from annotate.store import DB_NAME, ProjectStore

logger = logging.getLogger(__name__)

DEMO_ASSETS = Path(__file__).resolve().parents[2] / "assets" / "demo"
"""Folder holding the demo photographs, ``classes.txt`` (one class a line), ``tags.json`` (file -> tags) and
``labels.json`` (COCO, the labels the demo opens with)."""
LABELS_FILE = "labels.json"
DEMO_USER = "demo"
"""The user the demo's bundled labels are recorded as."""



def default_demo_dir() -> Path:
    """Where the demo project lives unless told otherwise: ``~/.cache/dhr-label/demo-project``."""
    return Path.home() / ".cache" / "dhr-label" / "demo-project"


def demo_classes(assets: Path = DEMO_ASSETS) -> list[str]:
    """The demo's class names in class-id order (id = index + 1), read from ``assets/classes.txt``."""
    path = Path(assets) / "classes.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: demo class list not found")
    classes = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"{path}: the class list is empty or repeats a class: {classes}")
    return classes


def demo_tags(assets: Path = DEMO_ASSETS) -> dict[str, list[str]]:
    """Image-level tags per demo file name, read from ``assets/tags.json``; every tag is a demo class."""
    path = Path(assets) / "tags.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: demo tags file not found")
    try:
        tags = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(tags, dict) or not all(isinstance(v, list) for v in tags.values()):
        raise ValueError(f"{path}: expected an object mapping file names to lists of tags")
    classes = set(demo_classes(assets))
    for name, image_tags in tags.items():
        unknown = sorted(set(image_tags) - classes)
        if unknown:
            raise ValueError(f"{path}: {name} has tags {unknown} that are not in classes.txt")
        if not (Path(assets) / name).is_file():
            raise FileNotFoundError(f"{path}: lists {name}, which is missing from {assets}")
    return {str(k): [str(t) for t in v] for k, v in tags.items()}


def ensure_demo_project(
    root: str | Path | None = None, assets: str | Path = DEMO_ASSETS, *, labels: bool = True
) -> ProjectStore:
    """Open the demo project at ``root`` (default :func:`default_demo_dir`), creating or completing it first.

    ``labels``: a new project gets the bundled labels (``assets/demo/labels.json``); False leaves every image
    "new", without labels.

    Raises ``ValueError`` when ``root`` is a non-empty directory that holds no project (nothing is written
    there), so a mistyped path never fills an unrelated folder.
    """
    root = Path(root).expanduser() if root is not None else default_demo_dir()
    assets = Path(assets)
    classes = demo_classes(assets)
    tags = demo_tags(assets)
    if (root / DB_NAME).is_file():
        store = ProjectStore.open(root)
    else:
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ValueError(
                f"{root}: not empty and holds no project ({DB_NAME} missing); choose an empty or new folder "
                "for the demo project"
            )
        root.mkdir(parents=True, exist_ok=True)
        logger.info("creating the demo project in %s", root)
        store = ProjectStore.create(root, classes)
    if list(store.classes) != classes:
        logger.warning(
            "%s: project classes %s differ from the demo's %s; opening it as it is",
            root,
            store.classes,
            classes,
        )
        return store
    present = {Path(r.file_name).name for r in store.list_images()}
    for name in sorted(tags):
        if name not in present:
            store.add_image(assets / name, tags[name], copy=True)
    bundled = assets / LABELS_FILE
    if labels and bundled.is_file() and not any(r.version > 1 for r in store.list_images()):
        from annotate.coco import import_coco  # only for a project nobody has labelled yet

        import_coco(store, bundled, user=DEMO_USER)
    return store
