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


def test_the_brush_editor_is_bounded_keeps_strokes_and_red_erases(tmp_path: Path) -> None:
    """A 2400 x 1800 photo goes to the editor at 1024 px; reopening the tab keeps unapplied strokes; green strokes
    add pixels, red ones erase them, mapped back to full size."""
    import gradio as gr

    from annotate.store import NewInstance
    from application.gui.handlers import Page, ReviewHandlers

    big = tmp_path / "in" / "big.png"
    big.parent.mkdir(parents=True)
    Image.fromarray(np.full((1800, 2400, 3), 90, np.uint8)).save(big)
    store = ProjectStore.create(tmp_path / "proj", ["cat"])
    image_id = store.add_image(big, ["cat"])
    square = np.zeros((1800, 2400), bool)
    square[400:1400, 600:1600] = True
    store.save_labels(image_id, [NewInstance(1, square)], user="bootstrap")
    page = Page(**{f.name: f.name for f in dataclasses.fields(Page)})
    handlers = ReviewHandlers(page, store, None, user="tester")
    try:
        ui = handlers.on_load(None)["state"]
        ui.session.select(0)
        sent = handlers.on_brush_open(ui)["editor"]
        assert sent["background"].shape == (768, 1024, 3)  # 1024 px long side, not 2400
        again = handlers.on_brush_open(ui)["editor"]
        assert isinstance(again, type(gr.skip()))  # the same picture: the strokes painted on it stay
        layer = np.zeros((768, 1024, 4), np.uint8)
        layer[100:200, 700:800] = (40, 200, 40, 255)  # green, outside the square: +100 x 100 editor px
        out = handlers.on_brush_apply(ui, {"background": sent["background"], "layers": [layer], "composite": None})
        added = int(out["message_md"].split("+")[1].split()[0])
        assert abs(added - 100 * 100 * (2400 / 1024) ** 2) < 0.02 * added
        layer[:] = 0
        layer[300:400, 300:400] = (230, 30, 30, 255)  # red, inside the square: erased
        out = handlers.on_brush_apply(ui, {"background": None, "layers": [layer], "composite": None})
        erased = -int(out["message_md"].split(": ")[1].split()[0])
        assert abs(erased - 100 * 100 * (2400 / 1024) ** 2) < 0.02 * erased
        mask = store.instance_mask(store.instances(image_id)[0])
        assert not mask[300 * 1800 // 768 + 20, 300 * 2400 // 1024 + 20] and mask[1000, 1000]
        assert mask.sum() == square.sum() + added - erased
    finally:
        store.close()


def test_typed_opacity_is_used_and_clamped(handlers) -> None:
    ui = handlers.on_load(None)["state"]
    good = handlers.store.find_image("images/b.png")
    ui.session.open_image(good.id)
    out = handlers.on_display(ui, 0.8, [1, 2])
    assert ui.opacity == 0.8 and out["canvas"] is not None and out["message_md"] == ""
    out = handlers.on_display(ui, 7, [1])
    assert ui.opacity == 1.0 and ui.hidden == {2} and "outside 0-1" in out["message_md"]
    assert "must be a number" in handlers.on_display(ui, "x", [1])["message_md"]


def test_export_defaults_to_reviewed_images_and_says_what_it_took(handlers) -> None:
    import json

    ui = handlers.on_load(None)["state"]
    good = handlers.store.find_image("images/b.png")
    handlers.store.set_status(good.id, "accepted", user="t")
    out = handlers.on_export(ui, ["accepted", "review"], True)
    message = out["message_md"]
    assert "exported 1 images" in message and "included 1 image (review 0, accepted 1); left out new 1" in message
    path = handlers.store.root / message.split(" to ")[1].split(";")[0]
    assert path.name.startswith("coco-accepted-review-polygons-") and json.loads(path.read_text())["images"]
    rle = handlers.on_export(ui, ["new"], False)["message_md"]
    assert "coco-new-rle-" in rle and "left out accepted 1" in rle
    assert "tick at least one status" in handlers.on_export(ui, [], False)["message_md"]


def _box_mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_an_edit_reply_carries_the_queue_only_when_the_images_row_changed(handlers) -> None:
    """An edit is one request: its reply holds the queue when the open image's row there changed (status,
    confidence or check), and leaves the queue alone otherwise; dropdowns get plain values."""
    import gradio as gr

    from annotate.store import NewInstance

    store = handlers.store
    good = store.find_image("images/b.png")
    pieces = [_box_mask(0, 6, 0, 8), _box_mask(10, 16, 0, 8), _box_mask(18, 24, 20, 30)]
    store.save_labels(good.id, [NewInstance(2, m, source="sam") for m in pieces], user="bootstrap",
                      status="pseudo", confidence=0.3)
    ui = handlers.on_load(None)["state"]
    assert ui.queue_shown[good.id][2:] == ["pseudo", 0.3, "⚠ low confidence"]
    ui.session.open_image(good.id)
    confidences = []
    for kept in (2, 1, 0):
        ui.session.select(0)
        out = handlers.on_delete(ui)
        assert len(ui.session.instances) == kept and store.image(good.id).status == "review"
        assert out["class_dd"] is None and out["new_class_dd"] == 2  # plain values, no component update
        confidences.append(store.image(good.id).confidence)
        if kept == 1:  # the same status, confidence and check as already shown: no queue in the reply
            assert "queue_df" not in out and "progress_md" not in out
        else:  # first edit (pseudo -> review, a person's labels now), then the tagged class's last instance
            (row,) = [r for r in out["queue_df"] if r[0] == good.id]
            assert row[2:] == ["review", round(confidences[-1], 3), ""]
            assert out["progress_md"].startswith("**0 / 2 reviewed**") and "review 1" in out["progress_md"]
    assert confidences[0] == confidences[1] > confidences[2]
    first = handlers.on_deselect(ui)["merge_dd"]
    assert first is None  # the choices were sent with the last delete: only the pick is cleared
    ui.session.instances.clear()
    store.save_labels(good.id, [NewInstance(1, m) for m in pieces[:2]], user="tester")
    ui.session.reload()
    update = handlers.on_deselect(ui)["merge_dd"]
    assert isinstance(update, gr.Dropdown) and update.value is None
    assert [label for label, _ in update.choices] == ["#1 cat · 48 px · manual", "#2 cat · 48 px · manual"]


def test_an_edit_that_meets_a_newer_version_shows_it_in_the_queue_too(handlers) -> None:
    from annotate.store import NewInstance

    store = handlers.store
    good = store.find_image("images/b.png")
    store.save_labels(good.id, [NewInstance(2, _box_mask(0, 6, 0, 8))], user="tester")
    ui = handlers.on_load(None)["state"]
    ui.session.open_image(good.id)
    store.set_status(good.id, "accepted", user="other")  # another annotator, meanwhile
    ui.session.select(0)
    with pytest.warns(UserWarning, match="changed by 'other'"):  # gr.Warning outside a served page
        out = handlers.on_delete(ui)
    assert "was changed by 'other'" in out["message_md"] and len(out["instances_df"]) == 1
    (row,) = [r for r in out["queue_df"] if r[0] == good.id]
    assert row[2] == "accepted" and store.instances(good.id) != []
