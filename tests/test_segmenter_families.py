"""SAM 2.1 and HQ-SAM / Light HQ-SAM behind the Segmenter interface: the packages' own networks in tiny
configurations (random weights, no downloads), checked against the packages' own predictors on a non-square
image, plus the embedding cache, USS features, checkpoints and the ``auto`` choice."""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models import ModelSettings, weights
from models.embedding_cache import EmbeddingCache, image_hash
from models.segmenters import (
    SEGMENTERS,
    GrabCutSegmenter,
    HqSamSegmenter,
    Sam2Segmenter,
    auto_plan,
    build_sam2_model,
    build_sam_hq,
    build_segmenter,
    build_tiny_sam2,
    build_tiny_sam_hq,
    segmenter_choices,
)
from models.segmenters.auto import AutoStep
from models.segmenters.base import mask_iou
from models.segmenters.frame import LongestSideFrame, SquareFrame
from models.segmenters.sam import SamSegmenter
from models.segmenters.sam2 import TINY_SAM2_OVERRIDES
from models.uss import build_uss_provider
from models.weights import Checkpoint, WeightsNotFoundError

HEIGHT, WIDTH = 96, 160  # non-square: the frames differ (SAM 2 stretches, SAM 1 / HQ pad)
NEW_SEGMENTERS = ("sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large",
                  "sam_hq_vit_tiny", "sam_hq_vit_b", "sam_hq_vit_l", "sam_hq_vit_h")


def scene() -> tuple[np.ndarray, np.ndarray]:
    """(96, 160, 3) uint8 image of an ellipse and a bar on a gradient, and the (96, 160) bool object mask."""
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    mask = (((rows - 50) / 28.0) ** 2 + ((cols - 60) / 40.0) ** 2 <= 1.0) | (
        (rows >= 20) & (rows < 75) & (cols >= 115) & (cols < 140)
    )
    rng = np.random.default_rng(0)
    image = np.stack([cols * 1.2, rows * 2.0, 90 + 0 * rows], -1) + rng.normal(0, 6, (HEIGHT, WIDTH, 3))
    image[mask] = [200, 60, 50]
    return np.clip(image, 0, 255).astype(np.uint8), mask


