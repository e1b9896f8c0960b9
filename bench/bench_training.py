"""Training throughput of DeepLabv3+ (ResNet-50, random weights) at 512 x 512, and the share of the DHR step.

Builds a temporary project of synthetic scenes (coloured rectangles, 640 x 640), caches their USS features, and times the
training step (forward, DHR step, loss, backward, SGD, EMA) through ``training.trainer.Trainer``, with and
without the DHR step. The first step is a warm-up and is not counted. Usage:

    python bench/bench_training.py [--device cuda] [--steps 3] [--batch-size 2] [--uss color]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

CROP = 512


def make_project(root: Path, images: int, size: int):
    """A project of scenes with three coloured rectangles of random size on a noisy background, labelled."""
    import numpy as np
    from PIL import Image

    from annotate.store import NewInstance, ProjectStore

    store = ProjectStore.create(root / "project", ["red", "green", "blue"])
    rng = np.random.default_rng(0)
    for index in range(images):
        image = rng.normal(110, 20, (size, size, 3))
        mask = np.zeros((size, size), np.int64)
        for class_id in (1, 2, 3):
            h, w = rng.integers(size // 10, size // 3, 2)
            y, x = rng.integers(0, size - size // 3, 2)
            mask[y:y + h, x:x + w] = class_id
            image[y:y + h, x:x + w] = np.eye(3)[class_id - 1] * 180 + 40
        path = root / f"scene_{index}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
        image_id = store.add_image(path, store.classes)
        store.save_labels(image_id, [NewInstance(c, mask == c) for c in (1, 2, 3) if (mask == c).any()],
                          user="bench", status="pseudo")
    return store


def run(store, cache, device: torch.device, steps: int, batch: int, dhr: bool, backbone: str,
        crf: bool = True) -> tuple[float, float]:
    """Seconds per step (mean over ``steps`` after one warm-up) and the share of it spent in the DHR step."""
    from dhr import DHRConfig
    from models.deeplab import build_deeplab
    from models.transforms import AugmentConfig
    from training.data import ProjectDataset, collate, project_entries
    from training.distributed import DistContext
    from training.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    model = build_deeplab(len(store.classes), backbone)
    data = ProjectDataset(store.root, project_entries(store), len(store.classes), AugmentConfig(crop_size=CROP), cache)
    config = TrainConfig(steps=steps + 1, batch_size=batch, dhr=dhr, dhr_warmup=0, checkpoint_every=10**6, amp=True)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, data, config, out, dhr_config=DHRConfig(crf=crf), ctx=DistContext(device=device),
                          progress=False)

        def batches():
            epoch = 0
            while True:
                trainer.sampler.set_epoch(epoch)
                epoch += 1
                yield from torch.utils.data.DataLoader(data, batch_size=batch, sampler=trainer.sampler,
                                                       collate_fn=collate, drop_last=True)

        stream = batches()
        step_times, dhr_times = [], []
        for index in range(steps + 1):
            batch_data = next(stream)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            *_, dhr_seconds = trainer.train_step(batch_data)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if index:  # the first step warms up allocators and kernels
                step_times.append(time.perf_counter() - start)
                dhr_times.append(dhr_seconds)
    return sum(step_times) / len(step_times), sum(dhr_times) / max(sum(step_times), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--uss", default="color", help="USS provider whose cached features the DHR step uses")
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    device = torch.device(args.device)
    from models import ModelSettings
    from models.uss import build_uss_provider
    from training.data import USSFeatureCache, precompute_uss_features, project_entries

    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        store = make_project(Path(tmp), args.images, 640)
        provider = build_uss_provider(args.uss, ModelSettings(device=str(device)))
        cache = USSFeatureCache(Path(tmp) / "uss", provider.feature_id)
        precompute_uss_features(store, project_entries(store), provider, cache, progress=False)
        print(f"DeepLabv3+ {args.backbone} training step at {CROP} x {CROP}, batch {args.batch_size}, device "
              f"{device} ({machine}), USS {args.uss}, random weights, mean of {args.steps} steps after a warm-up\n")
        print("| DHR step | s / step | images / s | DHR share of the step |")
        print("|---|---:|---:|---:|")
        for label, dhr, crf in (("on, final CRF (default)", True, True), ("on, no CRF", True, False), ("off", False, False)):
            seconds, share = run(store, cache, device, args.steps, args.batch_size, dhr, args.backbone, crf)
            print(f"| {label} | {seconds:.2f} | {args.batch_size / seconds:.2f} | {100 * share:.1f} % |")
        store.close()


if __name__ == "__main__":
    main()
