"""A click's path through Segment Anything (v1): ``ClickDecoder`` against the package's own ``MaskDecoder`` (real-size
and tiny, random weights), the frames' post-processing against the packages' own, and masks made only when read.

``ClickDecoder`` reorders float sums, so its logits differ from the package's by rounding: over 8 seeds of each
configuration and every prompt kind below the largest difference measured was 3.6e-7 (real size) and 2.1e-7 (tiny),
the IoU heads' 1.6e-7, with no low-resolution mask pixel flipped; the bounds here are 1e-5 and an IoU of 0.9999.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from annotate.review.refine import EditableInstance, SharedSegmenter, refine_instance
from models.segmenters import SamSegmenter, build_tiny_sam
from models.segmenters.base import SegmenterOutput, mask_iou
from models.segmenters.frame import LongestSideFrame, SquareFrame, resized_size
from models.segmenters.sam_decoder import ClickDecoder

LOGIT_TOLERANCE = 1e-5
MIN_IOU = 0.9999


def _parts(config: str, seed: int) -> tuple[torch.nn.Module, torch.nn.Module, int]:
    """(prompt encoder, mask decoder, input side): the real SAM decoder as the package's ``build_sam`` makes it for
    every SAM (v1) model, or the tiny one of ``build_tiny_sam``; random weights."""
    if config == "tiny":
        model = build_tiny_sam(seed=seed)
        return model.prompt_encoder, model.mask_decoder, 256
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        prompt_encoder = PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                                       mask_in_chans=16)
        decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256,
        )
    return prompt_encoder.eval(), decoder.eval(), 1024


def _prompts(side: int, mask_side: int, rng: np.random.Generator) -> dict[str, dict]:
    """Prompt-encoder inputs: one click (the per-image first block), points with a mask (tokens folded), a box,
    many points with a mask (more tokens than fold: the package's attention modules) and all kinds together."""

    def points(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(rng.uniform(0, side, (1, n, 2)), dtype=torch.float),
                torch.as_tensor(rng.integers(0, 2, (1, n)), dtype=torch.int))

    box = torch.tensor([[0.1, 0.2, 0.7, 0.65]]) * side
    mask = torch.as_tensor(rng.normal(0, 4, (1, 1, mask_side, mask_side)), dtype=torch.float)
    return {
        "click": {"points": points(1), "boxes": None, "masks": None},
        "points and mask": {"points": points(3), "boxes": None, "masks": mask},
        "box": {"points": None, "boxes": box, "masks": None},
        "many points": {"points": points(12), "boxes": None, "masks": mask},
        "all": {"points": points(1), "boxes": box, "masks": mask},
    }


@pytest.mark.parametrize("config", ["real", "tiny"])
def test_click_decoder_is_the_package_decoder(config: str, device: torch.device) -> None:
    prompt_encoder, decoder, side = _parts(config, seed=1)
    prompt_encoder, decoder = prompt_encoder.to(device), decoder.to(device)
    channels, grid = prompt_encoder.embed_dim, prompt_encoder.image_embedding_size[0]
    embedding = torch.randn(1, channels, grid, grid, generator=torch.Generator().manual_seed(2)).to(device) * 0.5
    ours = ClickDecoder(prompt_encoder, decoder)
    ours.set_embedding(embedding)
    rng = np.random.default_rng(3)
    for kind, prompt in _prompts(side, prompt_encoder.mask_input_size[0], rng).items():
        prompt = {k: None if v is None else tuple(t.to(device) for t in v) if isinstance(v, tuple) else v.to(device)
                  for k, v in prompt.items()}
        with torch.inference_mode():
            sparse, dense = prompt_encoder(**prompt)
            for multimask in (True, False):
                expected, expected_iou = decoder(embedding, prompt_encoder.get_dense_pe(), sparse, dense, multimask)
                logits, iou = ours(sparse, prompt["masks"], multimask)
                assert logits.shape == expected.shape[1:] and iou.shape == expected_iou.shape[1:], kind
                assert (expected > 0).any() and (expected < 0).any(), kind  # masks neither empty nor full
                torch.testing.assert_close(logits, expected[0], atol=LOGIT_TOLERANCE, rtol=0, msg=kind)
                torch.testing.assert_close(iou, expected_iou[0], atol=LOGIT_TOLERANCE, rtol=0, msg=kind)
                for a, b in zip(logits.cpu() > 0, expected[0].cpu() > 0, strict=True):
                    assert mask_iou(a.numpy(), b.numpy()) >= MIN_IOU, kind


def test_click_decoder_keeps_the_current_images_state_only() -> None:
    prompt_encoder, decoder, side = _parts("tiny", seed=4)
    first, second = (torch.randn(1, 32, 16, 16, generator=torch.Generator().manual_seed(s)) for s in (5, 6))
    moved, fresh = ClickDecoder(prompt_encoder, decoder), ClickDecoder(prompt_encoder, decoder)
    moved.set_embedding(first)
    fresh.set_embedding(second)
    prompts = _prompts(side, prompt_encoder.mask_input_size[0], np.random.default_rng(7))
    with torch.inference_mode():
        for kind in ("click", "points and mask"):
            sparse, _ = prompt_encoder(**prompts[kind])
            masks = prompts[kind]["masks"]
            moved(sparse, masks, True)
            moved.set_embedding(second)
            for a, b in zip(moved(sparse, masks, True), fresh(sparse, masks, True), strict=True):
                assert torch.equal(a, b), kind
            moved.set_embedding(first)


@pytest.mark.parametrize("size", [(768, 1024), (512, 512), (480, 640), (1001, 333), (3000, 4000), (7, 5)])
def test_longest_side_masks_are_sams_post_processing(size: tuple[int, int]) -> None:
    """Cut to the image's part of the square first, the resize gives the package's values, bit for bit."""
    model = build_tiny_sam(img_size=1024)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 2, 264, 264, generator=torch.Generator().manual_seed(8)),
                                            9, 1) * 20
    with torch.no_grad():
        expected = model.postprocess_masks(smooth, resized_size(*size, 1024), size)[0] > model.mask_threshold
    ours = LongestSideFrame(1024, 256).logits_to_masks(smooth[0].numpy(), size)
    assert ours.shape == (2, *size) and ours.dtype == bool
    np.testing.assert_array_equal(ours, expected.numpy())
    np.testing.assert_array_equal(LongestSideFrame(1024, 256).logits_to_mask(smooth[0, 1:].numpy(), size), ours[1])


