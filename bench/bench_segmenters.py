"""Segmenter latency and memory on this machine, one model at a time: image encoder, click-to-mask, peak RSS.

Every model is the real-size architecture from its package with random weights (same compute as the
released checkpoints; no download), run through its ``Segmenter`` wrapper without an embedding cache:

- encoder: ``set_image`` wall time (resize, normalise, encode) of a 512 x 512 and a 1024 x 768 (W x H) image;
  the first encode of a process is reported on its own ("cold": one-time set-up included);
- click: ``predict`` of one positive click (multimask) at ``--clicks`` random points of the 1024 x 768 image and
  its best-scoring mask read (what a GUI click keeps; a segmenter may make each mask when it is read), median and
  90th percentile wall time;
- CPU: process CPU time of the same call, all threads summed (on a shared machine the wall time also counts
  waiting for a core; the CPU time does not);
- memory: peak resident set size of the process (VmHWM) minus its RSS before the model was built, so
  weights + activations + allocator slack; each model runs in its own subprocess.

Prints a markdown table. Targets for the CPU default: a new image opens in under 2 s, click-to-mask under 50 ms.

    .venv/bin/python bench/bench_segmenters.py [--models light_sam,sam2.1_hiera_tiny,...] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MODELS = ("light_sam", "sam_hq_vit_tiny", "sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam_vit_b")
CPU_DEFAULT = "light_sam"


def _rss_kib(field: str) -> int:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process in KiB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _images():
    import cv2
    import numpy as np

    try:
        from skimage import data

        square = np.ascontiguousarray(data.astronaut())
    except ImportError:
        square = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    wide = cv2.resize(square, (1024, 768), interpolation=cv2.INTER_LINEAR)
    return square, wide


def _segmenter(name: str, device: str = "cpu"):
    """The real-size architecture ``name`` with random weights, in its wrapper."""
    from models.segmenters import (
        HqSamSegmenter,
        Sam2Segmenter,
        SamSegmenter,
        build_sam,
        build_sam2_model,
        build_sam_hq,
    )
    from models.segmenters.sam import SAM_VARIANTS
    from models.segmenters.sam2 import SAM2_VARIANTS

    if name == "light_sam":
        from models.segmenters.light_sam import LIGHT_SAM_CHECKPOINT, light_sam_from_hq

        return SamSegmenter(light_sam_from_hq(build_sam_hq(LIGHT_SAM_CHECKPOINT, device=device)), f"{name}@random")
    if name in SAM_VARIANTS:
        return SamSegmenter(build_sam(name, device=device), f"{name}@random")
    if name in SAM2_VARIANTS:
        return Sam2Segmenter(build_sam2_model(name, device=device), f"{name}@random")
    from models.segmenters.sam_hq import with_fused_encoder

    return HqSamSegmenter(with_fused_encoder(build_sam_hq(name, device=device)), f"{name}@random")


def measure(name: str, clicks: int, threads: int) -> dict:
    """One model's numbers (run in a fresh process)."""
    import warnings

    import numpy as np
    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(threads)
    square, wide = _images()
    import sam2.build_sam  # noqa: F401
    import segment_anything_hq  # noqa: F401

    import models.segmenters  # noqa: F401  (imports counted before the baseline)

    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    segmenter = _segmenter(name)
    build = time.perf_counter() - start
    parameters = sum(p.numel() for p in segmenter.model.parameters())

    def timed(fn) -> tuple[float, float]:
        """(wall s, CPU s of this process, all threads) of one call."""
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - start, time.process_time() - start_cpu

    def encode(image) -> tuple[float, float]:
        segmenter._hash = None  # the same image again is encoded again
        return timed(lambda: segmenter.set_image(image))

    cold, _ = encode(square)
    warm, _ = encode(square)
    big, big_cpu = encode(wide)
    rng = np.random.default_rng(0)
    points = rng.uniform([0, 0], [wide.shape[1], wide.shape[0]], (clicks, 2)).astype(np.float32)

    def click(point) -> None:
        out = segmenter.predict(point[None], np.array([1]), multimask=True)
        out.mask(out.best)

    measured = [timed(lambda p=p: click(p)) for p in points]
    times = [wall for wall, _ in measured]
    return {
        "name": name,
        "parameters": parameters,
        "build_s": build,
        "cold_s": cold,
        "encode_512_s": warm,
        "encode_1024x768_s": big,
        "encode_1024x768_cpu_s": big_cpu,
        "click_median_s": statistics.median(times),
        "click_median_cpu_s": statistics.median(cpu for _, cpu in measured),
        "click_p90_s": float(np.percentile(times, 90)),
        "peak_rss_mib": (_rss_kib("VmHWM") - before) / 1024,
    }


def _show(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated registry names")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child process: one model, JSON out
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.clicks, args.threads)))
        return 0

    rows = []
    for name in args.models.split(","):
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        done = subprocess.run(
            [sys.executable, __file__, "--one", name, "--clicks", str(args.clicks), "--threads", str(args.threads)],
            capture_output=True, text=True, env=env, check=False,
        )
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"measured {name}", file=sys.stderr)

    load = os.getloadavg()
    print(f"CPU, {args.threads} torch threads, random weights, {os.cpu_count()} cores "
          f"(load average {load[0]:.1f} at the end); memory = peak RSS minus RSS before building the model\n")
    print("| model | params | first encode | encode 512x512 | encode 1024x768 (CPU) | click median (CPU) | click p90 "
          "| peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['parameters'] / 1e6:.1f}M | {_show(r['cold_s'])} | {_show(r['encode_512_s'])} | "
              f"{_show(r['encode_1024x768_s'])} ({_show(r['encode_1024x768_cpu_s'])}) | "
              f"{_show(r['click_median_s'])} ({_show(r['click_median_cpu_s'])}) | {_show(r['click_p90_s'])} | "
              f"{r['peak_rss_mib']:.0f} MiB |")
    for r in rows:
        if r["name"] == CPU_DEFAULT:
            opens = max(r["encode_512_s"], r["encode_1024x768_s"]) < 2.0
            click = r["click_median_s"] < 0.05
            print(f"\nCPU default ({CPU_DEFAULT}): new image under 2 s: {'met' if opens else 'not met'}; "
                  f"click-to-mask median under 50 ms: {'met' if click else 'not met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
