"""Click latency of the review GUI: from a click in the browser to the updated overlay on screen.

Serves the GUI on a temporary copy of the demo project and drives Debian's Chromium with Playwright: each
click adds a point to an instance on the astronaut photo; the time runs from the click until the new overlay
image has loaded in the page, by the page's own clock (``performance.now()`` at the click event and at the first
animation frame after the new image's ``load`` event; ``--watch frames`` instead polls the page at every animation
frame for the new image decoded, which keeps the browser busy on the same cores while the server works), and as
this script sees it (which adds Playwright's checks of the target before it clicks and the round trips to the
browser). The same clicks are also timed without the browser (``ReviewSession.add_point`` + ``render``:
segmenter, store save and overlay drawing).

Segmenters: ``light_sam`` (the CPU default) and ``sam_vit_b`` are the real-size architectures with random
weights (timing does not depend on the weights) whose image embedding is put in the embedding cache
beforehand, as after the first visit of an image; ``grabcut`` is the fallback used when no checkpoint is
present. ``--size 4000x3000`` enlarges the demo photos to
12 MP first (the clicks land on the same places of the photo). Wall times and, for the session alone, the CPU time
of the process are printed: on a machine shared with other jobs the CPU time is the steadier figure.

    .venv/bin/python bench/bench_gui.py [--segmenter light_sam sam_vit_b grabcut] [--clicks 15] [--size 4000x3000]
        [--watch load|frames]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SEGMENTERS = {"light_sam": "Light SAM", "sam_vit_b": "SAM ViT-B", "grabcut": "GrabCut"}

from tests.browser import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402

# Points (x, y) on the astronaut photo (512 x 512): suit, helmet, flag, shuttle, face...
POINTS = [
    (110, 420),
    (395, 430),
    (40, 200),
    (410, 150),
    (225, 120),
    (300, 470),
    (60, 380),
    (430, 230),
    (180, 250),
    (480, 480),
    (20, 60),
    (390, 60),
    (140, 470),
    (250, 60),
    (350, 300),
    (70, 470),
    (455, 330),
]


def demo_store(root: Path, size: tuple[int, int] | None):
    """The demo project; with ``size`` (W, H) its photos enlarged to that size first."""
    from annotate.review.demo import DEMO_ASSETS, demo_classes, demo_tags, ensure_demo_project

    if size is None:
        return ensure_demo_project(root / "demo-project", labels=False)
    from PIL import Image

    from annotate.store import ProjectStore

    incoming = root / "large"
    incoming.mkdir()
    store = ProjectStore.create(root / "large-project", demo_classes())
    for name, tags in sorted(demo_tags().items()):
        Image.open(DEMO_ASSETS / name).convert("RGB").resize(size, Image.BICUBIC).save(incoming / name, quality=92)
        store.add_image(incoming / name, list(tags))
    return store


def build(name: str, root: Path, size: tuple[int, int] | None = None):
    """(store, segmenter) for the bench: the demo project and a segmenter with a warm embedding cache."""
    import torch
    from bench_segmenters import _segmenter as random_segmenter

    from models.embedding_cache import EmbeddingCache, image_hash
    from models.segmenters import SamSegmenter, build_segmenter
    from models.segmenters.frame import resized_size

    store = demo_store(root, size)
    if name == "grabcut":
        return store, build_segmenter("grabcut")
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}: one of {', '.join(SEGMENTERS)}")
    model = random_segmenter(name).model  # real size, random weights
    cache = EmbeddingCache(root / "embeddings")
    model_id = f"{name}@random"
    long_side = model.image_encoder.img_size
    for record in store.list_images():
        image = store.load_image(record.id)
        features = torch.randn(1, 256, 64, 64) * 0.1
        cache.put(
            image_hash(image),
            model_id,
            {
                "features": features,
                "original_size": tuple(image.shape[:2]),
                "input_size": resized_size(image.shape[0], image.shape[1], long_side),
            },
        )
    return store, SamSegmenter(model, model_id, cache=cache)


def session_clicks(store, segmenter, n: int) -> tuple[list[float], list[float]]:
    """Milliseconds per click without the browser (add_point: segmenter + save; the overlay drawn at the size
    sent to the browser): wall times and CPU times of the process."""
    from annotate.review.session import ReviewSession
    from annotate.review.view import Ui, display_image

    session = ReviewSession(store, segmenter, user="bench")
    first = store.list_images(order="name")[0].id
    session.open_image(first)
    session.prepare_segmenter()
    fy, fx = session.image.shape[0] / 512, session.image.shape[1] / 512
    times, cpu = [], []
    for i in range(n):
        if i % 4 == 0:
            session.select(None)
        x, y = POINTS[i % len(POINTS)]
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            session.add_point(x * fx, y * fy, positive=True)
        except ValueError:
            pass  # random weights may find nothing at a point: the click still did all its work
        display_image(Ui(session))
        times.append(1e3 * (time.perf_counter() - start))
        cpu.append(1e3 * (time.process_time() - start_cpu))
    store.save_labels(first, [], user="bench")  # the browser run starts from a clean image
    return times, cpu


# In the page: the time of the last click on the canvas (the capture phase, before Gradio's own listeners), and
# the page's milliseconds from it to the first animation frame after a canvas image other than the one shown at the
# click has loaded (``load`` events do not bubble, but a capture listener on the document sees them). Nothing runs
# in the page in between.
CLICK_CLOCK = (
    "window.__shown = null;"
    "document.addEventListener('click', e => { if (e.target.closest('#canvas')) {"
    " const i = document.querySelector('#canvas img');"
    " window.__click = performance.now(); window.__shown = null; window.__old = i && i.src; } }, true);"
    "document.addEventListener('load', e => { const t = e.target;"
    " if (t.tagName === 'IMG' && t.closest('#canvas') && t.src !== window.__old) requestAnimationFrame(() => {"
    " if (window.__shown === null) window.__shown = performance.now() - window.__click; }); }, true)"
)
# The same figure found by polling the page at every animation frame (the ``--watch frames`` way): true once the
# canvas shows a new, decoded image; its value is the page's milliseconds since the click.
OVERLAY_SHOWN = (
    "old => { const i = document.querySelector('#canvas img');"
    " return i && i.src !== old && i.complete && i.naturalWidth > 0 && performance.now() - window.__click; }"
)


def browser_clicks(store, segmenter, n: int, watch: str = "load") -> tuple[list[float], list[float], int]:
    """Milliseconds from a click to the new overlay loaded in Chromium, by the page's clock (from the click event
    to the first animation frame after the new image loaded) and by this script's (from asking Playwright to
    click, which first checks the target, to hearing the page answer); and the number of clicks timed out.
    ``watch``: "load", the page times it on the image's load event; "frames", this script polls the page at every
    animation frame (which keeps the browser busy while the server works)."""
    from playwright.sync_api import sync_playwright

    from application.commands.gui import page_options
    from application.gui import app

    port = free_port()
    demo = app.build_app(store, segmenter, user="bench")
    demo.queue(default_concurrency_limit=1)
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **page_options(),
    )
    times, harness, missed = [], [], 0
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_selector("#canvas img")
            page.evaluate(CLICK_CLOCK)
            page.wait_for_timeout(1500)  # initial load and segmenter preparation
            img = page.locator("#canvas img")
            for i in range(n + 1):  # the first click warms the page up and is not counted
                if i % 4 == 0:
                    page.locator("#btn-deselect").click()
                    page.wait_for_timeout(300)
                x, y = POINTS[i % len(POINTS)]
                old = img.get_attribute("src")
                natural = img.evaluate("el => [el.naturalWidth, el.naturalHeight]")
                box = img.bounding_box()
                sx, sy = natural[0] / 512, natural[1] / 512  # POINTS are on the 512 px photo, however enlarged
                fit = min(box["width"] / natural[0], box["height"] / natural[1], 1.0)
                left = (box["width"] - natural[0] * fit) / 2
                top = (box["height"] - natural[1] * fit) / 2
                start = time.perf_counter()
                img.click(position={"x": left + (x + 0.5) * sx * fit, "y": top + (y + 0.5) * sy * fit})
                try:
                    if watch == "frames":
                        shown = page.wait_for_function(OVERLAY_SHOWN, arg=old, polling="raf", timeout=30_000)
                    else:  # the page records the time itself; polled every 50 ms, which the figure does not count
                        shown = page.wait_for_function("() => window.__shown", polling=50, timeout=30_000)
                except Exception:  # noqa: BLE001 - a click the segmenter found nothing for; counted apart
                    missed += 1
                    continue
                if i:
                    harness.append(1e3 * (time.perf_counter() - start))
                    times.append(float(shown.json_value()))
            browser.close()
    finally:
        demo.close()
    return times, harness, missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segmenter", nargs="+", default=["light_sam"], choices=SEGMENTERS)
    parser.add_argument("--clicks", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--size", default=None, help="enlarge the demo photos to WxH first, e.g. 4000x3000 (12 MP)")
    parser.add_argument("--watch", choices=("load", "frames"), default="load",
                        help="how the page's clock is read: the image's load event (default), or by polling the "
                             "page at every animation frame (keeps the browser busy meanwhile)")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    logging.basicConfig(level=logging.WARNING)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} not found: install Debian's chromium to run this benchmark", file=sys.stderr)
        return 2
    rows = []
    for name in args.segmenter:
        with tempfile.TemporaryDirectory() as tmp:
            store, segmenter = build(name, Path(tmp), size)
            direct, direct_cpu = session_clicks(store, segmenter, args.clicks)
            browser, harness, missed = browser_clicks(store, segmenter, args.clicks, args.watch)
            store.close()
        for where, times in (
            ("session (no browser), wall", direct),
            ("session (no browser), CPU", direct_cpu),
            ("browser click -> overlay shown, the page's clock", browser),
            ("browser click -> overlay shown, as this script sees it (Playwright's click checks included)", harness),
        ):
            if not times:
                rows.append((name, where, 0, float("nan"), float("nan"), float("nan")))
                continue
            q = sorted(times)
            p90 = q[min(len(q) - 1, int(round(0.9 * (len(q) - 1))))]
            rows.append((name, where, len(times), statistics.median(times), p90, max(times)))
        if missed:
            rows.append(
                (
                    name,
                    f"browser clicks without an overlay update: {missed}",
                    0,
                    float("nan"),
                    float("nan"),
                    float("nan"),
                )
            )
    cpus = os.cpu_count()
    print(
        f"\nGUI click latency, {platform.processor() or platform.machine()}, {cpus} CPU cores, "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, page clock read on "
        f"{'the load event' if args.watch == 'load' else 'every animation frame'}; demo photo "
        f"{'512x512 (sent to the browser at 640x640)' if size is None else f'enlarged to {size[0]}x{size[1]}'}\n"
    )
    print("| segmenter | measured | clicks | median ms | p90 ms | max ms |")
    print("|---|---|---:|---:|---:|---:|")
    for name, where, n, med, p90, worst in rows:
        label = "GrabCut" if name == "grabcut" else f"{SEGMENTERS[name]} (real size, random weights, cached embedding)"
        print(f"| {label} | {where} | {n} | {med:.0f} | {p90:.0f} | {worst:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