@dataclass
class Family:
    """One package's tiny model, our wrapper around it, and the package's own predictor on the same model."""

    name: str
    segmenter: Any
    predictor: Any
    cache_dir: Path
    predict_options: dict

    def package_predict(self, **prompts: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.predictor.predict(**prompts, **self.predict_options)

    def package_upsample(self, logits: np.ndarray) -> np.ndarray:
        """(1, L, L) logits -> (H, W) bool through the package's own post-processing."""
        x = torch.as_tensor(logits)[None]
        if self.name == "sam2":
            return self.predictor._transforms.postprocess_masks(x, (HEIGHT, WIDTH))[0, 0].numpy() > 0
        model = self.predictor.model
        full = model.postprocess_masks(x, self.predictor.input_size, self.predictor.original_size)
        return full[0, 0].numpy() > 0


def _family(name: str, folder: Path) -> Family:
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    from segment_anything_hq import SamPredictor

    image, _ = scene()
    cache = EmbeddingCache(folder)
    if name == "sam2":
        model = build_tiny_sam2(seed=1)
        segmenter, predictor, options = Sam2Segmenter(model, "sam2-tiny", cache), SAM2ImagePredictor(model), {}
    else:
        model = build_tiny_sam_hq("vit" if name == "hq_vit" else "tinyvit", seed=1)
        segmenter, predictor = HqSamSegmenter(model, f"{name}-tiny", cache), SamPredictor(model)
        options = {"hq_token_only": False}
    segmenter.set_image(image)
    predictor.set_image(image)
    return Family(name, segmenter, predictor, folder, options)


FAMILY_NAMES = ("sam2", "hq_vit", "hq_tinyvit")


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family(request, tmp_path_factory) -> Family:
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the packages' deprecation notes (torch.jit.script, timm registry)
        return _family(request.param, tmp_path_factory.mktemp(request.param))


def _prompts(segmenter, mask: np.ndarray) -> dict[str, dict]:
    points = np.array([[60.0, 50.0], [150.0, 10.0]], np.float32)
    return {
        "point": {"point_coords": points[:1], "point_labels": np.array([1])},
        "points": {"point_coords": points, "point_labels": np.array([1, 0])},
        "box": {"box": np.array([18.0, 20.0, 142.0, 80.0], np.float32)},
        "mask": {"mask_input": segmenter.mask_prompt(mask)},
        "all": {"point_coords": points[:1], "point_labels": np.array([1]),
                "box": np.array([18.0, 20.0, 142.0, 80.0], np.float32), "mask_input": segmenter.mask_prompt(mask)},
    }


def test_wrapper_equals_the_package_predictor(family: Family) -> None:
    _, mask = scene()
    cheap = family.name != "hq_tinyvit"  # its 256-channel decoder is slow on one core: fewer cases
    kinds = ("point", "points", "box", "mask", "all") if cheap else ("point", "box", "mask")
    for multimask in (True, False) if cheap else (True,):
        for kind in kinds:
            prompts = _prompts(family.segmenter, mask)[kind]
            ours = family.segmenter.predict(**prompts, multimask=multimask)
            masks, scores, low_res = family.package_predict(**prompts, multimask_output=multimask)
            masks = np.asarray(masks) > 0.5
            assert ours.masks.shape == masks.shape and ours.masks.shape[1:] == (HEIGHT, WIDTH), kind
            # The logits take both signs: the masks compared below are not trivially empty or full.
            assert (low_res > 0).any() and (low_res < 0).any(), kind
            np.testing.assert_allclose(ours.low_res_logits, low_res, atol=1e-4, err_msg=kind)
            np.testing.assert_allclose(ours.scores, np.clip(scores, 0, 1), atol=1e-5, err_msg=kind)
            for a, b in zip(ours.masks, masks, strict=True):
                assert (a == b).mean() > 0.999 and (not b.any() or mask_iou(a, b) >= 0.99), kind


def test_mask_prompt_geometry_is_the_packages(family: Family) -> None:
    """Our mask prompt, brought back to the image by the package's own post-processing, is the mask."""
    _, mask = scene()
    segmenter = family.segmenter
    logits = segmenter.mask_prompt(mask)
    side = segmenter.mask_input_size
    assert logits.shape == (1, side, side) and logits.dtype == np.float32
    back = family.package_upsample(logits)
    assert mask_iou(back, mask) > 0.95
    assert mask_iou(segmenter.logits_to_mask(logits), back) > 0.99
    if family.name == "sam2":  # SAM 1's padded frame would put the object in the wrong place for SAM 2
        padded = LongestSideFrame(segmenter.long_side, side).mask_to_logits(mask)
        assert mask_iou(family.package_upsample(padded), mask) < 0.75
    # The decoder's own low-resolution logits fed back reproduce its mask.
    out = segmenter.predict(box=np.array([18.0, 20.0, 142.0, 80.0]), multimask=False)
    assert mask_iou(segmenter.logits_to_mask(out.low_res_logits[:1]), out.masks[0]) > 0.98


def test_cache_round_trip_returns_the_same_masks(family: Family) -> None:
    image, mask = scene()
    first = family.segmenter
    assert first.encoder_calls == 1 and not first.last_from_cache
    model = first.model
    again = type(first)(model, first.model_id, EmbeddingCache(family.cache_dir))
    again.set_image(image)
    assert again.last_from_cache and again.encoder_calls == 0
    assert torch.equal(again.embedding, first.embedding)
    prompts = _prompts(first, mask)
    for kind in ("points", "mask"):
        a, b = first.predict(**prompts[kind]), again.predict(**prompts[kind])
        np.testing.assert_array_equal(a.masks, b.masks, err_msg=kind)
        np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits, err_msg=kind)
    cache, digest = EmbeddingCache(family.cache_dir), image_hash(image)
    expected = {"image_embed", "high_res_0", "high_res_1"} if family.name == "sam2" else {"features", "interm"}
    assert expected <= set(cache.get(digest, first.model_id))
    assert cache.get(digest, first.model_id + "-other") is None  # other weights, other key


