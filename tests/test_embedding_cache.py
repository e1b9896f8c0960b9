"""Embedding cache: content-hash keys, LRU size cap, atomic writes, reuse by SAM across sessions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from models.embedding_cache import EmbeddingCache, image_hash
from models.segmenters import SamSegmenter, build_tiny_sam


def _image(seed: int = 0, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def _entry(value: float, numel: int = 1000) -> dict:
    return {"features": torch.full((1, numel), value), "original_size": (48, 64), "input_size": (48, 64)}


def test_image_hash_follows_content() -> None:
    image = _image()
    assert image_hash(image) == image_hash(image.copy())
    changed = image.copy()
    changed[10, 10, 0] ^= 1
    assert image_hash(changed) != image_hash(image)
    # Same bytes, other shape: other key.
    assert image_hash(image.reshape(64, 48, 3)) != image_hash(image)


def test_round_trip_and_counts(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    key = image_hash(_image())
    assert cache.get(key, "model-a") is None
    cache.put(key, "model-a", _entry(3.0))
    entry = cache.get(key, "model-a")
    assert torch.equal(entry["features"], torch.full((1, 1000), 3.0))
    assert tuple(entry["original_size"]) == (48, 64)
    assert cache.get(key, "model-b") is None  # keyed by model too
    assert (cache.hits, cache.misses) == (1, 2)
    with pytest.raises(ValueError, match="hex digest"):
        cache.get("../../etc/passwd", "model-a")


def test_lru_eviction_keeps_recently_used(tmp_path: Path) -> None:
    keys = [image_hash(_image(seed)) for seed in range(3)]
    probe = EmbeddingCache(tmp_path / "probe")
    one_entry = probe.put(keys[0], "m", _entry(0.0)).stat().st_size
    cache = EmbeddingCache(tmp_path / "cache", max_bytes=int(2.5 * one_entry))
    cache.put(keys[0], "m", _entry(0.0))
    cache.put(keys[1], "m", _entry(1.0))
    assert cache.get(keys[0], "m") is not None  # 0 is now more recent than 1
    cache.put(keys[2], "m", _entry(2.0))
    assert cache.get(keys[1], "m") is None
    assert cache.get(keys[0], "m") is not None and cache.get(keys[2], "m") is not None
    assert cache.size_bytes() <= cache.max_bytes


def test_unreadable_entry_is_a_miss(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    key = image_hash(_image())
    path = cache.put(key, "m", _entry(1.0))
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="unreadable"):
        assert cache.get(key, "m") is None
    assert not path.exists()


def test_concurrent_writes_leave_one_complete_entry(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    key = image_hash(_image())
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda v: cache.put(key, "m", _entry(float(v), numel=50_000)), range(8)))
    entry = EmbeddingCache(tmp_path).get(key, "m")
    values = entry["features"].unique()
    assert len(values) == 1 and 0 <= values.item() <= 7  # one writer's whole entry, never a mix
    assert [p.name for p in (tmp_path / "m").iterdir()] == [f"{key}.pt"]  # no temporary files left


def test_sam_reuses_embedding_across_sessions_and_misses_on_change(tmp_path: Path) -> None:
    model = build_tiny_sam()
    image = _image(shape=(60, 90))
    first = SamSegmenter(model, "tiny-test", cache=EmbeddingCache(tmp_path))
    first.set_image(image)
    assert not first.last_from_cache
    reference = first.predict(point_coords=np.array([[40.0, 30.0]]), point_labels=np.array([1]))

    cache = EmbeddingCache(tmp_path)  # a new session over the same folder
    second = SamSegmenter(model, "tiny-test", cache=cache)
    second.set_image(image)
    assert second.last_from_cache and (cache.hits, cache.misses) == (1, 0)
    assert torch.equal(second.embedding, first.embedding)
    again = second.predict(point_coords=np.array([[40.0, 30.0]]), point_labels=np.array([1]))
    np.testing.assert_array_equal(again.masks, reference.masks)
    np.testing.assert_allclose(again.scores, reference.scores, rtol=1e-6)

    changed = image.copy()
    changed[0, 0] = 255 - changed[0, 0]
    second.set_image(changed)
    assert not second.last_from_cache and cache.misses == 1
    assert not torch.equal(second.embedding, first.embedding)

    # A cached entry of another architecture under the same id is not used.
    other = SamSegmenter(build_tiny_sam(img_size=128), "tiny-test", cache=EmbeddingCache(tmp_path))
    other.set_image(image)
    assert not other.last_from_cache and other.embedding.shape == (32, 8, 8)


class _ThreadRecordingSam(SamSegmenter):
    """A tiny SAM that records the torch thread count each encoding ran with."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.encode_threads: list[int] = []

    def _encode(self, image: np.ndarray) -> dict:
        self.encode_threads.append(torch.get_num_threads())
        return super()._encode(image)


@pytest.mark.parametrize("with_cache", [True, False])
def test_prefetch_encodes_the_next_image_once_in_the_background(tmp_path: Path, with_cache: bool) -> None:
    """``prefetch`` encodes an image with one torch thread; opening it then takes that encoding (no second
    encoder run, same masks as a fresh segmenter's); a current or cached image is not prefetched."""
    model = build_tiny_sam()
    current, following = _image(1, (60, 90)), _image(2, (60, 90))
    cache = EmbeddingCache(tmp_path) if with_cache else None
    segmenter = _ThreadRecordingSam(model, "tiny-test", cache=cache)
    segmenter.set_image(current)
    assert segmenter.prefetch(current) is None  # already current
    future = segmenter.prefetch(following)
    assert future is not None and segmenter.prefetch(following) is None  # already under way
    future.result(timeout=60)
    assert segmenter.encode_threads == [torch.get_num_threads(), 1]
    segmenter.set_image(following)
    assert segmenter.last_prefetched and segmenter.encoder_calls == 2
    click = {"point_coords": np.array([[40.0, 30.0]]), "point_labels": np.array([1])}
    fresh = SamSegmenter(model, "tiny-fresh")
    fresh.set_image(following)
    np.testing.assert_array_equal(segmenter.predict(**click).masks, fresh.predict(**click).masks)
    assert torch.equal(segmenter.embedding, fresh.embedding)
    if with_cache:
        again = SamSegmenter(model, "tiny-test", cache=cache)
        assert again.prefetch(following) is None  # in the cache: nothing to do
        again.set_image(following)
        assert again.last_from_cache and again.encoder_calls == 0
