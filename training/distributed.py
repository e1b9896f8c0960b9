"""Multi-process helpers for ``torchrun``: process group (NCCL on GPU, gloo on CPU), DDP wrapping, reductions.

A run started with ``torchrun --nproc_per_node G [--nnodes M ...] -m cli train ...`` gets RANK / WORLD_SIZE /
LOCAL_RANK from the environment; a plain ``dhr train`` is a world of one and none of this does anything.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from core.errors import UserError


class DeviceUnavailable(UserError, RuntimeError):
    """The requested torch device does not exist on this machine."""

__all__ = ["DistContext", "init_distributed", "wrap_model", "unwrap", "barrier", "all_reduce_sum",
           "broadcast_buffers", "broadcast_object", "cleanup"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | torch.device = "cpu", backend: str | None = None) -> DistContext:
    """Join the process group described by the environment (torchrun), or return a world of one.

    ``device`` "cuda" selects GPU ``LOCAL_RANK`` and NCCL; "cpu" selects gloo. ``backend`` overrides the choice.
    """
    device = torch.device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable("--device cuda was requested but no CUDA device is available")
        index = local_rank if device.index is None else device.index
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    if world_size <= 1:
        return DistContext(0, 1, 0, device)
    if not dist.is_initialized():
        chosen = backend or ("nccl" if device.type == "cuda" else "gloo")
        kwargs = {"device_id": device} if chosen == "nccl" else {}
        dist.init_process_group(backend=chosen, rank=rank, world_size=world_size, **kwargs)
        logger.info("rank %d/%d joined the %s process group on %s", rank, world_size, chosen, device)
    return DistContext(rank, world_size, local_rank, device)


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """The model on ``ctx.device``, wrapped in DistributedDataParallel (SyncBatchNorm on GPU) when distributed."""
    model = model.to(ctx.device)
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[ctx.device.index])
    return DistributedDataParallel(model)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of ``values`` over ranks (a copy; unchanged in a world of one)."""
    out = values.detach().clone()
    if ctx.distributed:
        backend_device = ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
        out = out.to(backend_device)
        dist.all_reduce(out)
    return out.to(values.device)


def broadcast_buffers(module: nn.Module, ctx: DistContext, src: int = 0) -> None:
    """Copy the buffers (BatchNorm running statistics) of rank ``src`` to every rank, in place.

    DDP syncs buffers at the start of each forward; after the last step each rank holds its own statistics.
    """
    if ctx.distributed:
        for buffer in unwrap(module).buffers():
            dist.broadcast(buffer, src)


def broadcast_object(obj, ctx: DistContext, src: int = 0):
    """``obj`` of rank ``src`` on every rank (picklable objects)."""
    if not ctx.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
