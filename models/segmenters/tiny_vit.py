"""TinyViT, the image encoder of Light HQ-SAM and Light SAM, computed with fewer passes over memory.

:func:`fuse_tiny_vit` turns the ``segment-anything-hq`` package's ``TinyViT`` (in eval mode) into a module that
computes the same function from the same weights, rearranged for inference:

- every ``Conv2d_BN`` has its batch norm folded into the convolution (the package's own ``Conv2d_BN.fuse``);
- feature maps stay channel-last (NHWC memory) from the stem to the neck. The package's token layout (B, H W, C)
  *is* NHWC memory, so moving between tokens and maps is a view, where the package copies both ways;
- on a CPU with oneDNN, a convolution and the GELU after it run as one oneDNN primitive
  (``torch.ops.mkldnn._convolution_pointwise``), as do an MLP's first linear layer and its GELU, and a convolution
  and the residual added to it: the second step is applied while the output is still in cache, not in a separate
  pass over it. Elsewhere (CUDA, or a build without oneDNN) the same steps run as plain ``torch.nn.functional``
  calls.

Most of the encoder's time at 1024 x 1024 is the first stage: 256-channel maps of 256 x 256 cells, where each
batch norm and GELU of the package is a pass over 64 MiB. The result equals the package's up to float rounding
(other summation orders); ``tests/test_tiny_vit.py`` compares them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.segmenters.onednn import fusable, linear_gelu

__all__ = ["FusedTinyViT", "fuse_tiny_vit", "fused_if_tiny_vit"]


class _Conv(nn.Module):
    """A package ``Conv2d_BN`` with its batch norm folded in, optionally followed by GELU; channel-last maps."""

    def __init__(self, conv_bn: nn.Module, gelu: bool) -> None:
        super().__init__()
        folded = conv_bn.fuse()
        self.weight = nn.Parameter(folded.weight.detach().contiguous(memory_format=torch.channels_last),
                                   requires_grad=False)
        self.bias = nn.Parameter(folded.bias.detach().clone(), requires_grad=False)
        self.stride, self.padding = list(folded.stride), list(folded.padding)
        self.dilation, self.groups = list(folded.dilation), int(folded.groups)
        self.gelu = gelu

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C_in, H, W) channel-last -> (B, C_out, H', W') channel-last: GELU(conv(x) [+ residual])."""
        if fusable(x):
            geometry = (self.padding, self.stride, self.dilation, self.groups)
            if residual is None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x, self.weight, self.bias, *geometry, "gelu" if self.gelu else "none", [],
                    "none" if self.gelu else "",
                )
            y = torch.ops.mkldnn._convolution_pointwise.binary(  # oneDNN fuses no GELU after a residual
                x, residual.contiguous(memory_format=torch.channels_last), self.weight, self.bias, *geometry,
                "add", None, None, [], None,
            )
            return F.gelu(y) if self.gelu else y
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if residual is not None:
            y = y + residual
        return F.gelu(y) if self.gelu else y