def test_uss_features_have_the_documented_shape(family: Family) -> None:
    segmenter = family.segmenter
    provider = build_uss_provider("auto", ModelSettings(), segmenter)
    assert provider.name == "sam" and segmenter.model_id in provider.feature_id
    features = provider.features(scene()[0])
    channels = int(segmenter.embedding.shape[0])
    expected = {
        "sam2": (channels, 64, 64),  # the square frame: every cell covers the image
        "hq_vit": (channels, 10, 16),  # 96 x 160 -> 154 x 256 of the padded 256 frame, 16 px cells
        "hq_tinyvit": (channels, 39, 64),  # 96 x 160 -> 614 x 1024 of the padded 1024 frame
    }[family.name]
    assert tuple(features.shape) == expected
    torch.testing.assert_close(features, segmenter.embedding[:, : expected[1], : expected[2]])


def test_real_architectures_build_with_random_weights() -> None:
    light = build_sam_hq("sam_hq_vit_tiny")
    assert light.image_encoder.img_size == 1024 and light.prompt_encoder.mask_input_size == (256, 256)
    assert sum(p.numel() for p in light.parameters()) == 10_578_604
    assert 4 * sum(v.numel() for v in light.state_dict().values()) == weights.CHECKPOINTS["sam_hq_vit_tiny"].approx_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny = build_sam2_model("sam2.1_hiera_tiny")
    assert tiny.image_size == 1024 and tuple(tiny.sam_prompt_encoder.mask_input_size) == (256, 256)
    assert sum(p.numel() for p in tiny.parameters()) == 38_962_498
    with pytest.raises(ValueError, match="unknown SAM 2 model"):
        build_sam2_model("sam2.1_hiera_huge")
    with pytest.raises(ValueError, match="unknown HQ-SAM model"):
        build_sam_hq("sam_hq_vit_x")


@pytest.mark.parametrize("name", NEW_SEGMENTERS)
def test_offline_error_names_each_checkpoint(name: str, tmp_path: Path) -> None:
    ckpt = weights.CHECKPOINTS[name]
    with pytest.raises(WeightsNotFoundError) as error:
        build_segmenter(name, weights_dir=tmp_path, download=False)
    for text in (ckpt.filename, str(tmp_path / ckpt.filename), ckpt.url):
        assert text in str(error.value)
    with pytest.raises(WeightsNotFoundError, match="could not be downloaded"):  # online, but no network here
        build_segmenter(name, weights_dir=tmp_path)


def _install(weights_dir: Path, name: str, state: dict, monkeypatch: pytest.MonkeyPatch) -> str:
    """Write ``state`` as checkpoint ``name`` (no published hash, as released); return the file's SHA-256."""
    weights_dir.mkdir(exist_ok=True)
    path = weights_dir / weights.CHECKPOINTS[name].filename
    torch.save(state, path)
    official = weights.CHECKPOINTS[name]
    monkeypatch.setitem(weights.CHECKPOINTS, name, Checkpoint(name, official.url, None, official.filename))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sam2_checkpoint_is_loaded_and_names_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sam2.build_sam

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = build_tiny_sam2(seed=3).state_dict()
    digest = _install(tmp_path, "sam2.1_hiera_tiny", {"model": saved}, monkeypatch)
    build = sam2.build_sam.build_sam2
    monkeypatch.setattr(sam2.build_sam, "build_sam2",  # the tiny configuration stands in for Hiera-T
                        lambda config, ckpt, device, hydra_overrides_extra: build(
                            config, ckpt, device, hydra_overrides_extra=list(TINY_SAM2_OVERRIDES)))
    with pytest.warns(UserWarning, match=f"no published SHA-256.*{digest}"):
        segmenter = build_segmenter("sam2.1_hiera_tiny", weights_dir=tmp_path)
    assert isinstance(segmenter, Sam2Segmenter) and segmenter.name == "sam2.1_hiera_tiny"
    assert segmenter.model_id == f"sam2.1_hiera_tiny@{digest[:12]}"
    loaded = segmenter.model.state_dict()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)


