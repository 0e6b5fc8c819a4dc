"""The statistics of the settings check (:mod:`biaskit.settings_check`): the paired z and
relative difference of two candidates' per-pair errors, the errors of the estimate that ignores
x_t and of the per-element linear denoiser, a process model's per-t units, and the rule that
calls a candidate clearly better."""

from __future__ import annotations

import math

import torch

from .settings_candidates import is_process

__all__ = ["paired", "mean_predictor_errors", "linear_eps_mse", "pair_weights", "beats"]


def paired(ref: torch.Tensor, s: torch.Tensor) -> tuple[float, float]:
    """(z, rel) of d = ref - s: mean(d) / (std(d) / sqrt(n)) and mean(d) / mean(ref)."""
    diff = ref - s
    mean = float(diff.mean())
    se = float(diff.std()) / math.sqrt(diff.numel()) if diff.numel() > 1 else float("nan")
    return mean / se if se > 0 else (0.0 if mean == 0 else math.inf), mean / float(ref.mean())


def mean_predictor_errors(d, x0, t) -> torch.Tensor:
    """(n,) eps-MSE of the estimate that ignores x_t, x0_hat = mean(x0): eps_hat = (x_t - alpha
    mean) / sigma errs by (alpha / sigma)^2 mean((x0 - mean)^2) (the same eps for every pair)."""
    alpha, sigma = d.schedule.coefficients(t)
    spread = (x0 - x0.mean(0, keepdim=True)).square().flatten(1).mean(1)
    return ((alpha / sigma) ** 2).float().to(spread.device) * spread


def linear_eps_mse(d, x0: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """(len(steps),) eps-MSE of the per-element linear (Gaussian) denoiser of the data ``x0``:
    mean_j a^2 v_j / (a^2 v_j + s^2) with v_j each element's variance, an upper bound on what a
    network trained on these data can do at each step."""
    v = x0.flatten(1).var(0).double()
    alpha, sigma = d.schedule.coefficients(steps.cpu(), dtype=torch.float64)
    a2v = alpha[:, None] ** 2 * v[None]
    return (a2v / (a2v + sigma[:, None] ** 2)).mean(1)


def pair_weights(d, linear: torch.Tensor, per_step: int):
    """(n,) weight of each (sample, t) pair in the score: 1, or for a process model 1 / the
    per-element linear denoiser's eps-MSE at its t. A process's view spans eps-MSE from near 1
    to near 0 over the checked steps (a flow: 0.58 to 0.004 on a 2-D Gaussian), and a reversed
    flow time errs only at high noise (there 5 times the right reading's eps-MSE, overall 1%
    more), so each t counts in units of what the data allow there."""
    if not is_process(d):
        return 1.0
    return (1.0 / linear).float().repeat_interleave(per_step).to(d.device)


def beats(row, level: tuple, strict: bool = True) -> bool:
    """Whether a candidate passes ``level`` = (z, rel) on its score or, where they differ (a
    process model's per-t units), on the plain eps-MSE: either weighting is a valid paired
    test, and each sees what the other misses (a reversed flow time errs at high noise only,
    a clamped time input at low noise only)."""
    def ok(z, rel):
        return z > level[0] and (rel > level[1] if strict else rel >= level[1])
    return ok(row["z"], row["rel"]) or ok(row["z_raw"], row["rel_raw"])
