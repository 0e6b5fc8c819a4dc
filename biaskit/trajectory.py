"""Colour and trajectory statistics of samples, as tidy DataFrames.

"Channel" is dimension 1 of a sample batch: colour channels of images (B, C, H, W), coordinates
of vectors (B, D). Means and standard deviations are over the remaining (spatial) dimensions.
A :class:`biaskit.sampling.Trajectory` holds x_t and x0_hat (S, B, ...) per model call and ``t``
(S,), the model's own timesteps: the ``t`` column of the tables below.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

__all__ = ["channel_stats", "x0_drift", "clip_fraction", "x0_error", "trajectory_stats"]


def _per_channel(x: torch.Tensor, lead: int = 1) -> torch.Tensor:
    """(*lead dims, C, *spatial) -> (*lead dims, C, N), N the spatial size (1 for vectors)."""
    return x.unsqueeze(-1) if x.ndim == lead + 1 else x.flatten(start_dim=lead + 1)


def channel_stats(sets: dict) -> pd.DataFrame:
    """Per-sample channel means and standard deviations for each named set (e.g. ``{"data": x,
    "ddim 10": y}``); one row per (set, sample, channel)."""
    frames = []
    for name, x in sets.items():
        v = _per_channel(torch.as_tensor(x).detach().double().cpu())
        B, C, _ = v.shape
        frames.append(pd.DataFrame({
            "set": name, "sample": np.repeat(np.arange(B), C), "channel": np.tile(np.arange(C), B),
            "mean": v.mean(-1).flatten().numpy(),
            "std": v.std(-1, unbiased=False).flatten().numpy()}))
    return pd.concat(frames, ignore_index=True)


def _steps(traj) -> pd.DataFrame:
    return pd.DataFrame({"step": np.arange(len(traj)), "t": traj.t.cpu().numpy()})


def x0_drift(traj, final: torch.Tensor | None = None) -> pd.DataFrame:
    """Batch-average channel mean of x0_hat at each step, and its drift from the final sample's
    (default: the last x0_hat). One row per (step, channel)."""
    x0_hat = traj.x0_hat.detach().double().cpu()
    final = x0_hat[-1] if final is None else torch.as_tensor(final).detach().double().cpu()
    m = _per_channel(x0_hat, lead=2).mean((1, 3))  # (S, C)
    m_final = _per_channel(final).mean((0, 2))     # (C,)
    S, C = m.shape
    steps = _steps(traj)
    return pd.DataFrame({
        "step": np.repeat(steps.step.to_numpy(), C), "t": np.repeat(steps.t.to_numpy(), C),
        "channel": np.tile(np.arange(C), S), "mean": m.flatten().numpy(),
        "drift": (m - m_final).flatten().numpy()})


def clip_fraction(traj, data_range=(-1.0, 1.0)) -> pd.DataFrame:
    """Fraction of x0_hat elements outside data_range (beyond the probe's CLIP_TOL) at each step."""
    from .probe import outside_range
    frac = outside_range(traj.x0_hat.detach(), data_range).flatten(1).double().mean(1).cpu().numpy()
    return _steps(traj).assign(clip_fraction=frac)


def x0_error(traj, final: torch.Tensor | None = None) -> pd.DataFrame:
    """Per-element MSE between x0_hat at each step and the final sample (default: the last x0_hat)."""
    x = traj.x0_hat.detach().double()
    final = x[-1] if final is None else torch.as_tensor(final, device=x.device).double()
    mse = ((x - final) ** 2).flatten(1).mean(1).cpu().numpy()
    return _steps(traj).assign(mse_to_final=mse)


def trajectory_stats(traj, final: torch.Tensor | None = None, data_range=(-1.0, 1.0)) -> pd.DataFrame:
    """Per-step table: t, clip fraction, MSE of x0_hat to the final sample, and the mean absolute
    channel drift of x0_hat's channel means."""
    drift = x0_drift(traj, final).assign(abs_drift=lambda d: d.drift.abs()).groupby("step")
    out = clip_fraction(traj, data_range).merge(x0_error(traj, final)[["step", "mse_to_final"]],
                                                on="step")
    return out.merge(drift.abs_drift.mean().rename("mean_abs_drift").reset_index(), on="step")
