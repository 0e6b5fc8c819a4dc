"""Densities of training times, written over logsnr so that every noise process shares them.

A diffusion loss is E_{t ~ p(t)} [ w(t) ||x0_hat - x0||^2 ] in x0 terms (other targets only change
w by their factor, see :mod:`biaskit.weighting`). Changing variables to logsnr,

    L = ∫ w_x0(snr(lam)) p_lam(lam) E||x0_hat - x0||^2 d lam,   p_lam = p(t) / |d lam / d t|,

so a formulation's objective is fixed by one function of logsnr, the *effective x0 weight per
unit logsnr* W(lam) = w_x0(lam) p_lam(lam): two formulations with the same W train the same
thing whatever their process, time variable or target. A density that is the same in every
formulation (EDM's log-normal sigma, SD3's logit-normal) is therefore written here once, over lam:

- ``uniform``: t uniform over the process's own time range (depends on the process); on a
  discrete schedule, uniform integer steps.
- ``normal:MEAN:STD``, alias ``lognormal:MEAN:STD`` (the older ``loss.t_sampling`` name): lam ~
  N(MEAN, STD^2).
- ``lognormal_sigma:P_MEAN:P_STD``: EDM (Karras et al. 2022, Sec. 5), ln sigma ~ N(P_mean, P_std^2)
  with sigma = 1/sqrt(snr), i.e. lam ~ N(-2 P_mean, (2 P_std)^2); defaults -1.2, 1.2.
- ``logit_normal:M:S``: SD3 (Esser et al. 2024, Eq. 19), logit(s) ~ N(M, S^2) for the flow time
  s = sigma / (alpha + sigma) = 1 / (1 + sqrt(snr)), i.e. lam = -2 logit(s) ~ N(-2 M, 4 S^2).
- ``mode:SCALE``: SD3's mode sampling (Eq. 20), s = 1 - u - SCALE (cos^2(pi u / 2) - 1 + u),
  u ~ U(0, 1); monotone for -1 <= SCALE <= 2 / (pi - 2).
- ``cosmap``: SD3's CosMap (Eq. 21), s = 1 - 1 / (tan(pi u / 2) + 1), u ~ U(0, 1).
- ``sd3_logit_normal:M:S``, ``sd3_mode:SCALE``: logit-normal and mode as diffusers' SD3
  training scripts draw them (``compute_density_for_timestep_sampling``): v from the density,
  then the scheduler's shifted sigma at index floor(v N) of its descending timesteps, i.e.
  s = shift(1 - v) with the process's flow shift (continuous in v: the 1 / N steps are ignored).
  The scripts' other schemes (``cosmap``, ``none``) draw v uniformly, which is ``uniform`` on a
  flow process (its t is the unshifted time), CosMap being a loss weight there.
  Without those ``sd3_`` names (the default) the density is over the flow time s itself, as the
  SD3 paper writes it (Eqs. 19-21); with a shift the two differ (shift 3, logit-normal(0, 1):
  median s 0.5 there, 0.75 here), and an asymmetric density (M != 0, mode) is mirrored.
- ``vp_linear:T``: uniform t over the discrete linear-beta VP schedule of T steps (Ho et al. 2020,
  beta linear from 1e-4 to 0.02; T = 1000 by default) read with logsnr linear between steps, as
  :class:`~biaskit.processes.DiscreteVP`: p_lam = 1 / ((T - 1) |lam_{i+1} - lam_i|) on the segment
  of steps i, i + 1, and 0 outside [lam_{T-1}, lam_0]. A continuous process trained under it draws
  logsnr as an eps-VP run on that schedule does, so with the same w_x0 it has the same W.

Every density is a function ``pdf(lam, process)`` returning p_lam (float64, integrating to 1 over
lam); :func:`time_pdf` gives p(t) for a process, :class:`TimeSampler` draws a process's times
from it, :func:`step_probabilities` gives the probabilities of a discrete schedule's integer steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import checks
from .processes import Flow, Process

__all__ = ["TimeDensity", "TimeSampler", "get_density", "density_names", "time_pdf", "step_probabilities",
           "effective_x0_weight", "process_weights_table"]

_SQRT_2PI = math.sqrt(2 * math.pi)
LAM_CAP = 30.0   # the logsnr grid of a density is clipped to [-LAM_CAP, LAM_CAP]
GRID = 8193      # logsnr grid points for inverse-CDF sampling and normalisation


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def _normal(lam, mean: float, std: float) -> torch.Tensor:
    z = (_f64(lam) - mean) / std
    return torch.exp(-z**2 / 2) / (std * _SQRT_2PI)


def _flow_time(lam) -> torch.Tensor:
    """s = 1 / (1 + sqrt(snr)) = sigmoid(-lam / 2): the flow time at logsnr lam."""
    return Flow.s_of_logsnr(lam)


def _via_flow_time(p_s: Callable, lam) -> torch.Tensor:
    """p_lam from a density p_s over the flow time: p_lam = p_s(s) |ds/dlam| = p_s(s) s (1 - s) / 2."""
    s = _flow_time(lam)
    return p_s(s) * s * (1 - s) / 2


@dataclass(frozen=True)
class TimeDensity:
    """A density of training times over logsnr: ``pdf(lam, process) -> p_lam``; ``support``:
    (lam_lo, lam_hi) outside which it is 0 (None: the whole line or the process's range);
    ``kernel``: the density up to a constant as a numpy function of lam, where
    :func:`step_probabilities` uses it instead of ``pdf``."""

    name: str
    pdf: Callable
    params: dict = field(default_factory=dict)
    support: tuple | None = None
    kernel: Callable | None = None

    def __call__(self, lam, process: Process | None = None) -> torch.Tensor:
        return self.pdf(_f64(lam), process)

    @property
    def column(self) -> str:
        return ":".join([self.name] + [f"{v:g}" for v in self.params.values()])


def _uniform(lam, process):
    if process is None:
        raise ValueError("the 'uniform' time density is uniform in a process's own time: pass the process")
    t = process.t_of_logsnr(lam)
    return 1 / ((process.t_max - process.t_min) * process.dlogsnr_dt(t).abs())


def _mode_u(s: torch.Tensor, scale: float, iters: int = 60) -> torch.Tensor:
    """u with f_mode(u) = s, by bisection (f_mode decreases from 1 at u = 0 to 0 at u = 1)."""
    lo, hi = torch.zeros_like(s), torch.ones_like(s)
    for _ in range(iters):
        mid = (lo + hi) / 2
        above = _mode_s(mid, scale) > s
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return (lo + hi) / 2


def _mode_s(u, scale: float):
    return 1 - u - scale * (torch.cos(math.pi / 2 * u) ** 2 - 1 + u)


def _mode_density(scale: float) -> Callable:
    """The density of v = 1 - u - scale (cos^2(pi u / 2) - 1 + u), u ~ U(0, 1), over v."""
    # mode sampling is monotone (a density) only for -1 <= scale <= 2 / (pi - 2)
    scale = checks.in_interval("time density mode: scale", scale, -1, 2 / (math.pi - 2), closed="[]")

    def p_v(v):
        u = _mode_u(v, scale)
        # |dv/du| = 1 + scale - scale (pi / 2) sin(pi u)
        return 1 / (1 + scale - scale * math.pi / 2 * torch.sin(math.pi * u)).abs()
    return p_v


def _cosmap_density(v):
    # v = 1 - 1 / (tan(pi u / 2) + 1)  <=>  u = (2 / pi) atan(v / (1 - v)); du/dv = (2/pi) / (v^2 + (1-v)^2)
    return 2 / math.pi / (v**2 + (1 - v) ** 2)


def _logit_normal_density(m: float, s: float) -> Callable:
    m = checks.finite("time density sd3_logit_normal: m", m)
    s = checks.positive("time density sd3_logit_normal: s", s)
    return lambda v: _normal(torch.log(v / (1 - v)), m, s) / (v * (1 - v))


def _mode_pdf(scale: float):
    p_v = _mode_density(scale)
    return lambda lam, _: _via_flow_time(p_v, lam)


def _cosmap(lam, _):
    return _via_flow_time(_cosmap_density, lam)


def _via_sd3(p_v: Callable) -> Callable:
    """p_lam of the SD3 scripts' recipe: v ~ p_v, s = shift(1 - v) with the process's shift
    (1 without a flow process): t = 1 - v = s / d(s), |dt/ds| = shift / d(s)^2 with
    d(s) = :meth:`Flow.unshift_denominator <biaskit.processes.Flow.unshift_denominator>`,
    |ds/dlam| = s (1 - s) / 2."""
    def pdf(lam, process):
        flow = process if isinstance(process, Flow) else Flow()
        s = _flow_time(lam)
        den = flow.unshift_denominator(s)
        return p_v(1 - s / den) * flow.shift / den**2 * s * (1 - s) / 2
    return pdf


def _vp_linear(T: float = 1000):
    from .processes import DiscreteVP
    from .schedules import get_schedule
    T = checks.integer("time density vp_linear: T", T, lo=2)
    vp = DiscreteVP(get_schedule("linear", T))
    lo, hi = (float(v) for v in vp.logsnr(torch.tensor([vp.t_max, vp.t_min], dtype=torch.float64)))

    def pdf(lam, _):  # ``uniform`` on that schedule's process, 0 outside its logsnr range
        inside = (lam >= lo) & (lam <= hi)
        return torch.where(inside, _uniform(lam.clamp(lo, hi), vp), torch.zeros_like(lam))
    return TimeDensity("vp_linear", pdf, {"T": int(T)}, support=(lo, hi))


def _gaussian(name: str, loc: str, scale: str, to_lam: Callable):
    """A density normal over some variable: (``loc``, ``scale``) -> lam ~ N(to_lam(loc, scale))."""
    def make(a: float, b: float) -> TimeDensity:
        import numpy as np
        a = checks.finite(f"time density {name}: {loc}", a)
        b = checks.positive(f"time density {name}: {scale}", b)
        mean, std = to_lam(a, b)
        return TimeDensity(name, lambda lam, _: _normal(lam, mean, std), {loc: a, scale: b},
                           kernel=lambda lam: np.exp(-0.5 * ((lam - mean) / std) ** 2))
    return make


_REGISTRY: dict[str, Callable[..., TimeDensity]] = {
    "uniform": lambda: TimeDensity("uniform", _uniform),
    "normal": lambda mean=0.0, std=1.0: _gaussian("normal", "mean", "std", lambda m, s: (m, s))(mean, std),
    "lognormal": lambda mean=0.0, std=1.0: _gaussian("normal", "mean", "std", lambda m, s: (m, s))(mean, std),
    "lognormal_sigma": lambda p_mean=-1.2, p_std=1.2: _gaussian(
        "lognormal_sigma", "p_mean", "p_std", lambda m, s: (-2 * m, 2 * s))(p_mean, p_std),
    "logit_normal": lambda m=0.0, s=1.0: _gaussian(
        "logit_normal", "m", "s", lambda m, s: (-2 * m, 2 * s))(m, s),
    "mode": lambda scale=1.29: TimeDensity("mode", _mode_pdf(scale), {"scale": scale}),
    "cosmap": lambda: TimeDensity("cosmap", _cosmap),
    "sd3_logit_normal": lambda m=0.0, s=1.0: TimeDensity(
        "sd3_logit_normal", _via_sd3(_logit_normal_density(m, s)), {"m": m, "s": s}),
    "sd3_mode": lambda scale=1.29: TimeDensity("sd3_mode", _via_sd3(_mode_density(scale)), {"scale": scale}),
    "vp_linear": _vp_linear,
}


def density_names() -> list[str]:
    return sorted(_REGISTRY)


def get_density(spec) -> TimeDensity:
    """A density from a TimeDensity or a spec string: ``uniform``, ``normal:0:2``,
    ``lognormal_sigma:-1.2:1.2``, ``logit_normal:0:1``, ``mode:1.29``, ``cosmap``, ``vp_linear``,
    ``sd3_logit_normal:0:1``, ``sd3_mode:1.29``."""
    if isinstance(spec, TimeDensity):
        return spec
    name, *args = str(spec).strip().split(":")
    if name not in _REGISTRY:
        raise ValueError(f"unknown time density {name!r}; valid: {', '.join(density_names())}")
    values = [checks.number(f"time density {spec!r}: parameter", a) for a in args]
    try:
        return _REGISTRY[name](*values)
    except TypeError:
        raise ValueError(f"time density {name!r} takes at most "
                         f"{_REGISTRY[name].__code__.co_argcount} parameters, got {len(values)}") from None


def step_probabilities(density, schedule):
    """p(t) (T,) numpy of drawing integer step t of a discrete ``schedule`` under ``density``,
    p(t) ∝ p_lam(lam_t) |d lam / d t| (:func:`biaskit.weighting.timestep_probabilities`); None for
    ``uniform`` (every step equally likely, drawn by ``torch.randint``)."""
    from .weighting import timestep_probabilities
    d = get_density(density)
    if d.name == "uniform":
        return None
    if d.kernel is not None:
        return timestep_probabilities(d.kernel, schedule)
    from .processes import DiscreteVP
    vp = DiscreteVP(schedule)
    return timestep_probabilities(lambda lam: d(torch.as_tensor(lam), vp).numpy(), schedule)


# --- drawing t ----------------------------------------------------------------------------------
def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of (xp, fp) at x (xp increasing), clamped at the ends."""
    j = torch.searchsorted(xp, x.clamp(xp[0], xp[-1])).clamp(1, xp.numel() - 1)
    w = (x - xp[j - 1]) / (xp[j] - xp[j - 1])
    return fp[j - 1] + w.clamp(0, 1) * (fp[j] - fp[j - 1])


class TimeSampler:
    """Training times of ``process`` under ``density`` (over logsnr), from uniforms u (B,).

    ``uniform``: t = t_min + (t_max - t_min) u. Otherwise the inverse CDF of p_lam truncated to
    the process's logsnr range (clipped to +-LAM_CAP) on a grid of GRID points:
    lam = CDF^-1(u), t = process.t_of_logsnr(lam). :meth:`pdf` is the (truncated) p_lam,
    renormalised by its quadrature mass on the range unless its ``support`` lies inside it.
    """

    def __init__(self, process: Process, density):
        self.process, self.density = process, get_density(density)
        self.uniform = self.density.name == "uniform"
        ends = process.logsnr(torch.tensor([process.t_max, process.t_min], dtype=torch.float64))
        lo, hi = (float(v.clamp(-LAM_CAP, LAM_CAP)) for v in ends)
        self.lam = torch.linspace(lo, hi, GRID, dtype=torch.float64)
        p = self.density(self.lam, process)
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64),
                         torch.cumsum((p[1:] + p[:-1]) / 2 * self.lam.diff(), 0)])
        if not (torch.isfinite(cdf[-1]) and cdf[-1] > 0):
            raise ValueError(f"loss.density: {self.density.column} puts no mass on the logsnr range "
                             f"[{lo:.3g}, {hi:.3g}] of process {process.name}")
        # a density with all its mass inside the range needs no quadrature (exact W)
        sup = self.density.support
        whole = sup is not None and lo <= sup[0] and sup[1] <= hi
        self.mass, self.cdf = 1.0 if whole else float(cdf[-1]), cdf / cdf[-1]

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """t (B,) float64 for u (B,) uniform in [0, 1)."""
        pr = self.process
        if self.uniform:
            return pr.t_min + (pr.t_max - pr.t_min) * u
        return pr.t_of_logsnr(_interp(u, self.cdf.to(u.device), self.lam.to(u.device)).cpu()).to(u.device)

    def pdf(self, lam: torch.Tensor) -> torch.Tensor:
        """p_lam at lam (float64): uniform is exact, other densities renormalised on the range."""
        return self.density(lam, self.process) / (1.0 if self.uniform else self.mass)


