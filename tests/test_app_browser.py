"""The review GUI in a real browser: Chromium driven by Playwright on a copy of the demo project (GrabCut).

Clicks on the photo create instances, a shortcut key switches to the box tool, a class is changed, undo and
redo go through the store, the image is accepted, and the COCO export is downloaded and read with
pycocotools. A screenshot of the main screen is written to ``$DHR_SCREENSHOT`` when that is set (the docs'
``docs/screenshot.png`` is made this way).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, free_port


def _sync_api():
    """Playwright's sync API, or a skip saying what is missing."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) to run "
            "the browser tests"
        )
    return pytest.importorskip("playwright.sync_api", reason="pip package 'playwright' is not installed")


def _launch_gui(store, *options: str, queue: bool = True, **build) -> tuple[object, str]:
    """Serve the GUI (GrabCut, user "tester") on ``store`` at a free 127.0.0.1 port, in this process.

    options: more `dhr gui` options (e.g. ``--auth``); build: more ``app.build_app`` keywords. Returns (the
    Gradio app, to ``close()``; its URL).
    """
    from application.commands.gui import build_gui_parser
    from application.gui import app
    from models.segmenters import build_segmenter

    port = free_port()
    args = build_gui_parser().parse_args(["--project", str(store.root), "--port", str(port), *options])
    demo = app.build_app(store, build_segmenter("grabcut"), user="tester", **build)
    if queue:
        demo.queue(default_concurrency_limit=1)
    demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs(args, store))
    return demo, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The GUI on a fresh copy of the demo project, on a free 127.0.0.1 port, in this process."""
    from annotate.review.demo import ensure_demo_project
    from application.commands.gui import build_gui_parser
    from application.gui import app
    from models.segmenters import build_segmenter

    root = tmp_path_factory.mktemp("gui") / "demo-project"
    store = ensure_demo_project(root, labels=False)  # the flow below draws every label itself
    port = free_port()
    args = build_gui_parser().parse_args(
        ["--project", str(root), "--port", str(port), "--segmenter", "grabcut"]
    )
    demo = app.build_app(store, build_segmenter("grabcut"), user="tester")
    demo.queue(default_concurrency_limit=1)
    kwargs = app.launch_kwargs(args, store)
    assert kwargs["server_name"] == "127.0.0.1" and kwargs["auth"] is None and kwargs["run_history"] is False
    demo.launch(prevent_thread_lock=True, quiet=True, **kwargs)
    yield f"http://127.0.0.1:{port}", store
    demo.close()
    store.close()


@pytest.fixture(scope="module")
def page(served):
    url, _ = served
    sync_api = _sync_api()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector("#canvas img")
        yield page
        browser.close()


def click_image(page, x: float, y: float, width: int = 512) -> None:
    """Click pixel (x, y) of the photo (``width`` px wide at full size) as shown on the canvas.

    The app sends the photo resized (``annotate.review.view.display_scale``); the browser centres it in the <img> box, scaled
    down to fit and never up (the geometry Gradio uses to report the clicked pixel).
    """
    # The canvas swaps its <img> after each edit: wait until the current one is decoded (natural size known).
    page.wait_for_function(
        "() => { const el = document.querySelector('#canvas img'); return el && el.complete && el.naturalWidth > 0; }"
    )
    img = page.locator("#canvas img")
    natural = img.evaluate("el => [el.naturalWidth, el.naturalHeight]")
    box = img.bounding_box()
    sent = natural[0] / width
    fit = min(box["width"] / natural[0], box["height"] / natural[1], 1.0)
    left = (box["width"] - natural[0] * fit) / 2
    top = (box["height"] - natural[1] * fit) / 2
    img.click(position={"x": left + (x + 0.5) * sent * fit, "y": top + (y + 0.5) * sent * fit})


def choose(page, dropdown: str, option: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.locator(dropdown).get_by_role("option", name=option, exact=True).click()


def wait_for(predicate, page, timeout_s: float = 60.0) -> None:
    """Poll a Python condition (on the store) while the page works."""
    for _ in range(int(timeout_s * 10)):
        if predicate():
            return
        page.wait_for_timeout(100)
    raise AssertionError(
        f"condition not met in {timeout_s} s; the page says: {page.locator('#message').inner_text()!r}"
    )


@pytest.mark.browser
def test_review_flow_in_browser(served, page, tmp_path):
    from pycocotools.coco import COCO

    expect = _sync_api().expect
    expect.set_options(timeout=60_000)
    _, store = served
    first = store.list_images(order="confidence")[0]
    assert first.file_name == "images/astronaut.jpg"
    expect(page.locator("#segmenter-status")).to_contain_text("GrabCut")
    expect(page.locator("#progress")).to_contain_text("0 / 4 reviewed")
    expect(page.locator("#image-info")).to_contain_text("astronaut.jpg")

    # A positive click on the orange suit creates a "person" instance covering the clicked pixel.
    click_image(page, 110, 420)
    expect(page.locator("#instances")).to_contain_text("person")
    wait_for(lambda: len(store.instances(first.id)) == 1, page)
    suit = store.instance_mask(store.instances(first.id)[0])
    # GrabCut is seeded, so the masks repeat: 80 156 px measured for the suit (at 320 px), bounds +-10 %.
    assert suit[420, 110] and 72_000 < suit.sum() < 88_000
    # The click's one reply also moved the image to "review" in the queue; no run history is kept.
    expect(page.locator("#progress")).to_contain_text("review 1")
    history = page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('gradio:run-history'))")
    assert history == []

    # "B" switches to the box tool; two clicks make a new instance around the helmet.
    page.locator("body").press("b")
    expect(page.locator("#tool input[value='box']")).to_be_checked()
    choose(page, "#new-class", "helmet")
    click_image(page, 283, 340)
    expect(page.locator("#message")).to_contain_text("corner")
    click_image(page, 508, 508)
    wait_for(lambda: len(store.instances(first.id)) == 2, page)
    expect(page.locator("#instances")).to_contain_text("helmet")
    helmet = store.instances(first.id)[1]
    assert helmet.class_id == store.classes.index("helmet") + 1
    x, y, w, h = helmet.bbox  # measured (277, 342, 235, 170): a few px into the slack band left of the box
    assert 270 <= x <= 283 and 336 <= y <= 348 and x + w > 500 and y + h > 500
    assert 30_000 < helmet.area < 37_000  # 33 578 px measured

    # The shuttle model as a third instance, then its class changed from "person" to "rocket".
    choose(page, "#new-class", "person")
    click_image(page, 360, 2)
    expect(page.locator("#message")).to_contain_text("corner")
    click_image(page, 468, 285)
    wait_for(lambda: len(store.instances(first.id)) == 3, page)
    assert store.instances(first.id)[2].class_id == 1
    choose(page, "#class-select", "rocket")
    wait_for(lambda: store.instances(first.id)[2].class_id == store.classes.index("rocket") + 1, page)
    expect(page.locator("#instances")).to_contain_text("rocket")

    # Undo ("Z") brings "person" back; redo ("Y") the rocket class, both through the store's history.
    page.locator("body").press("z")
    wait_for(lambda: store.instances(first.id)[2].class_id == 1, page)
    page.locator("body").press("y")
    wait_for(lambda: store.instances(first.id)[2].class_id == store.classes.index("rocket") + 1, page)

    page.locator("body").press("s")  # select tool, nothing selected: a clean main screen
    page.locator("#btn-deselect").click()
    expect(page.locator("#tool input[value='select']")).to_be_checked()
    page.wait_for_timeout(500)
    shot = Path(os.environ.get("DHR_SCREENSHOT") or tmp_path / "screenshot.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 50_000

    # Brush: select the helmet, paint a green stroke in the editor, apply: the stored mask grows by that much.
    page.locator("#instances").get_by_role("gridcell").filter(has_text="helmet").first.click()
    expect(page.locator("#message")).to_contain_text("instance #2: helmet")
    before = store.instances(first.id)[1].area
    page.get_by_role("tab", name="Brush / eraser").click()
    expect(page.locator("#editor canvas").first).to_be_visible()  # the brush is the editor's only tool
    assert page.locator("#editor").get_by_label("Erase", exact=True).count() == 0  # red erases instead
    canvas = page.locator("#editor canvas").first
    box = canvas.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.4
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 4):  # few pointer events: the canvas redraws in software (no GPU) at each one
        page.mouse.move(x0 + 25 * k, y0 + 8 * k)
    page.mouse.up()
    page.wait_for_timeout(2000)  # the editor uploads its strokes after the pointer events
    page.locator("#btn-brush-apply").click()
    message = page.locator("#message")
    wait_for(lambda: "instance #2: +" in message.inner_text() or "paint on the image first" in message.inner_text(), page)
    if "paint on the image first" in message.inner_text():  # a machine so busy that the upload came later
        page.wait_for_timeout(3000)
        page.locator("#btn-brush-apply").click()
    expect(message).to_contain_text("instance #2: +")
    grown = int(page.locator("#message").inner_text().split("+")[1].split()[0])
    assert grown > 100
    assert store.instances(first.id)[1].area == before + grown
    assert store.instances(first.id)[1].source == "manual"
    page.get_by_role("tab", name="Click").click()

    # Accept and go to the next image of the queue.
    page.locator("#btn-accept").click()
    expect(page.locator("#image-info")).to_contain_text("chelsea.jpg")
    expect(page.locator("#progress")).to_contain_text("1 / 4 reviewed")
    assert store.image(first.id).status == "accepted"

    # Someone else saves the open image meanwhile: the next click is refused with a clear message and the
    # page shows their version.
    chelsea = store.find_image("images/chelsea.jpg")
    store.save_labels(chelsea.id, [], user="someone-else", status="review")
    page.locator("body").press("p")
    click_image(page, 220, 150, width=451)
    expect(page.locator("#message")).to_contain_text("chelsea.jpg was changed by 'someone-else' at ")
    expect(page.locator("#image-info")).to_contain_text("status review")
    assert store.instances(chelsea.id) == [] and store.image(chelsea.id).updated_by == "someone-else"

    # Export the accepted images, download the file and read it with pycocotools.
    page.get_by_text("Export COCO").click()
    expect(page.locator("#export-statuses").get_by_label("accepted", exact=True)).to_be_checked()
    page.locator("#export-statuses").get_by_label("review", exact=True).uncheck()  # chelsea is in review
    page.locator("#btn-export").click()
    expect(page.locator("#message")).to_contain_text("included 1 image (accepted 1); left out new 2, review 1")
    link = page.locator("#export-file a").first
    expect(link).to_be_visible()
    with page.expect_download() as download:
        link.click()
    path = tmp_path / "export.json"
    download.value.save_as(path)
    coco = COCO(str(path))
    assert [img["file_name"] for img in coco.dataset["images"]] == ["images/astronaut.jpg"]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == store.classes
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[coco.dataset["images"][0]["id"]]))
    saved = store.instances(first.id)
    assert sorted(a["category_id"] for a in anns) == sorted(r.class_id for r in saved)
    for ann in anns:
        mask = coco.annToMask(ann).astype(bool)
        assert any(np.array_equal(mask, store.instance_mask(r)) for r in saved)
    exports = list((store.root / "exports").glob("coco-accepted-rle-*.json"))
    assert len(exports) == 1

    # Add an image with its tags: copied into the project, listed in the queue.
    from PIL import Image

    new_file = tmp_path / "kitten.png"
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(new_file)
    page.get_by_text("Add images").click()
    page.locator("#upload input[type=file]").set_input_files(str(new_file))
    page.locator("#upload-tags textarea, #upload-tags input").first.fill("cat")
    page.wait_for_timeout(500)
    page.locator("#btn-add").click()
    expect(page.locator("#queue")).to_contain_text("kitten.png")
    added = store.find_image("images/kitten.png")
    assert added is not None and added.tags == ("cat",) and (store.root / "images" / "kitten.png").is_file()


def test_display_scale_fits_the_canvas():
    from annotate.review.view import display_scale, image_point

    assert display_scale(np.zeros((512, 512, 3), np.uint8)) == 1.25  # small photos are enlarged
    assert display_scale(np.zeros((800, 1000, 3), np.uint8)) == 1.0
    assert display_scale(np.zeros((2000, 3200, 3), np.uint8)) == 0.5  # large ones sent smaller
    # a click on a displayed pixel maps back to the full-size pixel under its centre
    assert image_point((137, 500), np.zeros((512, 512, 3), np.uint8)) == pytest.approx((109.5, 399.9))
    assert image_point((10, 20), np.zeros((2000, 3200, 3), np.uint8)) == (20.5, 40.5)


def test_login_required_when_asked(tmp_path):
    """``--auth user:pass``: nothing is served before a login; a wrong password is refused."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    from annotate.review.demo import ensure_demo_project

    store = ensure_demo_project(tmp_path / "demo-project")
    demo, url = _launch_gui(store, "--auth", "ann:s3cret", queue=False)
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/config", timeout=30)
        assert refused.value.code == 401

        def login(password: str) -> int:
            data = urllib.parse.urlencode({"username": "ann", "password": password}).encode()
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(f"{url}/login", data=data), timeout=30
                ) as r:
                    return r.status
            except urllib.error.HTTPError as error:
                return error.code

        assert login("wrong") == 400
        assert login("s3cret") == 200
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        data = urllib.parse.urlencode({"username": "ann", "password": "s3cret"}).encode()
        opener.open(urllib.request.Request(f"{url}/login", data=data), timeout=30)
        with opener.open(f"{url}/config", timeout=30) as response:
            assert json.loads(response.read())["components"]
    finally:
        demo.close()
        store.close()


