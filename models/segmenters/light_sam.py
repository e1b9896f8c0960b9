"""Light SAM: the Light HQ-SAM checkpoint run as a plain Segment Anything model, for fast clicks on a CPU.

Light HQ-SAM (``sam_hq_vit_tiny``) pairs MobileSAM's TinyViT image encoder with SAM's mask decoder, which HQ-SAM
keeps frozen, plus an HQ branch. That branch convolves (1, 32, 256, 256) features at every click: most of a
click's time on a CPU. ``light_sam`` builds a ``segment_anything`` ``Sam`` from the same checkpoint without the
HQ branch (the TinyViT encoder, the prompt encoder, SAM's own decoder with the checkpoint's weights) and runs it
as :class:`~models.segmenters.sam.SamSegmenter` does every SAM 1 model: same geometry (longest side 1024, padded
square), same cache entry (the (1, 256, 64, 64) embedding). Its masks are SAM's, not HQ-SAM's refined ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from models.embedding_cache import EmbeddingCache
from models.segmenters.sam import SamSegmenter
from models.segmenters.tiny_vit import fused_if_tiny_vit

if TYPE_CHECKING:
    from segment_anything.modeling import Sam
    from segment_anything_hq.modeling import Sam as HqSam

__all__ = ["LIGHT_SAM_CHECKPOINT", "build_light_sam_segmenter", "light_sam_from_hq"]

LIGHT_SAM_CHECKPOINT = "sam_hq_vit_tiny"
"""The checkpoint ``light_sam`` reads (the Light HQ-SAM file; no file of its own)."""


class _EmbeddingOnly(nn.Module):
    """An HQ-SAM image encoder, which returns (embedding, intermediate features), returning the embedding only."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.img_size = int(encoder.img_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised padded images -> (B, 256, S/16, S/16) embeddings."""
        return self.encoder(x)[0]


def light_sam_from_hq(hq: HqSam) -> Sam:
    """A ``segment_anything`` ``Sam`` sharing ``hq``'s image and prompt encoders, with SAM's mask decoder holding
    the SAM part of ``hq``'s decoder weights (the HQ token and its layers left out), in eval mode. A TinyViT
    encoder runs as :func:`~models.segmenters.tiny_vit.fuse_tiny_vit` makes it (same function, faster)."""
    from segment_anything.modeling import MaskDecoder, Sam

    source = hq.mask_decoder
    decoder = MaskDecoder(
        transformer_dim=int(source.transformer_dim),
        transformer=source.transformer,
        num_multimask_outputs=int(source.num_multimask_outputs),
        iou_head_depth=int(source.iou_prediction_head.num_layers),
        iou_head_hidden_dim=int(source.iou_prediction_head.layers[0].out_features),
    )
    wanted = decoder.state_dict().keys()
    decoder.load_state_dict({k: v for k, v in source.state_dict().items() if k in wanted}, strict=True)
    model = Sam(
        image_encoder=_EmbeddingOnly(fused_if_tiny_vit(hq.eval().image_encoder)),
        prompt_encoder=hq.prompt_encoder,
        mask_decoder=decoder,
        pixel_mean=hq.pixel_mean.flatten().tolist(),
        pixel_std=hq.pixel_std.flatten().tolist(),
    )
    return model.to(hq.device).eval()


def build_light_sam_segmenter(
    name: str = "light_sam",
    weights_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache: EmbeddingCache | None = None,
    download: bool = True,
) -> SamSegmenter:
    """Light SAM from the Light HQ-SAM checkpoint (downloaded if missing and ``download``), the registry's builder.
    Its model id names the weights and the decoder (``light_sam:sam_hq_vit_tiny@<digest>``), so its cached
    embeddings are kept apart from HQ-SAM's."""
    from models.segmenters.sam_hq import build_sam_hq
    from models.weights import checkpoint_with_id

    path, checkpoint_id = checkpoint_with_id(LIGHT_SAM_CHECKPOINT, weights_dir, download)
    model = light_sam_from_hq(build_sam_hq(LIGHT_SAM_CHECKPOINT, path, device))
    segmenter = SamSegmenter(model, f"{name}:{checkpoint_id}", cache=cache,
                             message=f"Light SAM (TinyViT, SAM decoder; {checkpoint_id})")
    return segmenter
