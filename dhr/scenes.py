"""Families of known-answer scenes for validating DHR, generated from a specification and a seed.

Each scene holds a ground truth of 1 to 10 tagged classes over background, an image, CAMs in which the major
class (1) spills over a minor class (2) touching it (so the CAM argmax loses the minor class), USS features at
stride 8 and two WSS feature maps at stride 16. A :class:`SceneSpec` sets what makes a scene hard: the minor
class's size, CAM faults (blur, a shifted peak, a class with a weak or no CAM), whether the USS features tell the
minor class from the major one, whether the WSS features separate every confused pair, the noise level, the image
size and the background (flat, or a photograph passed in). :data:`FAMILIES` names the families that
``bench/validate_dhr.py`` reports.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .synthetic import PALETTE, SyntheticScene, blur_maps, cam_argmax, pool_maps

__all__ = ["SceneSpec", "FAMILIES", "make_family_scene"]


@dataclass(frozen=True)
class SceneSpec:
    """What a generated scene looks like.

    Attributes:
        classes: (low, high) number of tagged classes, drawn per scene; class 1 is the major class, class 2
            (when there are two or more) the minor class touching it.
        size: image side in pixels (a multiple of 16).
        minor_area: (low, high) share of the image the minor class covers.
        cam_blur: extra Gaussian blur of every CAM, in CAM cells.
        cam_shift: every CAM's peak is shifted by this many CAM cells in a random direction.
        weak_cam: contrast of the CAM of one further class (3, or the minor class with two tags): its peak is
            scaled by this over a floor of ``0.3 (1 - weak_cam)``; 1 = intact, 0 = no CAM at all (a flat map).
        uss_separates: the USS features tell the minor class from the major one (else only WSS features do).
        wss_partial: with four or more classes, classes 3 and 4 also share their USS code and their WSS features
            do not tell them apart either (only some confused pairs are separable).
        noise: standard deviation of the feature noise and amplitude of the CAM noise.
        photo: textured objects on the background photograph passed to :func:`make_family_scene`.
        vanished: the base mask has no pixel of the minor class at all (they are given to the major class),
            so only stage 1 can bring it back.
    """

    classes: tuple[int, int] = (3, 3)
    size: int = 256
    minor_area: tuple[float, float] = (0.02, 0.06)
    cam_blur: float = 0.0
    cam_shift: int = 0
    weak_cam: float = 1.0
    uss_separates: bool = True
    wss_partial: bool = False
    noise: float = 0.05
    photo: bool = False
    vanished: bool = False


BASE = SceneSpec()
FAMILIES: dict[str, SceneSpec] = {
    "base": BASE,
    "one tag": replace(BASE, classes=(1, 1)),
    "two tags": replace(BASE, classes=(2, 2)),
    "many tags (6-10)": replace(BASE, classes=(6, 10), size=512),
    "tiny minor (0.5-1.5 %)": replace(BASE, minor_area=(0.005, 0.015)),
    "large minor (6-10 %)": replace(BASE, minor_area=(0.06, 0.10)),
    "minor vanished from the mask": replace(BASE, vanished=True),
    "blurred CAMs": replace(BASE, cam_blur=1.5),
    "shifted CAM peaks": replace(BASE, cam_shift=1),
    "weak CAM": replace(BASE, weak_cam=0.3),
    "no CAM for a class": replace(BASE, weak_cam=0.0),
    "USS confuse minor": replace(BASE, uss_separates=False),
    "WSS separate some pairs": replace(BASE, classes=(5, 6), uss_separates=False, wss_partial=True),
    "noisy features": replace(BASE, noise=0.25),
    "128 px": replace(BASE, size=128),
    "1024 px": replace(BASE, size=1024),
    "photo background": replace(BASE, photo=True),
}


def _place(free: np.ndarray, h: int, w: int, rng: np.random.Generator, tries: int = 60) -> tuple[int, int] | None:
    """Top-left corner of an h x w box lying wholly in ``free`` (H, W) bool, or None after ``tries``."""
    size_y, size_x = free.shape
    if h >= size_y or w >= size_x:
        return None
    for _ in range(tries):
        y, x = int(rng.integers(0, size_y - h)), int(rng.integers(0, size_x - w))
        if free[y : y + h, x : x + w].all():
            return y, x
    return None


def _layout(spec: SceneSpec, k: int, rng: np.random.Generator) -> np.ndarray:
    """(S, S) int64 ground truth: major class 1, minor class 2 touching it, further classes apart."""
    s = spec.size
    gt = np.zeros((s, s), np.int64)
    side = s * rng.uniform(0.36, 0.48) if k < 6 else s * rng.uniform(0.28, 0.34)
    mh, mw = int(side * rng.uniform(0.85, 1.15)), int(side)
    y0, x0 = int(rng.integers(s // 16, s - mh - s // 16)), int(rng.integers(s // 16, max(s // 16 + 1, s // 2 - mw // 2)))
    gt[y0 : y0 + mh, x0 : x0 + mw] = 1
    if k >= 2:  # minor class on the right edge of the major one, overlapping its boundary band
        area = rng.uniform(*spec.minor_area) * s * s
        nh = int(np.clip(np.sqrt(area * rng.uniform(0.7, 1.4)), 3, mh))
        nw = max(3, int(area / nh))
        ny = y0 + int(rng.integers(0, max(1, mh - nh)))
        nx = min(x0 + mw, s - nw - 1)
        gt[ny : ny + nh, nx : nx + nw] = 2
    margin = max(2, s // 32)
    for c in range(3, k + 1):
        occupied = gt > 0
        grown = _dilate(torch.from_numpy(occupied).float()[None], margin)[0] > 0
        for scale in (0.22, 0.16, 0.11, 0.08):
            h, w = (int(s * scale * rng.uniform(0.8, 1.2)) for _ in range(2))
            corner = _place(~grown.numpy(), h, w, rng)
            if corner is not None:
                gt[corner[0] : corner[0] + h, corner[1] : corner[1] + w] = c
                break
    return gt


def _image(gt: np.ndarray, spec: SceneSpec, rng: np.random.Generator, background: np.ndarray | None) -> np.ndarray:
    """(S, S, 3) uint8: flat colours with mild noise, or textured objects over a background photograph."""
    colours = PALETTE[np.arange(int(gt.max()) + 1) % len(PALETTE)].astype(np.float32)
    image = colours[gt]
    if spec.photo and background is not None:
        import cv2

        photo = cv2.resize(background, (spec.size, spec.size), interpolation=cv2.INTER_AREA).astype(np.float32)
        stripes = 25 * np.sin(np.arange(spec.size) / rng.uniform(2, 5))[None, :, None]
        image = np.where(gt[..., None] == 0, photo, image + stripes)
    image = image + rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _dilate(maps: torch.Tensor, radius: int) -> torch.Tensor:
    """Square max filter of side ``2 radius + 1`` on (C, H, W) maps, as two 1-D passes (cheap at any radius)."""
    k = 2 * radius + 1
    rows = F.max_pool2d(maps[None], (k, 1), stride=1, padding=(radius, 0))
    return F.max_pool2d(rows, (1, k), stride=1, padding=(0, radius))[0]


def _codes(num: int, dim: int, g: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(num, dim, generator=g), dim=1)


def _shift(cams: torch.Tensor, cells: int, rng: np.random.Generator) -> torch.Tensor:
    if not cells:
        return cams
    dy, dx = (int(v) * cells for v in rng.choice([-1, 1], size=2))
    return torch.roll(cams, shifts=(dy, dx), dims=(1, 2))


def make_family_scene(spec: SceneSpec, seed: int, background: np.ndarray | None = None) -> SyntheticScene:
    """One known-answer scene of ``spec``.

    Args:
        spec: the scene family.
        seed: random seed of the layout, codes, faults and noise.
        background: (H, W, 3) uint8 photograph for ``spec.photo`` (resized to the scene), else unused.

    Returns:
        A :class:`~dhr.synthetic.SyntheticScene`; ``minor`` is 2, or 0 for a one-class scene.
    """
    if spec.size % 16:
        raise ValueError(f"size must be a multiple of 16, got {spec.size}")
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    k = int(rng.integers(spec.classes[0], spec.classes[1] + 1))
    gt_np = _layout(spec, k, rng)
    tags = sorted(int(c) for c in np.unique(gt_np) if c > 0)
    num = max(tags) + 1
    gt = torch.from_numpy(gt_np)
    one_hot = F.one_hot(gt, num).permute(2, 0, 1).float()
    image = _image(gt_np, spec, rng, background)

    uss_codes = _codes(num, 32, g)
    if not spec.uss_separates and num > 2:
        uss_codes[2] = uss_codes[1]
    if spec.wss_partial and num > 4:
        uss_codes[4] = uss_codes[3]
    uss = pool_maps(torch.einsum("cd,chw->dhw", uss_codes, one_hot), 8)
    if spec.photo:  # background texture shows in the unsupervised features
        texture = torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)
        uss[:3] += 0.5 * pool_maps(texture, 8) * pool_maps(one_hot[:1], 8)
    uss = uss + spec.noise * torch.randn(uss.shape, generator=g)

    wss = []
    for _ in range(2):  # C4 and C5
        codes = _codes(num, 64, g)
        if num > 2:
            codes[2] = F.normalize(codes[1] + 0.9 * codes[2], dim=0)  # related to the major class, yet separable
        if spec.wss_partial and num > 4:
            codes[4] = codes[3]
        feats = pool_maps(torch.einsum("cd,chw->dhw", codes, one_hot), 16)
        wss.append(feats + spec.noise * torch.randn(feats.shape, generator=g))

    cams = _cams(spec, gt, one_hot, tags, rng, g)
    mask = cam_argmax(cams, tags, (spec.size, spec.size))
    if spec.vanished and 2 in tags:
        mask[mask == 2] = 1
    return SyntheticScene(image, gt, cams, tags, mask, uss, wss, minor=2 if 2 in tags else 0)


def _cams(spec: SceneSpec, gt: torch.Tensor, one_hot: torch.Tensor, tags: list[int], rng: np.random.Generator,
          g: torch.Generator) -> torch.Tensor:
    """(K, S/16, S/16) CAMs: the major class fires over its minor neighbour, the minor one only at its centre."""
    s = spec.size
    h = s // 16
    reach = max(2, s // 20)
    blur = 0.7 + spec.cam_blur
    maps = []
    for c in tags:
        if c == 1 and 2 in tags:
            spill = _dilate(one_hot[2:3], reach)
            region = (one_hot[1:2] + spill).clamp(max=1)
            maps.append(blur_maps(pool_maps(region, 16), blur)[0])
        elif c == 2:
            centre = torch.nonzero(one_hot[2]).float().mean(dim=0) / 16 - 0.5
            extent = torch.nonzero(one_hot[2]).float().std(dim=0).mean() / 16
            yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(h, dtype=torch.float32),
                                    indexing="ij")
            sigma = float(extent.clamp(min=0.5)) + spec.cam_blur
            maps.append(0.6 * torch.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2)))
        else:
            maps.append(blur_maps(pool_maps(one_hot[c : c + 1], 16), blur)[0] * float(rng.uniform(0.8, 1.0)))
    cams = torch.stack(maps)
    weak = tags.index(3) if 3 in tags else (tags.index(2) if 2 in tags else None)
    if weak is not None and spec.weak_cam < 1.0:  # low contrast: the peak barely rises above a raised floor
        floor = blur_maps(torch.ones(1, h, h), 2.0)[0] * 0.3 * (1.0 - spec.weak_cam)
        cams[weak] = cams[weak] * spec.weak_cam + floor
    cams = _shift(cams, spec.cam_shift, rng)
    return cams + spec.noise * torch.rand(cams.shape, generator=g)
