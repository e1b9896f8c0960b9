"""``dhr bootstrap DATASET --out DIR`` (pseudo-labels from tags) and ``dhr merge-shards OUT SHARD_DIR...``."""

from __future__ import annotations

import argparse
from pathlib import Path


def _classes(value: str | None) -> list[str] | None:
    """--classes: a file with one class per line, or a comma-separated list."""
    if value is None:
        return None
    from annotate.dataset import read_class_file

    if Path(value).is_file():
        return read_class_file(value)
    names = [n for n in (v.strip() for v in value.split(",")) if n]
    if not names:
        raise ValueError(f"--classes {value!r} gives no class names")
    return names


def _floats(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from error


def _profiles(name: str) -> str:
    """'(default: A pretrained, B from scratch)' for a field of the classifier profiles."""
    from annotate.bootstrap.profiles import PRETRAINED, SCRATCH

    def text(value) -> str:
        return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}"

    return f"(default: {text(getattr(PRETRAINED, name))} pretrained, {text(getattr(SCRATCH, name))} from scratch)"


def _cam_defaults(index: int) -> str:
    """'(default: ...)' of a CAM setting (0: scales, 1: flip) of the classifier profiles, on a GPU and a CPU."""
    from annotate.bootstrap.profiles import PRETRAINED, SCRATCH

    def text(profile, device: str) -> str:
        value = profile.cam_settings(device)[index]
        return ",".join(f"{v:g}" for v in value) if index == 0 else ("yes" if value else "no")

    gpu, cpu, scratch = text(PRETRAINED, "cuda"), text(PRETRAINED, "cpu"), text(SCRATCH, "cpu")
    return f"(default with ImageNet weights: {gpu} on a GPU, {cpu} on a CPU; from scratch: {scratch})"


def register(subparsers) -> None:
    from application.commands.choices import BACKBONE_NAMES, SEGMENTER_NAMES, USS_NAMES

    p = subparsers.add_parser(
        "bootstrap",
        help="pseudo-label a tagged image folder (classifier, CAMs, DHR, segmenter) into a project",
        description="Train (or load) the tag classifier, then per image: CAMs -> base mask -> DHR -> segmenter "
        "prompts -> instances, saved to the project at --out with status 'pseudo', plus coco.json and "
        "semantic PNGs in masks/. Rerun the same command to resume.",
    )
    p.add_argument(
        "dataset", help="dataset folder, tags file (.csv/.json/COCO .json) or folder of VOC .xml files"
    )
    p.add_argument("--out", required=True, help="output project folder")
    p.add_argument("--tags", help="tags file or VOC folder, when not found in DATASET")
    p.add_argument("--images", help="image folder (default: DATASET/images, DATASET/JPEGImages or DATASET)")
    p.add_argument(
        "--format", default="auto", choices=["auto", "csv", "json", "voc", "coco"], help="tags format"
    )
    p.add_argument(
        "--classes",
        help="class list: a file (one per line) or comma-separated names; class ids follow its order "
        "(default: classes.txt beside the tags, else the tags file's list, else the tags sorted)",
    )
    p.add_argument(
        "--strict", action="store_true", help="stop on any dataset problem instead of skipping entries"
    )
    p.add_argument(
        "--check-images",
        default="decode",
        choices=["decode", "header", "none"],
        help="how deeply to check images before the run (default: decode each)",
    )
    p.add_argument(
        "--backbone",
        default="auto",
        choices=["auto", *BACKBONE_NAMES],
        help="classifier backbone (auto: resnet50 from ImageNet weights, or resnet_small from scratch when the "
        "weights are missing; see the README's 'Offline defaults')",
    )
    p.add_argument("--classifier", help="use this saved classifier instead of training one")
    p.add_argument("--no-pretrained", action="store_true", help="train the classifier from scratch")
    p.add_argument(
        "--train-only",
        action="store_true",
        help="only train and save OUT/classifier.pt (give it to sharded runs with --classifier)",
    )
    p.add_argument("--epochs", type=int, help="classifier training epochs " + _profiles("epochs"))
    p.add_argument("--lr", type=float, help="classifier learning rate, head 10x " + _profiles("lr"))
    p.add_argument("--crop-size", type=int, help="classifier training crop side " + _profiles("crop_size"))
    p.add_argument("--batch-size", type=int, help="classifier training batch size " + _profiles("batch_size"))
    p.add_argument(
        "--workers", type=int, default=0, help="image loading workers (classifier training and labelling)"
    )
    p.add_argument(
        "--cam-scales",
        type=_floats,
        help="CAM inference scales " + _cam_defaults(0),
    )
    p.add_argument(
        "--cam-flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="CAMs also of the horizontally flipped image (twice the CAM time) " + _cam_defaults(1),
    )
    p.add_argument(
        "--bg-threshold",
        type=float,
        help="base mask: background below this CAM value " + _profiles("background_threshold"),
    )
    p.add_argument(
        "--top-share",
        type=float,
        help="classifier logits: mean of each class's top share of CAM cells, 1 = global average "
        + _profiles("top_share"),
    )
    p.add_argument(
        "--seed-evidence",
        type=float,
        help="prompts: drop seed pixels whose class's CAM is below this share of its peak, 0 = keep all "
        + _profiles("seed_evidence"),
    )
    p.add_argument("--base-masks", help="folder of base masks (<name>.png class ids) instead of CAM masks")
    p.add_argument("--segmenter", default="auto", choices=["auto", *SEGMENTER_NAMES], help="prompted segmenter")
    p.add_argument(
        "--uss",
        default="auto",
        choices=["auto", *USS_NAMES],
        help="unsupervised features for DHR (auto: the SAM embedding when SAM runs, else color)",
    )
    p.add_argument("--tau", type=float, default=0.8, help="DHR correlation threshold of stage 3")
    p.add_argument("--no-crf", dest="crf", action="store_false",
                   help="end DHR with a plain argmax instead of the dense CRF on the balanced heatmaps")
    p.add_argument(
        "--weights-dir", help="model weights folder (default: $DHR_WEIGHTS_DIR or ~/.cache/dhr-label/weights)"
    )
    p.add_argument("--no-download", action="store_true", help="never download weights")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--shard",
        default="0/1",
        help="i/n: label only the i-th of n shares of the name-sorted images (0 <= i < n); "
        "give every shard the same --classifier (see --train-only)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_bootstrap_command)

    m = subparsers.add_parser(
        "merge-shards",
        help="join the output folders of sharded bootstrap runs into one project and COCO file",
    )
    m.add_argument("out", help="merged project folder (new or empty)")
    m.add_argument(
        "shard_dirs", nargs="+", metavar="SHARD_DIR", help="output folders of `dhr bootstrap --shard`"
    )
    m.add_argument(
        "--allow-partial",
        action="store_true",
        help="merge even when shares of the split are missing (each shard's bootstrap.json records its i/n)",
    )
    m.add_argument("--no-progress", action="store_true")
    m.set_defaults(func=merge_command)


