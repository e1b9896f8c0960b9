"""Weight-free USS features for DHR and the ImageNet image <-> tensor conversion every provider expects.

Providers that need model weights (DINO) or reuse a segmenter's embedding (SAM) are built by
:mod:`models.uss`, from the one model registry (:mod:`models.registry`).
"""

from dhr.uss.color import ColorTextureFeatures
from dhr.uss.normalize import IMAGENET_MEAN, IMAGENET_STD, image_to_tensor, tensor_to_rgb

__all__ = ["ColorTextureFeatures", "IMAGENET_MEAN", "IMAGENET_STD", "image_to_tensor", "tensor_to_rgb"]
