"""Where a click's time goes: SAM's own decoder and post-processing against ``SamSegmenter.predict``, per stage.

One positive click (multimask) at random points of a 1024 x 768 image, with the real-size model's random weights and
its image embedding computed once (the encoder is not timed). Two paths run on the same embedding, interleaved click
by click (their order alternating), so that a machine shared with other jobs slows both alike:

- package: the prompt encoder, ``MaskDecoder.forward`` (all four masks, the selection after) and
  ``Sam.postprocess_masks`` of the three masks (a bilinear resize to 1024 x 1024, the padding cut, a resize to the
  image), thresholded and made numpy bools, as ``SamPredictor.predict`` does;
- segmenter: ``SamSegmenter.predict`` and the best-scoring mask read from its output (what a GUI click keeps).

Per stage, the median wall time and the median CPU time of the process (all threads summed; on a shared machine the
wall time also counts waiting for a core). The stages are timed by wrapping the modules and functions each path
calls; "rest" is the click's total minus its stages. The masks of both paths are compared (IoU of the kept mask and
the largest difference of the low-resolution logits).

    .venv/bin/python bench/bench_click.py [--model light_sam|sam_vit_b] [--clicks 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_segmenters import _images, _segmenter  # noqa: E402

PACKAGE_STAGES = ("prompt encoder", "dense positional encoding", "two-way transformer", "output upscaling",
                  "post-processing (3 masks)")
SEGMENTER_STAGES = ("prompt encoder", "two-way transformer", "output upscaling + mask logits",
                    "post-processing (best mask)")


class Clock:
    """Wall and CPU seconds per stage of the click being timed."""

    def __init__(self) -> None:
        self.times: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
        self.path = ""

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.times[self.path, stage].append((time.perf_counter() - start, time.process_time() - start_cpu))

        return timed

    def run(self, path: str, fn: Callable):
        self.path = path
        return self.wrap("total", fn)()


def package_click(segmenter, point):
    """SAM's own decoder and post-processing for one positive click: (masks (3, H, W) bool, scores, logits)."""
    import numpy as np
    import torch

    model, size = segmenter.model, segmenter.image_size
    coords = torch.as_tensor(segmenter.transform.apply_coords(point[None], size), dtype=torch.float)
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(points=(coords[None], torch.ones((1, 1), dtype=torch.int)),
                                             boxes=None, masks=None)
        low_res, iou = model.mask_decoder(
            image_embeddings=segmenter.embedding[None],
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        masks = model.postprocess_masks(low_res, segmenter._input_size, size) > model.mask_threshold
    return masks[0].numpy().astype(bool), iou[0].numpy(), low_res[0].numpy().astype(np.float32)


def segmenter_click(segmenter, point):
    """``SamSegmenter.predict`` and its best mask: (mask (H, W) bool, best index, logits)."""
    import numpy as np

    out = segmenter.predict(point[None], np.array([1]), multimask=True)
    return out.mask(out.best), out.best, out.low_res_logits


def instrument(segmenter, clock: Clock) -> None:
    """Time the stages of both paths (wrapping the modules' forwards and the functions they call)."""
    import models.segmenters.sam as sam_module

    model, decoder = segmenter.model, segmenter.decoder
    model.prompt_encoder.forward = clock.wrap("prompt encoder", model.prompt_encoder.forward)
    model.prompt_encoder.get_dense_pe = clock.wrap("dense positional encoding", model.prompt_encoder.get_dense_pe)
    model.mask_decoder.transformer.forward = clock.wrap("two-way transformer", model.mask_decoder.transformer.forward)
    model.mask_decoder.output_upscaling.forward = clock.wrap("output upscaling",
                                                             model.mask_decoder.output_upscaling.forward)
    model.postprocess_masks = clock.wrap("post-processing (3 masks)", model.postprocess_masks)
    decoder._transformer = clock.wrap("two-way transformer", decoder._transformer)
    decoder._masks = clock.wrap("output upscaling + mask logits", decoder._masks)
    sam_module._masks_on = clock.wrap("post-processing (best mask)", sam_module._masks_on)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="light_sam", choices=["light_sam", "sam_vit_b"])
    parser.add_argument("--clicks", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    import os
    import warnings

    import numpy as np
    import torch

    from models.segmenters.base import mask_iou

    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    segmenter = _segmenter(args.model)
    _, wide = _images()
    segmenter.set_image(wide)
    clock = Clock()
    instrument(segmenter, clock)
    rng = np.random.default_rng(0)
    points = rng.uniform([0, 0], [wide.shape[1], wide.shape[0]], (args.clicks + 2, 2)).astype(np.float32)
    ious, logit_diffs = [], []
    for i, point in enumerate(points):
        first, second = ("package", "segmenter") if i % 2 else ("segmenter", "package")
        clicks = {"package": package_click, "segmenter": segmenter_click}
        done = {path: clock.run(path, lambda c=clicks[path], p=point: c(segmenter, p)) for path in (first, second)}
        if i < 2:  # warm-up clicks, not counted
            clock.times.clear()
            continue
        masks, _, package_logits = done["package"]
        mask, best, logits = done["segmenter"]
        ious.append(mask_iou(mask, masks[best]) if masks[best].any() or mask.any() else 1.0)
        logit_diffs.append(float(np.abs(logits - package_logits).max()))

    def cell(path: str, stage: str) -> str:
        times = clock.times.get((path, stage))
        if not times:
            return "-"
        return (f"{1e3 * statistics.median(t for t, _ in times):.1f} "
                f"({1e3 * statistics.median(c for _, c in times):.1f})")

    def rest(path: str, stages: tuple[str, ...]) -> str:
        total = clock.times[path, "total"]
        wall = [t - sum(clock.times[path, s][k][0] for s in stages if (path, s) in clock.times)
                for k, (t, _) in enumerate(total)]
        cpu = [c - sum(clock.times[path, s][k][1] for s in stages if (path, s) in clock.times)
               for k, (_, c) in enumerate(total)]
        return f"{1e3 * statistics.median(wall):.1f} ({1e3 * statistics.median(cpu):.1f})"

    load = os.getloadavg()[0]
    print(f"{args.model}, one positive click (multimask) on a 1024 x 768 image, {args.clicks} clicks per path, "
          f"{args.threads} torch threads, {os.cpu_count()} cores, load average {load:.1f}; ms: median wall (CPU)\n")
    print("| stage | package decoder + post-processing | SamSegmenter.predict + best mask |")
    print("|---|---:|---:|")
    for stage in dict.fromkeys(PACKAGE_STAGES + SEGMENTER_STAGES):
        print(f"| {stage} | {cell('package', stage)} | {cell('segmenter', stage)} |")
    print(f"| rest (glue, numpy, thresholds) | {rest('package', PACKAGE_STAGES)} | "
          f"{rest('segmenter', SEGMENTER_STAGES)} |")
    print(f"| **click** | **{cell('package', 'total')}** | **{cell('segmenter', 'total')}** |")
    print(f"\nkept mask vs the package's: IoU min {min(ious):.6f}, median {statistics.median(ious):.6f}; "
          f"low-resolution logits: largest difference {max(logit_diffs):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
