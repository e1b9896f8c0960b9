"""Training data from a project store: images, tags, current pseudo masks, accepted flag, cached USS features.

Nothing is held for the whole dataset: each item reads its image and label mask from the project when it is
asked for, so the loader can run in worker processes (each opens its own store connection). USS features are
computed once per image (``precompute_uss_features``) and cached on disk as float16 tensors keyed by the image's
SHA-256 and the provider's feature id (model, weights and settings).

Batch layout (``collate``): image (B, 3, S, S) float normalised; raw (B, S, S, 3) uint8; mask (B, S, S) int64
(``IGNORE_INDEX`` = ignore); tags (B, N) float multi-hot; accepted (B,) bool; box (B, 4) float64 XYXY; flip (B,) bool;
valid (B, 4) int64 XYXY; size (B, 2) int64 (H, W); image_id (B,) int64; uss: list of (D, h, w) tensors or None.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dhr.labels import IGNORE_INDEX
from models.embedding_cache import EmbeddingCache
from models.transforms import AugmentConfig, augment
from models.uss import USSProvider

__all__ = ["ImageEntry", "project_entries", "USSFeatureCache", "precompute_uss_features", "ProjectDataset",
           "EpochSampler", "collate"]

logger = logging.getLogger(__name__)

TRAINABLE_STATUSES = ("new", "pseudo", "review", "accepted")
FEATURE_CACHE_BYTES = 64 * 1024**3
"""Size bound of a project's USS feature cache (entries are re-read every epoch, so it should hold them all)."""


@dataclass(frozen=True)
class ImageEntry:
    """One training image: class ids of its tags (>= 1), whether it is accepted / has labels at all."""

    image_id: int
    sha256: str
    tags: tuple[int, ...]
    accepted: bool
    labelled: bool


def project_entries(store, statuses: Sequence[str] = TRAINABLE_STATUSES) -> list[ImageEntry]:
    """Entries of the store's images with one of ``statuses`` (rejected images are left out by default)."""
    index = {name: i + 1 for i, name in enumerate(store.classes)}
    entries = []
    for record in store.list_images():
        if record.status not in statuses:
            continue
        unknown = [t for t in record.tags if t not in index]
        if unknown:
            raise ValueError(f"image {record.file_name} has tags {unknown} that are not project classes")
        entries.append(ImageEntry(int(record.id), str(record.sha256), tuple(sorted(index[t] for t in record.tags)),
                                  record.status == "accepted", record.status != "new"))
    return entries


