"""Gaussian noise processes x_t = alpha(t) x0 + sigma(t) eps, all placed on one log-SNR axis.

Any such process is the variance-preserving (VP) process at the same snr = alpha^2 / sigma^2 once
x_t is scaled by 1 / sqrt(alpha^2 + sigma^2): then alpha_vp^2 = sigmoid(logsnr) and
sigma_vp^2 = sigmoid(-logsnr). So every statistic biaskit measures is defined at a logsnr, and a
process only has to say how its own time t maps to logsnr (and back).

Processes (time t is a float tensor of any shape; results are float64 tensors of that shape):

- :class:`DiscreteVP`: a :class:`~biaskit.schedules.Schedule` (t = integer step, exact abar there;
  logsnr linear between steps), so today's discrete numbers are unchanged.
- :class:`ContinuousVP`: ``cosine`` (logsnr = -2 log tan(pi t / 2), Nichol & Dhariwal 2021 without
  the offset, as VDM writes it) or ``linear_logsnr`` (logsnr linear in t), both truncated to
  [logsnr_min, logsnr_max] by mapping t in [0, 1] onto that interval.
- :class:`VE`: variance exploding / EDM (Karras et al. 2022): alpha = 1, sigma = t (time is sigma),
  with the Karras rho-discretisation of [sigma_min, sigma_max].
- :class:`Flow`: the linear interpolant of rectified flow / flow matching, x_t = (1 - s) x0 + s eps,
  s = shift t / (1 + (shift - 1) t) (SD3's time shift; shift = 1 is plain flow matching).
"""

from __future__ import annotations

import math

import torch

from . import checks
from .schedules import Schedule, space_timesteps

__all__ = ["Process", "DiscreteVP", "ContinuousVP", "VE", "Flow", "PROCESSES", "get_process",
           "process_from_config", "PROCESS_KEYS", "vp_coefficients", "edm_preconditioning"]


def _f64(t) -> torch.Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


def vp_coefficients(logsnr) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, sigma) of the VP process at ``logsnr``: alpha^2 = sigmoid(logsnr), sigma^2 = 1 - alpha^2."""
    lam = _f64(logsnr)
    return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


class Process:
    """x_t = alpha(t) x0 + sigma(t) eps for t in [t_min, t_max] (t_max is the noisiest end).

    Subclasses define :meth:`alpha`, :meth:`sigma` and :meth:`t_of_logsnr` (the inverse of
    :meth:`logsnr`); :meth:`grid` gives sampling times from t_max towards t_min.
    """

    name = "process"
    t_min: float = 0.0
    t_max: float = 1.0

    def alpha(self, t) -> torch.Tensor:
        raise NotImplementedError

    def sigma(self, t) -> torch.Tensor:
        raise NotImplementedError

    def t_of_logsnr(self, logsnr) -> torch.Tensor:
        raise NotImplementedError

    def logsnr(self, t) -> torch.Tensor:
        return 2 * (self.alpha(t).log() - self.sigma(t).log())

    def snr(self, t) -> torch.Tensor:
        return (self.alpha(t) / self.sigma(t)) ** 2

    def dlogsnr_dt(self, t) -> torch.Tensor:
        """d logsnr / d t (negative: noise grows with t), by automatic differentiation of :meth:`logsnr`."""
        t = _f64(t).detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.logsnr(t).sum(), t)
        return g.detach()

    def vp_scale(self, t) -> torch.Tensor:
        """1 / sqrt(alpha^2 + sigma^2): x_t times this is the VP process's x at the same logsnr."""
        return (self.alpha(t) ** 2 + self.sigma(t) ** 2).rsqrt()

    def grid(self, steps: int) -> torch.Tensor:
        """``steps + 1`` sampling times from t_max down to t_min (uniform in t unless overridden)."""
        _check_steps(steps)
        return torch.linspace(self.t_max, self.t_min, steps + 1, dtype=torch.float64)

    def describe(self) -> dict:
        return {"process": self.name}

    def __repr__(self) -> str:
        lo, hi = (float(self.logsnr(_f64(v))) for v in (self.t_max, self.t_min))
        return f"{type(self).__name__}({self.name!r}, logsnr {lo:.3g} .. {hi:.3g})"


def _check_steps(steps) -> None:
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