@pytest.mark.browser
def test_a_truncated_image_never_breaks_the_page(page, tmp_path):
    """A truncated image first in the queue: every new tab still loads, names it, and it can be removed there;
    a truncated upload is refused by name."""
    from PIL import Image

    from annotate.store import ProjectStore

    sync_api = _sync_api()
    expect = sync_api.expect
    expect.set_options(timeout=60_000)
    incoming = tmp_path / "in"
    incoming.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for name in ("a-broken.jpg", "b.jpg", "cut.jpg"):
        Image.fromarray(pixels).save(incoming / name, quality=90)
    for name in ("a-broken.jpg", "cut.jpg"):
        data = (incoming / name).read_bytes()
        (incoming / name).write_bytes(data[: len(data) // 3])
    store = ProjectStore.create(tmp_path / "proj", ["cat", "dog"])
    store.add_image(incoming / "a-broken.jpg", ["cat"])  # header only, as uploads were once checked
    store.add_image(incoming / "b.jpg", ["dog"])
    demo, url = _launch_gui(store)
    browser = page.context.browser  # the module's browser (one Playwright instance per process)
    tabs = []
    try:
        for _ in range(2):  # every new tab loads
            tab = browser.new_page(viewport={"width": 1600, "height": 1000})
            tabs.append(tab)
            tab.goto(url)
            expect(tab.locator("#message")).to_contain_text("images/a-broken.jpg cannot be opened")
            expect(tab.locator("#queue")).to_contain_text("b.jpg")
            expect(tab.locator("#progress")).to_contain_text("0 / 2 reviewed")
        assert str(store.root) not in tab.locator("#message").inner_text()

        tab.get_by_text("Add images").click()
        tab.locator("#upload input[type=file]").set_input_files(str(incoming / "cut.jpg"))
        tab.locator("#upload-tags textarea, #upload-tags input").first.fill("cat")
        tab.wait_for_timeout(500)
        tab.locator("#btn-add").click()
        expect(tab.locator("#message")).to_contain_text("refused 1: cut.jpg: corrupt or truncated image")
        assert store.find_image("images/cut.jpg") is None

        tab.get_by_text("Remove image").click()
        box = tab.locator("#remove-name textarea, #remove-name input").first
        expect(box).to_have_value("images/a-broken.jpg")
        tab.locator("#btn-remove").click()
        expect(tab.locator("#message")).to_contain_text("removed images/a-broken.jpg")
        expect(tab.locator("#queue")).not_to_contain_text("a-broken")
        expect(tab.locator("#image-info")).to_contain_text("b.jpg")
        assert store.find_image("images/a-broken.jpg") is None
        assert [r.file_name for r in store.list_images()] == ["images/b.jpg"]

        fresh = browser.new_page(viewport={"width": 1600, "height": 1000})
        tabs.append(fresh)
        fresh.goto(url)
        fresh.wait_for_selector("#canvas img")
        expect(fresh.locator("#image-info")).to_contain_text("b.jpg")
    finally:
        for tab in tabs:
            tab.close()
        demo.close()
        store.close()


@pytest.mark.browser
def test_edits_go_on_while_a_labelling_job_runs(page, tmp_path, monkeypatch):
    """A labelling job runs in the background: while it runs a click on the photo makes an instance that is
    saved, and the job then leaves that image as the person left it and refreshes the queue."""
    import threading

    from PIL import Image

    from annotate.store import ProjectStore
    from application.gui import jobs_panel
    from dhr import DHRConfig
    from tests.synthetic_dataset import CLASSES, make_samples

    expect = _sync_api().expect
    expect.set_options(timeout=60_000)
    edited = threading.Event()
    real = jobs_panel.run_bootstrap

    def held_bootstrap(*args, on_progress=None, **kwargs):  # the job waits for the edit: it surely runs meanwhile
        on_progress(0.0, "waiting for the test's edit")
        assert edited.wait(120), "the edit made during the job never reached the store"
        return real(*args, on_progress=on_progress, **kwargs)

    monkeypatch.setattr(jobs_panel, "run_bootstrap", held_bootstrap)
    store = ProjectStore.create(tmp_path / "project", list(CLASSES))
    samples = {s.name: s for s in make_samples(4, (160, 160), seed=1, background="photo")}
    for sample in samples.values():
        Image.fromarray(sample.image).save(tmp_path / sample.name)
        store.add_image(tmp_path / sample.name, list(sample.tags))
    tiny = {"backbone": "resnet_tiny", "pretrained": False, "epochs": 1, "crop_size": 64, "uss": "color",
            "cam_scales": (1.0,), "cam_flip": False, "dhr": DHRConfig(crf=False), "progress": False}
    demo, url = _launch_gui(store, bootstrap_options=tiny)
    tab = page.context.browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        tab.goto(url)
        tab.wait_for_selector("#canvas img")
        first = store.list_images(order="confidence")[0]  # the image the page opens
        expect(tab.locator("#image-info")).to_contain_text(first.file_name)
        tab.get_by_role("button", name="Automatic labelling").click()
        expect(tab.locator("#job-plan")).to_contain_text("All images: labels 4 image(s)")
        expect(tab.locator("#job-models")).to_contain_text("GrabCut fallback")
        tab.locator("#btn-boot-all").click()
        expect(tab.locator("#job")).to_contain_text("waiting for the test's edit")  # the job is running

        sample = samples[first.file_name.rpartition("/")[2]]
        cls = sample.gt.max()  # an object of the photo: click its centre while the job runs
        ys, xs = np.nonzero(sample.gt == cls)
        choose(tab, "#new-class", CLASSES[cls - 1])
        click_image(tab, float(np.median(xs)), float(np.median(ys)), width=160)
        wait_for(lambda: len(store.instances(first.id)) == 1, tab)
        expect(tab.locator("#instances")).to_contain_text(CLASSES[cls - 1])
        mine = store.image(first.id)
        assert mine.updated_by == "tester" and mine.status == "review"
        saved = [(r.class_id, r.rle["counts"]) for r in store.instances(first.id)]
        edited.set()

        expect(tab.locator("#job")).to_contain_text("finished", timeout=300_000)
        text = tab.locator("#job").inner_text()
        assert "3 image(s) labelled" in text and f"1 edited by hand: {sample.name}" in text  # left alone
        assert "trained from scratch" in text and "expect rough masks" in text
        assert store.image(first.id).version == mine.version  # exactly as the person saved it
        assert [(r.class_id, r.rle["counts"]) for r in store.instances(first.id)] == saved
        assert {r.status for r in store.list_images() if r.id != first.id} == {"pseudo"}
        expect(tab.locator("#queue")).to_contain_text("pseudo")  # the queue was refreshed when it ended
    finally:
        edited.set()
        tab.close()
        demo.close()
        store.close()


@pytest.mark.browser
def test_first_screen_shows_the_demo_labels_and_the_hint(page, tmp_path):
    """The demo opens with its bundled labels to review and the start-here hint, on a 1366 x 768 screen; the
    screenshot is written to ``$DHR_FIRST_SCREEN`` when set (``docs/screenshot-first-screen.png`` is made so)."""
    from annotate.review.demo import ensure_demo_project

    expect = _sync_api().expect
    expect.set_options(timeout=60_000)
    store = ensure_demo_project(tmp_path / "demo-project")
    demo, url = _launch_gui(store)
    tab = page.context.browser.new_page(viewport={"width": 1366, "height": 768})
    try:
        tab.goto(url)
        tab.wait_for_selector("#canvas img")
        expect(tab.locator("#start-hint")).to_contain_text("Start here")
        expect(tab.locator("#progress")).to_contain_text("0 / 4 reviewed · new 0 · pseudo 0 · review 4")
        first = store.list_images(order="confidence")[0]
        expect(tab.locator("#image-info")).to_contain_text(first.file_name)
        for inst in store.instances(first.id):  # the open photo's labels are listed
            expect(tab.locator("#instances")).to_contain_text(store.classes[inst.class_id - 1])
        expect(tab.locator("#segmenter-select input")).to_have_value("grabcut")
        tab.wait_for_timeout(500)
        shot = Path(os.environ.get("DHR_FIRST_SCREEN") or tmp_path / "first-screen.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(shot))
        assert shot.stat().st_size > 50_000
    finally:
        tab.close()
        demo.close()
        store.close()


@pytest.mark.browser
def test_editing_at_1366x768_keys_picks_and_clean_up(page, tmp_path):
    """At 1366 x 768 every action button and the message line are on the first screen; keys on the opacity
    slider stay on it, a typed opacity redraws, a canvas click selects, a class is deleted in one step and
    undone by Z without touching the status, and R rejects and opens the next image."""
    from PIL import Image

    from annotate.store import NewInstance, ProjectStore

    expect = _sync_api().expect
    expect.set_options(timeout=60_000)
    h, w = 300, 400
    yy, xx = np.mgrid[:h, :w]
    balls = [(xx - cx) ** 2 + (yy - cy) ** 2 <= 30**2 for cx, cy in ((100, 100), (300, 200))]
    box = (xx >= 200) & (xx < 260) & (yy >= 40) & (yy < 100)
    store = ProjectStore.create(tmp_path / "proj", ["ball", "box"])
    for name in ("one.png", "two.png"):
        Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(tmp_path / name)
        store.add_image(tmp_path / name, ["ball", "box"])
    first = store.find_image("images/one.png").id
    store.save_labels(
        first, [NewInstance(1, balls[0]), NewInstance(2, box), NewInstance(1, balls[1])], user="bootstrap",
        status="pseudo", confidence=0.1,
    )
    demo, url = _launch_gui(store)
    tab = page.context.browser.new_page(viewport={"width": 1366, "height": 768})
    try:
        tab.set_default_timeout(60_000)
        tab.goto(url)
        tab.wait_for_selector("#canvas img")
        expect(tab.locator("#image-info")).to_contain_text("one.png")
        for element in ("#btn-prev", "#btn-next", "#btn-undo", "#btn-redo", "#btn-reject", "#btn-accept", "#message"):
            b = tab.locator(element).bounding_box()
            assert b is not None and b["x"] >= 0 and b["y"] >= 0, element
            assert b["x"] + b["width"] <= 1366 and b["y"] + b["height"] <= 768, (element, b)
        queue = tab.locator("#queue").bounding_box()
        conf = tab.locator("#queue").get_by_text("conf.", exact=True).first.bounding_box()
        assert conf["x"] + conf["width"] <= queue["x"] + queue["width"] + 1, (conf, queue)  # not cut off

        # Arrow keys on the focused slider move the slider, not the image; a typed value redraws the canvas.
        tab.locator("#opacity input[type=range]").focus()
        tab.keyboard.press("ArrowRight")
        tab.wait_for_timeout(500)
        expect(tab.locator("#image-info")).to_contain_text("one.png")
        old = tab.locator("#canvas img").get_attribute("src")
        number = tab.locator("#opacity input[type=number]")
        number.fill("0.9")
        number.press("Enter")
        tab.wait_for_function(
            "old => { const i = document.querySelector('#canvas img'); return i && i.src !== old; }", arg=old
        )
        expect(tab.locator("#image-info")).to_contain_text("one.png")

        # The select tool picks the instance under the click; its row is marked and in view.
        tab.locator("body").click(position={"x": 5, "y": 5})
        tab.keyboard.press("s")
        expect(tab.locator("#tool input[value='select']")).to_be_checked()
        click_image(tab, 230, 70, width=w)
        expect(tab.locator("#message")).to_contain_text("selected instance #2")
        row = tab.locator("#instances span", has_text="▶ 2").first  # the table's shown cell
        expect(row).to_be_visible()
        inside, listed = row.bounding_box(), tab.locator("#instances").bounding_box()
        assert listed["y"] <= inside["y"] and inside["y"] + inside["height"] <= listed["y"] + listed["height"]

        # Delete every ball at once: one saved version; Z brings both back and the image stays as it was.
        choose(tab, "#bulk-class", "ball")
        version = store.image(first).version
        tab.locator("#btn-delete-class").click()
        expect(tab.locator("#message")).to_contain_text("deleted 2 ball instances")
        assert [r.class_id for r in store.instances(first)] == [2] and store.image(first).version == version + 1
        tab.locator("body").click(position={"x": 5, "y": 5})
        tab.keyboard.press("z")
        expect(tab.locator("#message")).to_contain_text("undone: the last label edit (1 → 3 instances)")
        assert len(store.instances(first)) == 3

        # R rejects the image and opens the next one.
        tab.keyboard.press("r")
        expect(tab.locator("#image-info")).to_contain_text("two.png")
        assert store.image(first).status == "rejected"
    finally:
        tab.close()
        demo.close()
        store.close()
