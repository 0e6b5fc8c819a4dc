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


def _live_bytes_mode():
    """A dispatch mode that tracks the bytes of the tensor storages created under it and still
    alive, and their peak (freed storages are subtracted when their tensor is collected)."""
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live, self.now, self.peak = {}, 0, 0

        def _free(self, key):
            self.now -= self.live.pop(key, 0)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.device.type != "meta":
                    st = t.untyped_storage()
                    key, size = st.data_ptr(), st.nbytes()
                    if size and key not in self.live:
                        self.live[key] = size
                        self.now += size
                        self.peak = max(self.peak, self.now)
                        weakref.finalize(t, self._free, key)
            return out
    return LiveBytes()


@torch.no_grad()
def model_bytes_per_sample(model, shape, device, t: int | None = None) -> float:
    """Bytes one sample adds to a model call's peak memory (its activations and temporaries),
    measured as the slope of the peak between calls on 8 and 16 samples of per-sample ``shape``
    at step ``t`` (default: the middle step of the model's schedule), after a first call that
    builds whatever the model caches."""
    t = model.schedule.T // 2 if t is None else t
    peaks = []
    for b in (2, 8, 16):
        x = torch.zeros((b, *shape), device=device)
        mode = _live_bytes_mode()
        with mode:
            model(x, torch.full((b,), t, device=device, dtype=torch.long))
        peaks.append(mode.peak)
    return max(0.0, (peaks[2] - peaks[1]) / 8)
