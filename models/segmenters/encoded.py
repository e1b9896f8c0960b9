"""The part every image-encoder segmenter shares: encode once per image and model, keep it in the embedding cache.

A Segment Anything family model spends nearly all its time in the image encoder; prompts then run only the
light decoder. :class:`EncodedImageSegmenter` does the bookkeeping around that split: the content hash of the
image, the on-disk :class:`~models.embedding_cache.EmbeddingCache` (keyed by the image hash and ``model_id``,
which names the model and its checkpoint hash), and counters. A subclass says what its encoder output is
(:meth:`_encode` returns the cache entry), whether a stored entry fits its architecture (:meth:`_entry_fits`)
and how to make an entry current (:meth:`_load`).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable
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
    this object encoded (cache hits are not counted); ``last_from_cache`` says whether the current image's
    encoding came from the cache.
    """

    source = "sam"

    def __init__(self, model_id: str, cache: EmbeddingCache | None = None, message: str = "") -> None:
        super().__init__()
        self.model_id = model_id
        self.cache = cache
        self.message = message
        self.encoder_calls = 0
        self.last_from_cache = False
        self._hash: str | None = None

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
        """Encode ``image`` (H, W, 3) uint8 RGB, or load its encoding from the cache; same image -> no work."""
        image = self.check_image(image)
        digest = image_hash(image)
        if digest == self._hash:
            return
        entry = self.cache.get(digest, self.model_id, map_location=self.device) if self.cache is not None else None
        if entry is not None and self._entry_fits(entry, image):
            entry = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in entry.items()}
            self.last_from_cache = True
            logger.debug("encoding of %s loaded from cache", digest[:12])
        else:
            entry = self._encode(image)
            self.encoder_calls += 1
            self.last_from_cache = False
            if self.cache is not None:
                self.cache.put(digest, self.model_id, entry)
        self._load(entry)
        self._hash = digest
        self._image_size = (int(image.shape[0]), int(image.shape[1]))


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
