"""torch.distributed under torchrun, in one place: starting the process group and reading
this process's rank.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them a process is rank 0 of 1.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["launched", "init_process_group", "rank_world", "training_ranks", "training_device"]


def launched() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    rank = int(os.environ["RANK"])
    return rank, int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", rank))


def init_process_group() -> bool:
    """Start torch.distributed from torchrun's environment (NCCL on CUDA, each rank on its
    LOCAL_RANK GPU; gloo on CPU) unless it runs already; True when this call started it."""
    if dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(launched()[2])
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def rank_world() -> tuple[int, int]:
    """(rank, world_size) of the running process group; (0, 1) when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def training_ranks() -> tuple[int, int, int, bool]:
    """(rank, world_size, local_rank, whether we created the process group) under torchrun."""
    rank, world, local = launched()
    return rank, world, local, world > 1 and init_process_group()


def training_device(name: str, local_rank: int) -> torch.device:
    """The torch device of a training process: ``name`` (cpu, cuda, cuda:1, auto), one GPU per
    local rank under torchrun; ValueError naming the device when it is not there."""
    if name in (None, "auto"):
        from .denoiser import resolve_device
        name = resolve_device(name).type
    if name == "cuda" and torch.cuda.device_count() > 1:
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: {name!r} is not a torch device (cpu, cuda, cuda:1, auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda requested but no CUDA device is available")
    return device