def run_bootstrap_command(args: argparse.Namespace) -> int:
    import dataclasses

    from annotate.bootstrap import BootstrapConfig, parse_shard, run_bootstrap
    from annotate.dataset import load_dataset
    from annotate.store import ProjectLayout
    from dhr import DHRConfig
    from models.settings import ModelSettings

    dataset = load_dataset(
        args.dataset,
        tags=args.tags,
        images=args.images,
        classes=_classes(args.classes),
        format=args.format,
        strict=args.strict,
        check_images=args.check_images,
        progress=not args.no_progress,
        warn=False,
    )
    for line in dataset.problem_report() + dataset.notes():  # each problem once, before any heavy work
        print(line)
    config = BootstrapConfig(
        out=Path(args.out),
        backbone=args.backbone,
        classifier=args.classifier,
        pretrained=not args.no_pretrained,
        epochs=args.epochs,
        lr=args.lr,
        crop_size=args.crop_size,
        batch_size=args.batch_size,
        workers=args.workers,
        cam_scales=args.cam_scales,
        cam_flip=args.cam_flip,
        background_threshold=args.bg_threshold,
        top_share=args.top_share,
        seed_evidence=args.seed_evidence,
        base_masks=args.base_masks,
        uss=args.uss,
        models=ModelSettings(device=args.device, weights_dir=args.weights_dir, segmenter=args.segmenter,
                             download=not args.no_download),
        shard=parse_shard(args.shard),
        seed=args.seed,
        dhr=dataclasses.replace(DHRConfig(), tau=args.tau, crf=args.crf),
        progress=not args.no_progress,
        train_only=args.train_only,
        embedding_cache=ProjectLayout(Path(args.out)).embeddings_dir,  # where the GUI and `dhr train` look too
    )
    report = run_bootstrap(dataset, config)
    for line in _unreadable_report(report.unreadable):
        print(line)
    if args.train_only:
        print(f"classifier saved: {report.classifier_path} ({report.classifier})")
        return 0
    print(
        f"bootstrap: {len(report.processed)} image(s) labelled, {len(report.skipped)} already done, "
        f"{report.total} in this shard; classifier {report.classifier}; segmenter {report.segmenter}, "
        f"USS {report.uss}"
    )
    print(f"project: {report.store_root}")
    if report.coco_path is not None:
        print(f"COCO: {report.coco_path}")
    if dataset.problems:
        count = len(dataset.problems)
        print(f"{count} dataset entr{'y' if count == 1 else 'ies'} skipped (listed above)")
    return 0


def _unreadable_report(problems: list) -> list[str]:
    """Lines about the images the run left out because they do not decode (none: no lines)."""
    if not problems:
        return []
    return [f"{len(problems)} image(s) left out, they do not decode:"] + [f"  - {p}" for p in problems]


def merge_command(args: argparse.Namespace) -> int:
    from annotate.bootstrap import merge_shards

    coco = merge_shards(
        args.out, args.shard_dirs, progress=not args.no_progress, allow_partial=args.allow_partial
    )
    print(f"merged {len(args.shard_dirs)} shard(s) into {args.out}" + (f"; COCO: {coco}" if coco else ""))
    return 0
