"""The recursive loop: label mIoU after each round of ``dhr train``, with and without DHR, CRF and Sinkhorn variants.

A generated project (textured objects of three classes, one small object touching a big one, tags only) starts
from CAM-like pseudo masks: the small class swallowed, objects dilated or eroded, blocky boundaries, as a
bootstrap from few images hands them over. Each variant then runs the same ``--rounds`` rounds from the same start
(ResNet-tiny DeepLabv3+ from scratch, GrabCut relabelling, colour USS features) and reports the labels' mIoU
against the ground truth after every round, and the time per step with the share spent in DHR. Usage::

    python bench/bench_rounds.py [--rounds 3] [--images 16] [--size 96] [--steps 80] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dhr import CRFConfig, DHRConfig
from models.settings import ModelSettings
from tests.test_training import make_project
from training.evaluate import evaluate_labels
from training.rounds import RoundsConfig, run_rounds
from training.trainer import TrainConfig


@dataclass(frozen=True)
class Variant:
    """DHR in the training step, DHR settings (step and relabelling), seeds of the relabelling."""

    in_step: bool
    dhr: DHRConfig
    relabel: str = "restore"


VARIANTS: dict[str, Variant] = {
    "no DHR in the step": Variant(False, DHRConfig()),
    "DHR, no CRF": Variant(True, DHRConfig(crf=False)),
    "DHR + final CRF (default)": Variant(True, DHRConfig(crf=True)),
    "DHR + final CRF, relabelled from the prediction alone": Variant(True, DHRConfig(crf=True), "prediction"),
    "DHR + final CRF, relabelled from DHR's balanced mask": Variant(True, DHRConfig(crf=True), "dhr"),
    "DHR + final CRF at full size, 10 it.": Variant(True, DHRConfig(crf=True, crf_config=CRFConfig(iterations=10, scale=1.0))),
    "DHR + CRF, POT converged": Variant(True, DHRConfig(crf=True, max_iter=1000, stop_thr=1e-9)),
    "DHR + CRF, authors' solver": Variant(True, DHRConfig(crf=True, solver="reference", max_iter=100, stop_thr=1e-2)),
}


def run_variant(label: str, rounds: int, images: int, size: int, steps: int, seed: int) -> dict:
    """One variant from a fresh copy of the generated project -> mIoU per round and step timing."""
    variant = VARIANTS[label]
    work = Path(tempfile.mkdtemp(prefix="dhr-rounds-"))
    try:
        store, gt = make_project(work, n=images, size=size, seed=seed)
        start_miou = evaluate_labels(store, gt)["miou"]
        store.close()
        train = TrainConfig(steps=steps, batch_size=4, lr=0.01, ema_decay=0.9, amp=False, checkpoint_every=10_000,
                            dhr=variant.in_step, dhr_warmup=steps // 3, seed=seed)
        config = RoundsConfig(rounds=rounds, train=train, backbone="resnet_tiny", pretrained=False, crop_size=size,
                              scale_range=(0.75, 1.25), scales=(1.0,), min_change=0.0,
                              out_dir=str(work / "run"), dhr=variant.dhr,
                              relabel=variant.relabel)
        settings = ModelSettings(segmenter="grabcut", download=False)
        began = time.perf_counter()
        history = run_rounds(work / "project", config, gt=gt, progress=False, settings=settings)
        seconds = time.perf_counter() - began
        return {
            "miou": [start_miou] + [h["miou"] for h in history[1:]],
            "dhr_share": statistics.mean(h["dhr_share"] for h in history[1:]),
            "seconds": seconds,
            "step_seconds": seconds / (rounds * steps),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--seeds", default="0,1", help="comma-separated project seeds (default 0,1)")
    parser.add_argument("--variants", help="semicolon-separated variant labels (default: all)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    labels = args.variants.split(";") if args.variants else list(VARIANTS)
    print(f"{args.images} images of {args.size} px, {args.rounds} rounds of {args.steps} steps, seeds {seeds}; "
          f"{platform.machine()}, {torch.get_num_threads()} threads", flush=True)
    header = " | ".join(f"round {r}" for r in range(1, args.rounds + 1))
    print(f"\n| variant | bootstrap | {header} | s / step (whole round) | DHR share of the step |")
    print("|---|---:|" + "---:|" * args.rounds + "---:|---:|")
    for label in labels:
        runs = [run_variant(label, args.rounds, args.images, args.size, args.steps, s) for s in seeds]
        per_round = [statistics.mean(r["miou"][i] for r in runs) for i in range(args.rounds + 1)]
        cells = " | ".join(f"{v:.3f}" for v in per_round)
        print(f"| {label} | {cells} | {statistics.mean(r['step_seconds'] for r in runs):.3f} "
              f"| {statistics.mean(r['dhr_share'] for r in runs):.1%} |", flush=True)


if __name__ == "__main__":
    main()
