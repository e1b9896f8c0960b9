"""Segmenter registry: tiny real SAM end to end, checkpoint plumbing, GrabCut fallback quality."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from annotate.prompts import PromptConfig, prompts_from_mask
from models import weights
from models.segmenters import (
    GrabCutSegmenter,
    SamSegmenter,
    build_sam,
    build_segmenter,
    build_tiny_sam,
)
from models.weights import Checkpoint, ChecksumError, WeightsNotFoundError


def synthetic_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (120, 160) RGB scene with clean-edged objects on a textured background.

    Returns (image HWC uint8, ground truth (H, W) int64, seed mask (H, W) int64): class 1 = a red ellipse and a
    red disc, class 2 = a blue rectangle touching the ellipse. The seed mask is the ground truth distorted
    the way a balanced mask is: the ellipse eroded by 3 px, the rectangle dilated by 3 px and shifted, a
    stray blob of class 2 on the background.
    """
    import cv2

    rng = np.random.default_rng(seed)
    height, width = 120, 160
    rows, cols = np.mgrid[:height, :width]
    background = 110 + 30 * np.sin(cols / 9.0)[..., None] * np.array([1.0, 0.8, 0.6])
    image = background + rng.normal(0, 14, (height, width, 3))
    truth = np.zeros((height, width), np.int64)
    ellipse = ((rows - 55) / 30.0) ** 2 + ((cols - 50) / 38.0) ** 2 <= 1.0
    disc = (rows - 95) ** 2 + (cols - 135) ** 2 <= 14**2
    rectangle = (rows >= 25) & (rows < 80) & (cols >= 88) & (cols < 125)
    truth[ellipse | disc] = 1
    truth[rectangle] = 2
    image[truth == 1] = np.array([180, 70, 60]) + rng.normal(0, 14, (int((truth == 1).sum()), 3))
    image[truth == 2] = np.array([70, 90, 170]) + rng.normal(0, 14, (int((truth == 2).sum()), 3))
    image = np.clip(image, 0, 255).astype(np.uint8)

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    seed_mask = np.zeros_like(truth)
    seed_mask[cv2.erode(ellipse.astype(np.uint8), kernel).astype(bool)] = 1
    seed_mask[cv2.erode(disc.astype(np.uint8), kernel).astype(bool)] = 1
    grown = np.roll(cv2.dilate(rectangle.astype(np.uint8), kernel), 2, axis=1).astype(bool)
    seed_mask[grown] = 2
    seed_mask[5:12, 5:12] = 2
    return image, truth, seed_mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_tiny_sam_end_to_end() -> None:
    image, _, seed_mask = synthetic_scene()
    segmenter = SamSegmenter(build_tiny_sam(), "tiny")
    assert not segmenter.is_fallback and segmenter.source == "sam"
    segmenter.set_image(image)
    assert segmenter.embedding.shape == (32, 16, 16)
    prompt = prompts_from_mask(seed_mask, [1], PromptConfig(), segmenter.mask_prompt)[0]
    assert prompt.mask_input.shape == (1, 64, 64)
    out = segmenter.predict(prompt.points, prompt.labels, prompt.box, prompt.mask_input, multimask=True)
    assert out.masks.shape == (3, 120, 160) and out.masks.dtype == bool
    assert out.scores.shape == (3,) and ((out.scores >= 0) & (out.scores <= 1)).all()
    assert out.low_res_logits.shape == (3, 64, 64)
    single = segmenter.predict(box=prompt.box, multimask=False)
    assert single.masks.shape == (1, 120, 160)
    # Logits fed back as a mask prompt are accepted.
    again = segmenter.predict(mask_input=out.low_res_logits[:1])
    assert again.masks.shape == (3, 120, 160)


