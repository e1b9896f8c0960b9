"""``dhr train`` (recursive training rounds) and ``dhr eval`` (scores against ground truth).

Several GPUs or machines: start the same command under torchrun, e.g.
``torchrun --nproc_per_node 4 -m cli train PROJECT --rounds 3 --device cuda`` (NCCL); on CPU the processes
use gloo. The project folder must be reachable from every process.
"""

from __future__ import annotations

import argparse
import logging

__all__ = ["register"]

logger = logging.getLogger("dhr.train")


def _scales(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"scales must be comma-separated numbers, got {text!r}") from error
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"scales must be positive, got {text!r}")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="recursive training rounds: DeepLabv3+ with DHR, then relabel",
                                  description="dhr train (recursive training rounds) and dhr eval (scores against "
                                              "ground truth).")
    train.add_argument("project", help="project folder (created with `dhr init`)")
    train.add_argument("--rounds", type=int, default=3, help="training rounds (default 3)")
    train.add_argument("--steps", type=int, default=2000, help="optimisation steps per round (default 2000)")
    train.add_argument("--batch-size", type=int, default=8, help="images per step and process (default 8)")
    train.add_argument("--crop-size", type=int, default=512, help="training crop side in pixels (default 512)")
    train.add_argument("--backbone", default="resnet50",
                       help="resnet50 | resnet101 | resnet_small | resnet_tiny (default resnet50)")
    train.add_argument("--output-stride", type=int, default=16, choices=(8, 16))
    train.add_argument("--no-pretrained", action="store_true", help="random backbone init (no ImageNet weights)")
    train.add_argument("--lr", type=float, default=1e-3, help="backbone learning rate; heads get 10x (default 1e-3)")
    train.add_argument("--head-lr-mult", type=float, default=10.0)
    train.add_argument("--weight-decay", type=float, default=4e-5)
    train.add_argument("--momentum", type=float, default=0.9)
    train.add_argument("--poly-power", type=float, default=0.9)
    train.add_argument("--ema-decay", type=float, default=0.999)
    train.add_argument("--no-amp", action="store_true", help="disable float16 mixed precision on CUDA")
    train.add_argument("--accepted-weight", type=float, default=1.0,
                       help="loss weight of the pixels of accepted (reviewed) images (default 1)")
    train.add_argument("--accepted-repeat", type=int, default=1,
                       help="show accepted images this many times per epoch (default 1)")
    train.add_argument("--cls-loss-weight", type=float, default=1.0, help="weight of the tag loss (default 1)")
    train.add_argument("--no-dhr", action="store_true", help="train on the stored masks without the DHR step")
    train.add_argument("--dhr-warmup", type=int, default=None,
                       help="steps on the stored masks before the DHR step starts (default: 10%% of --steps)")
    train.add_argument("--dhr-every", type=int, default=1, help="run the DHR step every k steps (default 1)")
    train.add_argument("--no-crf", dest="crf", action="store_false",
                       help="end DHR with a plain argmax instead of the dense CRF (faster, coarser labels)")
    train.add_argument("--relabel", choices=("prediction", "restore", "dhr"), default="restore",
                       help="seeds of the relabelling: the network's prediction; the prediction plus the tagged "
                            "classes it lacks that DHR restores and that look distinct (default); or DHR's "
                            "balanced mask of the prediction")
    train.add_argument("--no-keep-tags", dest="keep_tags", action="store_false",
                       help="let a round drop a tagged class the labels hold and the network predicts nowhere "
                            "(default: carry its current region over)")
    train.add_argument("--min-confidence", type=float, default=0.8,
                       help="relabelling: pixels whose network probability is below this keep their current "
                            "labels (default 0.8; 0: the prediction everywhere)")
    train.add_argument("--max-area-change", type=float, default=2.0,
                       help="relabelling: a class the labels hold may grow or shrink by at most this factor in a "
                            "round, else its change is undone (default 2; 0: no bound)")
    train.add_argument("--uss", default="color", help="USS feature provider (models.uss; default color)")
    train.add_argument("--segmenter", default="auto",
                       help="SAM variant, grabcut, auto (SAM ViT-B if present) or none (keep DHR masks)")
    train.add_argument("--scales", type=_scales, default=(0.5, 1.0, 1.5),
                       help="inference scales for relabelling (default 0.5,1,1.5)")
    train.add_argument("--no-flip", action="store_true", help="no flip augmentation / flip inference")
    train.add_argument("--min-change", type=float, default=0.002,
                       help="stop when fewer than this share of pixels changed in a round (default 0.002)")
    train.add_argument("--reinit", action="store_true", help="start every round from the backbone weights")
    train.add_argument("--relabel-edited", action="store_true",
                       help="also relabel images a person edited since the last automatic pass (default: keep "
                            "them as they are)")
    train.add_argument("--gt", help="ground truth (PNG folder or COCO file): log the labels' mIoU per round")
    train.add_argument("--out", help="run folder (default PROJECT/training); a killed run resumes from it")
    train.add_argument("--checkpoint-every", type=int, default=100)
    train.add_argument("--workers", type=int, default=2, help="data loader worker processes per GPU (default 2)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    train.add_argument("--weights-dir", help="model weights folder (default $DHR_WEIGHTS_DIR or ~/.cache)")
    train.add_argument("--no-download", action="store_true", help="never download weights")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_train)

    ev = subparsers.add_parser("eval", help="mIoU, per-class IoU, mean FPR / FNR against ground truth")
    ev.add_argument("project", help="project folder")
    ev.add_argument("--gt", required=True, help="ground-truth masks: a folder of PNGs or a COCO .json file")
    ev.add_argument("--checkpoint", help="score this model (model.pt from `dhr train`) instead of the labels")
    ev.add_argument("--scales", type=_scales, default=(1.0,), help="inference scales with --checkpoint")
    ev.add_argument("--use-tags", action="store_true", help="with --checkpoint: predict only tagged classes")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--json", dest="json_path", help="also write the scores to this JSON file")
    ev.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    from dhr import DHRConfig
    from models.settings import ModelSettings
    from training.distributed import cleanup, init_distributed
    from training.evaluate import load_ground_truth
    from training.rounds import RoundsConfig, relabel_plan, run_rounds
    from training.trainer import TrainConfig

    train = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, head_lr_mult=args.head_lr_mult,
        weight_decay=args.weight_decay, momentum=args.momentum, poly_power=args.poly_power,
        ema_decay=args.ema_decay, amp=not args.no_amp, cls_loss_weight=args.cls_loss_weight,
        accepted_weight=args.accepted_weight, dhr=not args.no_dhr, dhr_warmup=args.dhr_warmup,
        dhr_every=args.dhr_every, checkpoint_every=args.checkpoint_every, num_workers=args.workers, seed=args.seed)
    config = RoundsConfig(
        rounds=args.rounds, train=train, backbone=args.backbone, output_stride=args.output_stride,
        pretrained=not args.no_pretrained, uss=args.uss, crop_size=args.crop_size,
        scales=args.scales, flip=not args.no_flip, use_segmenter=args.segmenter != "none", min_change=args.min_change,
        reinit=args.reinit, accepted_repeat=args.accepted_repeat, out_dir=args.out, dhr=DHRConfig(crf=args.crf),
        relabel_edited=args.relabel_edited, relabel=args.relabel,
        keep_tags=args.keep_tags, min_confidence=args.min_confidence, max_area_ratio=args.max_area_change)
    settings = ModelSettings(device=args.device, weights_dir=args.weights_dir,
                             segmenter="auto" if args.segmenter == "none" else args.segmenter,
                             download=not args.no_download)
    ctx = init_distributed(settings.device)
    try:
        from annotate.store import ProjectStore

        with ProjectStore.open(args.project) as store:
            gt = load_ground_truth(args.gt, store) if args.gt else None
            if ctx.is_main:
                print(f"dhr train: the next round {relabel_plan(store, config).summary()}", flush=True)
        history = run_rounds(args.project, config, ctx, gt=gt, progress=not args.quiet, settings=settings)
    finally:
        cleanup(ctx)
    if ctx.is_main:
        print(_rounds_table(history))
        print(_kept_note(history))
    return 0