@pytest.fixture
def light_hq_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, dict]:
    """A tiny HQ-SAM checkpoint installed as Light HQ-SAM (and the tiny architecture built for it)."""
    import segment_anything_hq

    saved = build_tiny_sam_hq("vit", seed=3).state_dict()
    folder = tmp_path / "weights"
    digest = _install(folder, "sam_hq_vit_tiny", saved, monkeypatch)
    monkeypatch.setitem(segment_anything_hq.sam_model_registry, "vit_tiny",
                        lambda checkpoint=None: build_tiny_sam_hq("vit", seed=9))
    return folder, digest, saved


def test_auto_on_the_cpu_runs_light_sam_from_the_light_hq_checkpoint(light_hq_present) -> None:
    folder, digest, saved = light_hq_present
    settings = ModelSettings(device="cpu", weights_dir=folder)
    assert auto_plan("cpu", folder, download=True) == [AutoStep("light_sam"), AutoStep("sam_hq_vit_tiny")]
    with pytest.warns(UserWarning, match="no published SHA-256"):
        segmenter = build_segmenter("auto", weights_dir=folder, device="cpu")
    assert isinstance(segmenter, SamSegmenter) and not segmenter.is_fallback
    assert segmenter.name == "light_sam" and segmenter.model_id == f"light_sam:sam_hq_vit_tiny@{digest[:12]}"
    assert "chosen automatically" in segmenter.message
    loaded = segmenter.model.state_dict()
    renamed = {k.replace("image_encoder.encoder.", "image_encoder."): v for k, v in loaded.items()}
    assert renamed.keys() < saved.keys()  # every weight comes from the checkpoint; the HQ branch is left out
    assert all(torch.equal(v, saved[k]) for k, v in renamed.items())
    assert not any(k.startswith(("mask_decoder.hf_", "mask_decoder.compress", "mask_decoder.embedding_"))
                   for k in renamed)
    choices = segmenter_choices(settings)
    assert [c.name for c in choices] == ["auto", *SEGMENTERS]
    assert choices[0].label == "Automatic (Light SAM (TinyViT + SAM decoder, fast on CPU))"
    present = {c.name for c in choices if c.present}
    assert present == {"auto", "light_sam", "sam_hq_vit_tiny", "grabcut"}


def test_light_sam_masks_are_sams_on_the_hq_encoder(light_hq_present) -> None:
    """Light SAM's masks on a non-square image equal segment-anything's own predictor on the same network, and its
    embedding is the HQ encoder's."""
    from segment_anything import SamPredictor

    from models.segmenters.light_sam import light_sam_from_hq

    hq = build_tiny_sam_hq("vit", seed=3)
    model = light_sam_from_hq(hq)
    segmenter = SamSegmenter(model, "light-test")
    image = np.random.default_rng(0).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    segmenter.set_image(image)
    predictor = SamPredictor(model)
    predictor.set_image(image)
    with torch.no_grad():
        reference = hq.image_encoder(hq.preprocess(torch.from_numpy(predictor.transform.apply_image(image))
                                                   .permute(2, 0, 1)[None].float()))[0]
    assert torch.allclose(segmenter.embedding, reference[0], atol=1e-5)
    prompts = [dict(point_coords=np.array([[40.0, 30.0]]), point_labels=np.array([1])),
               dict(box=np.array([10.0, 8.0, 120.0, 70.0]))]
    for prompt in prompts:
        ours = segmenter.predict(**prompt, multimask=True)
        theirs, scores, logits = predictor.predict(**prompt, multimask_output=True)
        assert np.mean(ours.masks == theirs) >= 0.999
        assert np.allclose(ours.low_res_logits, logits, atol=1e-4)