class USSFeatureCache:
    """USS feature maps of one provider on disk, a view of the project's :class:`EmbeddingCache`.

    Entries are keyed by the image file's SHA-256 and ``feature_id`` (provider, weights and settings:
    :attr:`models.uss.USSProvider.feature_id`), so features of another provider, SAM variant or checkpoint
    are never reused. Each holds a (D, h, w) float16 tensor.
    """

    def __init__(self, root: str | Path, feature_id: str, max_bytes: int = FEATURE_CACHE_BYTES) -> None:
        if not feature_id:
            raise ValueError("feature_id must be a non-empty string")
        self.cache = EmbeddingCache(root, max_bytes=max_bytes)
        self.feature_id = feature_id
        self.root = self.cache.directory

    def path(self, sha256: str) -> Path:
        """File of one image's features (ValueError unless ``sha256`` is a hex digest)."""
        return self.cache.path(str(sha256).lower(), self.feature_id)

    def __contains__(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def get(self, sha256: str) -> torch.Tensor | None:
        """The cached (D, h, w) float32 features, or None when absent or unreadable (warned)."""
        entry = self.cache.get(sha256.lower(), self.feature_id)
        features = None if entry is None else entry.get("features")
        return features.float() if torch.is_tensor(features) else None

    def put(self, sha256: str, features: torch.Tensor) -> None:
        if features.ndim != 3 or not torch.isfinite(features).all():
            raise ValueError(f"USS features must be finite (D, h, w), got shape {tuple(features.shape)}")
        self.cache.put(sha256.lower(), self.feature_id, {"features": features.to(torch.float16).contiguous()})


@torch.no_grad()
def precompute_uss_features(store, entries: Sequence[ImageEntry], provider: USSProvider,
                            cache: USSFeatureCache, progress: bool = True) -> int:
    """Compute and cache the USS features of every entry not cached yet; returns how many were computed.

    A provider reading the segmenter's embedding takes it from the segmenter's own embedding cache.
    """
    from tqdm.auto import tqdm

    todo = [e for e in entries if e.sha256 not in cache]
    for entry in tqdm(todo, desc=f"USS features ({provider.name})", unit="img", disable=not progress):
        cache.put(entry.sha256, provider.features(store.load_image(entry.image_id)))
    return len(todo)


class ProjectDataset(Dataset):
    """Augmented crops of a project's images with their current pseudo masks (see the module doc).

    Items are looked up by ``(index, seed)`` (as :class:`EpochSampler` yields) or by a plain index (seed 0).
    Images without labels (status "new") get an all-ignore mask: only the tag loss and the DHR step use them.
    """

    def __init__(self, root: str | Path, entries: Sequence[ImageEntry], num_classes: int,
                 augment_config: AugmentConfig | None = None, uss_cache: USSFeatureCache | None = None,
                 ignore_index: int = IGNORE_INDEX) -> None:
        self.root = Path(root)
        self.entries = list(entries)
        self.num_classes = int(num_classes)
        self.augment_config = augment_config or AugmentConfig()
        self.uss_cache = uss_cache
        self.ignore_index = ignore_index
        self._store = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.entries)

    def _open(self):
        if self._store is None or self._pid != os.getpid():
            from annotate.store import ProjectStore

            self._store = ProjectStore.open(self.root)
            self._pid = os.getpid()
        return self._store

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_store"], state["_pid"] = None, -1
        return state

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        entry = self.entries[index]
        store = self._open()
        image = store.load_image(entry.image_id)
        if entry.labelled:
            mask = np.asarray(store.semantic_mask(entry.image_id), dtype=np.int64)
        else:
            mask = np.full(image.shape[:2], self.ignore_index, np.int64)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"label mask {mask.shape} of image {entry.image_id} does not match its size "
                             f"{image.shape[:2]}")
        sample = augment(image, mask, np.random.default_rng([int(seed), int(index)]), self.augment_config)
        tags = torch.zeros(self.num_classes)
        tags[[c - 1 for c in entry.tags]] = 1.0
        from dhr.uss import image_to_tensor

        return {
            "image": image_to_tensor(sample.image),
            "raw": torch.from_numpy(sample.image),
            "mask": torch.from_numpy(sample.mask),
            "tags": tags,
            "accepted": entry.accepted,
            "box": torch.from_numpy(sample.box),
            "flip": sample.flip,
            "valid": torch.from_numpy(sample.valid),
            "size": torch.tensor(image.shape[:2]),
            "image_id": entry.image_id,
            "uss": self.uss_cache.get(entry.sha256) if self.uss_cache is not None else None,
        }


def collate(items: Sequence[dict]) -> dict:
    """Stack the fixed-size fields of dataset items; ``uss`` stays a list (sizes differ per image)."""
    out = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key == "uss":
            out[key] = values
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = torch.tensor(values)
    return out


class EpochSampler(Sampler):
    """Shuffled, rank-sharded order per epoch, resumable mid-epoch; yields ``(index, seed)`` keys.

    Wraps ``torch.utils.data.DistributedSampler`` (one shard per rank, same permutation on every rank for an
    epoch). ``set_epoch(epoch, start)`` skips the first ``start`` items of this rank's shard, so a resumed run
    sees exactly the samples an uninterrupted one would. ``seed`` of an item is a function of (seed, epoch,
    position), so augmentation does not depend on the number of loader workers.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True) -> None:
        from torch.utils.data import DistributedSampler

        self.inner = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                                        seed=seed, drop_last=False)
        self.seed = int(seed)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)
        self.inner.set_epoch(self.epoch)

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = (self.seed * 1_000_003 + self.epoch) * 100_003
        for position, index in enumerate(self.inner):
            if position >= self.start:
                yield int(index), base + position
