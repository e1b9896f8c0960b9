"""The registry of USS feature providers: each entry says how to build it, its checkpoint and what it needs.

A provider maps one image to a (D, h, w) feature map for DHR. Its ``feature_id`` names the model, its weights
and its settings, and keys the feature cache, so features of one provider are never reused for another (two
SAM variants, two DINO checkpoints, two colour settings). Entries:

- ``"color"``: weight-free Lab colour + texture features (``dhr.uss.ColorTextureFeatures``);
- ``"sam"``: the segmenter's own image embedding (cells covering the image), no extra model;
- ``"dino_vits8"``, ``"dino_vits16"``, ``"dino_vitb8"``, ``"dino_vitb16"``: DINO ViT patch tokens, weights
  from their checkpoint (:mod:`models.weights`).

Adding a provider is one entry in :mod:`models.registry`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dhr.uss import image_to_tensor
from models.registry import ModelEntry, entries
from models.settings import ModelSettings

if TYPE_CHECKING:
    from models.segmenters import Segmenter

__all__ = ["USS_REGISTRY", "USSProvider", "build_uss_module", "build_uss_provider", "uss_names"]


USS_REGISTRY: dict[str, ModelEntry] = entries("uss")
"""Registry name -> entry (from :mod:`models.registry`)."""


def uss_names() -> list[str]:
    """Registry names, sorted."""
    return sorted(USS_REGISTRY)


class USSProvider:
    """A USS feature provider ready to run: ``features(image)`` -> (D, h, w) float on the provider's device.

    ``image`` is HWC uint8 RGB; ``x`` (optional) the same image as ``dhr.uss.image_to_tensor`` gives it, when the
    caller has it already. ``name`` is the registry name, ``feature_id`` the cache key (model, weights, settings).
    """

    def __init__(
        self,
        name: str,
        feature_id: str,
        module: nn.Module | None = None,
        segmenter: Segmenter | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if (module is None) == (segmenter is None):
            raise ValueError("a USS provider runs either a module or a segmenter's embedding")
        self.name, self.feature_id = name, feature_id
        self.module = module.to(device).eval() if module is not None else None
        self.segmenter = segmenter
        self.device = torch.device(device)

    @classmethod
    def from_module(cls, module: nn.Module, device: str | torch.device = "cpu") -> USSProvider:
        """A provider around a ready module (its class name and settings make the feature id)."""
        name = type(module).__name__
        return cls(name, f"{name}:{_settings(module)}", module=module, device=device)

    @torch.no_grad()
    def features(self, image: np.ndarray, x: torch.Tensor | None = None) -> torch.Tensor:
        """(D, h, w) features of ``image`` (HWC uint8 RGB)."""
        if self.segmenter is not None:
            self.segmenter.set_image(image)  # computes or loads the embedding once; labelling reuses it
            features = self.segmenter.uss_features()
            if features is None:
                raise ValueError(
                    f"segmenter {self.segmenter.model_id} has no image embedding for USS features"
                )
            return features.to(self.device)
        if x is None:
            x = image_to_tensor(image, self.device)
        return self.module(x.to(self.device))


def _settings(module: nn.Module) -> str:
    """The plain settings of a provider module (its int / float / bool / str attributes), as ``k=v,...``."""
    values = {
        k: v
        for k, v in vars(module).items()
        if not k.startswith("_") and k != "training" and isinstance(v, (int, float, bool, str))
    }
    return ",".join(f"{k}={values[k]}" for k in sorted(values))


def build_uss_module(name: str, **kwargs: Any) -> nn.Module:
    """The module of registry entry ``name`` (not one that reads a segmenter); ``kwargs`` go to its builder
    (``state_dict=`` for weights, architecture overrides for tests)."""
    entry = USS_REGISTRY.get(name)
    if entry is None:
        raise ValueError(f"unknown USS provider {name!r}; choose 'auto' or one of {', '.join(uss_names())}")
    if entry.has("from_segmenter"):
        raise ValueError(f"USS provider {name!r} reads the segmenter's embedding; it has no module of its own")
    return entry.build_function()(**{**entry.options, **kwargs})


def build_uss_provider(
    name: str | nn.Module | USSProvider,
    settings: ModelSettings,
    segmenter: Segmenter | None = None,
    **kwargs: Any,
) -> USSProvider:
    """The USS provider ``name`` on ``settings.device``.

    ``"auto"``: the segmenter's embedding when it has one (SAM: no extra cost), else ``"color"``. ``"sam"``
    without a segmenter that has an embedding falls back to ``"color"`` with a warning. A DINO checkpoint
    is found (or downloaded) in ``settings.weights_dir`` and its SHA-256 goes into the feature id.
    ``kwargs`` go to the entry's builder. An ``nn.Module`` or ready provider is used as it is.
    """
    if isinstance(name, USSProvider):
        return name
    if isinstance(name, nn.Module):
        return USSProvider.from_module(name, settings.device)
    has_embedding = segmenter is not None and segmenter.has_embedding
    if name == "auto":
        name = "sam" if has_embedding else "color"
    if name not in USS_REGISTRY:
        raise ValueError(f"unknown USS provider {name!r}; choose 'auto' or one of {', '.join(uss_names())}")
    entry = USS_REGISTRY[name]
    if entry.has("from_segmenter"):
        if not has_embedding:
            warnings.warn(
                f"USS {name!r} needs a SAM segmenter (none with an image embedding is loaded); using the 'color' "
                "features instead",
                stacklevel=2,
            )
            return build_uss_provider("color", settings, segmenter, **kwargs)
        return USSProvider(name, f"{name}:{segmenter.uss_id}", segmenter=segmenter, device=settings.device)
    weights = ""
    if entry.checkpoint is not None:
        from models.weights import checkpoint_path, load_state_dict, verify_checkpoint

        path = checkpoint_path(entry.checkpoint, settings.weights_dir, settings.download)
        weights = "@" + verify_checkpoint(entry.checkpoint, path)[:12]
        kwargs["state_dict"] = load_state_dict(entry.checkpoint, settings.weights_dir, settings.download)
    module = build_uss_module(name, **kwargs)
    return USSProvider(name, f"{name}{weights}:{_settings(module)}", module=module, device=settings.device)