def test_prompt_validation() -> None:
    segmenter = GrabCutSegmenter()
    with pytest.raises(RuntimeError, match="set_image"):
        segmenter.predict(box=np.array([0, 0, 5, 5]))
    segmenter.set_image(np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(ValueError, match="at least one prompt"):
        segmenter.predict()
    with pytest.raises(ValueError, match="XYXY"):
        segmenter.predict(box=np.array([10, 0, 5, 5]))
    with pytest.raises(ValueError, match="together"):
        segmenter.predict(point_coords=np.array([[1, 1]]))
    with pytest.raises(ValueError, match="mask_input"):
        segmenter.predict(mask_input=np.zeros((1, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        segmenter.set_image(np.zeros((20, 30), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        segmenter.set_image(np.zeros((20, 30, 3), np.float32))


@pytest.mark.parametrize("prompt_kind", ["all", "box", "mask", "points"])
def test_grabcut_from_generated_prompts(prompt_kind: str) -> None:
    image, truth, seed_mask = synthetic_scene()
    segmenter = GrabCutSegmenter()
    segmenter.set_image(image)
    prompts = prompts_from_mask(seed_mask, [1, 2], PromptConfig(min_area=100))
    assert len(prompts) == 3  # ellipse, disc, rectangle (the 49-px stray blob is below min_area)
    for prompt in prompts:
        box = prompt.box if prompt_kind in ("all", "box") else None
        points = prompt.points if prompt_kind in ("all", "points") else None
        labels = prompt.labels if prompt_kind in ("all", "points") else None
        mask_input = prompt.mask_input if prompt_kind in ("all", "mask") else None
        out = segmenter.predict(points, labels, box, mask_input)
        assert out.masks.shape == (1, 120, 160)
        target = [c for c in _truth_components(truth, prompt.class_id) if (c & prompt.component).any()][0]
        assert iou(out.masks[0], target) > 0.9, (prompt_kind, prompt.class_id, iou(out.masks[0], target))
        assert iou(out.masks[0], target) > iou(prompt.component, target)  # better than its seed
        assert 0.0 <= out.scores[0] <= 1.0


def _truth_components(truth: np.ndarray, class_id: int) -> list[np.ndarray]:
    import cv2

    count, labels = cv2.connectedComponents((truth == class_id).astype(np.uint8))
    return [labels == i for i in range(1, count)]


def test_build_real_vit_b_without_weights() -> None:
    model = build_sam("sam_vit_b", checkpoint=None)
    assert model.image_encoder.img_size == 1024
    assert model.prompt_encoder.image_embedding_size == (64, 64)
    assert 90e6 < sum(p.numel() for p in model.parameters()) < 95e6
    with pytest.raises(ValueError, match="unknown SAM model"):
        build_sam("sam_vit_x")


def test_auto_falls_back_to_grabcut_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        segmenter = build_segmenter("auto", weights_dir=tmp_path)  # the download fails: tests are offline
    assert isinstance(segmenter, GrabCutSegmenter) and segmenter.is_fallback and segmenter.name == "grabcut"
    light = weights.CHECKPOINTS["sam_hq_vit_tiny"]
    for text in (light.filename, str(tmp_path), "GrabCut", light.url, "could not be downloaded"):
        assert text in segmenter.message
    assert "GrabCut fallback" in caplog.text
    assert build_segmenter("grabcut").is_fallback
    with pytest.raises(ValueError, match="unknown segmenter"):
        build_segmenter("sam_vit_q")


def test_explicit_sam_offline_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as error:
        build_segmenter("sam_vit_l", weights_dir=tmp_path, download=False)
    assert "sam_vit_l_0b3195.pth" in str(error.value) and str(tmp_path) in str(error.value)


@pytest.fixture
def tiny_sam_as_vit_b(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Register a tiny SAM checkpoint as 'sam_vit_b' (and build the tiny architecture for it)."""
    import segment_anything

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    path = weights_dir / "sam_vit_b_01ec64.pth"
    torch.save(build_tiny_sam(seed=3).state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    official = weights.CHECKPOINTS["sam_vit_b"]
    monkeypatch.setitem(
        weights.CHECKPOINTS, "sam_vit_b", Checkpoint("sam_vit_b", official.url, digest, path.name)
    )
    monkeypatch.setitem(
        segment_anything.sam_model_registry, "vit_b", lambda checkpoint=None: build_tiny_sam(seed=9)
    )
    return weights_dir


def test_auto_uses_sam_when_checkpoint_present(tiny_sam_as_vit_b: Path) -> None:
    segmenter = build_segmenter("auto", weights_dir=tiny_sam_as_vit_b)
    assert isinstance(segmenter, SamSegmenter) and not segmenter.is_fallback
    digest = weights.CHECKPOINTS["sam_vit_b"].sha256
    assert segmenter.model_id == f"sam_vit_b@{digest[:12]}"
    # The checkpoint's weights were loaded (seed 3), not the builder's random ones (seed 9).
    expected = build_tiny_sam(seed=3).state_dict()
    loaded = segmenter.model.state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_corrupted_sam_checkpoint_is_refused(tiny_sam_as_vit_b: Path) -> None:
    path = tiny_sam_as_vit_b / "sam_vit_b_01ec64.pth"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="corrupt"):
        build_segmenter("sam_vit_b", weights_dir=tiny_sam_as_vit_b)


def test_sam_runs_on_the_models_device(device: torch.device, tmp_path: Path) -> None:
    from models.embedding_cache import EmbeddingCache

    image, _, _ = synthetic_scene()
    model = build_tiny_sam().to(device)
    first = SamSegmenter(model, "tiny", cache=EmbeddingCache(tmp_path))
    first.set_image(image)
    assert first.embedding.device.type == device.type
    out = first.predict(np.array([[50.0, 55.0]]), np.array([1]), box=np.array([12, 25, 88, 85]))
    assert out.masks.shape == (3, 120, 160)
    again = SamSegmenter(model, "tiny", cache=EmbeddingCache(tmp_path))
    again.set_image(image)
    assert again.last_from_cache and again.embedding.device.type == device.type
    assert torch.equal(again.embedding, first.embedding)


def test_grabcut_prompt_covering_the_whole_image() -> None:
    segmenter = GrabCutSegmenter()
    segmenter.set_image(np.full((40, 60, 3), 128, np.uint8))
    everything = segmenter.mask_prompt(np.ones((40, 60), bool))
    with pytest.warns(UserWarning, match="whole image"):
        out = segmenter.predict(mask_input=everything)
    assert out.masks[0].all() and out.scores[0] == pytest.approx(1.0)
