"""Classifier settings for the two situations a bootstrap run meets: ImageNet weights present, or none (offline).

A ``ClassifierProfile`` holds what depends on that: the backbone, its training schedule and the CAM settings
that suit CAMs of such a network. ``BootstrapConfig`` fields left at None take the profile's value
(:func:`resolved_config`); the profile is chosen from the backbone the classifier actually has, so a run that
asked for ``backbone="auto"`` and found no ImageNet weights gets the from-scratch profile throughout.

- ``PRETRAINED``: a dilated ResNet-50 fine-tuned from ImageNet for a few epochs at 320 px crops.
  On a CPU its CAMs are taken at one scale without the flipped pass (``cpu_cam_scales`` / ``cpu_cam_flip``):
  the ResNet-50 at four scales with flip takes about 9.5 s of an image's 23 s there, which keeps a bootstrap
  far from 600 images an hour; on a GPU the CAM stage is cheap and the four scales stay.
- ``SCRATCH``: the offline default, a width-reduced ResNet (``resnet_small``, 0.6 M parameters) trained from
  random weights for many short epochs on small crops, which learns from tens of images on a CPU. Its logits
  average all CAM cells, as the pretrained profile's do (``Classifier(top_share=...)`` averages only the top
  cells instead, `dhr bootstrap --top-share`; measured in the README, not the default). Its CAMs are blobs
  around the objects, and DHR's colour features spread a class over look-alike background, so the segmenter is
  prompted only with seed pixels where the class's CAM is at least half its peak (``seed_evidence``); the
  pretrained profile keeps the whole seed, since a fine-tuned ResNet-50's CAM peaks on an object's most telling
  part.
  The figures behind these values are in ``bench/bench_pipeline.py`` and the README ("Offline defaults").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from annotate.bootstrap import BootstrapConfig
    from models.classifier import Classifier

AUTO_BACKBONE = "auto"
_FIELDS = ("epochs", "lr", "crop_size", "batch_size", "scale_range", "background_threshold", "top_share",
           "seed_evidence")


@dataclass(frozen=True)
class ClassifierProfile:
    """Backbone, training schedule and CAM settings of one kind of classifier (see the module docstring)."""

    backbone: str
    output_stride: int
    epochs: int
    lr: float
    crop_size: int
    batch_size: int
    scale_range: tuple[float, float]  # random rescale of the training images
    cam_scales: tuple[float, ...]
    background_threshold: float  # base mask: background where the highest CAM is below this
    top_share: float = 1.0  # logits: mean of each class's top share of CAM cells (1.0: global average pooling)
    seed_evidence: float = 0.0  # prompts: seed pixels whose class's CAM is below this are dropped (0: none)
    cam_flip: bool = True  # CAMs also of the horizontally flipped image
    cpu_cam_scales: tuple[float, ...] | None = None  # CAM scales on a CPU (None: cam_scales)
    cpu_cam_flip: bool | None = None  # flipped pass on a CPU (None: cam_flip)

    def cam_settings(self, device: str) -> tuple[tuple[float, ...], bool]:
        """(CAM scales, flipped pass) of this profile on ``device`` ("cpu", "cuda", "cuda:1", ...)."""
        if str(device).split(":")[0] == "cpu":
            return (self.cpu_cam_scales or self.cam_scales,
                    self.cam_flip if self.cpu_cam_flip is None else self.cpu_cam_flip)
        return self.cam_scales, self.cam_flip


PRETRAINED = ClassifierProfile(
    backbone="resnet50",
    output_stride=16,
    epochs=5,
    lr=0.01,
    crop_size=320,
    batch_size=8,
    scale_range=(0.7, 1.3),
    cam_scales=(1.0, 0.5, 1.5, 2.0),
    background_threshold=0.3,
    cpu_cam_scales=(1.0,),
    cpu_cam_flip=False,
)

SCRATCH = ClassifierProfile(
    backbone="resnet_small",
    output_stride=16,
    epochs=60,
    lr=0.02,
    crop_size=192,
    batch_size=8,
    scale_range=(0.6, 1.0),
    cam_scales=(1.0, 0.5, 1.5),
    background_threshold=0.3,
    seed_evidence=0.5,
)


def profile_for(backbone: str, pretrained: bool) -> ClassifierProfile:
    """The profile of a classifier with ``backbone`` that does (``pretrained``) or does not start from ImageNet."""
    base = PRETRAINED if pretrained else SCRATCH
    return base if backbone == base.backbone else dataclasses.replace(base, backbone=backbone)


def classifier_profile(model: Classifier) -> ClassifierProfile:
    """The profile matching a built or loaded classifier: pretrained when it started from ImageNet weights
    (``model.pretrained``), not merely when its backbone has such weights."""
    return profile_for(model.backbone_name, bool(model.pretrained))


def resolved_config(config: BootstrapConfig, model: Classifier) -> BootstrapConfig:
    """``config`` with its None training / CAM fields (and an "auto" backbone) filled from ``model``'s profile;
    the CAM settings are the profile's for ``config.models.device``."""
    profile = classifier_profile(model)
    values = {name: getattr(profile, name) for name in _FIELDS if getattr(config, name) is None}
    scales, flip = profile.cam_settings(config.models.device)
    if config.cam_scales is None:
        values["cam_scales"] = scales
    if config.cam_flip is None:
        values["cam_flip"] = flip
    if config.backbone == AUTO_BACKBONE:
        values["backbone"] = model.backbone_name
    return dataclasses.replace(config, **values) if values else config


__all__ = ["AUTO_BACKBONE", "ClassifierProfile", "PRETRAINED", "SCRATCH", "classifier_profile", "profile_for",
           "resolved_config"]
