"""The bias a sampler meets: a model's error on the states its own chain visits (exposure bias,
Ning et al. 2023, 2024), and epsilon scaling, its sampling-time fix.

A network is trained on x_t from the forward marginal q(x_t) and sampled on the x_t its own
chain produces. Per model call of a chain (noisiest first), :func:`visited_states` measures three
statistics, each on the chain's states and on forward-process states x_t = alpha x0 + sigma eps
at the same step (fresh data, fresh noise), with 95% intervals and the chain - forward gap:

  x0_error_to_oracle  ||x0_hat(x_t) - E[x0 | x_t]||^2 / D, the exact posterior mean of a known
                      mixture (:mod:`biaskit.oracle`): the model's own error at a visited state,
                      apart from the sampler's discretisation (the oracle's chain has zero).
  log_q_per_dim       log q_t(x_t) / D under the exact marginal of a mixture,
                      q_t = sum_k w_k N(alpha m_k, alpha^2 S_k + sigma^2 I); on forward states it
                      is the data-vs-data floor, so the gap is the chain's distance from q_t.
  outside_q99         the fraction of states whose log q_t lies below the 1% quantile of the
                      forward states' (outside the region of q_t's 99% most likely states): 0.01
                      on forward states by construction; robust where a few far-off states make
                      the mean log q heavy-tailed.
  eps_norm2_per_dim   ||eps_hat||^2 / D of the eps_hat the sampler uses, against the network's
                      eps_hat on forward states (Ning et al. 2024, Sec. 4: the predicted-noise
                      norm along the chain against its training value).

Intervals: each mean is :func:`biaskit.intervals.t_interval` over samples; a gap (chain and
forward draws are independent) is Welch's (:func:`biaskit.intervals.welch_half_width`).

Epsilon scaling (Ning et al. 2024, Eq. 12): the sampler uses eps_hat / lambda_t with
lambda_t = k t + b (t the model's own timestep, 0..T_train - 1; k = 0: a constant), x0_hat
re-derived from it, x0_hat = (x_t - sigma eps_hat / lambda_t) / alpha. :class:`EpsScaled` applies
it at the model call, so every sampler gets it; :func:`eps_scale_sweep` picks the constant b
whose chain's eps-norm gap is smallest and :func:`fit_eps_scale` fits k, b to the per-step ratio
of norms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from . import parameterization as P
from .denoiser import Prediction
from .intervals import t_interval, welch_half_width
from .mixture import _log_marginal
from .oracle import posterior_mean
from .sampling.wrapped import Wrapped, call

__all__ = ["EpsScale", "EpsScaled", "visited_states", "chain_states", "eps_scale_sweep",
           "fit_eps_scale", "STATISTICS"]

STATISTICS = ("x0_error_to_oracle", "log_q_per_dim", "outside_q99", "eps_norm2_per_dim")


# Ning et al. 2024 (ICLR, "Elucidating the exposure bias"), Eq. 12: eps_hat / lambda_t
@dataclass(frozen=True)
class EpsScale:
    """lambda_t = k t + b, t the model's own timestep (an integer of 0..T_train - 1)."""

    b: float = 1.0
    k: float = 0.0

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return self.k * t.double() + self.b

    def __str__(self) -> str:
        return f"{self.b:g}" if self.k == 0 else f"{self.k:g} t + {self.b:g}"

    @classmethod
    def parse(cls, text: str, what: str = "--eps-scale") -> "EpsScale":
        """``B`` (a constant lambda) or ``B,K`` (lambda_t = K t + B), e.g. ``1.005``."""
        try:
            values = [float(v) for v in str(text).split(",")]
        except ValueError:
            values = []
        if len(values) not in (1, 2) or not all(math.isfinite(v) for v in values):
            raise ValueError(f"{what}: expected B or B,K (lambda_t = K t + B, e.g. 1.005), got {text!r}")
        return cls(*values)

    def check(self, timesteps: torch.Tensor) -> None:
        """ValueError unless lambda_t > 0 at every timestep t of ``timesteps`` (a model's own)."""
        t = torch.as_tensor(timesteps)
        lam = self(t)
        if not bool((lam > 0).all()):
            i = int(lam.argmin())
            raise ValueError(f"eps scale {self}: lambda_t must be > 0 at every timestep of the model "
                             f"(eps_hat / lambda_t), got {float(lam[i]):g} at t = {t[i].item():g}")


