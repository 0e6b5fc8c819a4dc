"""Probability-flow ODE samplers in the coordinates of other processes, over the VP model call.

Both walk the kept steps k = n-1 .. 0 of a :class:`~biaskit.sampling.chain.Grid` (for a process
model sampled through :func:`biaskit.sampling.sample`, the process's own grid: see
``ProcessDenoiser.on_process_grid``) and end at zero noise. A kept step with VP coefficients
(alpha, sigma) is, in the other coordinates,

  heun        VE / EDM: z = x_vp / alpha, sigma_e = sigma / alpha, D(z; sigma_e) = x0_hat of the
              model at x_vp = alpha z. Karras et al. 2022, Algorithm 2 with S_churn = 0:
              d = (z - D(z; s)) / s, z' = z + (s' - s) d, then the trapezoid
              z' = z + (s' - s) (d + d') / 2 with d' = (z' - D(z'; s')) / s'; the last step, to
              s' = 0, is Euler (z' = D). 2n - 1 model calls.
  flow_euler  the linear interpolant: z = x_vp / (alpha + sigma) = (1 - s) x0 + s eps with
              s = sigma / (alpha + sigma); u_hat = eps_hat - x0_hat, z' = z + (s' - s) u_hat,
              s' = 0 after the last kept step (z' = x0_hat). n model calls.

Each model call reports a :class:`~biaskit.sampling.chain.StepInfo` whose x_t (the model's input)
and x_next are in VP scale, like every other sampler's.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .chain import Grid, ModelCall
from .table import SamplerSpec, register


def _coefficients(grid: Grid) -> tuple[list[float], list[float]]:
    kept = grid.kept
    return kept.alpha.tolist(), kept.sigma.tolist()


def _report(callback, model: ModelCall, i: int, k: int, x_t, pred, x_next) -> int:
    if callback is not None:
        callback(model.info(i, k, x_t, pred, x_next))
    return i + 1


def edm_sigmas(grid: Grid) -> list[float]:
    """sigma_e = sigma / alpha = exp(-logsnr / 2) of each kept step (k = 0 the smallest)."""
    a, s = _coefficients(grid)
    if a[-1] == 0:
        raise ValueError("heun needs a finite sigma at the noisiest step (alpha > 0 there); this "
                         "grid starts at zero SNR: use ddim, flow_euler or a grid without that step")
    return [sk / ak for ak, sk in zip(a, s)]


def heun(model: ModelCall, x: torch.Tensor, grid: Grid, *, generator=None, callback=None,
         progress: bool = False) -> torch.Tensor:
    """EDM's deterministic Heun sampler from x (B, ...) in VP scale at the noisiest kept step;
    returns x0 (B, ...).

    It starts at z = x / alpha: unit noise x = eps (every biaskit sampler's x_T) is
    z = sqrt(1 + sigma_max^2) eps, while EDM's ``edm_sampler`` starts at z = sigma_max eps (the
    two are 9.8e-3 apart after 2 steps at sigma_max = 80). To reproduce EDM from its latents eps,
    pass x = sigma_vp eps with sigma_vp = sigma_max / sqrt(1 + sigma_max^2)."""
    a = _coefficients(grid)[0]
    sig = edm_sigmas(grid)
    z, i = x / a[-1], 0
    for k in tqdm(range(grid.n - 1, -1, -1), disable=not progress, leave=False, desc="heun"):
        x_in = z * a[k]
        pred = model(x_in, k)
        if k == 0:  # Euler to sigma = 0: z + (0 - s) (z - D) / s = D
            z = pred.x0_hat
            i = _report(callback, model, i, k, x_in, pred, z)
            break
        d = (z - pred.x0_hat) / sig[k]
        h = sig[k - 1] - sig[k]
        z_pred = z + h * d
        i = _report(callback, model, i, k, x_in, pred, z_pred * a[k - 1])
        x_in2 = z_pred * a[k - 1]
        pred2 = model(x_in2, k - 1)
        d2 = (z_pred - pred2.x0_hat) / sig[k - 1]
        z = z + h * (d + d2) / 2
        i = _report(callback, model, i, k - 1, x_in2, pred2, z * a[k - 1])
    return z


def flow_times(grid: Grid) -> list[float]:
    """s = sigma / (alpha + sigma) of each kept step: the time of the linear interpolant."""
    a, s = _coefficients(grid)
    return [sk / (ak + sk) for ak, sk in zip(a, s)]


def flow_euler(model: ModelCall, x: torch.Tensor, grid: Grid, *, generator=None, callback=None,
               progress: bool = False) -> torch.Tensor:
    """Euler on the flow ODE d z / d s = u from x (B, ...) in VP scale at the noisiest kept step;
    returns x0 (B, ...)."""
    a, sg = _coefficients(grid)
    ts = flow_times(grid)
    z = x / (a[-1] + sg[-1])
    for i, k in enumerate(tqdm(range(grid.n - 1, -1, -1), disable=not progress, leave=False,
                               desc="flow_euler")):
        x_in = z * (a[k] + sg[k])
        pred = model(x_in, k)
        s_next = ts[k - 1] if k > 0 else 0.0
        z = z + (s_next - ts[k]) * (pred.eps_hat - pred.x0_hat)
        _report(callback, model, i, k, x_in, pred, z * (a[k - 1] + sg[k - 1]) if k > 0 else z)
    return z


def _heun_calls(grid: Grid, parameterization: str, options: dict) -> int:
    """Two calls per step but the last (Euler to sigma = 0): 2n - 1."""
    return 2 * grid.n - 1


ODE_SAMPLERS = {spec.name: spec.function for spec in (
    register(SamplerSpec("heun", heun, calls=_heun_calls, grid="process")),
    register(SamplerSpec("flow_euler", flow_euler, grid="process")))}
