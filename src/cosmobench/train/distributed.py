"""Data-parallel training under ``torchrun``: process group, device, reductions.

``torchrun --nproc-per-node N -m cosmobench train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment. Each joins one process group —
NCCL on GPUs, gloo on CPUs — and trains a ``DistributedDataParallel`` copy of the model on
its shard of every epoch (:func:`cosmobench.train.data.epoch_order`); gradients are averaged
across ranks in the backward pass, so the ranks stay identical. Rank 0 alone writes
checkpoints, metrics and the model. Without ``torchrun`` everything here is a no-op.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist
from torch import Tensor, nn

from cosmobench.devices import resolve_device

__all__ = ["DistInfo", "init_distributed", "shutdown", "all_reduce_sum", "broadcast", "barrier",
           "wrap_ddp"]


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size and the device it trains on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this call created the process group (and ends it)

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every file."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group of several ranks is in use."""
        return self.world > 1


def init_distributed(device: str) -> DistInfo:
    """Join the ``torchrun`` process group if there is one, and choose the device.

    Arguments:
        device: the ``--device`` option.

    Returns:
        This process's :class:`DistInfo`; a single process gets rank 0 of 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = world > 1 and not dist.is_initialized()
    if owns:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30),
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=dev, owns_group=owns)


def shutdown(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over ranks, in place (a no-op on one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast(t: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``t`` with rank ``src``'s value, in place (a no-op on one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(t, src=src)
    return t


def barrier() -> None:
    """Wait for every rank (a no-op on one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def wrap_ddp(module: nn.Module, info: DistInfo) -> nn.Module:
    """``DistributedDataParallel(module)`` under torchrun, ``module`` itself otherwise."""
    if not info.distributed:
        return module
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)
