"""Which classifier and settings a bootstrap run picks with and without ImageNet weights (no training here)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from annotate.bootstrap import (
    PRETRAINED,
    SCRATCH,
    BootstrapConfig,
    build_bootstrap_classifier,
    classifier_profile,
    resolved_config,
)
from models.classifier import Classifier
from models.settings import ModelSettings


def test_auto_without_weights_is_the_small_offline_classifier(tmp_path):
    config = BootstrapConfig(out=tmp_path / "out", models=ModelSettings(weights_dir=tmp_path, download=False))
    with pytest.warns(UserWarning, match="from scratch"):
        model = build_bootstrap_classifier(config, 3)
    assert (model.backbone_name, model.output_stride, model.pretrained) == (SCRATCH.backbone, SCRATCH.output_stride, False)
    assert model.top_share == SCRATCH.top_share == 1.0  # global average pooling (top_share: see the README)
    resolved = resolved_config(config, model)
    assert resolved.backbone == SCRATCH.backbone
    for name in ("epochs", "lr", "crop_size", "batch_size", "scale_range", "cam_scales", "background_threshold",
                 "seed_evidence"):
        assert getattr(resolved, name) == getattr(SCRATCH, name), name
    assert (SCRATCH.seed_evidence, PRETRAINED.seed_evidence) == (0.5, 0.0)  # measured offline only (README)
    assert resolved_config(resolved, model) == resolved  # idempotent


def test_explicit_options_win_over_the_profile(tmp_path):
    config = BootstrapConfig(out=tmp_path, backbone="resnet_tiny", pretrained=False, epochs=2,
                             background_threshold=0.45, cam_scales=(1.0,), top_share=0.15)
    model = build_bootstrap_classifier(config, 2)
    assert model.top_share == 0.15
    resolved = resolved_config(config, model)
    assert (resolved.backbone, resolved.epochs, resolved.background_threshold, resolved.cam_scales) == (
        "resnet_tiny", 2, 0.45, (1.0,))
    assert resolved.lr == SCRATCH.lr and model.output_stride == SCRATCH.output_stride


def test_cam_settings_follow_the_device(tmp_path):
    """With ImageNet weights the CAMs take one scale without the flipped pass on a CPU and all four scales with
    flip on a GPU; the from-scratch profile's are the same on both; options given win on either."""
    model = Classifier("resnet_tiny", 2, pretrained=True)  # recorded as an ImageNet start: the pretrained profile
    on = {device: resolved_config(BootstrapConfig(out=tmp_path, models=ModelSettings(device=device)), model)
          for device in ("cpu", "cuda", "cuda:1")}
    assert (on["cpu"].cam_scales, on["cpu"].cam_flip) == ((1.0,), False)
    assert (on["cuda"].cam_scales, on["cuda"].cam_flip) == ((1.0, 0.5, 1.5, 2.0), True) == (
        on["cuda:1"].cam_scales, on["cuda:1"].cam_flip)
    assert SCRATCH.cam_settings("cpu") == SCRATCH.cam_settings("cuda") == ((1.0, 0.5, 1.5), True)
    given = BootstrapConfig(out=tmp_path, cam_scales=(1.0, 2.0), cam_flip=True)
    assert (resolved_config(given, model).cam_scales, resolved_config(given, model).cam_flip) == ((1.0, 2.0), True)


def test_profile_follows_the_weights_the_classifier_started_from():
    assert classifier_profile(Classifier("resnet50", 2, pretrained=True)) == PRETRAINED
    # a ResNet-50 without ImageNet weights trains and is recorded with the from-scratch schedule
    assert classifier_profile(Classifier("resnet50", 2)) == dataclasses.replace(SCRATCH, backbone="resnet50")
    assert PRETRAINED.top_share == 1.0  # ImageNet classifiers keep global average pooling
    scratch_tiny = classifier_profile(Classifier("resnet_tiny", 2))
    assert scratch_tiny == dataclasses.replace(SCRATCH, backbone="resnet_tiny")
    with pytest.raises(ValueError, match="background_threshold"):
        BootstrapConfig(out="x", background_threshold=1.5)


def test_classifier_weights_come_from_the_run_seed_only(tmp_path):
    config = BootstrapConfig(out=tmp_path, backbone="resnet_tiny", pretrained=False, seed=4)
    torch.manual_seed(0)
    a = build_bootstrap_classifier(config, 2)
    state = torch.random.get_rng_state()
    torch.manual_seed(1)
    b = build_bootstrap_classifier(config, 2)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, msg=name)
    torch.manual_seed(0)
    build_bootstrap_classifier(config, 2)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is left as it was
