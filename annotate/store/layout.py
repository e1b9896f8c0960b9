"""Where everything of a project lives: one :class:`ProjectLayout` that every caller asks for paths.

::

    PROJECT/
      project.db                 the store (plus its -wal / -shm files)
      images/                    images copied into the project
      removed/                   files of removed images
      cache/embeddings/          segmenter image embeddings   (keyed by image hash + model id)
      cache/features/            USS feature maps             (keyed by image hash + feature id)
      classifier.pt              the tag classifier of the bootstrap (reused by later runs)
      masks/, coco.json, bootstrap.json    outputs of a bootstrap run
      training/round_NN/         recursive training rounds
      exports/                   COCO exports made from the GUI

The bootstrap, the GUI and the training rounds all take their cache folders from here, so an image encoded by
one is a cache hit for the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotate.store.paths import DB_NAME, IMAGES_DIR, png_name
from annotate.store.protect import CACHE_DIR, REMOVED_DIR

__all__ = ["ProjectLayout"]


@dataclass(frozen=True)
class ProjectLayout:
    """The paths of the project folder ``root`` (nothing is created here)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def relative(self, path: Path) -> str:
        """The root-relative POSIX name of ``path`` (one of this layout's paths), for ``ProjectStore.resolve``."""
        return Path(path).relative_to(self.root).as_posix()

    @property
    def database(self) -> Path:
        return self.root / DB_NAME

    @property
    def images_dir(self) -> Path:
        return self.root / IMAGES_DIR

    @property
    def removed_dir(self) -> Path:
        return self.root / REMOVED_DIR

    @property
    def cache_dir(self) -> Path:
        return self.root / CACHE_DIR

    @property
    def embeddings_dir(self) -> Path:
        """Segmenter image embeddings, shared by the bootstrap, the GUI and the training rounds."""
        return self.cache_dir / "embeddings"

    @property
    def features_dir(self) -> Path:
        """USS feature maps of the training rounds."""
        return self.cache_dir / "features"

    @property
    def classifier_file(self) -> Path:
        """The bootstrap's tag classifier."""
        return self.root / "classifier.pt"

    @property
    def masks_dir(self) -> Path:
        """Semantic PNG masks written by the bootstrap."""
        return self.root / "masks"

    def mask_file(self, file_name: str) -> Path:
        """The bootstrap's semantic PNG of the image stored as ``file_name``."""
        return self.masks_dir / png_name(file_name)

    @property
    def coco_file(self) -> Path:
        """COCO file written by the bootstrap."""
        return self.root / "coco.json"

    @property
    def manifest_file(self) -> Path:
        """Settings, classes and shard of the last bootstrap run."""
        return self.root / "bootstrap.json"

    @property
    def training_dir(self) -> Path:
        """Recursive training rounds (``round_NN/``)."""
        return self.root / "training"

    @property
    def exports_dir(self) -> Path:
        """COCO exports made from the GUI (the only folder the GUI serves files from)."""
        return self.root / "exports"
