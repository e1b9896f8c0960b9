"""A small synthetic tagged dataset with known segmentation ground truth, written in any supported tag format.

Scenes (H x W, default 112 x 112) on a background of kind ``"checker"`` (a textured grey-green checker) or
``"photo"`` (a random crop of one of scikit-image's bundled photographs, see ``PHOTOS``) hold up to three classes:

- "ball" (id 1): a red disc with mild noise;
- "box" (id 2): a blue rectangle with diagonal stripes;
- "tag" (id 3): a small yellow square touching the box's right side (present only with a box): the small class
  adjacent to a bigger one that CAM-based masks tend to swallow.

On photo backgrounds the tag's width scales with the image (8-12 px at 112 px wide) and the objects vary from
image to image: each gets a random brightness and a texture of
its own (dark spots on the ball, stripes of a random period and direction on the box, a fine checker on the
tag). Half of the class combinations hold the tag, so one small object touches a big one in half of the images.

``make_samples`` builds the scenes in memory; ``write_dataset`` writes images (PNG), ground-truth masks
(``gt/*.png``, uint8 class ids) and tags in "csv", "json", "voc" or "coco" format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

CLASSES = ("ball", "box", "tag")
BACKGROUNDS = ("checker", "photo")
# scikit-image's bundled photographs (no download): colour ones and grey textures
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "grass", "gravel", "brick", "camera")
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


@cache
def _photo(name: str) -> np.ndarray:
    """scikit-image sample photograph ``name`` as HWC uint8 RGB (grey ones stacked to three channels)."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else np.ascontiguousarray(image[..., :3])


def photo_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A random crop (30-80 % of the short side) of a random ``PHOTOS`` image resized to ``size`` -> HWC float32."""
    import cv2

    H, W = size
    photo = _photo(PHOTOS[int(rng.integers(len(PHOTOS)))])
    ph, pw = photo.shape[:2]
    side = int(min(ph, pw) * rng.uniform(0.3, 0.8))
    ch, cw = (side, max(1, side * W // H)) if H >= W else (max(1, side * H // W), side)
    ch, cw = min(ch, ph), min(cw, pw)
    top, left = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = photo[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (W, H), interpolation=cv2.INTER_AREA).astype(np.float32)


def checker_background(size: tuple[int, int]) -> np.ndarray:
    """Grey-green background with a low-frequency checker texture -> HWC float32."""
    H, W = size
    yy, xx = np.mgrid[0:H, 0:W]
    check = ((yy // 6 + xx // 6) % 2).astype(np.float32)
    return np.array([110, 130, 105], np.float32) + 14 * check[..., None]


def _texture(rng: np.random.Generator, class_id: int, size: tuple[int, int]) -> np.ndarray:
    """Per-image texture of one class on photo backgrounds: (H, W) float32 brightness factor around 1."""
    H, W = size
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    gain = rng.uniform(0.8, 1.1)
    if class_id == 1:  # ball: dark spots
        spots = np.ones((H, W), np.float32)
        for _ in range(int(rng.integers(4, 9))):
            cy, cx, r = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(2, 0.04 * max(H, W) + 3)
            spots[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 0.7
        return gain * spots
    if class_id == 2:  # box: stripes of random period and direction
        angle, period = rng.uniform(0, np.pi), rng.uniform(5, 12)
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) / period
        return gain * (0.85 + 0.3 * (np.floor(phase) % 2))
    return gain * (0.9 + 0.15 * ((yy // 2 + xx // 2) % 2))  # tag: fine checker


def make_scene(
    rng: np.random.Generator,
    tags: tuple[str, ...],
    size: tuple[int, int] = (112, 112),
    background: str = "checker",
) -> tuple[np.ndarray, np.ndarray]:
    """Render one scene holding ``tags`` -> (HWC uint8 RGB image, (H, W) uint8 class-id mask).

    ``background``: "checker" or "photo" (see the module docstring).
    """
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    H, W = size
    yy, xx = np.mgrid[0:H, 0:W]
    img = photo_background(rng, size) if background == "photo" else checker_background(size)
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
            tw = int(rng.integers(8, 13) * (W / 112 if background == "photo" else 1))  # photo: scaled to the image
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
    if background == "photo":
        for class_id in np.unique(gt[gt > 0]):
            img[gt == class_id] *= _texture(rng, int(class_id), size)[gt == class_id][:, None]
    img += rng.normal(0, 6, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), gt


def make_samples(
    n: int = 16, size: tuple[int, int] = (112, 112), seed: int = 0, background: str = "checker"
) -> list[Sample]:
    """``n`` scenes cycling through the class combinations; names ``img_000.png`` ..."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        tags = _COMBOS[i % len(_COMBOS)]
        image, gt = make_scene(rng, tags, size, background)
        samples.append(Sample(f"img_{i:03d}.png", image, gt, tuple(t for t in CLASSES if t in tags)))
    return samples


def write_dataset(
    root: str | Path,
    n: int = 16,
    size: tuple[int, int] = (112, 112),
    seed: int = 0,
    fmt: str = "csv",
    background: str = "checker",
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
    samples = make_samples(n, size, seed, background)
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
