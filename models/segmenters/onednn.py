"""oneDNN's fused CPU primitives where they apply: a product and the GELU after it in one pass over the output.

PyTorch's CPU builds carry oneDNN and expose its fused operators (``torch.ops.mkldnn``), which apply an activation
while each block of the output is still in cache instead of in a separate pass over memory. The helpers here use
them for float32 CPU tensors in inference (no gradient recorded) and fall back to the plain
``torch.nn.functional`` calls elsewhere (CUDA, other dtypes, training, a build without oneDNN); both compute the
same function up to float rounding.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ["fusable", "linear_gelu"]


@functools.cache
def _built_in() -> bool:
    """Whether this PyTorch build has oneDNN and its fused convolution and linear operators."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._convolution_pointwise.default  # noqa: B018 - looked up to see that it exists
        torch.ops.mkldnn._linear_pointwise.default  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


def fusable(x: torch.Tensor) -> bool:
    """Whether ``x`` can go through oneDNN's fused primitives: a float32 CPU tensor, oneDNN's operators built in,
    and no gradient being recorded (the fused operators have no backward)."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled() and _built_in()


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """GELU(x W^T + b) (the exact, erf GELU) for x (..., C_in), weight (C_out, C_in), bias (C_out,) ->
    (..., C_out); one oneDNN primitive where :func:`fusable`."""
    if fusable(x):
        return torch.ops.mkldnn._linear_pointwise(x, weight.contiguous(), bias, "gelu", [], "none")
    return F.gelu(F.linear(x, weight, bias))