def time_pdf(density, process: Process, t) -> torch.Tensor:
    """p(t) of ``density`` in ``process``'s own time: p_lam(lam(t)) |d lam / d t|."""
    t = _f64(t)
    return get_density(density)(process.logsnr(t), process) * process.dlogsnr_dt(t).abs()


def effective_x0_weight(weighting, density, process: Process, lam, *, snr_min=None) -> torch.Tensor:
    """W(lam) = w_x0(snr(lam)) p_lam(lam): the x0-MSE weight per unit logsnr that a loss with
    ``weighting`` (per sample) under training-time ``density`` puts at each lam; for a weighting
    defined per unit logsnr it is the weighting itself (the density only says where t is drawn)."""
    from .weighting import get_weighting, weight
    w = get_weighting(weighting)
    if w.native:
        raise ValueError(f"weighting {w.name!r} is defined on a discrete target's own MSE: it has no "
                         "single x0 weight on a continuous process (use debias)")
    lam = _f64(lam)
    w_x0 = weight(w, lam.exp(), "x0", snr_min=snr_min)
    return w_x0 if w.measure == "per_logsnr" else w_x0 * get_density(density)(lam, process)


def process_weights_table(process: Process, weightings, space: str = "x0", density="uniform", *,
                          n: int = 201, snr_min: float | None = None):
    """DataFrame over n times of ``process`` (its :meth:`~biaskit.processes.Process.grid`, noisy
    end first, without the times of infinite logsnr): t, logsnr, snr, the time density ``p_t`` and ``p_logsnr``, then per weighting
    ``<name>`` = its weight in ``space`` at that snr (per sample; for a per-logsnr weighting its
    density, unmultiplied) and ``<name>_x0_per_logsnr`` = :func:`effective_x0_weight`."""
    import pandas as pd
    from .weighting import get_weighting, table_column
    dens = get_density(density)
    t = process.grid(n - 1)
    lam = process.logsnr(t)
    t, lam = t[torch.isfinite(lam)], lam[torch.isfinite(lam)]
    snr = process.snr(t)
    df = pd.DataFrame({"t": t.numpy(), "logsnr": lam.numpy(), "snr": snr.numpy(),
                       "p_t": time_pdf(dens, process, t).numpy(), "p_logsnr": dens(lam, process).numpy()})
    for spec in weightings:
        w = get_weighting(spec)
        col = table_column(w)
        df[col] = w(snr, space, snr_min=snr_min).numpy()
        df[f"{col}_x0_per_logsnr"] = effective_x0_weight(w, dens, process, lam, snr_min=snr_min).numpy()
    return df