class EpsScaled(Wrapped):
    """``model(x_t, t) -> Prediction`` like a :class:`~biaskit.Denoiser`: ``denoiser``'s
    prediction with eps_hat / lambda_t, x0_hat = (x_t - sigma eps_hat / lambda_t) / alpha and the
    output in the denoiser's own parameterization re-derived from the pair (a diffusers scheduler
    is fed that). ``t`` are steps of the denoiser's schedule; lambda reads their timesteps."""

    def __init__(self, denoiser, scale: EpsScale):
        super().__init__(denoiser, f"{denoiser.name}, eps / ({scale})")
        self.scale = scale

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, labels=None) -> Prediction:
        pred = call(self.denoiser, x_t, t, labels)
        if (pred.alpha <= 0).any():
            raise ValueError("epsilon scaling needs alpha_t > 0 (x0_hat from eps_hat is undefined at "
                             "zero terminal SNR): sample without eps_scale or with trailing steps < T")
        t = torch.as_tensor(t, device=x_t.device).long().expand(x_t.shape[0])
        lam = self.scale(self.schedule.timesteps.to(x_t.device)[t]).to(x_t.dtype)
        eps_hat = pred.eps_hat / lam.reshape(-1, *([1] * (x_t.ndim - 1)))
        x0_hat = (x_t - pred.sigma * eps_hat) / pred.alpha
        out = P.target(self.parameterization, x0_hat, eps_hat, pred.alpha, pred.sigma)
        return replace(pred, x0_hat=x0_hat, eps_hat=eps_hat, out=out)


def chain_states(denoiser, noise: torch.Tensor, *, sampler: str = "ddim", steps: int = 20,
                 clip: bool = False, seed: int = 0, eps_scale: EpsScale | None = None,
                 **sample_options) -> list[dict]:
    """Per model call of one chain from ``noise`` (noisiest first): t, logsnr, and x_t, x0_hat,
    eps_hat (B, ...) as the sampler used them (after epsilon scaling and clipping)."""
    from .sampling import sample
    steps_seen = []
    model = EpsScaled(denoiser, eps_scale) if eps_scale is not None else denoiser
    sample_options.setdefault("check_finite", False)  # a diverging chain's states are its NaN
    sample(model, noise.clone(), sampler=sampler, steps=steps, clip=clip, seed=seed, progress=False,
           callback=lambda s: steps_seen.append(dict(t=s.t, logsnr=s.logsnr, x_t=s.x_t,
                                                     x0_hat=s.x0_hat, eps_hat=s.eps_hat)),
           **sample_options)
    return steps_seen


def _alpha_sigma(logsnr: float) -> tuple[float, float]:
    """alpha = sqrt(sigmoid(logsnr)), sigma = sqrt(sigmoid(-logsnr)) (alpha^2 + sigma^2 = 1)."""
    abar = 1.0 / (1.0 + math.exp(-logsnr)) if logsnr > -math.inf else 0.0
    return math.sqrt(abar), math.sqrt(1.0 - abar)


