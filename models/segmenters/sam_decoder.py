"""Segment Anything's (v1) mask decoder for one prompt set, with the same modules and weights rearranged for a CPU.

A click runs the decoder once: a two-way transformer between T tokens (the 5 output tokens and the prompt's points
and box corners: T = 7 for one click) and the N = 64 x 64 cells of the image embedding, then two stride-2 transposed
convolutions up to the 256 x 256 low-resolution masks. :class:`ClickDecoder` computes the same function as the
package's ``MaskDecoder`` (``segment_anything.modeling``), calling its modules for the token-side steps, and
rearranges the image-side steps, where the time goes:

- attention between the tokens and the cells: each head's query-key product and its value / output projection
  are taken through the tokens' side (``(q W_q^T)(W_k k)^T = q (W_q^T W_k) k^T``), so a projection of the N cells
  (N x C x D multiply-adds, D = C / 2 = 128) becomes a product with h x T rows (h = 8 heads): 56 for one click.
  Used while h x T <= D (up to 11 clicks with SAM's 256-channel decoder); above that, the package's module runs;
- once per image: the positional encoding of the cells and the cells with the no-mask embedding added, and their
  three projections in the first block that do not depend on the tokens. A mask prompt's dense embedding ends in a
  1 x 1 convolution of 16 channels (the package's ``mask_downscaling``), so it changes those projections by a rank-16
  product: ``W (E + D) = W (E + n) + (W W_d) h + W (b_d - n)`` for the no-mask embedding n and the 16-channel map h,
  16 x D multiply-adds a cell instead of C x D;
- the cells' update by the image-to-token attention as one product that starts from the residual (each head's
  weights over the tokens sum to 1, so the output bias rides on the tokens' values);
- the output upscaling as two matrix products over channel-last cells (a 2 x 2, stride-2 transposed convolution
  maps each cell to its own 2 x 2 block), with its channel layer norm as one ``layer_norm`` call, the last GELU in
  the second product's pass (oneDNN, :mod:`models.segmenters.onednn`), and mask logits for the masks returned only
  (three with ``multimask``, else one).

The logits equal the package's up to float rounding (other summation orders; its softmax drops the constant that a
key bias adds to a row); ``tests/test_sam_decoder.py`` bounds the difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.segmenters.onednn import linear_gelu

__all__ = ["ClickDecoder"]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(T, D) -> (heads, T, D / heads), the package's head split."""
    return x.view(x.shape[0], heads, -1).transpose(0, 1)


def _folds(attn: nn.Module, tokens: int) -> bool:
    """Whether an attention layer between ``tokens`` tokens and the cells is cheaper through the tokens' side."""
    return attn.num_heads * tokens <= attn.internal_dim


