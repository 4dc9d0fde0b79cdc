"""Data-parallel plumbing on ``torch.distributed`` (launched with ``torchrun``).

Why not ``DistributedDataParallel``: a GAN step alternates six modules (two generators, two
discriminators, two PatchNCE heads), calls the generators' ``nce_features`` encoders outside
``forward`` and runs the discriminators frozen inside the generator step. DDP's forward/backward
hooks see none of that cleanly. The arithmetic of DDP is simple to do by hand instead: start
from identical weights (broadcast from rank 0), average the gradients of every replica after
each backward pass (one flat all-reduce per module group), and let every rank take the same
optimiser step. Replicas then stay bit-identical, which the distributed test checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

__all__ = [
    "DistInfo",
    "init_distributed",
    "shutdown_distributed",
    "average_gradients",
    "broadcast_module",
    "broadcast_flag",
    "barrier",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes files."""
        return self.rank == 0


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group described by torchrun's environment, if any.

    Reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (and torchrun's ``MASTER_ADDR``/``PORT``).
    Uses NCCL when ``use_cuda`` (binding each rank to GPU ``LOCAL_RANK``), gloo otherwise.

    Returns
    -------
    DistInfo
        ``DistInfo()`` (single process) when ``WORLD_SIZE`` is unset or 1.
    """
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, backend=backend)


def shutdown_distributed(info: DistInfo) -> None:
    """Leave the process group (no-op for a single process)."""
    import torch.distributed as dist

    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def _flat_reduce(tensors: list, world_size: int, op: str) -> None:
    import torch
    import torch.distributed as dist

    if not tensors:
        return
    # One all-reduce per dtype group: a flat buffer keeps gloo's per-call overhead small.
    by_dtype: dict = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        if op == "mean":
            flat /= world_size
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n


def average_gradients(parameters: Iterable, info: DistInfo) -> None:
    """Replace each parameter's gradient by its mean over all ranks (in place).

    Parameters without a gradient are skipped; every rank runs the same graph, so the set of
    parameters with gradients is the same everywhere.
    """
    if not info.enabled:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    _flat_reduce(grads, info.world_size, "mean")


def broadcast_module(module, info: DistInfo, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every replica (in place)."""
    import torch
    import torch.distributed as dist

    if not info.enabled:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=src)


def broadcast_flag(flag: bool, info: DistInfo, device: str = "cpu") -> bool:
    """Rank 0's value of ``flag`` on every rank (e.g. the time-limit decision)."""
    import torch
    import torch.distributed as dist

    if not info.enabled:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for a single process)."""
    import torch.distributed as dist

    if info.enabled:
        dist.barrier()
