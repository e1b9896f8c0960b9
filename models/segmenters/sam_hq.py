"""HQ-SAM and Light HQ-SAM (``segment-anything-hq`` package) behind the ``Segmenter`` interface.

``build_sam_hq(name, checkpoint=None)`` builds the real architecture from the package's
``sam_model_registry`` (ViT-B / L / H, or ``vit_tiny``: Light HQ-SAM, MobileSAM's TinyViT encoder with the HQ
decoder); random weights when ``checkpoint`` is None. ``build_tiny_sam_hq`` builds the package's classes in a
tiny configuration for tests. ``HqSamSegmenter`` wraps a model in the package's own ``SamPredictor``.

Geometry: as SAM (v1), a longest-side resize to 1024 padded to a square, 256 x 256 mask prompts of the padded
frame (:class:`~models.segmenters.frame.LongestSideFrame`). The HQ decoder reads the image embedding and the
first intermediate encoder feature map (after the first global-attention block of the ViT, after the second
stage of the TinyViT), so the embedding cache holds both: (1, 256, 64, 64) and (1, 64, 64, D) with D = 160
(tiny), 768 (B), 1024 (L), 1280 (H): 6.5 to 24 MiB per image. The decoder returns one mask whatever
``multimask`` (the best of SAM's three, refined by the HQ token).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.files import load_torch
from models.embedding_cache import EmbeddingCache
from models.segmenters.base import SegmenterOutput
from models.segmenters.encoded import EncodedImageSegmenter, from_official_checkpoint

if TYPE_CHECKING:
    from segment_anything_hq.modeling import Sam

class _PerImageMemo:
    """Keeps the output of one decoder sub-network for the current image, so that a click does not recompute it.

    The HQ decoder turns the image embedding and the encoder's intermediate features into (1, 32, 256, 256) HQ
    features at every call, though they depend on the image alone: most of a click's time on a CPU. Wrapped
    around a module's ``forward`` (its parameters and state-dict keys stay as they are); ``clear()`` whenever the
    image changes.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self._forward = module.forward
        self._key: tuple | None = None
        self._out: torch.Tensor | None = None
        module.forward = self  # an instance attribute: nn.Module.__call__ finds it before the class's forward

    def clear(self) -> None:
        self._key, self._out = None, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.data_ptr(), tuple(x.shape), x._version, x.device)
        if key != self._key or self._out is None:
            self._out, self._key = self._forward(x), key
        return self._out


__all__ = [
    "HQ_VARIANTS", "HqSamSegmenter", "build_sam_hq", "build_sam_hq_segmenter", "build_tiny_sam_hq", "with_fused_encoder",
]

HQ_VARIANTS: dict[str, str] = {
    "sam_hq_vit_tiny": "vit_tiny",
    "sam_hq_vit_b": "vit_b",
    "sam_hq_vit_l": "vit_l",
    "sam_hq_vit_h": "vit_h",
}
"""Registry name -> key of ``segment_anything_hq.sam_model_registry``; the same names key ``models.weights``."""


def build_sam_hq(name: str, checkpoint: str | Path | None = None, device: str | torch.device = "cpu") -> Sam:
    """The real-size HQ-SAM architecture ``name`` in eval mode; weights from ``checkpoint`` or random if None.

    The checkpoint is read with ``torch.load(..., weights_only=True)`` (not the package's loader); every
    parameter of the architecture must be in it (extra keys are ignored, as the package's own loader does).
    """
    from segment_anything_hq import sam_model_registry

    if name not in HQ_VARIANTS:
        raise ValueError(f"unknown HQ-SAM model {name!r}; choose one of {sorted(HQ_VARIANTS)}")
    model = sam_model_registry[HQ_VARIANTS[name]](checkpoint=None)
    if checkpoint is not None:
        state = load_torch(checkpoint, what="HQ-SAM checkpoint")
        if not isinstance(state, dict):
            raise ValueError(f"HQ-SAM checkpoint {checkpoint} does not hold a state dict")
        try:
            missing, _ = model.load_state_dict(state, strict=False)
        except RuntimeError as error:  # a tensor of the wrong shape
            raise ValueError(f"HQ-SAM checkpoint {checkpoint} does not fit the {name} architecture: {error}") from error
        if missing:
            raise ValueError(
                f"HQ-SAM checkpoint {checkpoint} does not fit the {name} architecture: {len(missing)} tensors "
                f"missing ({', '.join(missing[:3])}, ...)"
            )
    return model.to(device).eval()


def build_tiny_sam_hq(encoder: str = "vit", seed: int = 0) -> Sam:
    """The package's HQ-SAM classes in a tiny configuration, random weights (tests and smoke runs only).

    ``encoder="vit"``: a 2-block ViT at a 256 input (embedding (1, 32, 16, 16), 64 x 64 mask prompts).
    ``encoder="tinyvit"``: Light HQ-SAM's TinyViT with one narrow block per stage at the real 1024 input
    (the package's TinyViT fixes its 64 x 64 grid, its 256-channel neck and, for the stride-1 last merge, a last
    stage of width 320): embedding (1, 256, 64, 64).
    """
    from segment_anything_hq.modeling import (
        ImageEncoderViT,
        MaskDecoderHQ,
        PromptEncoder,
        Sam,
        TinyViT,
        TwoWayTransformer,
    )

    if encoder not in ("vit", "tinyvit"):
        raise ValueError(f"encoder must be 'vit' or 'tinyvit', got {encoder!r}")
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        if encoder == "vit":
            img_size, dim, vit_dim = 256, 32, 32
            image_encoder = ImageEncoderViT(
                img_size=img_size, patch_size=16, embed_dim=vit_dim, depth=2, num_heads=2, mlp_ratio=2.0,
                out_chans=dim, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True, window_size=4, global_attn_indexes=(1,),
            )
        else:
            img_size, dim, vit_dim = 1024, 256, 24
            image_encoder = TinyViT(
                img_size=img_size, embed_dims=[8, 16, vit_dim, 320], depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 4],
                window_sizes=[7, 7, 14, 7], mlp_ratio=1.0, drop_path_rate=0.0,
            )
        side = img_size // 16
        model = Sam(
            image_encoder=image_encoder,
            prompt_encoder=PromptEncoder(
                embed_dim=dim, image_embedding_size=(side, side), input_image_size=(img_size, img_size),
                mask_in_chans=8,
            ),
            mask_decoder=MaskDecoderHQ(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
                transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=32, vit_dim=vit_dim,
            ),
        )
    return model.eval()


