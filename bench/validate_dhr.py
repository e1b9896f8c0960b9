"""Validation suite of DHR over families of known-answer scenes: Sinkhorn solvers and stopping rules, CRF off / on.

Every family of :data:`dhr.scenes.FAMILIES` is generated from a fixed split of seeds: the *validation* seeds
choose the defaults, the *test* seeds report them. For every variant (no transport, POT run to convergence, POT
stopped at 1e-4, POT stopped after 1 / 2 / 3 / 5 iterations, the DHR authors' solver and stopping rule), each
with and without the final dense CRF, it prints, per split:

- restored share: of the scenes whose base mask lost the minor class (IoU < 0.5), the share where the balanced
  mask has it back (IoU >= 0.5);
- minor-class IoU, mIoU, mean FPR / FNR (``dhr.metrics``), milliseconds per image.

Then the per-family table of the chosen variant against the authors' solver on the test split, and the CRF
settings (iterations, lattice scale) compared on the validation split. Usage::

    python bench/validate_dhr.py [--seeds 6] [--families base,"two tags"] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np
import skimage.data
import torch

from dhr import CRFConfig, DHRConfig, confusion_matrix, dense_crf, rebalance, segmentation_scores
from dhr.scenes import FAMILIES, make_family_scene
from dhr.synthetic import SyntheticScene

VARIANTS: dict[str, DHRConfig] = {
    "no OT": DHRConfig(solver="none", eps=0.1),
    "POT converged (1e-9, 1000 it.)": DHRConfig(solver="pot", eps=0.1, max_iter=1000, stop_thr=1e-9),
    "POT stop_thr 1e-4, 100 it.": DHRConfig(solver="pot", eps=0.1, max_iter=100, stop_thr=1e-4),
    "POT 1 iteration": DHRConfig(solver="pot", eps=0.1, max_iter=1, stop_thr=0.0),
    "POT 1 iteration, eps 0.05": DHRConfig(solver="pot", max_iter=1, stop_thr=0.0, eps=0.05),
    "POT 1 iteration, eps 0.2": DHRConfig(solver="pot", max_iter=1, stop_thr=0.0, eps=0.2),
    "POT 2 iterations": DHRConfig(solver="pot", eps=0.1, max_iter=2, stop_thr=0.0),
    "POT 3 iterations": DHRConfig(solver="pot", eps=0.1, max_iter=3, stop_thr=0.0),
    "POT 5 iterations": DHRConfig(solver="pot", eps=0.1, max_iter=5, stop_thr=0.0),
    "authors' solver (reference)": DHRConfig(solver="reference", eps=0.1, max_iter=100, stop_thr=1e-2),
}
REFERENCE = "authors' solver (reference)"
CRF_SETTINGS = [CRFConfig(iterations=i, scale=s) for i in (10, 5, 3) for s in (1.0, 0.5, 0.25)]
VALIDATION_SEEDS = range(0, 1000)
TEST_SEEDS = range(1000, 2000)
BACKGROUNDS = ("coffee", "chelsea", "astronaut", "rocket", "immunohistochemistry")


@dataclass
class Score:
    """One variant on one scene."""

    family: str
    split: str
    lost: bool  # the base mask lost the minor class
    restored: bool
    minor_iou: float
    miou: float
    fpr: float
    fnr: float
    ms: float


def _scores(pred: torch.Tensor, scene: SyntheticScene) -> dict:
    return segmentation_scores(confusion_matrix(pred, scene.gt, max(scene.tags) + 1))


def _score(family: str, split: str, scene: SyntheticScene, pred: torch.Tensor, ms: float) -> Score:
    s = _scores(pred, scene)
    base_minor = float(_scores(scene.mask, scene)["iou"][scene.minor]) if scene.minor else float("nan")
    minor = float(s["iou"][scene.minor]) if scene.minor else float("nan")
    lost = bool(scene.minor) and base_minor < 0.5
    minor_iou = 0.0 if scene.minor and np.isnan(minor) else minor
    return Score(family, split, lost, lost and minor_iou >= 0.5, minor_iou, s["miou"], s["fpr"], s["fnr"], ms)


def scenes(names: list[str], seeds: int) -> list[tuple[str, str, SyntheticScene]]:
    """(family, split, scene) for ``seeds`` validation and ``seeds`` test seeds of every named family."""
    photos = [np.ascontiguousarray(getattr(skimage.data, n)()) for n in BACKGROUNDS]
    photos = [p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=2) for p in photos]
    out = []
    for name in names:
        spec = FAMILIES[name]
        for split, pool in (("val", VALIDATION_SEEDS), ("test", TEST_SEEDS)):
            for seed in list(pool)[:seeds]:
                out.append((name, split, make_family_scene(spec, seed, photos[seed % len(photos)][..., :3])))
    return out


def run_variants(items, crf: CRFConfig) -> dict[tuple[str, bool], list[Score]]:
    """Every variant, CRF off and on, on every scene."""
    from tqdm.auto import tqdm

    results: dict[tuple[str, bool], list[Score]] = {}
    for label, config in VARIANTS.items():
        for family, split, scene in tqdm(items, desc=label, unit="scene", leave=False):
            start = time.perf_counter()
            result = rebalance(scene.cams, scene.mask, scene.tags, scene.uss, scene.wss, config=config)
            ms = 1000 * (time.perf_counter() - start)
            results.setdefault((label, False), []).append(_score(family, split, scene, result.mask, ms))
            start = time.perf_counter()
            refined = dense_crf(scene.image, result.heatmaps, crf)
            pred = torch.tensor(result.classes)[refined.max(dim=0).indices]
            crf_ms = ms + 1000 * (time.perf_counter() - start)
            results.setdefault((label, True), []).append(_score(family, split, scene, pred, crf_ms))
    return results


def summary(scores: list[Score]) -> dict[str, float]:
    lost = [s for s in scores if s.lost]
    minor = [s.minor_iou for s in scores if not np.isnan(s.minor_iou)]
    return {
        "restored": sum(s.restored for s in lost) / len(lost) if lost else float("nan"),
        "lost": len(lost),
        "minor_iou": statistics.mean(minor) if minor else float("nan"),
        "miou": statistics.mean(s.miou for s in scores),
        "fpr": statistics.mean(s.fpr for s in scores),
        "fnr": statistics.mean(s.fnr for s in scores),
        "ms": statistics.median(s.ms for s in scores),
        "n": len(scores),
    }


def choose(results) -> str:
    """The variant with the best validation mIoU averaged over CRF off and on; restored share breaks ties."""
    def key(label: str):
        val = [summary([s for s in results[(label, crf)] if s.split == "val"]) for crf in (False, True)]
        return (round(statistics.mean(v["miou"] for v in val), 3), statistics.mean(v["restored"] for v in val))
    return max(VARIANTS, key=key)


def print_variants(results, split: str, chosen: str) -> None:
    print(f"\n**{split} split** ({summary([s for s in results[(chosen, False)] if s.split == split])['n']} scenes, "
          f"{summary([s for s in results[(chosen, False)] if s.split == split])['lost']} with a lost minor class)\n")
    print("| variant | CRF | restored | minor IoU | mIoU | FPR | FNR | ms / image |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for crf in (False, True):
        for label in VARIANTS:
            s = summary([x for x in results[(label, crf)] if x.split == split])
            name = f"**{label}** (default)" if label == chosen else label
            print(f"| {name} | {'on' if crf else 'off'} | {s['restored']:.0%} | {s['minor_iou']:.3f} | {s['miou']:.3f} "
                  f"| {s['fpr']:.3f} | {s['fnr']:.3f} | {s['ms']:.0f} |")


def print_families(results, chosen: str) -> None:
    print("\n**Per family, test split** (chosen default against the authors' solver; CRF off / on)\n")
    print("| family | restored (ours / authors') | minor IoU | mIoU, no CRF | mIoU, CRF | FPR | FNR | ms / image |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for family in dict.fromkeys(s.family for s in results[(chosen, False)]):
        ours, ref, ours_crf, ref_crf = (
            summary([s for s in results[(label, crf)] if s.family == family and s.split == "test"])
            for label, crf in ((chosen, False), (REFERENCE, False), (chosen, True), (REFERENCE, True))
        )
        restored = "-" if not ours["lost"] else f"{ours['restored']:.0%} / {ref['restored']:.0%}"
        minor = "-" if np.isnan(ours["minor_iou"]) else f"{ours['minor_iou']:.3f} / {ref['minor_iou']:.3f}"
        print(f"| {family} | {restored} | {minor} | {ours['miou']:.3f} / {ref['miou']:.3f} "
              f"| {ours_crf['miou']:.3f} / {ref_crf['miou']:.3f} | {ours['fpr']:.3f} | {ours['fnr']:.3f} | {ours['ms']:.0f} |")


def print_crf(items, chosen: str) -> None:
    print("\n**Final CRF settings, validation split** (chosen solver)\n")
    print("| CRF iterations | lattice scale | mIoU | minor IoU | CRF ms / image (median) | CRF ms at 512 px |")
    print("|---:|---:|---:|---:|---:|---:|")
    val = [(f, sp, sc) for f, sp, sc in items if sp == "val"]
    prepared = [(f, sp, sc, rebalance(sc.cams, sc.mask, sc.tags, sc.uss, sc.wss, config=VARIANTS[chosen])) for f, sp, sc in val]
    for crf in CRF_SETTINGS:
        scores, times, times_512 = [], [], []
        for family, split, scene, result in prepared:
            start = time.perf_counter()
            refined = dense_crf(scene.image, result.heatmaps, crf)
            ms = 1000 * (time.perf_counter() - start)
            times.append(ms)
            if scene.image.shape[0] == 512:
                times_512.append(ms)
            scores.append(_score(family, split, scene, torch.tensor(result.classes)[refined.max(dim=0).indices], ms))
        s = summary(scores)
        at512 = f"{statistics.median(times_512):.0f}" if times_512 else "-"
        print(f"| {crf.iterations} | {crf.scale} | {s['miou']:.3f} | {s['minor_iou']:.3f} | {statistics.median(times):.0f} | {at512} |")


def load_results(paths: list[str]) -> dict[tuple[str, bool], list[Score]]:
    """The scores written by ``--json`` runs, merged (each run covers some families)."""
    results: dict[tuple[str, bool], list[Score]] = {}
    for path in paths:
        with open(path) as handle:
            for key, scores in json.load(handle).items():
                label, crf = key.rsplit("|crf=", 1)
                results.setdefault((label, crf == "True"), []).extend(Score(**s) for s in scores)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="seeds per family and split (default 6)")
    parser.add_argument("--families", help="comma-separated family names (default: all)")
    parser.add_argument("--no-crf-table", action="store_true", help="skip the CRF settings table")
    parser.add_argument("--crf-table-only", metavar="VARIANT",
                        help="only the CRF settings table, for this variant of the solver table")
    parser.add_argument("--json", help="also write every score to this file")
    parser.add_argument("--from-json", nargs="+", metavar="FILE",
                        help="print the tables from the scores of earlier --json runs (e.g. families split over "
                             "several processes) instead of running")
    args = parser.parse_args()
    if args.from_json:
        results = load_results(args.from_json)
        chosen = choose(results)
        print(f"{len({s.family for s in results[(chosen, False)]})} families from {len(args.from_json)} file(s)")
        print(f"\nChosen on the validation split: {chosen}")
        for split in ("val", "test"):
            print_variants(results, split, chosen)
        print_families(results, chosen)
        return
    names = args.families.split(",") if args.families else list(FAMILIES)
    torch.manual_seed(0)
    items = scenes(names, args.seeds)
    crf = CRFConfig()
    if args.crf_table_only:
        print_crf(items, args.crf_table_only)
        return
    print(f"{len(items)} scenes, {len(names)} families; {platform.machine()}, {torch.get_num_threads()} threads; "
          f"final CRF {crf.iterations} iterations at lattice scale {crf.scale}")
    results = run_variants(items, crf)
    chosen = choose(results)
    print(f"\nChosen on the validation split: {chosen}")
    for split in ("val", "test"):
        print_variants(results, split, chosen)
    print_families(results, chosen)
    if not args.no_crf_table:
        print_crf(items, chosen)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({f"{k[0]}|crf={k[1]}": [vars(s) for s in v] for k, v in results.items()}, handle)


if __name__ == "__main__":
    main()
