"""The review page's handlers without a browser: a bad image never breaks the page, uploads are decoded whole,
and images can be removed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.store import ProjectStore

H, W = 24, 32


def _png(path: Path, seed: int = 0, truncate: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def handlers(tmp_path: Path):
    """Handlers over a project whose first image (by name) is truncated; components are named by strings."""
    from application.gui.handlers import Page, ReviewHandlers

    store = ProjectStore.create(tmp_path / "proj", ["cat", "dog"])
    store.add_image(_png(tmp_path / "in" / "a-broken.png", truncate=True), ["cat"])  # header only: accepted
    store.add_image(_png(tmp_path / "in" / "b.png", seed=1), ["dog"])
    page = Page(**{f.name: f.name for f in dataclasses.fields(Page)})
    yield ReviewHandlers(page, store, None, user="tester")
    store.close()


def test_the_page_loads_with_a_broken_image_first(handlers) -> None:
    out = handlers.on_load(None)
    assert "images/a-broken.png cannot be opened" in out["message_md"]
    assert "truncated" in out["message_md"] and "Remove image" in out["message_md"]
    assert str(handlers.store.root) not in out["message_md"]  # no server paths on the page
    assert out["remove_box"] == "images/a-broken.png"
    assert [row[1] for row in out["queue_df"]] == ["a-broken.png", "b.png"]
    assert out["progress_md"].startswith("**0 / 2 reviewed**")
    ui = out["state"]
    assert ui.session.image_id is None and out["canvas"] is None


def test_a_broken_image_picked_in_the_queue_is_offered_for_removal(handlers) -> None:
    import gradio as gr

    ui = handlers.on_load(None)["state"]
    good = handlers.store.find_image("images/b.png")
    ui.session.open_image(good.id)
    broken = handlers.store.find_image("images/a-broken.png")
    event = gr.SelectData(
        None, {"index": [0, 0], "value": broken.id, "row_value": [broken.id, "a-broken.png"]}
    )
    out = handlers.on_queue_select(ui, event)
    assert "a-broken.png cannot be opened" in out["message_md"] and out["remove_box"] == "images/a-broken.png"
    assert ui.session.image_id == good.id  # the open image stays open


def test_remove_the_broken_image_then_the_queue_opens_the_next(handlers) -> None:
    root = handlers.store.root
    ui = handlers.on_load(None)["state"]
    out = handlers.on_remove(ui, "images/a-broken.png")
    assert out["message_md"].startswith("removed images/a-broken.png")
    assert [row[1] for row in out["queue_df"]] == ["b.png"] and out["remove_box"] == ""
    assert handlers.store.find_image("images/a-broken.png") is None
    assert not (root / "images" / "a-broken.png").exists()
    assert len(list((root / "removed").rglob("a-broken.png"))) == 1  # moved aside, not deleted
    assert ui.session.image_id == handlers.store.find_image("images/b.png").id
    assert handlers.on_load(None)["message_md"] == ""  # a new tab loads cleanly
    missing = handlers.on_remove(ui, "nope.png")
    assert "no image 'nope.png'" in missing["message_md"]


def test_uploads_are_decoded_whole(handlers, tmp_path: Path) -> None:
    ui = handlers.on_load(None)["state"]
    upload = tmp_path / "gradio-tmp" / "0123abcd"
    bad = _png(upload / "cut.png", seed=3, truncate=True)
    good = _png(upload / "fine.png", seed=4)
    out = handlers.on_add_images(ui, [str(bad), str(good)], "cat")
    message = out["message_md"]
    assert message.startswith("⚠️ added 1 image(s): fine.png; refused 1: cut.png: corrupt or truncated image")
    assert str(upload) not in message
    assert handlers.store.find_image("images/cut.png") is None
    assert not (handlers.store.root / "images" / "cut.png").exists()
    assert handlers.store.find_image("images/fine.png").tags == ("cat",)


def test_a_busy_project_gives_a_clear_message(tmp_path: Path) -> None:
    """Another process holds the write lock: an edit answers in about busy_timeout with who holds it."""
    import multiprocessing

    from application.gui.handlers import Page, ReviewHandlers
    from tests.test_db_health import _hold_write_lock

    with ProjectStore.create(tmp_path / "proj", ["cat"]) as store:
        store.add_image(_png(tmp_path / "in" / "b.png", seed=1), ["cat"])
    store = ProjectStore.open(tmp_path / "proj", busy_timeout=0.5)
    page = Page(**{f.name: f.name for f in dataclasses.fields(Page)})
    handlers = ReviewHandlers(page, store, None, user="tester")
    ui = handlers.on_load(None)["state"]
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_write_lock, args=(str(store.root), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        out = handlers.on_reject(ui)
        assert out["message_md"].startswith(f"⚠️ project.db: the project is busy: process {holder.pid} (")
        assert str(store.root) not in out["message_md"]
        assert store.image(ui.session.image_id).status == "new"
    finally:
        release.set()
        holder.join(60)
        store.close()
