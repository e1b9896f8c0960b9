"""Label quality of the offline pipeline, stage by stage: `dhr bootstrap`, then `dhr train`, against ground truth.

A tagged dataset is generated from ``--seed`` (``tests/synthetic_dataset.py``, photo backgrounds: crops of
scikit-image's photographs with a red spotted ball, a blue striped box and, in half of the images, a small
yellow tag touching the box; tags only). No pretrained weights are used: the weights folder is an empty
temporary one and downloads are off, as on an offline machine, so the classifier is trained from scratch,
GrabCut stands in for SAM and the colour-and-texture USS features for SAM / DINO.

The README's command runs through the real CLI (``cli.main``)::

    dhr bootstrap DATA/tags.csv --images DATA/images --out P      (+ --weights-dir EMPTY --no-download)
    dhr train P --rounds 2 ...                                     (with --train-args, default small settings)

Then every stage of the bootstrap is recomputed in process from the saved classifier (same seeds, so the
final labels must equal the CLI's; the script checks it) and scored against the ground truth:

- classifier: tag accuracy (logit > 0 against the tags, on the dataset it was trained on) and CAM pointing
  (share of tagged classes whose CAM peak lies on that class);
- CAM argmax with the conventional fixed background score 0.3, and the base mask (the run's threshold);
- DHR's balanced mask; the prompt seeds (that mask without the components and, with ``--seed-evidence``, the
  pixels that lack CAM evidence, as ``annotate.labeling`` prompts from it); the segmenter's masks as they come (each prompt's mask painted in prompt order, with
  the share of prompts whose mask became an instance); the final labels (after the gate and the merge,
  as saved by the CLI);
- baselines: all background, and a centre disc (as large as the mean ground-truth foreground) labelled with
  the image's first tag;
- after each training round: the project's labels.

    .venv/bin/python bench/bench_pipeline.py [--seed 0] [--images 48] [--size 192] [--rounds 2]

Prints a markdown table of mIoU and per-class IoU for each stage (figures in %), and the run's timings.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

TRAIN_ARGS = "--backbone resnet_small --no-pretrained --steps 150 --batch-size 4 --crop-size 192 --lr 0.01 --workers 0"


class RecordingSegmenter:
    """Wraps a segmenter and keeps every ``predict`` output (the segmenter's masks before the gate and merge)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.outputs: list = []

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def set_image(self, image: np.ndarray) -> None:
        self.inner.set_image(image)

    def predict(self, *args, **kwargs):
        output = self.inner.predict(*args, **kwargs)
        self.outputs.append(output)
        return output


def _cli(argv: Sequence[str]) -> float:
    """Run ``dhr ARGV`` in process; returns its wall time in seconds."""
    from application import cli

    start = time.perf_counter()
    code = cli.main(list(argv))
    if code != 0:
        raise RuntimeError(f"dhr {' '.join(argv)} exited with {code}")
    return time.perf_counter() - start


def _confusion(pred: np.ndarray | torch.Tensor, gt: np.ndarray, num_classes: int) -> torch.Tensor:
    from dhr.metrics import confusion_matrix

    return confusion_matrix(torch.as_tensor(np.asarray(pred)).long(), torch.from_numpy(gt).long(), num_classes)


def centre_disc(shape: tuple[int, int], share: float, class_id: int) -> np.ndarray:
    """(H, W) int64 mask: a centred disc covering ``share`` of the image labelled ``class_id``, else 0."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    radius = np.sqrt(share * height * width / np.pi)
    disc = (yy - (height - 1) / 2) ** 2 + (xx - (width - 1) / 2) ** 2 <= radius**2
    return np.where(disc, class_id, 0).astype(np.int64)


def paint_segmenter_masks(shape: tuple[int, int], prompts, outputs, seed_weight: float) -> np.ndarray:
    """(H, W) int64: each prompt's chosen segmenter mask painted with its class, in prompt order."""
    from annotate.labeling import choose_mask

    painted = np.zeros(shape, np.int64)
    for prompt, output in zip(prompts, outputs, strict=True):
        best, _, _ = choose_mask(output.masks, output.scores, prompt.component, seed_weight)
        painted[output.masks[best]] = prompt.class_id
    return painted


def project_config(project: Path):
    """The bootstrap settings and classifier of the CLI run that wrote ``project`` -> (config, model)."""
    from annotate.bootstrap import BootstrapConfig, resolved_config
    from models.classifier import load_classifier
    from models.settings import ModelSettings

    model, _ = load_classifier(project / "classifier.pt")
    settings = json.loads((project / "bootstrap.json").read_text())["settings"]
    weights_dir = settings["models"]["weights_dir"] if "models" in settings else settings["weights_dir"]
    config = BootstrapConfig(out=project, models=ModelSettings(weights_dir=weights_dir, download=False),
                             progress=False)
    return resolved_config(config, model), model


def stage_figures(
    samples, classes: Sequence[str], model, config, seed: int, saved: Path | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Recompute every bootstrap stage for each sample with ``model`` and bootstrap ``config``.

    ``saved``: the CLI run's ``masks/`` folder, scored as the final labels (and compared with the rerun).
    Returns (stage name -> (C, C + 1) confusion matrix, classifier figures and the agreement with the CLI).
    """
    from PIL import Image

    from annotate.bootstrap import build_bootstrap_segmenter, process_image
    from annotate.prompts import drop_unsupported_components
    from dhr.uss import image_to_tensor
    from models.classifier import cams_to_mask, compute_cams
    from models.uss import build_uss_provider

    classes = list(classes)
    n = len(classes) + 1
    segmenter = RecordingSegmenter(build_bootstrap_segmenter(config.models.segmenter, config))
    provider = build_uss_provider(config.uss, config.models, segmenter.inner)
    stages = ("CAM argmax, background 0.3", "base mask", "DHR balanced mask", "prompt seeds", "segmenter masks",
              "final labels")
    confusion = {name: torch.zeros(n, n + 1, dtype=torch.int64) for name in stages}
    share = float(np.mean([(s.gt > 0).mean() for s in samples]))
    confusion["all background"] = torch.zeros(n, n + 1, dtype=torch.int64)
    confusion["centre disc, first tag"] = torch.zeros(n, n + 1, dtype=torch.int64)
    same = kept = prompted = 0
    correct, hits, peaks = np.zeros(len(classes)), np.zeros(len(classes)), np.zeros(len(classes))
    for sample in samples:
        tags = [classes.index(t) + 1 for t in sample.tags]
        with torch.no_grad():
            logits = model(image_to_tensor(sample.image)[None])[0]
        truth = torch.tensor([i + 1 in tags for i in range(len(classes))])
        correct += ((logits > 0) == truth).numpy()
        cams, _ = compute_cams(model, sample.image, [t - 1 for t in tags], config.cam_scales, config.cam_flip)
        for row, tag in enumerate(tags):
            r, c = np.unravel_index(int(cams[row].argmax()), cams[row].shape)
            hits[tag - 1] += int(sample.gt[r, c] == tag)
            peaks[tag - 1] += 1
        confusion[stages[0]] += _confusion(cams_to_mask(cams, tags, 0.3), sample.gt, n)
        segmenter.outputs.clear()
        outcome = process_image(sample.image, tags, model, provider, segmenter, config)
        painted = paint_segmenter_masks(
            sample.gt.shape, outcome.labels.prompts, segmenter.outputs, config.labeling.seed_weight
        )
        prompted += len(outcome.labels.prompts)
        kept += sum(1 for inst in outcome.labels.instances if inst.source == segmenter.source)
        final = outcome.labels.semantic
        if saved is not None:
            final = np.array(Image.open(saved / (Path(sample.name).stem + ".png"))).astype(np.int64)
            same += int(np.array_equal(final, outcome.labels.semantic))
        seeds = drop_unsupported_components(outcome.dhr.mask, tags, cams, config.labeling.min_evidence,
                                            config.labeling.prompts.connectivity, config.seed_evidence)
        for name, pred in zip(
            stages[1:], (outcome.base_mask, outcome.dhr.mask, seeds, painted, final), strict=True
        ):
            confusion[name] += _confusion(pred.cpu() if isinstance(pred, torch.Tensor) else pred, sample.gt, n)
        confusion["all background"] += _confusion(np.zeros_like(sample.gt, np.int64), sample.gt, n)
        confusion["centre disc, first tag"] += _confusion(centre_disc(sample.gt.shape, share, tags[0]), sample.gt, n)
    figures = {
        "tag accuracy": float(correct.sum() / (len(samples) * len(classes))),
        "CAM pointing": float(hits.sum() / max(1, peaks.sum())),
        "tag accuracy by class": (correct / len(samples)).tolist(),
        "CAM pointing by class": (hits / np.maximum(1, peaks)).tolist(),
        "same as CLI": same / len(samples),
        "segmenter masks kept": kept / max(1, prompted),
        "background threshold": config.background_threshold,
        "seed evidence": config.seed_evidence,
    }
    return confusion, figures


def _row(name: str, confusion: torch.Tensor, note: str = "") -> str:
    from dhr.metrics import segmentation_scores

    scores = segmentation_scores(confusion)
    ious = " | ".join(f"{100 * v:.1f}" for v in scores["iou"].tolist())
    predicted_fg = 1 - float(confusion[:, 0].sum()) / max(1, int(confusion[:, :-1].sum()))
    return f"| {name} | **{100 * scores['miou']:.1f}** | {ious} | {100 * predicted_fg:.0f} | {note} |"


def table_lines(confusion: dict[str, torch.Tensor], figures: dict[str, float], classes: Sequence[str]) -> list[str]:
    """The stage table (markdown) of :func:`stage_figures`' results."""
    header = " | ".join(f"IoU {c}" for c in ("background", *classes))
    lines = [f"| stage | mIoU | {header} | predicted foreground % | |",
             "|---|---:|" + "---:|" * (len(classes) + 1) + "---:|---|",
             "| classifier: tag accuracy on its training images % | "
             f"{100 * figures['tag accuracy']:.1f} | |"
             + " | ".join(f"{100 * v:.1f}" for v in figures["tag accuracy by class"]) + " | | |",
             "| classifier: CAM peak on the tagged class (pointing) % | "
             f"{100 * figures['CAM pointing']:.1f} | |"
             + " | ".join(f"{100 * v:.1f}" for v in figures["CAM pointing by class"]) + " | | |"]
    notes = {"base mask": f"background below {figures['background threshold']:g}",
             "prompt seeds": f"DHR's mask where the class's CAM is at least {figures['seed evidence']:g} of its peak",
             "segmenter masks": f"{100 * figures['segmenter masks kept']:.0f} % of the prompts keep them as instances",
             "final labels": f"`dhr bootstrap`; {100 * figures['same as CLI']:.0f} % of images equal to the "
             "in-process rerun"}
    return lines + [_row(name, matrix, notes.get(name, "")) for name, matrix in confusion.items()]


def round_rows(project: Path) -> list[str]:
    """Table rows of the label mIoU after each training round (from ``training/rounds.json``)."""
    summary = json.loads((project / "training" / "rounds.json").read_text())
    rows = []
    for figures in summary["rounds"]:
        if figures.get("round", 0) == 0 or "miou" not in figures:
            continue
        ious = " | ".join(f"{100 * v:.1f}" for v in figures["iou"])
        fg = 100 * (1 - figures["class_shares"][0]) if "class_shares" in figures else float("nan")
        rows.append(f"| labels after `dhr train` round {figures['round']} | **{100 * figures['miou']:.1f}** | "
                    f"{ious} | {fg:.0f} | |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="dataset and run seed")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=2, help="`dhr train` rounds (0: bootstrap only)")
    parser.add_argument("--train-args", default=TRAIN_ARGS, help="extra `dhr train` options")
    parser.add_argument("--bootstrap-args", default="", help="extra `dhr bootstrap` options (default: none)")
    parser.add_argument("--keep", help="write the dataset and project here instead of a temporary folder")
    args = parser.parse_args(argv)

    from tests.synthetic_dataset import write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        weights = root / "no-weights"
        weights.mkdir(parents=True, exist_ok=True)
        data = write_dataset(root / "data", args.images, (args.size, args.size), args.seed, background="photo")
        project = root / "project"
        offline = ["--weights-dir", str(weights), "--no-download"]
        boot_s = _cli(["bootstrap", str(data.tags_path), "--images", str(data.image_dir), "--out", str(project),
                       "--seed", str(args.seed), "--no-progress", *offline, *args.bootstrap_args.split()])
        config, model = project_config(project)
        confusion, figures = stage_figures(data.samples, data.classes, model, config, args.seed, project / "masks")
        print(f"pipeline label quality, {args.images} generated images of {args.size} x {args.size} px "
              f"(photo backgrounds, {len(data.classes)} classes, seed {args.seed}), no pretrained weights; "
              f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads\n")
        print("\n".join(table_lines(confusion, figures, data.classes)), flush=True)
        train_s = None
        if args.rounds > 0:
            train_s = _cli(["train", str(project), "--rounds", str(args.rounds), "--gt", str(data.root / "gt"),
                            "--seed", str(args.seed), "--quiet", *offline, *args.train_args.split()])
        if args.rounds > 0:
            print("\n".join(round_rows(project)))
        gt_fg = np.mean([(s.gt > 0).mean() for s in data.samples])
        print(f"\nground-truth foreground {100 * gt_fg:.0f} %; bootstrap {boot_s:.0f} s"
              + (f", train {train_s:.0f} s" if train_s is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
