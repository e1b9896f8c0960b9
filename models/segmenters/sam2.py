"""SAM 2.1 image models (``sam2`` package) behind the ``Segmenter`` interface, with an embedding cache.

``build_sam2_model(name, checkpoint=None)`` builds the real Hiera-T / S / B+ / L architecture from the
package's own SAM 2.1 config (``sam2.build_sam.build_sam2``; random weights when ``checkpoint`` is None);
``build_tiny_sam2`` builds the same classes from the same config with hydra overrides that shrink the Hiera
trunk and the neck, for tests. ``Sam2Segmenter`` wraps a model in the package's ``SAM2ImagePredictor``.

Geometry: SAM 2 resizes the image to a 1024 x 1024 square (no padding) and predicts 256 x 256 low-resolution
logits of that square; mask prompts live in the same square frame (:class:`~models.segmenters.frame.SquareFrame`).
The image encoding is three tensors, all of which the mask decoder reads: the (1, 256, 64, 64) image
embedding (with the no-memory embedding added, as the predictor does) and two high-resolution feature maps,
(1, 32, 256, 256) and (1, 64, 128, 128) for the released models: 16 MiB per image in the embedding cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.files import load_torch
from models.embedding_cache import EmbeddingCache
from models.segmenters.base import SegmenterOutput
from models.segmenters.encoded import EncodedImageSegmenter, from_official_checkpoint
from models.segmenters.frame import Frame, SquareFrame

if TYPE_CHECKING:
    from sam2.modeling.sam2_base import SAM2Base

__all__ = ["SAM2_VARIANTS", "TINY_SAM2_OVERRIDES", "Sam2Segmenter", "build_sam2_model", "build_sam2_segmenter",
           "build_tiny_sam2"]

SAM2_VARIANTS: dict[str, str] = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
"""Registry name -> the package's SAM 2.1 config; the same names key ``models.weights``."""

_TRUNK, _NECK, _MEMORY = "++model.image_encoder.trunk", "++model.image_encoder.neck", "++model.memory_attention"
TINY_SAM2_OVERRIDES: tuple[str, ...] = (
    f"{_TRUNK}.embed_dim=8",
    f"{_TRUNK}.num_heads=1",
    f"{_TRUNK}.stages=[1,1,2,1]",
    f"{_TRUNK}.global_att_blocks=[3]",
    f"{_NECK}.backbone_channel_list=[64,32,16,8]",
    f"{_NECK}.d_model=32",
    f"{_NECK}.position_encoding.num_pos_feats=32",
    f"{_MEMORY}.d_model=32",
    f"{_MEMORY}.num_layers=1",
    f"{_MEMORY}.layer.d_model=32",
    f"{_MEMORY}.layer.dim_feedforward=32",
    f"{_MEMORY}.layer.self_attention.embedding_dim=32",
    f"{_MEMORY}.layer.cross_attention.embedding_dim=32",
    "++model.memory_encoder.fuser.layer.dim=32",
    "++model.memory_encoder.out_dim=16",
)
"""Hydra overrides of the Hiera-T config: a 5-block Hiera of width 8 and a 32-channel neck and decoder at the
real 1024 input (so the predictor's fixed feature sizes hold); the video memory parts shrink along."""


def build_sam2_model(
    name: str,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    overrides: tuple[str, ...] = (),
) -> SAM2Base:
    """SAM 2.1 ``name`` in eval mode, from the package's config; weights from ``checkpoint`` or random if None.

    The checkpoint (``{"model": state_dict}``) is read with ``torch.load(..., weights_only=True)`` and must fit
    the architecture exactly. ``overrides`` are further hydra overrides of the config (tests).
    """
    from sam2.build_sam import build_sam2

    if name not in SAM2_VARIANTS:
        raise ValueError(f"unknown SAM 2 model {name!r}; choose one of {sorted(SAM2_VARIANTS)}")
    model = build_sam2(SAM2_VARIANTS[name], None, device="cpu", hydra_overrides_extra=list(overrides))
    if checkpoint is not None:
        state = load_torch(checkpoint, what="SAM 2 checkpoint")
        state = state.get("model", state) if isinstance(state, dict) else state
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError) as error:
            raise ValueError(
                f"SAM 2 checkpoint {checkpoint} does not fit the {name} architecture: {error}"
            ) from error
    return model.to(device).eval()


