"""Respacing: which of a schedule's T steps a sampler or a respaced model keeps (guided-diffusion's
``space_timesteps``, diffusers' ``set_timesteps`` spacings) and the schedule cut to them.
Re-exported by :mod:`biaskit.schedules`."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["space_timesteps", "diffusers_spacing", "respace"]


def _section_counts(section_counts) -> list[int]:
    if isinstance(section_counts, int):
        return [section_counts]
    if isinstance(section_counts, str):
        try:
            return [int(x) for x in section_counts.split(",")]
        except ValueError:
            raise ValueError(f"timestep respacing must be 'ddimN', N or comma-separated counts "
                             f"like '10,15,20', got {section_counts!r}") from None
    return [int(x) for x in section_counts]


def space_timesteps(T: int, section_counts) -> list[int]:
    """guided-diffusion's ``space_timesteps``: which of T steps to keep (sorted).

    ``section_counts`` is ``"ddimN"`` (the smallest constant stride giving N steps), an int, or a
    list / comma string of counts: T is cut into equal sections (the first T mod K one longer) and
    a section of size L gets c steps at offsets round(k * (L - 1) / (c - 1)), k = 0..c-1, where the
    offset is accumulated by repeated float addition of the stride, as guided-diffusion does
    (that rounding differs from round(k * stride) for some counts).
    """
    if isinstance(section_counts, str) and section_counts.startswith("ddim"):
        n = int(section_counts[4:])
        for stride in range(1, T):
            if len(range(0, T, stride)) == n:
                return list(range(0, T, stride))
        raise ValueError(f"cannot make {n} steps from {T} with a constant stride")
    counts = _section_counts(section_counts)
    size, extra = divmod(T, len(counts))
    kept, start = [], 0
    for i, count in enumerate(counts):
        section = size + (1 if i < extra else 0)
        if count > section or count < 0:
            raise ValueError(f"cannot take {count} steps from a section of {section} steps")
        stride = (section - 1) / (count - 1) if count > 1 else 1
        offset = 0.0
        for _ in range(count):
            kept.append(start + round(offset))
            offset += stride
        start += section
    return sorted(set(kept))


def diffusers_spacing(T: int, n: int, spacing: str = "leading", steps_offset: int = 0) -> list[int]:
    """The n timesteps diffusers' ``set_timesteps`` picks from T (increasing order)."""
    if not 1 <= n <= T:
        raise ValueError(f"number of steps must be in 1..{T}, got {n}")
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, n).round()
    elif spacing == "leading":
        ts = (np.arange(0, n) * (T // n)).round() + steps_offset
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / n)) - 1
    else:
        raise ValueError(f"unknown spacing {spacing!r}; valid: linspace, leading, trailing")
    return sorted(int(t) for t in ts)


def respace(schedule, steps):
    """Keep some steps of a :class:`~biaskit.schedules.Schedule`: ``steps`` is a list of indices, or an int / str that
    :func:`space_timesteps` understands (``50`` = 50 evenly spaced steps, ``"ddim25"``, ``"10,5"``).

    The kept abar are unchanged, so the respaced betas are 1 - abar_t / abar_prev (ADM's rule).
    """
    if isinstance(steps, (list, tuple, np.ndarray, torch.Tensor)):
        idx = sorted({int(s) for s in steps})
    else:
        idx = space_timesteps(schedule.T, steps)
    if not idx:
        raise ValueError("respace needs at least one step")
    if idx[0] < 0 or idx[-1] >= schedule.T:
        raise ValueError(f"respaced steps must lie in 0..{schedule.T - 1}")
    idx_t = torch.tensor(idx)
    return type(schedule)(schedule.abar[idx_t], name=f"{schedule.name}[{len(idx)}]",
                    timesteps=schedule.timesteps[idx_t], num_train_timesteps=schedule.num_train_timesteps,
                          exact_logsnr=None if getattr(schedule, "exact_logsnr", None) is None
                          else schedule.exact_logsnr[idx_t])
