"""The part every image-encoder segmenter shares: encode once per image and model, keep it in the embedding cache.

A Segment Anything family model spends nearly all its time in the image encoder; prompts then run only the
light decoder. :class:`EncodedImageSegmenter` does the bookkeeping around that split: the content hash of the
image, the on-disk :class:`~models.embedding_cache.EmbeddingCache` (keyed by the image hash and ``model_id``,
which names the model and its checkpoint hash), and counters. A subclass says what its encoder output is
(:meth:`_encode` returns the cache entry), whether a stored entry fits its architecture (:meth:`_entry_fits`)
and how to make an entry current (:meth:`_load`).

:meth:`EncodedImageSegmenter.prefetch` encodes an image the user is likely to open next (the next one of a
review queue) in a background thread with one torch thread, leaving the other cores to the clicks of the
current image; :meth:`~EncodedImageSegmenter.set_image` of that image then takes the finished encoding, or
waits for the running one, instead of encoding it again.
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.embedding_cache import EmbeddingCache, image_hash
from models.segmenters.base import Segmenter

logger = logging.getLogger(__name__)

__all__ = ["EncodedImageSegmenter", "from_official_checkpoint"]


class EncodedImageSegmenter(Segmenter):
    """A segmenter whose image encoder runs once per image and model, its output stored in an ``EmbeddingCache``.

    ``model_id`` must name the model *and its weights* (it keys the cache). ``encoder_calls`` counts the images
    this object encoded, prefetches included (cache hits are not counted); ``last_from_cache`` says whether the
    current image's encoding came from the cache, ``last_prefetched`` whether :meth:`prefetch` made it.
    """

    source = "sam"

    def __init__(self, model_id: str, cache: EmbeddingCache | None = None, message: str = "") -> None:
        super().__init__()
        self.model_id = model_id
        self.cache = cache
        self.message = message
        self.encoder_calls = 0
        self.last_from_cache = False
        self.last_prefetched = False
        self._hash: str | None = None
        self._prefetched: dict[str, Future] = {}  # image hash -> its encoding, running or done (the newest few)
        self._prefetch_pool: ThreadPoolExecutor | None = None
        self._prefetch_lock = threading.Lock()

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """The device of the model and of every tensor it computes."""

    @abstractmethod
    def _encode(self, image: np.ndarray) -> dict[str, Any]:
        """Run the image encoder on (H, W, 3) uint8 RGB; return the cache entry (tensors on the device)."""

    @abstractmethod
    def _entry_fits(self, entry: dict[str, Any], image: np.ndarray) -> bool:
        """Whether a stored entry was made by this architecture for an image of this size."""

    @abstractmethod
    def _load(self, entry: dict[str, Any]) -> None:
        """Make ``entry`` (tensors already on the device) the current image's encoding."""

    def set_image(self, image: np.ndarray) -> None:
        """Encode ``image`` (H, W, 3) uint8 RGB, or load its encoding from the cache (or take a prefetched
        one); same image -> no work."""
        image = self.check_image(image)
        digest = image_hash(image)
        if digest == self._hash:
            return
        with self._prefetch_lock:
            pending = self._prefetched.pop(digest, None)
        entry = pending.result() if pending is not None and not pending.cancelled() else None  # waits if running
        self.last_prefetched, self.last_from_cache = entry is not None, False
        if entry is None:
            entry = self._cached(digest, image)
            self.last_from_cache = entry is not None
        if entry is None:
            entry = self._encode_and_store(digest, image)
        self._load(entry)
        self._hash = digest
        self._image_size = (int(image.shape[0]), int(image.shape[1]))

    def prefetch(self, image: np.ndarray, keep: int = 2) -> Future | None:
        """Start encoding ``image`` (H, W, 3) uint8 RGB in the background unless it is current, cached or already
        under way; returns its future (None when there is nothing to do). At most ``keep`` prefetched
        encodings are held in memory (the oldest are dropped; those in the cache stay there)."""
        image = self.check_image(image)
        digest = image_hash(image)
        with self._prefetch_lock:
            if digest == self._hash or digest in self._prefetched:
                return None
            if self.cache is not None and self.cache.contains(digest, self.model_id):
                return None
            if self._prefetch_pool is None:
                self._prefetch_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch",
                                                         initializer=torch.set_num_threads, initargs=(1,))
            future = self._prefetch_pool.submit(self._prefetch_one, digest, image)
            self._prefetched[digest] = future
            while len(self._prefetched) > keep:
                self._prefetched.pop(next(iter(self._prefetched))).cancel()
        return future

    def _prefetch_one(self, digest: str, image: np.ndarray) -> dict[str, Any] | None:
        try:
            return self._cached(digest, image) or self._encode_and_store(digest, image)
        except Exception:  # the image is encoded again when opened, where the error reaches the user
            logger.warning("prefetching the encoding of an image failed", exc_info=True)
            return None

    def _cached(self, digest: str, image: np.ndarray) -> dict[str, Any] | None:
        """The cache's entry of ``digest`` on the device, or None when absent or made for another architecture."""
        entry = self.cache.get(digest, self.model_id, map_location=self.device) if self.cache is not None else None
        if entry is None or not self._entry_fits(entry, image):
            return None
        logger.debug("encoding of %s loaded from cache", digest[:12])
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in entry.items()}

    def _encode_and_store(self, digest: str, image: np.ndarray) -> dict[str, Any]:
        entry = self._encode(image)
        self.encoder_calls += 1
        if self.cache is not None:
            self.cache.put(digest, self.model_id, entry)
        return entry


def from_official_checkpoint(
    segmenter_class: Callable[..., EncodedImageSegmenter],
    build_model: Callable[[str, Path, str | torch.device], torch.nn.Module],
    name: str,
    weights_dir: str | Path | None,
    device: str | torch.device,
    cache: EmbeddingCache | None,
    download: bool,
) -> EncodedImageSegmenter:
    """``segmenter_class(build_model(name, checkpoint, device), model_id)`` for registry model ``name`` with its
    official checkpoint (downloaded if missing and ``download``); the model id carries the first 12 hex digits of
    the file's SHA-256, so it keys the embedding cache by weights."""
    from models.weights import checkpoint_with_id

    path, model_id = checkpoint_with_id(name, weights_dir, download)
    return segmenter_class(build_model(name, path, device), model_id, cache=cache)