def test_auto_plan_by_device(tmp_path: Path) -> None:
    def touch(*names: str) -> None:
        for name in names:
            (tmp_path / weights.CHECKPOINTS[name].filename).write_bytes(b"")

    assert auto_plan("cpu", tmp_path, download=False) == []
    assert auto_plan("cuda", tmp_path, download=True) == [AutoStep("sam2.1_hiera_base_plus", download=True)]
    assert auto_plan("cpu", tmp_path, download=True) == [AutoStep("light_sam", download=True)]
    touch("sam_vit_b", "sam2.1_hiera_small")
    assert auto_plan("cuda:1", tmp_path, download=False) == [AutoStep("sam2.1_hiera_small"), AutoStep("sam_vit_b")]
    assert auto_plan("cpu", tmp_path, download=False) == [AutoStep("sam2.1_hiera_small"), AutoStep("sam_vit_b")]
    touch("sam2.1_hiera_large", "sam2.1_hiera_base_plus", "sam_hq_vit_tiny")
    assert auto_plan("cuda", tmp_path, download=True)[:2] == [AutoStep("sam2.1_hiera_large"),
                                                              AutoStep("sam2.1_hiera_base_plus")]
    assert auto_plan("cpu", tmp_path, download=True)[:2] == [AutoStep("light_sam"), AutoStep("sam_hq_vit_tiny")]


def test_auto_offline_falls_back_past_a_failed_download(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        segmenter = build_segmenter("auto", weights_dir=tmp_path, device="cuda")  # nothing present, no network
    assert isinstance(segmenter, GrabCutSegmenter) and segmenter.name == "grabcut"
    assert "sam2.1_hiera_base_plus.pt" in segmenter.message and "could not be downloaded" in segmenter.message
    off = build_segmenter("auto", weights_dir=tmp_path, download=False)
    assert "sam_hq_vit_tiny.pth" in off.message and "downloading is off" in off.message
    choices = segmenter_choices(ModelSettings(weights_dir=tmp_path, download=False))
    assert choices[0].label == "Automatic (GrabCut (no model))"
    assert [c.name for c in choices if c.present] == ["auto", "grabcut"]


def test_a_lease_keeps_the_name_and_the_frame() -> None:
    from annotate.review.refine import SharedSegmenter

    class SquareGrabCut(GrabCutSegmenter):  # a segmenter with SAM 2's frame
        @property
        def frame(self):
            return SquareFrame(self.long_side, self.mask_input_size)

    segmenter = SquareGrabCut()
    segmenter.name = "square"
    lease = SharedSegmenter(segmenter).lease()
    assert lease.name == "square" and lease.frame == SquareFrame(1024, 256)
    _, mask = scene()
    np.testing.assert_array_equal(lease.mask_prompt(mask), SquareFrame().mask_to_logits(mask))


def test_hq_features_kept_for_the_image_are_dropped_with_it() -> None:
    """HQ-SAM's per-image HQ features are computed once per image: a second image gets its own masks, equal to
    those of a segmenter that never saw the first one."""
    rng = np.random.default_rng(5)
    first, second = (rng.integers(0, 255, (96, 160, 3), dtype=np.uint8) for _ in range(2))
    point = dict(point_coords=np.array([[60.0, 40.0]]), point_labels=np.array([1]))
    reused = HqSamSegmenter(build_tiny_sam_hq("vit", seed=2), "hq-a")
    reused.set_image(first)
    on_first = reused.predict(**point)
    reused.set_image(second)
    on_second = reused.predict(**point)
    fresh = HqSamSegmenter(build_tiny_sam_hq("vit", seed=2), "hq-b")
    fresh.set_image(second)
    expected = fresh.predict(**point)
    assert np.allclose(on_second.low_res_logits, expected.low_res_logits, atol=1e-5)
    assert not np.allclose(on_first.low_res_logits, on_second.low_res_logits, atol=1e-3)