class DiscreteVP(Process):
    """A discrete VP :class:`Schedule` read at continuous t in [0, T - 1].

    At integer t the coefficients are the schedule's own (sqrt abar_t, sqrt(1 - abar_t)); between
    integers logsnr is interpolated linearly, so :meth:`t_of_logsnr` is its exact inverse.
    Infinite logsnr (abar = 0 at zero terminal SNR) is kept as -inf at that step.
    """

    def __init__(self, schedule: Schedule):
        self.schedule = schedule
        self.name = schedule.name
        self.t_min, self.t_max = 0.0, float(schedule.T - 1)
        self._lam = schedule.logsnr

    def _interp(self, t) -> torch.Tensor:
        t = _f64(t).clamp(self.t_min, self.t_max)
        i = t.floor().long().clamp(max=max(self.schedule.T - 2, 0))
        w = t - i
        lam0, lam1 = self._lam[i], self._lam[(i + 1).clamp(max=self.schedule.T - 1)]
        # exact at integers, also where one end is -inf (zero terminal snr)
        return torch.where(w == 0, lam0, torch.where(w == 1, lam1, lam0 + w * (lam1 - lam0)))

    def logsnr(self, t) -> torch.Tensor:
        return self._interp(t)

    def dlogsnr_dt(self, t) -> torch.Tensor:
        """The slope lam_{i+1} - lam_i of the segment [i, i + 1] holding t (i = floor(t), the last
        segment at t = T - 1): exact between integers, the right-hand slope at them (autograd of
        the interpolation gives 0 at the integers, where it selects a constant)."""
        t = _f64(t).clamp(self.t_min, self.t_max)
        i = t.floor().long().clamp(max=max(self.schedule.T - 2, 0))
        return self._lam[(i + 1).clamp(max=self.schedule.T - 1)] - self._lam[i]

    def alpha(self, t) -> torch.Tensor:
        return vp_coefficients(self.logsnr(t))[0]

    def sigma(self, t) -> torch.Tensor:
        return vp_coefficients(self.logsnr(t))[1]

    def t_of_logsnr(self, logsnr) -> torch.Tensor:
        lam = _f64(logsnr)
        desc = -self._lam  # increasing in t
        j = torch.searchsorted(desc, -lam.reshape(-1)).reshape(lam.shape).clamp(1, self.schedule.T - 1)
        lo, hi = self._lam[j - 1], self._lam[j]
        return (j - 1) + (lam - lo) / (hi - lo)

    def grid(self, steps: int) -> torch.Tensor:
        """``steps`` integer steps spaced as ADM's space_timesteps, from T - 1 down to 0, then 0."""
        _check_steps(steps)
        kept = sorted(space_timesteps(self.schedule.T, int(steps)), reverse=True)
        return _f64(kept + [0])

    def describe(self) -> dict:
        return {"process": "discrete_vp", "schedule": self.schedule.name, "T": self.schedule.T}


class ContinuousVP(Process):
    """Continuous-time VP with alpha^2 = sigmoid(logsnr(t)), t in [0, 1].

    ``kind="cosine"``: logsnr(t) = -2 log tan(pi u / 2) with u mapped linearly from [0, 1] onto
    [u(logsnr_max), u(logsnr_min)] (Kingma et al. 2021 / Nichol & Dhariwal 2021 without offset).
    ``kind="linear_logsnr"``: logsnr(t) = logsnr_max + t (logsnr_min - logsnr_max).
    """

    KINDS = ("cosine", "linear_logsnr")

    def __init__(self, kind: str = "cosine", logsnr_min: float = -15.0, logsnr_max: float = 15.0):
        if kind not in self.KINDS:
            raise ValueError(f"unknown continuous VP kind {kind!r}; valid: {', '.join(self.KINDS)}")
        logsnr_min = checks.finite("process.logsnr_min", logsnr_min)
        logsnr_max = checks.finite("process.logsnr_max", logsnr_max)
        if not logsnr_min < logsnr_max:
            raise ValueError(f"need logsnr_min < logsnr_max, got {logsnr_min} and {logsnr_max}")
        self.kind, self.name = kind, f"vp_{kind}"
        self.logsnr_min, self.logsnr_max = float(logsnr_min), float(logsnr_max)

    @staticmethod
    def _u(lam: float) -> float:
        # inverse of lam = -2 log tan(pi u / 2)
        return 2 / math.pi * math.atan(math.exp(-lam / 2))

    def logsnr(self, t) -> torch.Tensor:
        t = _f64(t)
        if self.kind == "linear_logsnr":
            return self.logsnr_max + t * (self.logsnr_min - self.logsnr_max)
        u0, u1 = self._u(self.logsnr_max), self._u(self.logsnr_min)
        return -2 * torch.tan(math.pi / 2 * (u0 + t * (u1 - u0))).log()

    def t_of_logsnr(self, logsnr) -> torch.Tensor:
        lam = _f64(logsnr)
        if self.kind == "linear_logsnr":
            return (lam - self.logsnr_max) / (self.logsnr_min - self.logsnr_max)
        u0, u1 = self._u(self.logsnr_max), self._u(self.logsnr_min)
        return (2 / math.pi * torch.atan(torch.exp(-lam / 2)) - u0) / (u1 - u0)

    def alpha(self, t) -> torch.Tensor:
        return vp_coefficients(self.logsnr(t))[0]

    def sigma(self, t) -> torch.Tensor:
        return vp_coefficients(self.logsnr(t))[1]

    def describe(self) -> dict:
        return {"process": self.name, "logsnr_min": self.logsnr_min, "logsnr_max": self.logsnr_max}


