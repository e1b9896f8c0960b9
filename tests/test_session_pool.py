"""The GUI's memory is bounded: only the most recently used tabs keep their image, closed tabs free theirs."""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from annotate.review.pool import SessionPool
from annotate.store import NewInstance, ProjectStore

H, W = 600, 800  # 0.48 MP: 1.4 MB of pixels, 0.48 MB per mask


@pytest.fixture
def handlers(tmp_path: Path):
    from application.gui.handlers import Page, ReviewHandlers

    pixels = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.png")
    store = ProjectStore.create(tmp_path / "proj", ["cat"])
    image_id = store.add_image(tmp_path / "big.png", ["cat"])
    masks = [np.zeros((H, W), bool) for _ in range(3)]
    for i, mask in enumerate(masks):
        mask[50 * i : 50 * i + 150, 100:450] = True
    store.save_labels(image_id, [NewInstance(1, m) for m in masks], user="t")
    page = Page(**{f.name: f.name for f in dataclasses.fields(Page)})
    yield ReviewHandlers(page, store, None, user="tester", pool=SessionPool(max_loaded=2))
    store.close()


def _tab(name: str) -> SimpleNamespace:
    return SimpleNamespace(username=None, session_hash=name)


def test_twenty_rounds_of_four_tabs_stay_bounded(handlers) -> None:
    one_tab = H * W * 3 + 3 * H * W  # the pixels and three masks
    tracemalloc.start()
    try:
        peaks = []
        for round_ in range(20):
            tabs = [handlers.on_load(_tab(f"r{round_}t{t}"))["state"] for t in range(4)]
            assert sum(ui.session.image is not None for ui in tabs) == 2  # only the 2 most recent
            for t in range(4):
                handlers.on_unload(_tab(f"r{round_}t{t}"))
            assert all(ui.session.image is None for ui in tabs)
            del tabs
            peaks.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert max(peaks) < 3 * one_tab, f"{max(peaks) / 1e6:.1f} MB held after closing every tab"
    assert peaks[-1] < peaks[1] + one_tab / 2  # no growth from round to round
    assert handlers.pool.loaded == 0


def test_a_released_tab_reads_its_image_again_when_used(handlers) -> None:
    first = handlers.on_load(_tab("a"))["state"]
    image_id = first.session.image_id
    handlers.on_load(_tab("b"))
    handlers.on_load(_tab("c"))
    assert first.session.image is None and first.session.released
    out = handlers.on_deselect(first)  # any action of that tab
    assert first.session.image is not None and first.session.image_id == image_id
    assert len(first.session.instances) == 3 and out["canvas"] is not None


def test_a_session_in_a_handler_is_never_released(handlers) -> None:
    pool = SessionPool(max_loaded=1)
    first = handlers.on_load(_tab("a"))["state"]
    second = handlers.on_load(_tab("b"))["state"]
    with pool.using(first):
        assert first.session.image is not None
        pool.use(second)  # another tab's handler meanwhile
        assert first.session.image is not None and second.session.image is not None
    assert first.session.image is None and second.session.image is not None  # the bound, once it is done
    assert pool.loaded == 1
