"""DDPM and DDIM on the kept steps of a :class:`~biaskit.sampling.chain.Grid`, k = n-1 .. 0,
with abar_prev = abar of the next kept step (1 after the last):

  ddpm  ancestral, Ho et al. 2020 Eq. 6-7: x_prev ~ N(c0 x0_hat + ct x_t, s^2), with s^2 the
        posterior variance beta_tilde ("fixed_small"), beta ("fixed_large"), or ADM's learned
        interpolation of their logs ("learned", Nichol & Dhariwal 2021 Eq. 15).
  ddim  Song et al. 2021 Eq. 12/16: x_prev = sqrt(abar_prev) x0_hat
        + sqrt(1 - abar_prev - s^2) eps_hat + s z,  s = eta sqrt(beta_tilde).

Coefficients become Python floats before the loop: no device syncs per step.

"Native" here means biaskit's own implementation, as opposed to a diffusers scheduler run
through :mod:`.diffusers_adapter` (:data:`NATIVE`: the native discrete-step samplers; the native
ODE samplers, Heun and flow Euler, are in :mod:`.ode`). A process's own sampler (EDM's Heun, the
flow Euler ODE) is the study's ``own_sampler``, another idea.
"""

from __future__ import annotations

import warnings

import torch
from tqdm.auto import tqdm

from ..parameterization import learned_log_variance
from ..schedules import Schedule
from .chain import Grid, ModelCall
from .table import SamplerSpec, register

VARIANCES = ("fixed_small", "fixed_large", "learned")


# Ho et al. 2020, Eq. 7: q(x_prev | x_t, x0) = N(c0 x0 + ct x_t, beta_tilde)
def posterior_mean_coefficients(schedule: Schedule) -> tuple[torch.Tensor, torch.Tensor]:
    """(c0, ct), each (T,), per step of ``schedule`` (a respaced one for fewer steps)."""
    abar, abar_prev, beta = schedule.abar, schedule.abar_prev, schedule.betas
    c0 = abar_prev.sqrt() * beta / (1 - abar)
    ct = (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar)
    return c0, ct


# Song et al. 2021, Eq. 16: sigma_t(eta) = eta sqrt((1 - abar_prev) / (1 - abar) (1 - abar / abar_prev))
def ddim_sigma(schedule: Schedule, eta: float) -> torch.Tensor:
    return eta * schedule.posterior_variance.sqrt()


def _noisiest_first(n: int, progress: bool, desc: str):
    return enumerate(tqdm(range(n - 1, -1, -1), disable=not progress, leave=False, desc=desc))


def _noise(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def var_out(pred) -> torch.Tensor:
    """The learned-variance half of a 2C output; ValueError for a C-channel network."""
    if pred.var_out is None:
        raise ValueError("variance='learned' needs a network with 2C outputs (ADM learn_sigma); "
                         "this denoiser returns C channels: use fixed_small or fixed_large")
    return pred.var_out


def _learned_std(pred, log_beta: float, log_beta_tilde: float) -> torch.Tensor:
    return torch.exp(0.5 * learned_log_variance(var_out(pred), log_beta, log_beta_tilde))


def ddpm(model: ModelCall, x: torch.Tensor, grid: Grid, *, generator=None, callback=None,
         progress: bool = False, variance: str = "fixed_small") -> torch.Tensor:
    """Ancestral DDPM from x (B, ...) at the noisiest kept step; returns x0 (B, ...)."""
    kept = grid.kept
    c0, ct = (c.tolist() for c in posterior_mean_coefficients(kept))
    s = (kept.posterior_variance if variance == "fixed_small" else kept.betas).sqrt().tolist()
    log_beta, log_beta_tilde = kept.betas.log().tolist(), kept.posterior_variance_clipped.log().tolist()
    v_max = None  # the largest |v| of a learned variance: beyond 1 the log variance is extrapolated
    for i, k in _noisiest_first(grid.n, progress, "ddpm"):
        pred = model(x, k)
        z = _noise(x, generator) if k > 0 else None
        x_next = c0[k] * pred.x0_hat + ct[k] * x
        if k > 0:
            if variance == "learned":
                std = _learned_std(pred, log_beta[k], log_beta_tilde[k])
                v = var_out(pred).detach().abs().max()
                v_max = v if v_max is None else torch.maximum(v_max, v)
            else:
                std = s[k]
            x_next = x_next + std * z
        if callback is not None:
            callback(model.info(i, k, x, pred, x_next))
        x = x_next
    if v_max is not None and float(v_max) > 1:
        warnings.warn(f"learned variance: the network's v left [-1, 1] (max |v| = {float(v_max):.3g}), so "
                      "the reverse variance was extrapolated beyond [beta_tilde, beta] of the "
                      f"{grid.n}-step grid (slightly: harmless; far, as from an undertrained variance "
                      "head, samples can diverge: fixed_small or more steps keep it bounded)",
                      stacklevel=3)
    return x


def ddim(model: ModelCall, x: torch.Tensor, grid: Grid, *, generator=None, callback=None,
         progress: bool = False, eta: float = 0.0) -> torch.Tensor:
    """DDIM(eta) from x (B, ...) at the noisiest kept step; returns x0 (B, ...)."""
    kept = grid.kept
    s_t = ddim_sigma(kept, eta)
    a0 = kept.abar_prev.sqrt().tolist()
    ae = (1 - kept.abar_prev - s_t**2).clamp_min(0).sqrt().tolist()
    s = s_t.tolist()
    for i, k in _noisiest_first(grid.n, progress, "ddim"):
        pred = model(x, k)
        noisy = k > 0 and eta > 0
        z = _noise(x, generator) if noisy else None
        x_next = a0[k] * pred.x0_hat + ae[k] * pred.eps_hat
        if noisy:
            x_next = x_next + s[k] * z
        if callback is not None:
            callback(model.info(i, k, x, pred, x_next))
        x = x_next
    return x


NATIVE = {spec.name: spec.function for spec in (register(SamplerSpec("ddpm", ddpm, options=("variance",))),
                                                register(SamplerSpec("ddim", ddim, options=("eta",))))}