def log_marginal_per_dim(mixture, x_t: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """log q_t(x_t) / D (B,), float64: q_t the mixture sum_k w_k N(alpha m_k, alpha^2 S_k + sigma^2 I)."""
    means, log_w, f = mixture.on(x_t.device)
    x = x_t.reshape(x_t.shape[0], -1).double()
    ones = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
    logp, _ = _log_marginal(x, alpha * ones, sigma * ones, means, log_w, f)
    return torch.logsumexp(logp, 1) / x.shape[1]


def _per_sample(stat: str, x_t, x0_hat, eps_hat, alpha, sigma, mixture, clip_range) -> np.ndarray:
    """The per-sample values (B,) of one statistic at one step."""
    if stat == "eps_norm2_per_dim":
        v = eps_hat.double().flatten(1).square().mean(1)
    elif stat == "log_q_per_dim":
        v = log_marginal_per_dim(mixture, x_t, alpha, sigma)
    else:
        exact = posterior_mean(mixture, x_t.double(), alpha, sigma)
        exact = exact.clamp(*clip_range) if clip_range is not None else exact
        v = (x0_hat.double() - exact).flatten(1).square().mean(1)
    return v.cpu().numpy()


def _row(a: np.ndarray, b: np.ndarray) -> dict:
    """chain (a) and forward (b) means with t-intervals, and the gap a - b with Welch's."""
    ma, mb = float(a.mean()), float(b.mean())
    (alo, ahi), (blo, bhi) = t_interval(ma, a), t_interval(mb, b)
    sd_a, sd_b = a.std(ddof=1), b.std(ddof=1)
    half = float(welch_half_width(sd_a, a.size, sd_b, b.size)) if sd_a + sd_b > 0 else 0.0
    return dict(chain=ma, chain_lo=alo, chain_hi=ahi, forward=mb, forward_lo=blo, forward_hi=bhi,
                gap=ma - mb, gap_lo=ma - mb - half, gap_hi=ma - mb + half, n_chain=a.size, n_forward=b.size)


@torch.no_grad()
def visited_states(denoiser, noise: torch.Tensor, x0: torch.Tensor, *, mixture=None,
                   sampler: str = "ddim", steps: int = 20, clip: bool = False, seed: int = 0,
                   eps_scale: EpsScale | None = None, **sample_options) -> pd.DataFrame:
    """The statistics of :data:`STATISTICS` per model call of the chain from ``noise`` (B, ...)
    against forward-process states made from data ``x0`` (N, ...) (held-out draws of the data
    law) with fresh noise seeded by ``seed``; the two mixture statistics only when ``mixture``
    (the data law, a :class:`~biaskit.mixture.GaussianMixture`) is given. With ``clip`` the
    model's x0_hat is clipped, on the chain and on forward states, and so is the posterior mean
    it is compared with; the forward eps-norm is always the network's own (its training value).

    One row per (step, statistic): step, t, logsnr, statistic, chain, chain_lo, chain_hi,
    forward, forward_lo, forward_hi, gap, gap_lo, gap_hi, n_chain, n_forward, then model,
    sampler, steps, clip, eps_scale."""
    stats = STATISTICS if mixture is not None else ("eps_norm2_per_dim",)
    chain = chain_states(denoiser, noise, sampler=sampler, steps=steps, clip=clip, seed=seed,
                         eps_scale=eps_scale, **sample_options)
    g = torch.Generator().manual_seed(int(seed) + 1)
    x0 = x0.to(noise.device, noise.dtype)
    clip_range = denoiser.data_range if clip else None
    rows = []
    for i, s in enumerate(chain):
        alpha, sigma = _alpha_sigma(s["logsnr"])
        eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype).to(x0.device)
        x_f = P.noisy(x0, eps, alpha, sigma)
        # the network itself on forward states: its training-time value (no scaling, no clip)
        f = denoiser(x_f, torch.full((x_f.shape[0],), _step_of(denoiser, s), device=x_f.device))
        values = {}
        for stat in stats:
            if stat == "outside_q99":
                a, b = values["log_q_per_dim"]
                floor = np.quantile(b, 0.01)
                a, b = (a < floor).astype(float), (b < floor).astype(float)
            else:
                a = _per_sample(stat, s["x_t"], s["x0_hat"], s["eps_hat"], alpha, sigma, mixture, clip_range)
                f_x0 = f.x0_hat.clamp(*clip_range) if clip_range is not None else f.x0_hat
                b = _per_sample(stat, x_f, f_x0, f.eps_hat, alpha, sigma, mixture, clip_range)
            values[stat] = a, b
            rows.append(dict(step=i, t=s["t"], logsnr=s["logsnr"], statistic=stat, **_row(a, b)))
    return pd.DataFrame(rows).assign(model=getattr(denoiser, "name", "model"), sampler=sampler,
                                     steps=int(steps), clip=bool(clip),
                                     eps_scale=str(eps_scale) if eps_scale is not None else "none")


def _step_of(denoiser, s: dict) -> int:
    """The step of the denoiser's schedule whose timestep is the call's ``t``."""
    hits = (denoiser.schedule.timesteps == int(s["t"])).nonzero()
    if hits.numel() != 1:
        raise ValueError(f"timestep {s['t']} is not one step of {denoiser.schedule!r}: visited_states "
                         "reads discrete-schedule models")
    return int(hits[0, 0])


def eps_scale_sweep(denoiser, noise: torch.Tensor, x0: torch.Tensor, scales, **options) -> pd.DataFrame:
    """Ning et al.'s search, scored by the eps-norm gap: for each constant lambda = b in
    ``scales``, the chain's mean over steps of |gap| of eps_norm2_per_dim (with the mean of the
    per-step 95% half-widths, :func:`biaskit.intervals.mean_of_intervals` style). One row per b:
    b, mean_abs_gap, mean_abs_gap_half, chosen (True at the smallest mean |gap|)."""
    rows = []
    for b in scales:
        d = visited_states(denoiser, noise, x0, eps_scale=EpsScale(float(b)), **options)
        d = d[d.statistic == "eps_norm2_per_dim"]
        rows.append(dict(b=float(b), mean_abs_gap=float(d.gap.abs().mean()),
                         mean_abs_gap_half=float(((d.gap_hi - d.gap_lo) / 2).mean())))
    out = pd.DataFrame(rows)
    return out.assign(chosen=out.mean_abs_gap == out.mean_abs_gap.min())


def fit_eps_scale(frame: pd.DataFrame) -> EpsScale:
    """Ning et al.'s linear schedule from an unscaled chain's frame: the per-step ratio of norms
    lambda_t = sqrt(chain / forward) of eps_norm2_per_dim, fitted by least squares in t."""
    d = frame[frame.statistic == "eps_norm2_per_dim"]
    lam = np.sqrt(d.chain.to_numpy() / d.forward.to_numpy())
    k, b = np.polyfit(d.t.to_numpy(dtype=float), lam, 1) if len(d) > 1 else (0.0, float(lam[0]))
    return EpsScale(float(b), float(k))
