"""Opening the next image in the review session: the wait of its first click, with and without the background encoding.

A review session on a temporary copy of the demo project (its photos, an empty embedding cache) with a real-size
segmenter (random weights: timing does not depend on them). The annotator steps through the queue with "next"
(``open_neighbour``), spends ``--dwell`` seconds on each image with a click every second, then steps on. Timed,
per image after the first: the first click on the newly opened image (``ReviewSession.add_point``: with the
background encoding it finds the encoding ready, or waits for what is left of it; without it runs the encoder).

    .venv/bin/python bench/bench_open.py [--segmenter light_sam] [--images 4] [--dwell 4] [--threads 2]

Prints a markdown table of medians (ms) for both ways, interleaved image by image in two sessions.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

POINTS = [(0.2, 0.8), (0.75, 0.8), (0.1, 0.4), (0.8, 0.3), (0.45, 0.25), (0.6, 0.9), (0.12, 0.75), (0.85, 0.45)]
"""Click places as shares of the image's width and height."""


def _click(session, share: tuple[float, float]) -> float:
    """Seconds of one positive click at ``share`` of the open image's size."""
    height, width = session.image.shape[:2]
    return _timed(lambda: session.add_point(share[0] * (width - 1), share[1] * (height - 1), positive=True))


def _session(root: Path, segmenter_name: str, prefetch: bool):
    """A session on a fresh copy of the demo project, its own embedding cache; ``prefetch`` False turns the
    background encoding off."""
    from bench_gui import demo_store
    from bench_segmenters import _segmenter

    from annotate.review.session import ReviewSession
    from models.embedding_cache import EmbeddingCache

    store = demo_store(root, None)
    segmenter = _segmenter(segmenter_name)
    segmenter.cache = EmbeddingCache(root / "cache")
    session = ReviewSession(store, segmenter, user="bench")
    if not prefetch:
        session.prefetch_image = lambda image_id: None
    return session


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segmenter", default="light_sam")
    parser.add_argument("--images", type=int, default=4, help="images stepped through (the first is not timed)")
    parser.add_argument("--dwell", type=float, default=4.0, help="seconds spent on each image before 'next'")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import warnings

    import torch

    from annotate.review.view import Ui, open_neighbour

    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    first: dict[bool, list[float]] = {True: [], False: []}
    during: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {way: _session(Path(tmp) / str(way), args.segmenter, way) for way in (True, False)}
        uis = {way: Ui(session, order="name") for way, session in sessions.items()}
        count = min(args.images, len(sessions[True].queue()))
        for index in range(count):
            for way in ((True, False) if index % 2 else (False, True)):
                session, ui = sessions[way], uis[way]
                open_neighbour(ui, 1)
                wait = _click(session, POINTS[index % len(POINTS)])
                if index:
                    first[way].append(wait)
                start = time.perf_counter()
                for k in range(1, len(POINTS)):
                    if time.perf_counter() - start >= args.dwell:
                        break
                    during[way].append(_click(session, POINTS[(index + k) % len(POINTS)]))
                    time.sleep(max(0.0, k - (time.perf_counter() - start)))  # about one click a second
        for session in sessions.values():
            session.store.close()
    load = os.getloadavg()[0]
    print(f"{args.segmenter} (random weights), demo photos, {count} images, {args.dwell:g} s on each, "
          f"{args.threads} torch threads, {os.cpu_count()} cores, load average {load:.1f} at the end; "
          f"torch {torch.__version__}, {platform.machine()}\n")
    print("| next image | first click on it, median ms (max) | its other clicks, median ms |")
    print("|---|---:|---:|")
    for way, label in ((False, "encoded when first clicked"), (True, "encoded in the background (default)")):
        times = first[way]
        print(f"| {label} | {1000 * statistics.median(times):.0f} ({1000 * max(times):.0f}) | "
              f"{1000 * statistics.median(during[way]):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
