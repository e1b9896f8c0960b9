"""Throughput of `dhr bootstrap`'s per-image pipeline with real-size models (random weights), split by stage.

Models: the classifier is a dilated ResNet-50 (output stride 16) with the CAM settings `dhr bootstrap` gives an
ImageNet classifier on the device (one scale without flip on a CPU, scales 1, 0.5, 1.5, 2 with flip on a GPU;
``--cam-scales`` / ``--flip`` override them), the segmenter the one ``auto`` prefers on the device (Light SAM on a
CPU, SAM 2.1 Hiera-B+ on a GPU; or any registry segmenter), the USS features the segmenter's own embedding (or
--uss color). Timing does not depend on the weights, so random ones are used (nothing is downloaded). Images:
synthetic scenes (tests/synthetic_dataset.py) at --size px with 2-3 tags each. Classifier training is not included.

    .venv/bin/python bench/bench_bootstrap.py [--images 3] [--size 512] [--device cpu] [--segmenter auto]
        [--cam-scales 1,0.5,1.5,2] [--flip | --no-flip]

Prints a markdown table: seconds per image for each stage, its share, and images per hour for the whole run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES = (
    ("cams", "CAMs (classifier at the CAM scales) + base mask"),
    ("sam_encoder", "segmenter image encoder"),
    ("uss", "USS features (the segmenter's embedding, reused)"),
    ("dhr", "DHR rebalance"),
    ("prompting", "segmenter prompting + merge (label_image)"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--uss", default="sam", choices=["sam", "color"])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--cam-scales", help="CAM inference scales (default: the ImageNet profile's on the device)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="CAMs also of the flipped image (default: the ImageNet profile's on the device)")
    parser.add_argument("--segmenter", default="auto",
                        help="registry segmenter, real size, random weights (auto: the device's preferred one)")
    args = parser.parse_args(argv)

    import torch
    from bench_segmenters import _segmenter as random_segmenter

    from annotate.bootstrap import PRETRAINED, BootstrapConfig, process_image
    from models.classifier import build_classifier
    from models.segmenters.auto import preferred_download
    from models.settings import ModelSettings
    from models.uss import build_uss_provider
    from tests.synthetic_dataset import CLASSES, make_samples

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    samples = make_samples(max(args.images, 4), (args.size, args.size), seed=0)
    samples = [s for s in samples if len(s.tags) >= 2][: args.images]
    scales, flip = PRETRAINED.cam_settings(args.device)
    if args.cam_scales:
        scales = tuple(float(v) for v in args.cam_scales.split(","))
    flip = flip if args.flip is None else args.flip
    config = BootstrapConfig(
        out=Path("unused"), models=ModelSettings(device=args.device), uss=args.uss, cam_scales=scales,
        cam_flip=flip, progress=False
    )
    model = build_classifier(args.backbone, len(CLASSES), pretrained=False).to(args.device).eval()
    segmenter_name = preferred_download(args.device) if args.segmenter == "auto" else args.segmenter
    segmenter = random_segmenter(segmenter_name, args.device)
    provider = build_uss_provider(args.uss, config.models, segmenter)

    # warm-up on a small image (allocator, lazy inits), not timed
    warm = make_samples(1, (64, 64), seed=9)[0]
    process_image(warm.image, [1], model, provider, segmenter, config)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    for s in samples:
        tags = [CLASSES.index(t) + 1 for t in s.tags]
        process_image(s.image, tags, model, provider, segmenter, config, timings=timings)
    total = time.perf_counter() - start
    n = len(samples)

    device = args.device if args.device != "cpu" else f"CPU ({torch.get_num_threads()} torch threads)"
    print(
        f"bootstrap per-image pipeline, {n} images of {args.size}x{args.size} px, {len(CLASSES)} classes, "
        f"2-3 tags each; {args.backbone} (CAM scales {','.join(f'{v:g}' for v in scales)}, "
        f"{'flip' if flip else 'no flip'}) + {segmenter_name} (random weights), "
        f"USS {args.uss}; {device}; "
        f"torch {torch.__version__}, {platform.machine()}"
    )
    print()
    print("| stage | s / image | share | images / hour (stage alone) |")
    print("|---|---:|---:|---:|")
    for key, label in STAGES:
        sec = timings.get(key, 0.0) / n
        rate = f"{3600 / sec:,.0f}" if sec > 1e-3 else "-"
        print(f"| {label} | {sec:.3f} | {100 * timings.get(key, 0.0) / total:.1f}% | {rate} |")
    other = total - sum(timings.values())
    print(f"| other (confidence, bookkeeping) | {other / n:.3f} | {100 * other / total:.1f}% | |")
    print(f"| **whole run** | **{total / n:.2f}** | 100% | **{3600 * n / total:,.0f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
