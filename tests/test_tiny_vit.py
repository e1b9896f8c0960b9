"""The fused TinyViT computes the package's TinyViT: the same embedding and intermediate features, with oneDNN's
fused primitives and with the plain functional path, for Light SAM and Light HQ-SAM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils.transforms import ResizeLongestSide

import models.segmenters.onednn as onednn
import models.segmenters.tiny_vit as tiny_vit
from models.segmenters import SamSegmenter, build_tiny_sam_hq
from models.segmenters.light_sam import light_sam_from_hq
from models.segmenters.sam_hq import with_fused_encoder
from models.segmenters.tiny_vit import FusedTinyViT, fuse_tiny_vit


def _trained_looking(seed: int):
    """The tiny Light HQ-SAM with its batch norms, attention biases and zero-initialised layers made random, so
    that folding and every fused step change numbers (a fresh TinyViT's batch norms are identities, and each
    MBConv's last one is zero)."""
    model = build_tiny_sam_hq("tinyvit", seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.image_encoder.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.2, generator=generator)
                module.running_mean.normal_(0.0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
            if hasattr(module, "attention_biases"):
                module.attention_biases.normal_(0.0, 1.0, generator=generator)
    return model.eval()  # eval() again: the package's Attention caches its biases when it enters eval mode


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("use_onednn", [True, False])
def test_fused_tiny_vit_equals_the_package(seed: int, use_onednn: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = _trained_looking(seed).image_encoder
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(10 + seed))
    with torch.no_grad():
        embedding, interm = encoder(x)
        if not use_onednn:
            monkeypatch.setattr(onednn, "fusable", lambda tensor: False)
            monkeypatch.setattr(tiny_vit, "fusable", lambda tensor: False)
        fused_embedding, fused_interm = fuse_tiny_vit(encoder)(x)
    assert fused_embedding.shape == embedding.shape == (1, 256, 64, 64) and fused_embedding.is_contiguous()
    assert len(fused_interm) == len(interm) == 1 and fused_interm[0].shape == interm[0].shape
    # Measured over seeds 0-4, either path: at most 3.4e-6 of the largest value (embedding), 3.6e-7 (features).
    assert (fused_embedding - embedding).abs().max() <= 3e-5 * embedding.abs().max()
    assert (fused_interm[0] - interm[0]).abs().max() <= 3e-5 * interm[0].abs().max()
    assert embedding.std() > 0.1  # the comparison is not between two constant maps


def test_light_sam_and_light_hq_sam_run_the_fused_encoder() -> None:
    hq = _trained_looking(2)
    image = np.random.default_rng(0).integers(0, 255, (600, 1000, 3), dtype=np.uint8)
    resized = ResizeLongestSide(1024).apply_image(image)
    with torch.no_grad():
        reference = hq.image_encoder(hq.preprocess(torch.from_numpy(resized).permute(2, 0, 1)[None].float()))[0]
    light = SamSegmenter(light_sam_from_hq(hq), "light-test")
    assert isinstance(light.model.image_encoder.encoder, FusedTinyViT)
    light.set_image(image)
    assert (light.embedding - reference[0]).abs().max() <= 3e-5 * reference.abs().max()
    assert isinstance(with_fused_encoder(_trained_looking(3)).image_encoder, FusedTinyViT)
    vit = build_tiny_sam_hq("vit", seed=0)
    assert with_fused_encoder(vit).image_encoder is vit.image_encoder  # a ViT encoder is left as it is


def test_fusing_a_training_encoder_is_refused() -> None:
    encoder = build_tiny_sam_hq("tinyvit", seed=0).image_encoder.train()
    with pytest.raises(ValueError, match="eval mode"):
        fuse_tiny_vit(encoder)


def test_the_fused_operators_run_in_inference_only() -> None:
    from models.segmenters.onednn import fusable

    x = torch.randn(2, 3)
    with torch.no_grad():
        assert fusable(x) == torch.backends.mkldnn.is_available()
        assert not fusable(x.double())
    with torch.enable_grad():
        assert not fusable(x)  # the fused operators have no backward: the plain calls run
    encoder = fuse_tiny_vit(_trained_looking(4).image_encoder)
    image = torch.randn(1, 3, 1024, 1024, requires_grad=True)
    embedding, _ = encoder(image)
    embedding.square().mean().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0