def build_sam_hq_segmenter(
    name: str,
    weights_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache: EmbeddingCache | None = None,
    download: bool = True,
) -> HqSamSegmenter:
    """HQ-SAM ``name`` with its official checkpoint, the registry's builder (see ``from_official_checkpoint``);
    Light HQ-SAM's TinyViT encoder runs fused (:func:`with_fused_encoder`)."""
    def build(model_name: str, checkpoint: Path, on: str | torch.device) -> Sam:
        return with_fused_encoder(build_sam_hq(model_name, checkpoint, on))

    return from_official_checkpoint(HqSamSegmenter, build, name, weights_dir, device, cache, download)


def with_fused_encoder(model: Sam) -> Sam:
    """``model`` (eval mode) with a TinyViT image encoder replaced by its fused form
    (:func:`~models.segmenters.tiny_vit.fuse_tiny_vit`: same outputs, faster); a ViT encoder is left as it is."""
    from models.segmenters.tiny_vit import fused_if_tiny_vit

    model.image_encoder = fused_if_tiny_vit(model.eval().image_encoder)
    return model


class HqSamSegmenter(EncodedImageSegmenter):
    """An HQ-SAM model behind the ``Segmenter`` interface, through the package's ``SamPredictor``.

    Masks (1, H, W) (see the module notes); scores: the IoU head clipped to [0, 1]; low-resolution logits
    (1, 256, 256) in the longest-side frame. ``hq_token_only`` is the package's switch (False: the HQ output
    corrects SAM's mask, its recommended default). The cache entry is ``{"features", "interm",
    "original_size", "input_size"}``.
    """

    def __init__(
        self,
        model: Sam,
        model_id: str,
        cache: EmbeddingCache | None = None,
        message: str = "",
        hq_token_only: bool = False,
    ) -> None:
        from segment_anything_hq import SamPredictor

        super().__init__(model_id, cache, message or f"HQ-SAM ({model_id})")
        self.model = model.eval()
        self.predictor = SamPredictor(self.model)
        self.hq_token_only = bool(hq_token_only)
        self.long_side = int(model.image_encoder.img_size)
        self.mask_input_size = int(model.prompt_encoder.mask_input_size[0])
        decoder = self.model.mask_decoder
        self._memos = [_PerImageMemo(decoder.embedding_encoder), _PerImageMemo(decoder.compress_vit_feat)]

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _entry_fits(self, entry: dict[str, Any], image: np.ndarray) -> bool:
        features, interm = entry.get("features"), entry.get("interm")
        encoder = self.model.prompt_encoder
        grid = tuple(encoder.image_embedding_size)
        vit_dim = int(self.model.mask_decoder.compress_vit_feat[0].in_channels)
        return (
            torch.is_tensor(features)
            and tuple(features.shape) == (1, encoder.embed_dim, *grid)
            and torch.is_tensor(interm)
            and tuple(interm.shape) == (1, *grid, vit_dim)
            and tuple(entry.get("original_size", ())) == tuple(image.shape[:2])
            and len(entry.get("input_size", ())) == 2
        )

    def _encode(self, image: np.ndarray) -> dict[str, Any]:
        for memo in self._memos:
            memo.clear()
        predictor = self.predictor
        predictor.set_image(image)
        return {
            "features": predictor.features,
            "interm": predictor.interm_features[0],  # the only one the HQ decoder reads
            "original_size": tuple(int(v) for v in image.shape[:2]),
            "input_size": tuple(int(v) for v in predictor.input_size),
        }

    def _load(self, entry: dict[str, Any]) -> None:
        for memo in self._memos:
            memo.clear()
        predictor = self.predictor
        predictor.reset_image()
        predictor.features = entry["features"]
        predictor.interm_features = [entry["interm"]]
        predictor.original_size = tuple(int(v) for v in entry["original_size"])
        predictor.input_size = tuple(int(v) for v in entry["input_size"])
        predictor.is_image_set = True

    @property
    def embedding(self) -> torch.Tensor | None:
        """(256, 64, 64) image embedding of the current image (longest-side frame, padding included)."""
        features = self.predictor.features
        return None if features is None else features[0]

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> SegmenterOutput:
        """HQ-SAM mask (1, H, W) bool for the prompts (mask_input: (1, 256, 256) logits, longest-side frame)."""
        point_coords, point_labels, box, mask_input = self.check_prompts(
            point_coords, point_labels, box, mask_input
        )
        masks, scores, low_res = self.predictor.predict(
            point_coords, point_labels, box, mask_input, multimask_output=multimask,
            hq_token_only=self.hq_token_only,
        )
        return SegmenterOutput.from_predictor(masks, scores, low_res)
