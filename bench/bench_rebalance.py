"""Time per image of dhr.rebalance at 512 x 512, and its prototype step against a per-cell Python loop.

Features have the real sizes: USS 384 x 64 x 64 (a DINO ViT-S/8 on a 512 px image), WSS C4 1024 x 32 x 32 and
C5 2048 x 32 x 32 (ResNet at output stride 16), CAMs 32 x 32; the CRF runs on scikit-image's astronaut photo.
Usage:

    python bench/bench_rebalance.py [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import numpy as np
import skimage.data
import torch

from dhr import IGNORE_INDEX, DHRConfig, class_prototypes, rebalance

SIZE = 512


def make_inputs(num_classes: int, device: torch.device, seed: int = 0):
    """Random rectangles of ``num_classes`` classes over background, with matching CAMs and features."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.zeros(SIZE, SIZE, dtype=torch.long)
    for k in range(1, num_classes + 1):
        h, w = torch.randint(60, 200, (2,), generator=g).tolist()
        y, x = torch.randint(0, SIZE - 200, (2,), generator=g).tolist()
        gt[y : y + h, x : x + w] = k
    one_hot = torch.nn.functional.one_hot(gt, num_classes + 1).permute(2, 0, 1).float()
    pool = lambda x, s: torch.nn.functional.avg_pool2d(x[None], s)[0]  # noqa: E731
    uss = torch.einsum("cd,chw->dhw", torch.randn(num_classes + 1, 384, generator=g), pool(one_hot, 8))
    wss = [torch.einsum("cd,chw->dhw", torch.randn(num_classes + 1, d, generator=g), pool(one_hot, 16)) for d in (1024, 2048)]
    cams = pool(one_hot[1:], 16) + 0.1 * torch.rand(num_classes, 32, 32, generator=g)
    image = np.ascontiguousarray(skimage.data.astronaut())  # a real 512 x 512 photo: CRF time depends on content
    to = lambda t: t.to(device)  # noqa: E731
    return to(cams), to(gt), list(range(1, num_classes + 1)), to(uss), [to(f) for f in wss], image


def loop_prototypes(features: torch.Tensor, mask: np.ndarray, num_classes: int) -> torch.Tensor:
    """The straightforward way: for every feature cell, np.unique over its pixels and a majority vote."""
    d, h, w = features.shape
    big_h, big_w = mask.shape
    ph, pw = big_h // h, big_w // w
    sums: dict[int, list[torch.Tensor]] = {}
    for fy in range(h):
        for fx in range(w):
            values, counts = np.unique(mask[fy * ph : (fy + 1) * ph, fx * pw : (fx + 1) * pw], return_counts=True)
            winner = int(values[np.argmax(counts)])
            if winner != IGNORE_INDEX:
                sums.setdefault(winner, []).append(features[:, fy, fx])
    out = torch.zeros(num_classes, d)
    for k, vectors in sums.items():
        out[k] = torch.stack(vectors).mean(dim=0)
    return out


def timed(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    warnings.filterwarnings("ignore", message="Sinkhorn stopped")
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    print(f"rebalance at {SIZE} x {SIZE}, device {device} ({machine}), median of {args.repeats}\n")
    print("| tagged classes | rebalance (ms) | rebalance + CRF (ms) | prototypes, vectorised (ms) | prototypes, per-cell loop (ms) | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|")
    for k in (2, 5, 10):
        print(row(k, device, args.repeats))


def row(k: int, device: torch.device, repeats: int) -> str:
    """One table row: ``k`` tagged classes."""
    cams, gt, tags, uss, wss, image = make_inputs(k, device)
    crf_config = DHRConfig(crf=True)
    plain = timed(lambda: rebalance(cams, gt, tags, uss, wss), repeats, device)
    with_crf = timed(lambda: rebalance(cams, gt, tags, uss, wss, image=image, config=crf_config), max(1, repeats // 2), device)
    fast = timed(lambda: class_prototypes(uss, gt, k + 1), repeats, device)
    mask_np, uss_cpu = gt.cpu().numpy(), uss.cpu()
    slow = timed(lambda: loop_prototypes(uss_cpu, mask_np, k + 1), 1, torch.device("cpu"))
    return f"| {k} | {plain:.1f} | {with_crf:.1f} | {fast:.2f} | {slow:.1f} | {slow / fast:.0f}x |"

if __name__ == "__main__":
    main()