class VE(Process):
    """Variance exploding, EDM's form (Karras et al. 2022): alpha = 1, sigma = t, t in [sigma_min, sigma_max].

    logsnr = -2 log sigma; :meth:`grid` is EDM's Eq. 5 discretisation with exponent rho, then 0.
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
        sigma_min = checks.positive("process.sigma_min", sigma_min)
        sigma_max = checks.positive("process.sigma_max", sigma_max)
        if not sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        rho = checks.positive("process.rho", rho)  # Karras et al. Eq. 5 takes 1 / rho
        self.name = "ve"
        self.t_min, self.t_max, self.rho = float(sigma_min), float(sigma_max), float(rho)

    def alpha(self, t) -> torch.Tensor:
        return torch.ones_like(_f64(t))

    def sigma(self, t) -> torch.Tensor:
        return _f64(t)

    def t_of_logsnr(self, logsnr) -> torch.Tensor:
        return torch.exp(-_f64(logsnr) / 2)

    def grid(self, steps: int) -> torch.Tensor:
        # Karras et al. 2022, Eq. 5: sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho
        _check_steps(steps)
        i = torch.arange(steps, dtype=torch.float64)
        a, b = self.t_max ** (1 / self.rho), self.t_min ** (1 / self.rho)
        frac = i / (steps - 1) if steps > 1 else torch.zeros(1, dtype=torch.float64)
        return torch.cat([(a + frac * (b - a)) ** self.rho, torch.zeros(1, dtype=torch.float64)])

    def describe(self) -> dict:
        return {"process": "ve", "sigma_min": self.t_min, "sigma_max": self.t_max, "rho": self.rho}


class Flow(Process):
    """Linear interpolant x_t = (1 - s) x0 + s eps, s = shift t / (1 + (shift - 1) t), t in [0, 1].

    shift > 1 spends more of t at high noise (SD3, Esser et al. 2024, Sec. 5.3.2). The velocity
    target is u = d x_t / d s = eps - x0, so x0_hat = x_t - s u_hat.
    """

    def __init__(self, shift: float = 1.0, t_min: float = 0.0, t_max: float = 1.0):
        shift = checks.positive("process.shift", shift)
        if not 0 <= t_min < t_max <= 1:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got {t_min} and {t_max}")
        self.shift, self.name = float(shift), "flow"
        self.t_min, self.t_max = float(t_min), float(t_max)

    def s(self, t) -> torch.Tensor:
        t = _f64(t)
        return self.shift * t / (1 + (self.shift - 1) * t)

    def alpha(self, t) -> torch.Tensor:
        return 1 - self.s(t)

    def sigma(self, t) -> torch.Tensor:
        return self.s(t)

    def t_of_logsnr(self, logsnr) -> torch.Tensor:
        s = torch.sigmoid(-_f64(logsnr) / 2)  # snr = ((1 - s) / s)^2
        return s / (self.shift - (self.shift - 1) * s)

    def describe(self) -> dict:
        return {"process": "flow", "shift": self.shift}


PROCESSES = {"vp_cosine": lambda **kw: ContinuousVP("cosine", **kw),
             "vp_linear_logsnr": lambda **kw: ContinuousVP("linear_logsnr", **kw),
             "ve": VE, "edm": VE, "flow": Flow}


def get_process(name, **kwargs) -> Process:
    """A process by name (``vp_cosine``, ``vp_linear_logsnr``, ``ve``/``edm``, ``flow``), or a
    :class:`Schedule` (-> :class:`DiscreteVP`), or a Process as is."""
    if isinstance(name, Process):
        return name
    if isinstance(name, Schedule):
        return DiscreteVP(name)
    if name not in PROCESSES:
        raise ValueError(f"unknown process {name!r}; valid: {', '.join(PROCESSES)} "
                         "(or a discrete schedule)")
    return PROCESSES[name](**kwargs)


# the keys of a training config's ``process:`` that each process reads (the rest are ignored)
PROCESS_KEYS = {"flow": ("shift",), "ve": ("sigma_min", "sigma_max", "rho"),
                "edm": ("sigma_min", "sigma_max", "rho"), "vp_cosine": ("logsnr_min", "logsnr_max"),
                "vp_linear_logsnr": ("logsnr_min", "logsnr_max")}


def process_from_config(d: dict) -> Process:
    """The continuous process of a config mapping ``{name, shift, sigma_min, ...}`` (extra keys
    ignored), e.g. a training config's ``process:`` or a run's biaskit.json ``process``."""
    name = d["name"]
    if name not in PROCESS_KEYS:
        raise ValueError(f"unknown process {name!r}; valid: {', '.join(PROCESS_KEYS)}")
    return get_process(name, **{k: float(d[k]) for k in PROCESS_KEYS[name] if k in d})


# Karras et al. 2022, Table 1 (EDM column): D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)
def edm_preconditioning(sigma, sigma_data: float = 0.5) -> dict[str, torch.Tensor]:
    """EDM's c_skip, c_out, c_in, c_noise at ``sigma`` and the loss weight lambda(sigma) on the D-MSE."""
    sigma = _f64(sigma)
    sd2 = sigma_data**2
    return {"c_skip": sd2 / (sigma**2 + sd2), "c_out": sigma * sigma_data / (sigma**2 + sd2).sqrt(),
            "c_in": (sigma**2 + sd2).rsqrt(), "c_noise": sigma.log() / 4,
            "weight": (sigma**2 + sd2) / (sigma * sigma_data) ** 2}
