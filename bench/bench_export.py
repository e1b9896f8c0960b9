"""Export speed of a large synthetic project: COCO RLE / polygons / accepted-only, and semantic PNG masks.

Builds a project of ``--images`` images (one small PNG hard-linked under many names, so building is fast and
the database holds real rows) with ``--instances`` instances each through the store API (inside one
transaction per phase), then times each export. Prints a markdown table.

    python bench/bench_export.py                       # 10,000 images x 10 instances, 640x480
    python bench/bench_export.py --images 1000 --polygon-images 1000 --semantic-images 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotate.coco import export_coco, export_semantic_masks  # noqa: E402
from annotate.rle import encode_mask  # noqa: E402
from annotate.store import STATUSES, NewInstance, ProjectStore  # noqa: E402

CLASSES = [f"class{i}" for i in range(1, 11)]


def mask_pool(count: int, height: int, width: int, seed: int = 0) -> list[dict]:
    """``count`` RLEs of random filled polygons and ellipses (objects of 0.2% to 8% of the image)."""
    import cv2

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(count):
        canvas = np.zeros((height, width), np.uint8)
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(12, max(13, min(height, width) // 4)))
        if rng.random() < 0.5:
            angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
            radii = rng.uniform(0.4, 1.0, 12) * size
            points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).astype(np.int32)
            cv2.fillPoly(canvas, [points], 1)
        else:
            axes = (size, int(size * rng.uniform(0.3, 1.0)))
            cv2.ellipse(canvas, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        if canvas.any():
            pool.append(encode_mask(canvas.astype(bool)))
    return pool


def build_project(
    root: Path, images: int, instances: int, height: int, width: int
) -> tuple[ProjectStore, float]:
    """A project with ``images`` images x ``instances`` instances; returns (store, seconds)."""
    from PIL import Image

    start = time.perf_counter()
    store = ProjectStore.create(root, CLASSES)
    template = root / "template.png"
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(template)
    (root / "images").mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    pool = mask_pool(200, height, width)
    with store.transaction():
        ids = []
        for i in range(images):
            path = root / "images" / f"img_{i:06d}.png"
            os.link(template, path)
            ids.append(store.add_image(path, [CLASSES[i % len(CLASSES)]], copy=False, user="bench"))
    with store.transaction():
        for i, image_id in enumerate(ids):
            chosen = rng.integers(0, len(pool), instances)
            labels = [
                NewInstance(int(1 + k % len(CLASSES)), pool[int(j)], score=float(rng.random()), source="sam")
                for k, j in enumerate(chosen)
            ]
            status = "accepted" if i % 2 == 0 else STATUSES[1 + i % 3]
            store.save_labels(image_id, labels, user="bench", status=status, confidence=float(rng.random()))
    return store, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument(
        "--polygon-images", type=int, default=10_000, help="project size for the polygon row (0: skip)"
    )
    parser.add_argument(
        "--semantic-images", type=int, default=10_000, help="project size for the PNG row (0: skip)"
    )
    parser.add_argument(
        "--workdir", default=None, help="where to build the projects (default: a temp folder)"
    )
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp_path = Path(tmp)
        store, seconds = build_project(tmp_path / "big", args.images, args.instances, args.height, args.width)
        count = args.images * args.instances
        rows.append(("build project (store API, 2 transactions)", args.images, count, seconds, ""))
        for label, kwargs in (
            ("export COCO RLE, all", {}),
            ("export COCO RLE, accepted only", {"accepted_only": True}),
        ):
            start = time.perf_counter()
            coco = export_coco(store, tmp_path / "out.json", **kwargs)
            seconds = time.perf_counter() - start
            size = (tmp_path / "out.json").stat().st_size / 1e6
            rows.append((label, len(coco["images"]), len(coco["annotations"]), seconds, f"{size:.1f} MB"))
        def project_of(size: int, name: str):
            """The big project when it is large enough, else a smaller one built for the row."""
            if size >= args.images:
                return store
            return build_project(tmp_path / name, size, args.instances, args.height, args.width)[0]

        if args.polygon_images:
            small = project_of(args.polygon_images, "poly")
            start = time.perf_counter()
            coco = export_coco(small, tmp_path / "poly.json", polygons=True)
            seconds = time.perf_counter() - start
            size = (tmp_path / "poly.json").stat().st_size / 1e6
            rows.append(("export COCO polygons, all", len(coco["images"]), len(coco["annotations"]), seconds, f"{size:.1f} MB"))
        if args.semantic_images:
            sem = project_of(args.semantic_images, "sem")
            start = time.perf_counter()
            written = export_semantic_masks(sem, tmp_path / "masks")
            seconds = time.perf_counter() - start
            rows.append(("semantic PNG masks, all", len(written), len(written) * args.instances, seconds, ""))
        store.close()

    print(
        f"\nExport benchmark: {args.height}x{args.width} images, {args.instances} instances per image, "
        f"{os.cpu_count()} CPU cores\n"
    )
    print("| step | images | instances | seconds | per 1k images | output |")
    print("|---|---:|---:|---:|---:|---|")
    for label, images, instances, seconds, extra in rows:
        print(
            f"| {label} | {images:,} | {instances:,} | {seconds:.2f} | {1000 * seconds / max(images, 1):.2f} s | {extra} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
