"""On-disk cache of image embeddings, keyed by the image's content hash and the model id.

Layout: ``<dir>/<model_id>/<image_hash>.pt``, each a ``torch.save``d dict of tensors and plain values, read
back with ``torch.load(..., weights_only=True)``. A changed image has a different content hash, so it
misses; entries of images that no longer exist age out. The cache is shared by CLI runs and GUI sessions:

- writes go to a temporary file in the same folder, then ``os.replace`` (atomic on POSIX and Windows), so a
  reader never sees half a file and concurrent writers of the same key leave one complete entry;
- a hit refreshes the entry's mtime; when the folder grows past ``max_bytes`` the least recently used
  entries (oldest mtime) are deleted;
- an unreadable entry (truncated, foreign) is deleted and counted as a miss, with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.files import load_torch, save_torch

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 * 1024**3
_SAFE = re.compile(r"[^A-Za-z0-9._@-]")


def image_hash(image: np.ndarray) -> str:
    """SHA-256 (hex) of an image's pixels, shape and dtype: equal for equal arrays, whatever their file."""
    array = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{array.shape}|{array.dtype.str}|".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _touch(path: Path) -> None:
    """Set mtime to now at nanosecond resolution (finer than the kernel's own timestamp tick) for LRU order."""
    now = time.time_ns()
    os.utime(path, ns=(now, now))


class EmbeddingCache:
    """Image embeddings on disk, at most ``max_bytes`` in all (least recently used evicted first).

    ``get(image_hash, model_id)`` returns the stored dict or None; ``put(image_hash, model_id, entry)`` stores a
    dict of tensors / ints / floats / strings / tuples. ``hits`` and ``misses`` count lookups of this object.
    """

    def __init__(self, directory: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.directory = Path(directory).expanduser()
        self.max_bytes = int(max_bytes)
        self.hits = 0
        self.misses = 0

    def path(self, image_hash: str, model_id: str) -> Path:
        """File of one entry; ``model_id`` is made file-name safe, ``image_hash`` must be hex."""
        if not re.fullmatch(r"[0-9a-f]{16,128}", image_hash):
            raise ValueError(f"image_hash must be a lowercase hex digest, got {image_hash!r}")
        if not model_id:
            raise ValueError("model_id must be a non-empty string")
        return self.directory / _SAFE.sub("_", model_id) / f"{image_hash}.pt"

    def contains(self, image_hash: str, model_id: str) -> bool:
        """Whether an entry is stored (not read, not counted as a hit or miss)."""
        return self.path(image_hash, model_id).is_file()

    def get(
        self, image_hash: str, model_id: str, map_location: str | torch.device = "cpu"
    ) -> dict[str, Any] | None:
        """The stored entry, or None (a miss). A hit marks the entry as recently used."""
        path = self.path(image_hash, model_id)
        try:
            entry = load_torch(path, what="embedding cache entry", map_location=map_location)
        except FileNotFoundError:
            self.misses += 1
            return None
        except ValueError as error:
            warnings.warn(
                f"embedding cache entry {path} is unreadable ({error.__cause__ or error}); it is recomputed",
                stacklevel=2,
            )
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        if not isinstance(entry, dict):
            warnings.warn(f"embedding cache entry {path} is not a dict; it is recomputed", stacklevel=2)
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        try:
            _touch(path)
        except OSError:  # evicted by another process between load and touch: the loaded entry is still good
            pass
        self.hits += 1
        return entry

    def put(self, image_hash: str, model_id: str, entry: dict[str, Any]) -> Path:
        """Store ``entry`` atomically (temporary file, then ``os.replace``) and evict down to ``max_bytes``."""
        if not isinstance(entry, dict):
            raise TypeError(f"entry must be a dict, got {type(entry).__name__}")
        path = self.path(image_hash, model_id)
        # A cache: no fsync (a lost or torn entry after a crash is read as a miss and recomputed).
        payload = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in entry.items()}
        save_torch(payload, path, fsync=False)
        _touch(path)
        self.evict(keep=path)
        return path

    def entries(self) -> list[Path]:
        """All entry files, least recently used first."""
        files = []
        for path in self.directory.glob("*/*.pt"):
            try:
                files.append((path.stat().st_mtime_ns, path))
            except FileNotFoundError:
                continue
        return [path for _, path in sorted(files)]

    def size_bytes(self) -> int:
        """Total size of the entries on disk."""
        total = 0
        for path in self.entries():
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def evict(self, keep: Path | None = None) -> int:
        """Delete least recently used entries until the cache fits ``max_bytes``; return how many went."""
        sizes = []
        for path in self.entries():
            try:
                sizes.append((path, path.stat().st_size))
            except FileNotFoundError:
                continue
        total = sum(size for _, size in sizes)
        removed = 0
        for path, size in sizes:
            if total <= self.max_bytes:
                break
            if keep is not None and path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
            logger.debug("evicted %s", path)
        return removed

    def clear(self) -> None:
        """Delete every entry."""
        for path in self.entries():
            path.unlink(missing_ok=True)
