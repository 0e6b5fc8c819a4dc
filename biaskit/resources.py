"""Memory estimates checked before large allocations: a request that cannot fit is refused in one
line with the estimate and what is available, instead of allocating until the allocator (or the
OOM killer) stops the process."""

from __future__ import annotations

import torch

__all__ = ["available_bytes", "check_fits", "gib"]


def gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def available_bytes(device) -> int | None:
    """Free memory on ``device``: CUDA's free memory, else the host's MemAvailable (Linux), else
    None (unknown: nothing is refused)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(what: str, need: float, device, how: str, hint: str) -> None:
    """ValueError when ``need`` bytes (``how``: the formula, for the message) exceed the memory
    available on ``device``."""
    have = available_bytes(device)
    if have is not None and need > have:
        raise ValueError(f"{what} needs about {gib(need)} ({how}), more than the {gib(have)} "
                         f"available on {torch.device(device)}; {hint}")