def _tokens_to_cells(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``attn(q, k, v)`` of tokens q (T, C) over cells k, v (N, C) -> (T, C), the cells' projections folded into
    the tokens' side. The key bias adds a constant to each row of logits, which the softmax drops."""
    heads, tokens, channels = attn.num_heads, q.shape[0], k.shape[1]
    per_head = attn.internal_dim // heads
    queries = _heads(attn.q_proj(q), heads) / math.sqrt(per_head)  # (h, T, d)
    through_keys = torch.bmm(queries, attn.k_proj.weight.view(heads, per_head, channels))  # (h, T, C)
    weights = torch.softmax(k @ through_keys.reshape(heads * tokens, channels).t(), dim=0)  # (N, hT)
    mixed = (weights.t() @ v).view(heads, tokens, channels)  # (h, T, C): each head's weights sum to 1 ...
    value_weight = attn.v_proj.weight.view(heads, per_head, channels).transpose(1, 2)
    values = torch.baddbmm(attn.v_proj.bias.view(heads, 1, per_head), mixed, value_weight)  # ... so: bias once
    return attn.out_proj(values.transpose(0, 1).reshape(tokens, attn.internal_dim))


def _tokens_to_projected(attn: nn.Module, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``attn(q, k, v)`` of tokens q (T, C) over cells whose projections are given: keys (h, d, N), values
    (h, N, d), the package's own steps after the projections."""
    heads, per_head = attn.num_heads, attn.internal_dim // attn.num_heads
    logits = torch.bmm(_heads(attn.q_proj(q), heads), keys) / math.sqrt(per_head)  # (h, T, N)
    mixed = torch.bmm(torch.softmax(logits, dim=-1), values)  # (h, T, d)
    return attn.out_proj(mixed.transpose(0, 1).reshape(q.shape[0], attn.internal_dim))


def _cells_to_tokens(
    attn: nn.Module,
    k: torch.Tensor,
    v: torch.Tensor,
    residual: torch.Tensor,
    *,
    cells: torch.Tensor | None = None,
    projected: torch.Tensor | None = None,
) -> torch.Tensor:
    """``residual + attn(q, k, v)`` of cells over tokens k, v (T, C) -> (N, C), the output projection folded into
    the tokens' values; the cells' queries are ``cells`` (N, C), their query projection folded into the tokens'
    keys, or their query projection already computed, ``projected`` (h, d, N). Each head's weights over the
    tokens sum to 1, so the output bias is added to every head's values as 1 / h of it, and the residual is the
    product's starting value: one pass over the (N, C) output."""
    heads, tokens = attn.num_heads, k.shape[0]
    per_head = attn.internal_dim // heads
    keys = _heads(attn.k_proj(k), heads)  # (h, T, d)
    if projected is not None:
        logits = torch.bmm(keys, projected) / math.sqrt(per_head)  # (h, T, N)
    else:
        channels, scale = cells.shape[1], 1.0 / math.sqrt(per_head)
        through_queries = torch.bmm(keys, attn.q_proj.weight.view(heads, per_head, channels)) * scale  # (h, T, C)
        bias = (keys @ attn.q_proj.bias.view(heads, per_head, 1)) * scale  # (h, T, 1)
        logits = torch.addmm(bias.view(heads * tokens, 1), through_queries.view(heads * tokens, channels), cells.t())
    weights = torch.softmax(logits.view(heads, tokens, -1), dim=1)  # over the tokens, for each head and cell
    out_weight = attn.out_proj.weight  # (C, D)
    values = _heads(attn.v_proj(v), heads)  # (h, T, d)
    through_out = torch.baddbmm((attn.out_proj.bias / heads).view(1, 1, -1), values,
                                out_weight.view(out_weight.shape[0], heads, per_head).permute(1, 2, 0))
    return torch.addmm(residual, weights.view(heads * tokens, -1).t(), through_out.view(heads * tokens, -1))


@dataclass
class _FirstBlock:
    """The first block's projections of the cells that depend on the image alone (prompts without a mask)."""

    keys: torch.Tensor  # (h, d, N) token-to-image key projection of cells + positional encoding
    values: torch.Tensor  # (h, N, d) token-to-image value projection of the cells
    queries: torch.Tensor  # (h, d, N) image-to-token query projection of cells + positional encoding


@dataclass
class _Image:
    """What the decoder keeps for the current image embedding."""

    pe: torch.Tensor  # (N, C) positional encoding of the cells
    cells: torch.Tensor  # (N, C) embedding + no-mask embedding: the cells of a prompt without a mask
    first: _FirstBlock | None = None
    mask_base: torch.Tensor | None = None  # (N, C) embedding + the mask embedding's last bias: a mask prompt's start


class ClickDecoder:
    """The package's ``MaskDecoder`` output for one prompt set, from its own modules (see the module notes).

    :meth:`set_embedding` once per image, then call with the prompt encoder's sparse embeddings and its dense
    embedding (None for a prompt without a mask: the no-mask embedding is then taken from the per-image state).
    """

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module) -> None:
        upscaling = mask_decoder.output_upscaling
        if len(upscaling) != 5 or not all(_is_stride2(upscaling[i]) for i in (0, 3)):
            raise ValueError("ClickDecoder needs SAM's output upscaling: two 2 x 2, stride-2 transposed convolutions")
        self.prompt_encoder = prompt_encoder
        self.decoder = mask_decoder
        self._embedding: torch.Tensor | None = None
        self._image: _Image | None = None

    def set_embedding(self, embedding: torch.Tensor) -> None:
        """Make ``embedding`` (1, C, g, g) the current image's; the per-image state is made at the next call."""
        self._embedding, self._image = embedding, None

    def _current(self) -> _Image:
        if self._image is None:
            if self._embedding is None:
                raise RuntimeError("set_embedding() must be called first")
            no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
            self._image = _Image(
                pe=_cells(self.prompt_encoder.get_dense_pe()), cells=_cells(self._embedding + no_mask)
            )
        return self._image

    def _first_block(self, image: _Image) -> _FirstBlock:
        if image.first is None:
            layer = self.decoder.transformer.layers[0]
            with_pe = image.cells + image.pe
            t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token

            image.first = _FirstBlock(
                keys=_heads(t2i.k_proj(with_pe), t2i.num_heads).transpose(1, 2).contiguous(),
                values=_heads(t2i.v_proj(image.cells), t2i.num_heads).contiguous(),
                queries=_heads(i2t.q_proj(with_pe), i2t.num_heads).transpose(1, 2).contiguous(),
            )
        return image.first

    @torch.inference_mode()
    def __call__(
        self, sparse: torch.Tensor, masks: torch.Tensor | None, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, P, C) sparse prompt embeddings and the (1, 1, 4g, 4g) mask prompt (or None) -> low-resolution mask
        logits (M, 4g, 4g) and predicted IoUs (M,), M = 3 with ``multimask`` else 1 (the package's choice)."""
        decoder, image = self.decoder, self._current()
        tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight, sparse[0]], dim=0)  # (T, C)
        if masks is None:
            cells, first = image.cells, self._first_block(image)
        else:
            cells, first = self._with_mask(image, masks)
        queries, cells = self._transformer(tokens, cells, image.pe, first)
        used = list(range(1, decoder.num_mask_tokens)) if multimask else [0]
        hyper = torch.stack([decoder.output_hypernetworks_mlps[i](queries[1 + i]) for i in used])  # (M, C / 8)
        iou = decoder.iou_prediction_head(queries[:1])[0, used]
        return self._masks(cells, hyper), iou

    def _with_mask(self, image: _Image, masks: torch.Tensor) -> tuple[torch.Tensor, _FirstBlock | None]:
        """The cells (N, C) of a mask prompt (the embedding plus the mask's dense embedding) and their first-block
        projections, the per-image ones corrected by the rank-16 term (module notes); None when the package's mask
        embedding does not end in a 1 x 1 convolution (the projections are then taken through the tokens)."""
        steps = self.prompt_encoder.mask_downscaling
        last = steps[-1]
        if not (isinstance(last, nn.Conv2d) and last.kernel_size == (1, 1) and last.groups == 1):
            return _cells(self._embedding + steps(masks)), None
        hidden = _cells(steps[:-1](masks))  # (N, 16)
        weight, offset = last.weight.flatten(1), last.bias - self.prompt_encoder.no_mask_embed.weight[0]  # W_d, b_d - n
        if image.mask_base is None:
            image.mask_base = image.cells + offset
        cells = torch.addmm(image.mask_base, hidden, weight.t())  # (N, C): the embedding plus the dense one
        first, layer = self._first_block(image), self.decoder.transformer.layers[0]
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token

        def projected(linear: nn.Linear) -> torch.Tensor:  # W (D - n) for every cell: (N, D) through 16 channels
            return torch.addmm(linear.weight @ offset, hidden, (linear.weight @ weight).t())

        return cells, _FirstBlock(
            keys=first.keys + _heads(projected(t2i.k_proj), t2i.num_heads).transpose(1, 2),
            values=first.values + _heads(projected(t2i.v_proj), t2i.num_heads),
            queries=first.queries + _heads(projected(i2t.q_proj), i2t.num_heads).transpose(1, 2),
        )

    def _transformer(
        self, tokens: torch.Tensor, cells: torch.Tensor, pe: torch.Tensor, first: _FirstBlock | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The package's ``TwoWayTransformer.forward``: tokens (T, C), cells (N, C) -> both updated."""
        transformer = self.decoder.transformer
        queries = tokens
        for index, layer in enumerate(transformer.layers):
            queries, cells = _block(layer, queries, cells, tokens, pe, first if index == 0 else None)
        attn = transformer.final_attn_token_to_image
        queries = transformer.norm_final_attn(queries + _token_attention(attn, queries + tokens, cells + pe, cells))
        return queries, cells

    def _masks(self, cells: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """The output upscaling of cells (N, C) and the mask logits of the hypernetworks' outputs hyper (M, c) ->
        (M, 4g, 4g)."""
        first, norm, act1, second, act2 = self.decoder.output_upscaling
        grid = math.isqrt(cells.shape[0])
        x = _stride2(first, cells)  # (4N, C / 4): each cell's 2 x 2 block, channel last
        x = act1(F.layer_norm(x, (x.shape[1],), norm.weight, norm.bias, norm.eps))
        if _is_exact_gelu(act2):
            x = _stride2(second, x, gelu=True)  # (16N, C / 8)
        else:
            x = act2(_stride2(second, x))
        logits = x @ hyper.t()  # (16N, M), rows ordered (i, j, dy, dx, dy', dx')
        m = hyper.shape[0]
        return logits.view(grid, grid, 2, 2, 2, 2, m).permute(6, 0, 2, 4, 1, 3, 5).reshape(m, 4 * grid, 4 * grid)


def _cells(x: torch.Tensor) -> torch.Tensor:
    """(1, C, g, g) -> (g * g, C) contiguous, the package's ``flatten(2).permute(0, 2, 1)`` order."""
    return x[0].flatten(1).t().contiguous()


def _stride2(conv: nn.ConvTranspose2d, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """A 2 x 2, stride-2 transposed convolution of channel-last pixels x (P, C_in) -> (4P, C_out), each pixel's
    output block in (dy, dx) order; with ``gelu``, the exact GELU of it, in the same pass where oneDNN can."""
    weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.in_channels, 4 * conv.out_channels)
    if gelu:
        return linear_gelu(x, weight.t(), conv.bias.repeat(4)).view(-1, conv.out_channels)
    return torch.addmm(conv.bias.repeat(4), x, weight).view(-1, conv.out_channels)


def _is_exact_gelu(module: nn.Module) -> bool:
    """Whether ``module`` is ``nn.GELU()`` (the erf form)."""
    return isinstance(module, nn.GELU) and module.approximate == "none"


def _token_attention(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Tokens q (T, C) attending to cells k, v (N, C), folded when that is cheaper, else the package's module."""
    if _folds(attn, q.shape[0]):
        return _tokens_to_cells(attn, q, k, v)
    return attn(q=q[None], k=k[None], v=v[None])[0]


def _block(
    layer: nn.Module,
    queries: torch.Tensor,
    cells: torch.Tensor,
    query_pe: torch.Tensor,
    pe: torch.Tensor,
    first: _FirstBlock | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The package's ``TwoWayAttentionBlock.forward`` on tokens (T, C) and cells (N, C); ``first``: the cells'
    projections when they are the per-image ones."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries[None], k=queries[None], v=queries[None])[0]
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q=q[None], k=q[None], v=queries[None])[0]
    queries = layer.norm1(queries)
    t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    with_pe = cells + pe if first is None else None
    q = queries + query_pe
    if first is not None:
        attn_out = _tokens_to_projected(t2i, q, first.keys, first.values)
    else:
        attn_out = _token_attention(t2i, q, with_pe, cells)
    queries = layer.norm2(queries + attn_out)
    queries = layer.norm3(queries + layer.mlp(queries))
    q = queries + query_pe
    if first is not None:
        cells = _cells_to_tokens(i2t, q, queries, cells, projected=first.queries)
    elif _folds(i2t, q.shape[0]):
        cells = _cells_to_tokens(i2t, q, queries, cells, cells=with_pe)
    else:
        cells = cells + i2t(q=with_pe[None], k=q[None], v=queries[None])[0]
    return queries, layer.norm4(cells)


def _is_stride2(module: nn.Module) -> bool:
    """Whether ``module`` is a plain 2 x 2, stride-2 transposed convolution (each pixel to its own 2 x 2 block)."""
    return (
        isinstance(module, nn.ConvTranspose2d) and module.kernel_size == module.stride == (2, 2)
        and module.padding == module.output_padding == (0, 0) and module.dilation == (1, 1) and module.groups == 1
    )
