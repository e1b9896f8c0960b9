"""A small synthetic tagged dataset with known segmentation ground truth, written in any supported tag format.

Scenes (H x W, default 112 x 112) on a textured grey-green background hold up to three classes:

- "ball" (id 1): a red disc with mild noise;
- "box" (id 2): a blue rectangle with diagonal stripes;
- "tag" (id 3): a small yellow square touching the box's right side (present only with a box): the small class
  adjacent to a bigger one that CAM-based masks tend to swallow.

``make_samples`` builds the scenes in memory; ``write_dataset`` writes images (PNG), ground-truth masks
(``gt/*.png``, uint8 class ids) and tags in "csv", "json", "voc" or "coco" format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("ball", "box", "tag")
_COMBOS = (
    ("ball",),
    ("box", "tag"),
    ("ball", "box"),
    ("ball", "box", "tag"),
    ("box",),
    ("ball", "box", "tag"),
)


@dataclass
class Sample:
    """One scene: name, HWC uint8 RGB image, (H, W) uint8 ground truth (class ids), tags (class names)."""

    name: str
    image: np.ndarray
    gt: np.ndarray
    tags: tuple[str, ...]


@dataclass
class SyntheticDataset:
    root: Path
    image_dir: Path
    tags_path: Path
    classes: tuple[str, ...]
    samples: list[Sample]

    def gt(self, name: str) -> np.ndarray:
        return next(s.gt for s in self.samples if s.name == name)


def make_scene(
    rng: np.random.Generator, tags: tuple[str, ...], size: tuple[int, int] = (112, 112)
) -> tuple[np.ndarray, np.ndarray]:
    """Render one scene holding ``tags`` -> (HWC uint8 RGB image, (H, W) uint8 class-id mask)."""
    H, W = size
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.empty((H, W, 3), np.float32)
    # background: grey-green with a low-frequency checker texture
    check = ((yy // 6 + xx // 6) % 2).astype(np.float32)
    img[...] = np.array([110, 130, 105], np.float32) + 14 * check[..., None]
    gt = np.zeros((H, W), np.uint8)
    if "box" in tags:
        bh, bw = int(rng.integers(H * 0.35, H * 0.5)), int(rng.integers(W * 0.3, W * 0.42))
        top = int(rng.integers(4, H - bh - 4))
        left = int(rng.integers(4, max(5, W - bw - W * 0.22)))
        region = (yy >= top) & (yy < top + bh) & (xx >= left) & (xx < left + bw)
        stripes = (((yy + xx) // 4) % 2).astype(np.float32)
        box_colour = np.array([40, 60, 200], np.float32) + 45 * stripes[..., None]
        img[region] = box_colour[region]
        gt[region] = 2
        if "tag" in tags:
            th = int(rng.integers(max(8, bh // 4), max(9, bh // 3)))
            tw = int(rng.integers(8, 13))
            ttop = top + int(rng.integers(0, bh - th + 1))
            tleft = left + bw
            tag_region = (yy >= ttop) & (yy < ttop + th) & (xx >= tleft) & (xx < tleft + tw)
            img[tag_region] = np.array([235, 210, 40], np.float32)
            gt[tag_region] = 3
    if "ball" in tags:
        r = int(rng.integers(min(H, W) * 0.12, min(H, W) * 0.2))
        for _ in range(50):  # keep the ball off the box
            cy, cx = int(rng.integers(r + 2, H - r - 2)), int(rng.integers(r + 2, W - r - 2))
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            if not (gt[disc] > 0).any():
                break
        disc &= gt == 0
        img[disc] = np.array([210, 40, 35], np.float32)
        gt[disc] = 1
    img += rng.normal(0, 6, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), gt


def make_samples(n: int = 16, size: tuple[int, int] = (112, 112), seed: int = 0) -> list[Sample]:
    """``n`` scenes cycling through the class combinations; names ``img_000.png`` ..."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        tags = _COMBOS[i % len(_COMBOS)]
        image, gt = make_scene(rng, tags, size)
        samples.append(Sample(f"img_{i:03d}.png", image, gt, tuple(t for t in CLASSES if t in tags)))
    return samples


def write_dataset(
    root: str | Path, n: int = 16, size: tuple[int, int] = (112, 112), seed: int = 0, fmt: str = "csv"
) -> SyntheticDataset:
    """Write the dataset under ``root``: ``images/``, ``gt/`` and the tags in format ``fmt``.

    Tags files: ``tags.csv`` (csv), ``tags.json`` (json), ``Annotations/*.xml`` (voc), ``annotations.json``
    (coco, with one whole-object annotation per tagged class).
    """
    from PIL import Image

    root = Path(root)
    image_dir, gt_dir = root / "images", root / "gt"
    image_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(exist_ok=True)
    samples = make_samples(n, size, seed)
    for s in samples:
        Image.fromarray(s.image).save(image_dir / s.name)
        Image.fromarray(s.gt).save(gt_dir / s.name)
    if fmt == "csv":
        tags_path = root / "tags.csv"
        lines = ["file,tags"] + [f"{s.name},{';'.join(s.tags)}" for s in samples]
        tags_path.write_text("\n".join(lines) + "\n")
    elif fmt == "json":
        tags_path = root / "tags.json"
        tags_path.write_text(json.dumps({s.name: list(s.tags) for s in samples}, indent=1))
    elif fmt == "voc":
        tags_path = root / "Annotations"
        tags_path.mkdir(exist_ok=True)
        for s in samples:
            objects = "".join(f"<object><name>{t}</name></object>" for t in s.tags)
            (tags_path / (Path(s.name).stem + ".xml")).write_text(
                f"<annotation><filename>{s.name}</filename>{objects}</annotation>"
            )
    elif fmt == "coco":
        tags_path = root / "annotations.json"
        images, anns = [], []
        for i, s in enumerate(samples, start=1):
            images.append({"id": i, "file_name": s.name, "height": size[0], "width": size[1]})
            for t in s.tags:
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": CLASSES.index(t) + 1})
        categories = [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]
        tags_path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return SyntheticDataset(root, image_dir, tags_path, CLASSES, samples)