def build_tiny_sam2(seed: int = 0) -> SAM2Base:
    """The package's SAM 2.1 classes in a tiny configuration (:data:`TINY_SAM2_OVERRIDES`), random weights.

    Embedding (1, 32, 64, 64), high-resolution features (1, 4, 256, 256) and (1, 8, 128, 128). Tests only.
    """
    with torch.random.fork_rng(devices=[]):  # the caller's generator is left as it was
        torch.random.default_generator.manual_seed(seed)
        return build_sam2_model("sam2.1_hiera_tiny", overrides=TINY_SAM2_OVERRIDES)


def build_sam2_segmenter(
    name: str,
    weights_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache: EmbeddingCache | None = None,
    download: bool = True,
) -> Sam2Segmenter:
    """SAM 2.1 ``name`` with its official checkpoint, the registry's builder (see ``from_official_checkpoint``)."""
    return from_official_checkpoint(Sam2Segmenter, build_sam2_model, name, weights_dir, device, cache, download)


class Sam2Segmenter(EncodedImageSegmenter):
    """A SAM 2 image model behind the ``Segmenter`` interface, through the package's ``SAM2ImagePredictor``.

    Masks (M, H, W) with M = 3 for ``multimask`` else 1; scores are the model's IoU head (a sigmoid, in
    [0, 1]); low-resolution logits (M, 256, 256) in the square frame. The cache entry is
    ``{"image_embed", "high_res_0", "high_res_1", "original_size"}`` (see the module notes).
    """

    def __init__(
        self, model: SAM2Base, model_id: str, cache: EmbeddingCache | None = None, message: str = ""
    ) -> None:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        super().__init__(model_id, cache, message or f"SAM 2 ({model_id})")
        self.model = model.eval()
        self.predictor = SAM2ImagePredictor(self.model)
        self.long_side = int(model.image_size)
        self.mask_input_size = int(model.sam_prompt_encoder.mask_input_size[0])
        grid = int(model.sam_image_embedding_size)
        # The predictor's feature sizes, written for the 1024 input; derived here so they follow the model.
        self.predictor._bb_feat_sizes = [(4 * grid, 4 * grid), (2 * grid, 2 * grid), (grid, grid)]

    @property
    def frame(self) -> Frame:
        return SquareFrame(self.long_side, self.mask_input_size)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        decoder = self.model.sam_mask_decoder
        grid = int(self.model.sam_image_embedding_size)
        return {
            "image_embed": (1, int(self.model.hidden_dim), grid, grid),
            "high_res_0": (1, int(decoder.conv_s0.out_channels), 4 * grid, 4 * grid),
            "high_res_1": (1, int(decoder.conv_s1.out_channels), 2 * grid, 2 * grid),
        }

    def _entry_fits(self, entry: dict[str, Any], image: np.ndarray) -> bool:
        shapes_fit = all(
            torch.is_tensor(entry.get(key)) and tuple(entry[key].shape) == shape
            for key, shape in self._expected_shapes().items()
        )
        return shapes_fit and tuple(entry.get("original_size", ())) == tuple(image.shape[:2])

    def _encode(self, image: np.ndarray) -> dict[str, Any]:
        self.predictor.set_image(image)
        features = self.predictor._features
        high_res = features["high_res_feats"]
        return {
            "image_embed": features["image_embed"],
            "high_res_0": high_res[0],
            "high_res_1": high_res[1],
            "original_size": tuple(int(v) for v in image.shape[:2]),
        }

    def _load(self, entry: dict[str, Any]) -> None:
        predictor = self.predictor
        predictor.reset_predictor()
        predictor._features = {
            "image_embed": entry["image_embed"],
            "high_res_feats": [entry["high_res_0"], entry["high_res_1"]],
        }
        predictor._orig_hw = [tuple(int(v) for v in entry["original_size"])]
        predictor._is_image_set = True

    @property
    def embedding(self) -> torch.Tensor | None:
        """(C, 64, 64) SAM 2 image embedding of the current image ((256, 64, 64) for the released models)."""
        features = self.predictor._features
        return None if features is None else features["image_embed"][0]

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> SegmenterOutput:
        """SAM 2 masks (M, H, W) bool for the prompts (mask_input: (1, 256, 256) logits of the square frame)."""
        point_coords, point_labels, box, mask_input = self.check_prompts(
            point_coords, point_labels, box, mask_input
        )
        masks, scores, low_res = self.predictor.predict(
            point_coords, point_labels, box, mask_input, multimask_output=multimask
        )
        return SegmenterOutput.from_predictor(masks, scores, low_res)