def test_square_frame_masks_are_sam2s_post_processing() -> None:
    from sam2.utils.transforms import SAM2Transforms

    logits = torch.randn(3, 256, 256, generator=torch.Generator().manual_seed(9)) * 5
    expected = SAM2Transforms(1024, mask_threshold=0.0).postprocess_masks(logits[None], (480, 640))[0] > 0.0
    np.testing.assert_array_equal(SquareFrame().logits_to_masks(logits.numpy(), (480, 640)), expected.numpy())


def test_output_makes_each_mask_when_read() -> None:
    made: list[int] = []
    logits = np.random.default_rng(10).normal(size=(3, 8, 8)).astype(np.float32)

    def to_masks(x: np.ndarray) -> np.ndarray:
        made.append(len(x))
        return x > 0

    out = SegmenterOutput(scores=np.array([0.2, 0.9, 0.5], np.float32), low_res_logits=logits, to_masks=to_masks)
    assert made == [] and out.best == 1
    np.testing.assert_array_equal(out.mask(1), logits[1] > 0)
    np.testing.assert_array_equal(out.mask(-1), logits[2] > 0)
    out.mask(1)
    assert made == [1, 1]
    np.testing.assert_array_equal(out.masks, logits > 0)
    assert made == [1, 1, 3]
    with pytest.raises(IndexError):
        out.mask(3)
    with pytest.raises(ValueError, match="either masks or to_masks"):
        SegmenterOutput(masks=logits > 0, scores=out.scores, low_res_logits=logits, to_masks=to_masks)


def test_sam_masks_are_the_package_predictors_on_a_non_square_image() -> None:
    from segment_anything import SamPredictor

    model = build_tiny_sam(img_size=256, seed=11)
    image = np.random.default_rng(12).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    segmenter, predictor = SamSegmenter(model, "tiny"), SamPredictor(model)
    segmenter.set_image(image)
    predictor.set_image(image)
    mask_input = segmenter.mask_prompt(np.pad(np.ones((40, 60), bool), ((30, 26), (50, 50))))
    prompts = [
        {"point_coords": np.array([[40.0, 30.0]]), "point_labels": np.array([1])},
        {"point_coords": np.array([[40.0, 30.0], [150.0, 90.0]]), "point_labels": np.array([1, 0]),
         "mask_input": mask_input},
        {"box": np.array([10.0, 8.0, 120.0, 70.0]), "mask_input": mask_input},
    ]
    for prompt in prompts:
        for multimask in (True, False):
            ours = segmenter.predict(**prompt, multimask=multimask)
            masks, scores, logits = predictor.predict(**prompt, multimask_output=multimask)
            np.testing.assert_allclose(ours.low_res_logits, logits, atol=LOGIT_TOLERANCE, rtol=0)
            np.testing.assert_allclose(ours.scores, np.clip(scores, 0, 1), atol=LOGIT_TOLERANCE, rtol=0)
            assert ours.masks.shape == masks.shape == (len(scores), 96, 160)
            for a, b in zip(ours.masks, masks, strict=True):
                assert mask_iou(a, b) >= MIN_IOU or (not a.any() and not b.any())


def test_a_click_makes_the_kept_mask_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.segmenters.sam as sam_module

    segmenter = SamSegmenter(build_tiny_sam(img_size=256, seed=13), "tiny")
    image = np.random.default_rng(14).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    segmenter.set_image(image)
    point = np.array([[80.0, 48.0]], np.float32)
    expected = segmenter.predict(point, np.array([1]), multimask=True)
    assert expected.masks[expected.best].any()
    made: list[int] = []
    masks_on = sam_module._masks_on

    def counted(frame, size, device, logits):
        made.append(len(logits))
        return masks_on(frame, size, device, logits)

    monkeypatch.setattr(sam_module, "_masks_on", counted)
    inst = EditableInstance(class_id=1, mask=np.zeros(image.shape[:2], bool), points=point,
                            labels=np.array([1], np.int64))
    refine_instance(SharedSegmenter(segmenter), "image", image, inst)
    assert made == [1]
    np.testing.assert_array_equal(inst.mask, expected.masks[expected.best])
    np.testing.assert_array_equal(inst.logits, expected.low_res_logits[expected.best])