def _kept_note(history: list[dict]) -> str:
    """One line naming the images the last round kept because a person had edited them."""
    kept = next((f["kept_edited"] for f in reversed(history) if "kept_edited" in f), [])
    if not kept:
        return "no image was kept as edited by hand"
    shown = ", ".join(kept[:10]) + (" ..." if len(kept) > 10 else "")
    return f"kept {len(kept)} image(s) as edited by hand (not relabelled; --relabel-edited relabels them): {shown}"


def _rounds_table(history: list[dict]) -> str:
    lines = ["| round | loss | relabelled | changed px % | confidence | mIoU | FPR | FNR |",
             "|---|---|---|---|---|---|---|---|"]

    def pct(value) -> str:
        return "" if value is None else f"{100 * value:.2f}"

    for f in history:
        loss = f.get("loss")
        conf = f.get("mean_confidence")
        lines.append(f"| {f['round']} | {'' if loss is None else f'{loss:.4f}'} | {f.get('relabelled', '')} | "
                     f"{pct(f.get('changed_fraction'))} | {'' if conf is None else f'{conf:.3f}'} | "
                     f"{pct(f.get('miou'))} | {pct(f.get('fpr'))} | {pct(f.get('fnr'))} |")
    return "\n".join(lines)


def _eval(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from annotate.store import ProjectStore
    from core.files import atomic_write_text
    from training.evaluate import evaluate_labels, evaluate_model, format_scores, load_ground_truth

    if args.json_path:  # its folder is made (or refused) before any scoring or printing
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
    with ProjectStore.open(args.project) as store:
        gt = load_ground_truth(args.gt, store)
        if args.checkpoint:
            from training.rounds import load_model

            model, classes = load_model(args.checkpoint, args.device)
            if classes != store.classes:
                raise ValueError(f"model {args.checkpoint} was trained on classes {classes}, the project has "
                                 f"{store.classes}")
            scores = evaluate_model(model, store, gt, args.scales, use_tags=args.use_tags)
        else:
            scores = evaluate_labels(store, gt)
        print(format_scores(scores, store.classes))
        if args.json_path:
            payload = {"miou": scores["miou"], "fpr": scores["fpr"], "fnr": scores["fnr"], "images": scores["images"],
                       "iou": dict(zip(["background", *store.classes], [float(v) for v in scores["iou"]],
                                       strict=True))}
            atomic_write_text(args.json_path, json.dumps(payload, indent=1))
    return 0