def _map(tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Tokens (B, H W, C) -> the same memory as a channel-last map (B, C, H, W) (a view)."""
    return tokens.view(tokens.shape[0], *size, tokens.shape[-1]).permute(0, 3, 1, 2)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """A channel-last map (B, C, H, W) -> tokens (B, H W, C), a view when x is channel-last contiguous."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


class _MBConv(nn.Module):
    """The package's ``MBConv`` (1 x 1 expand, 3 x 3 depthwise, 1 x 1 project, residual), three fused steps."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.expand, self.depthwise = _Conv(block.conv1, gelu=True), _Conv(block.conv2, gelu=True)
        self.project = _Conv(block.conv3, gelu=True)  # GELU(conv3(x) + x): the package's act3 after the residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) channel-last -> the same shape."""
        return self.project(self.depthwise(self.expand(x)), residual=x)


class _PatchMerging(nn.Module):
    """The package's ``PatchMerging``: maps or tokens in, tokens (B, H' W', C_out) out."""

    def __init__(self, merging: nn.Module) -> None:
        super().__init__()
        self.size = tuple(merging.input_resolution)
        self.expand, self.depthwise = _Conv(merging.conv1, gelu=True), _Conv(merging.conv2, gelu=True)
        self.project = _Conv(merging.conv3, gelu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = _map(x, self.size)
        return _tokens(self.project(self.depthwise(self.expand(x))))


class _Block(nn.Module):
    """The package's ``TinyViTBlock``: window attention with the package's ``Attention`` module, the depthwise
    local convolution (folded, on a view of the tokens), the MLP with its first layer and GELU fused."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.size, self.window = tuple(block.input_resolution), int(block.window_size)
        self.attn, self.mlp = block.attn, block.mlp
        self.local_conv = _Conv(block.local_conv, gelu=False)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, L, C) -> the attention's output over non-overlapping windows (zero-padded), (B, L, C)."""
        (h, w), s = self.size, self.window
        if h == s and w == s:
            return self.attn(x)
        b, length, c = x.shape
        pad_b, pad_r = (s - h % s) % s, (s - w % s) % s
        x = x.view(b, h, w, c)
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        windows = x.view(b, ph // s, s, pw // s, s, c).transpose(2, 3).reshape(-1, s * s, c)
        x = self.attn(windows).view(b, ph // s, pw // s, s, s, c).transpose(2, 3).reshape(b, ph, pw, c)
        return x[:, :h, :w].reshape(b, length, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, H W, C) -> the same shape."""
        x = x + self._attention(x)
        x = _tokens(self.local_conv(_map(x, self.size)))
        mlp = self.mlp
        return x + mlp.fc2(linear_gelu(mlp.norm(x), mlp.fc1.weight, mlp.fc1.bias))


def _layer_norm_2d(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The package's ``LayerNorm2d`` (over channels) of a channel-last map (B, C, H, W)."""
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), norm.weight, norm.bias, norm.eps).permute(0, 3, 1, 2)


class FusedTinyViT(nn.Module):
    """The package's ``TinyViT`` image encoder as :func:`fuse_tiny_vit` builds it; same call and outputs:
    (B, 3, S, S) normalised padded images -> ((B, 256, S/16, S/16) embedding, [(B, S/16, S/16, D) features after
    the second stage]), the embedding contiguous (NCHW) as the package returns it."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        if encoder.training:
            raise ValueError("fuse_tiny_vit needs the encoder in eval mode (its batch norms use running statistics)")
        self.img_size = int(encoder.img_size)
        first, _, second = encoder.patch_embed.seq
        self.stem = nn.ModuleList([_Conv(first, gelu=True), _Conv(second, gelu=False)])
        convs = encoder.layers[0]
        self.mbconv = nn.ModuleList(_MBConv(block) for block in convs.blocks)
        self.stages = nn.ModuleList([_PatchMerging(convs.downsample)])
        for layer in encoder.layers[1:]:
            parts = [_Block(block) for block in layer.blocks]
            if layer.downsample is not None:
                parts.append(_PatchMerging(layer.downsample))
            self.stages.append(nn.Sequential(*parts))
        self.interm_grid = tuple(encoder.layers[2].input_resolution)  # what the package's layers[1] returns
        self.grid = tuple(encoder.layers[-1].input_resolution)
        self.neck = encoder.neck

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = x.contiguous(memory_format=torch.channels_last)
        for conv in self.stem:
            x = conv(x)
        for block in self.mbconv:
            x = block(x)
        interm = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index == 1:  # after the package's layers[1]
                interm.append(x.view(x.shape[0], *self.interm_grid, -1))
        conv1, norm1, conv2, norm2 = self.neck
        x = _map(x, self.grid)
        x = _layer_norm_2d(norm2, conv2(_layer_norm_2d(norm1, conv1(x))))
        return x.contiguous(), interm


def fuse_tiny_vit(encoder: nn.Module) -> FusedTinyViT:
    """The package's ``TinyViT`` ``encoder`` (eval mode; its weights are shared, its batch norms folded into copies)
    as a :class:`FusedTinyViT` on the same device, in eval mode."""
    return FusedTinyViT(encoder).to(next(encoder.parameters()).device).eval()


def fused_if_tiny_vit(encoder: nn.Module) -> nn.Module:
    """``fuse_tiny_vit(encoder)`` for the package's ``TinyViT`` in eval mode; any other encoder as it is."""
    from segment_anything_hq.modeling import TinyViT

    return fuse_tiny_vit(encoder) if isinstance(encoder, TinyViT) and not encoder.training else encoder
