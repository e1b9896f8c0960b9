"""Segment Anything (``segment-anything`` package) behind the ``Segmenter`` interface, with an embedding cache.

``build_sam(name, checkpoint=None)`` builds the real ViT-B / ViT-L / ViT-H architecture (random weights when
``checkpoint`` is None); ``load_sam`` finds and verifies the official checkpoint through ``models.weights``;
``build_tiny_sam`` builds the same network parts in a tiny configuration for tests. ``SamSegmenter`` runs a
model's parts as the package's ``SamPredictor`` does: the image encoder once per image and model, its output stored
in an ``EmbeddingCache`` so that reopening an image only loads the embedding from disk; a prompt then runs the mask
decoder through :class:`~models.segmenters.sam_decoder.ClickDecoder` and brings only the masks read to the image.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.files import load_torch
from models.embedding_cache import EmbeddingCache
from models.segmenters.base import SegmenterOutput
from models.segmenters.encoded import EncodedImageSegmenter
from models.segmenters.frame import Frame
from models.segmenters.sam_decoder import ClickDecoder

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

logger = logging.getLogger(__name__)

# Registry name -> key of ``segment_anything.sam_model_registry``; the same names key ``models.weights``.
SAM_VARIANTS: dict[str, str] = {"sam_vit_b": "vit_b", "sam_vit_l": "vit_l", "sam_vit_h": "vit_h"}


def build_sam(name: str, checkpoint: str | Path | None = None, device: str | torch.device = "cpu") -> Sam:
    """The real-size SAM architecture ``name`` in eval mode; weights from ``checkpoint`` or random if None.

    The checkpoint is read with ``torch.load(..., weights_only=True)`` (not the package's own loader).
    """
    from segment_anything import sam_model_registry

    if name not in SAM_VARIANTS:
        raise ValueError(f"unknown SAM model {name!r}; choose one of {sorted(SAM_VARIANTS)}")
    model = sam_model_registry[SAM_VARIANTS[name]](checkpoint=None)
    if checkpoint is not None:
        state = load_torch(checkpoint, what="SAM checkpoint")
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(
                f"SAM checkpoint {checkpoint} does not fit the {name} architecture: {error}"
            ) from error
    return model.to(device).eval()


def build_tiny_sam(img_size: int = 256, embed_dim: int = 32, prompt_dim: int = 32, seed: int = 0) -> Sam:
    """SAM's own network parts (``segment_anything.modeling``) in a tiny configuration, random weights.

    ViT image encoder of depth 1 at ``img_size`` (patch 16 -> embedding (prompt_dim, img_size/16, img_size/16)),
    mask prompts of side img_size/4, a one-layer two-way transformer. For tests and CPU smoke runs only.
    """
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    if img_size % 16:
        raise ValueError(f"img_size must be a multiple of 16, got {img_size}")
    side = img_size // 16
    with torch.random.fork_rng(devices=[]):  # the caller's generator is left as it was
        torch.random.default_generator.manual_seed(seed)
        model = Sam(
            image_encoder=ImageEncoderViT(
                img_size=img_size,
                patch_size=16,
                embed_dim=embed_dim,
                depth=1,
                num_heads=2,
                mlp_ratio=2.0,
                out_chans=prompt_dim,
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=4,
                global_attn_indexes=(),
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=prompt_dim,
                image_embedding_size=(side, side),
                input_image_size=(img_size, img_size),
                mask_in_chans=8,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(
                    depth=1, embedding_dim=prompt_dim, mlp_dim=2 * prompt_dim, num_heads=2
                ),
                transformer_dim=prompt_dim,
                iou_head_depth=2,
                iou_head_hidden_dim=32,
            ),
        )
    return model.eval()


def load_sam(
    name: str,
    weights_dir: str | Path | None = None,
    download: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[Sam, str]:
    """SAM ``name`` with its verified official checkpoint -> (model, model_id naming the weights)."""
    from models.weights import CHECKPOINTS, checkpoint_path

    path = checkpoint_path(name, weights_dir, download)
    return build_sam(name, path, device), f"{name}@{CHECKPOINTS[name].sha256[:12]}"


def build_sam_segmenter(
    name: str,
    weights_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache: EmbeddingCache | None = None,
    download: bool = True,
) -> SamSegmenter:
    """SAM ``name`` with its official checkpoint (downloaded if missing and ``download``), the registry's builder."""
    model, model_id = load_sam(name, weights_dir, download, device)
    return SamSegmenter(model, model_id, cache=cache)


class SamSegmenter(EncodedImageSegmenter):
    """A SAM model behind the ``Segmenter`` interface, running its parts itself (no ``SamPredictor``).

    ``model_id`` must name the model *and its weights* (it keys the embedding cache; ``load_sam`` builds one
    from the checkpoint hash). The model's device is the device of every tensor it computes. The image is
    resized with SAM's ``ResizeLongestSide``, normalised and padded by ``Sam.preprocess``, as in the package's
    own predictor; the mask decoder runs as :class:`~models.segmenters.sam_decoder.ClickDecoder`, and masks come
    back at the image's size as ``Sam.postprocess_masks`` brings them (the frame's ``logits_to_masks``), each
    when first read. The cache entry is ``{"features": (1, C, g, g), "original_size": (H, W), "input_size": (h', w')}``.
    """

    def __init__(
        self, model: Sam, model_id: str, cache: EmbeddingCache | None = None, message: str = ""
    ) -> None:
        from segment_anything.utils.transforms import ResizeLongestSide

        super().__init__(model_id, cache, message or f"Segment Anything ({model_id})")
        self.model = model.eval()
        self.long_side = int(model.image_encoder.img_size)
        self.mask_input_size = int(model.prompt_encoder.mask_input_size[0])
        self.transform = ResizeLongestSide(self.long_side)
        self.decoder = ClickDecoder(model.prompt_encoder, model.mask_decoder)
        self._features: torch.Tensor | None = None  # (1, C, g, g)
        self._input_size: tuple[int, int] | None = None  # (h', w') after the longest-side resize

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _entry_fits(self, entry: dict, image: np.ndarray) -> bool:
        features = entry.get("features")
        encoder = self.model.prompt_encoder
        expected = (1, encoder.embed_dim, *encoder.image_embedding_size)
        return (
            torch.is_tensor(features)
            and tuple(features.shape) == expected
            and tuple(entry.get("original_size", ())) == tuple(image.shape[:2])
            and len(entry.get("input_size", ())) == 2
        )

    @torch.no_grad()
    def _encode(self, image: np.ndarray) -> dict:
        """(H, W, 3) uint8 -> the cache entry: (1, C, g, g) embedding, original and resized sizes."""
        resized = self.transform.apply_image(image)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        input_size = (int(x.shape[-2]), int(x.shape[-1]))
        features = self.model.image_encoder(self.model.preprocess(x))
        return {"features": features, "original_size": tuple(image.shape[:2]), "input_size": input_size}

    def _load(self, entry: dict) -> None:
        self._features = entry["features"]
        self.decoder.set_embedding(self._features)
        self._input_size = tuple(int(v) for v in entry["input_size"])

    @property
    def embedding(self) -> torch.Tensor | None:
        """(C, g, g) SAM image embedding of the current image ((256, 64, 64) for the released models)."""
        return None if self._features is None else self._features[0]

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> SegmenterOutput:
        """SAM masks (M, H, W) bool, M = 3 with ``multimask`` else 1; scores clipped to [0, 1]."""
        point_coords, point_labels, box, mask_input = self.check_prompts(
            point_coords, point_labels, box, mask_input
        )
        size, device = self._image_size, self.device
        points = boxes = masks = None
        with torch.inference_mode():
            if point_coords is not None:
                coords = torch.as_tensor(self.transform.apply_coords(point_coords, size), dtype=torch.float,
                                         device=device)
                points = (coords[None], torch.as_tensor(point_labels, dtype=torch.int, device=device)[None])
            if box is not None:
                boxes = torch.as_tensor(self.transform.apply_boxes(box, size), dtype=torch.float, device=device)
            if mask_input is not None:
                masks = torch.as_tensor(mask_input, dtype=torch.float, device=device)[None]
            sparse, _ = self.model.prompt_encoder(points=points, boxes=boxes, masks=None)
            low_res, iou = self.decoder(sparse, masks, multimask)
            low_res, iou = low_res.float().cpu().numpy(), iou.float().cpu().numpy()
        return SegmenterOutput(
            scores=np.clip(iou, 0.0, 1.0).astype(np.float32),
            low_res_logits=low_res,
            to_masks=partial(_masks_on, self.frame, size, device),
        )


def _masks_on(frame: Frame, size: tuple[int, int], device: torch.device, logits: np.ndarray) -> np.ndarray:
    """(k, L, L) logits -> (k, H, W) bool masks, resized on ``device``."""
    return frame.logits_to_masks(torch.as_tensor(logits, device=device), size)
