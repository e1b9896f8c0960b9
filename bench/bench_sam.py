"""Segment Anything latency on this machine: encoder, reopening a cached image, click-to-mask.

Real-size SAM ViT-B (``build_sam("sam_vit_b", checkpoint=None)``: random weights, same compute as the
released model) on a 512 x 512 photograph (scikit-image's astronaut; a random image without scikit-image).
Prints a markdown table. Targets on a 2-core CPU: click-to-mask and reopening a cached image under 100 ms.

    .venv/bin/python bench/bench_sam.py [--clicks 20] [--reopens 5] [--threads N] [--device cpu] [--skip-encoder]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotate.prompts import PromptConfig, prompts_from_mask  # noqa: E402
from models.embedding_cache import EmbeddingCache, image_hash  # noqa: E402
from models.segmenters import SamSegmenter, build_sam  # noqa: E402
from models.segmenters.frame import resized_size  # noqa: E402


def _image() -> np.ndarray:
    try:
        from skimage import data

        return np.ascontiguousarray(data.astronaut())
    except ImportError:
        return np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call; CPU time is what other processes cannot inflate
    (on a shared machine the wall time also counts waiting for a core)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - start_cpu


def _median(times: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def _show(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--reopens", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--skip-encoder",
        action="store_true",
        help="store a random embedding instead of running the encoder (timing of the other rows is unchanged)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    image = _image()
    height, width = image.shape[:2]
    model = build_sam("sam_vit_b", checkpoint=None, device=args.device)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cache = EmbeddingCache(folder)
        if args.skip_encoder:
            embedding = torch.randn(1, 256, 64, 64)
            entry = {
                "features": embedding,
                "original_size": (height, width),
                "input_size": resized_size(height, width, 1024),
            }
            cache.put(image_hash(image), "sam_vit_b@bench", entry)
        else:
            first = SamSegmenter(model, "sam_vit_b@bench", cache=cache)
            encode = _timed(lambda: first.set_image(image))
            rows.append(("open a new image (encoder + cache write)", *encode, 1))

        reopen = []
        for _ in range(args.reopens):
            session = SamSegmenter(model, "sam_vit_b@bench", cache=EmbeddingCache(folder))
            reopen.append(_timed(lambda s=session: s.set_image(image)))
            if not session.last_from_cache:
                raise RuntimeError("the cached embedding was not used")
        rows.append(("reopen a cached image (hash + load embedding)", *_median(reopen), len(reopen)))

        rng = np.random.default_rng(0)
        centre = np.array([[width / 2, height / 2]], np.float32)

        def click(point: np.ndarray) -> None:  # the best mask read, as a GUI click keeps it (masks made when read)
            out = session.predict(point, np.array([1]), multimask=True)
            out.mask(out.best)

        first_click = _timed(lambda: click(centre))
        rows.append(("first click after opening (warm-up)", *first_click, 1))
        for _ in range(3):  # the first decoder calls set up kernels and memory
            click(centre)
        clicks = []
        for _ in range(args.clicks):
            point = np.array([[rng.uniform(0, width), rng.uniform(0, height)]], np.float32)
            clicks.append(_timed(lambda p=point: click(p)))
        rows.append(("click-to-mask (1 point, best of 3 masks)", *_median(clicks), len(clicks)))

        seed = np.zeros((height, width), np.int64)
        seed[180:330, 170:340] = 1
        seed[60:170, 150:330] = 2
        prompt = prompts_from_mask(seed, [1, 2], PromptConfig(), session.mask_prompt)[0]
        prompted = [
            _timed(lambda: session.predict(prompt.points, prompt.labels, prompt.box, prompt.mask_input).masks)
            for _ in range(args.clicks)
        ]
        rows.append(("balanced-mask prompt (box + points + mask)", *_median(prompted), len(prompted)))

    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average (1 min) {os.getloadavg()[0]:.1f}"
    print(
        f"SAM ViT-B (random weights), {height}x{width} image, device {args.device}, "
        f"{torch.get_num_threads()} torch threads{load}\n"
    )
    print("| step | median wall time | median CPU time (all threads) | runs |")
    print("| --- | ---: | ---: | ---: |")
    for name, wall, cpu, runs in rows:
        print(f"| {name} | {_show(wall)} | {_show(cpu)} | {runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
