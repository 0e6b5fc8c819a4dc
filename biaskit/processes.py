"""Gaussian noise processes x_t = alpha(t) x0 + sigma(t) eps, all placed on one log-SNR axis.

Any such process is the variance-preserving (VP) process at the same snr = alpha^2 / sigma^2 once
x_t is scaled by 1 / sqrt(alpha^2 + sigma^2): then alpha_vp^2 = sigmoid(logsnr) and
sigma_vp^2 = sigmoid(-logsnr). So every statistic biaskit measures is defined at a logsnr, and a
process only has to say how its own time t maps to logsnr (and back).

Processes (time t is a float tensor of any shape; results are float64 tensors of that shape):

- :class:`DiscreteVP`: a :class:`~biaskit.schedules.Schedule` (t = integer step, exact abar there;
  logsnr linear between steps), so today's discrete numbers are unchanged.
- :class:`ContinuousVP`: ``cosine`` (Nichol & Dhariwal 2021 with offset ``s``, default 0: logsnr =
  -2 log tan(pi t / 2) as VDM writes it; iDDPM's s = 0.008 on request) or ``linear_logsnr``
  (logsnr linear in t), both truncated to [logsnr_min, logsnr_max] by mapping t in [0, 1] onto
  that interval.
- :class:`VE`: variance exploding / EDM (Karras et al. 2022): alpha = 1, sigma = t (time is sigma),
  with the Karras rho-discretisation of [sigma_min, sigma_max].
- :class:`Flow`: the linear interpolant of rectified flow / flow matching, x_t = (1 - s) x0 + s eps,
  s = shift t / (1 + (shift - 1) t) (SD3's time shift; shift = 1 is plain flow matching);
  ``reverse=True`` is the same process in the other time direction (Lipman et al. 2023 and much
  flow-matching code: x_t = t' x0 + (1 - t') eps, t' = 0 noise), see :meth:`Process.own_time`.
- :class:`~biaskit.vesde.VESDE`: Song et al.'s variance-exploding SDE, alpha = 1, t in [t_min, 1]: score_sde's
  sigma(t) = sigma_min (sigma_max / sigma_min)^t (``vesde``) or the widely copied MNIST
  tutorial's marginal std sqrt((b^(2t) - 1) / (2 ln b)) (``vesde_tutorial``, b = sigma_base).

Every process's time t runs from its least noisy end t_min to its noisiest t_max; a model whose
code counts time the other way (reversed flow) is fed :meth:`Process.own_time` (t' = 1 - t).
"""

from __future__ import annotations

import math

import torch

from . import checks
from .targets import edm_preconditioning, get_target  # edm_preconditioning re-exported
from .process_base import Process, _check_spacing, _check_steps, _f64, vp_coefficients
from .schedules import Schedule, space_timesteps
from .vesde import VESDE, VESDEGeometric, VESDETutorial

__all__ = ["Process", "DiscreteVP", "ContinuousVP", "VPCosine", "VPLinearLogsnr", "VE", "EDM", "VESDE",
           "VESDEGeometric", "VESDETutorial", "Flow", "PROCESSES", "get_process", "process_from_config", "PROCESS_KEYS",
           "vp_coefficients", "edm_preconditioning"]


class DiscreteVP(Process):
    """A discrete VP :class:`Schedule` read at continuous t in [0, T - 1].

    At integer t the coefficients are the schedule's own (sqrt abar_t, sqrt(1 - abar_t)); between
    integers logsnr is interpolated linearly, so :meth:`t_of_logsnr` is its exact inverse.
    Infinite logsnr (abar = 0 at zero terminal SNR) is kept as -inf at that step. The process of
    every discrete run (``process.name: discrete``, its ``schedule:`` config), whose networks take
    the time inputs ``TIME_INPUTS`` of :class:`~biaskit.denoiser.Denoiser` (``index`` by default);
    read as a continuous process (:class:`~biaskit.formulations.ProcessDenoiser`) it takes those
    of every process.
    """

    key = "discrete"
    TIME_INPUTS = ("index", "scaled", "sigma", "logsnr", "alpha_sigma")

    @classmethod
    def check_objective(cls, loss, weighting, time_input: str) -> None:
        """The discrete run's rules: no ``edm`` target or learned uncertainty, its own time inputs."""
        target = checks.keyed("loss.target", lambda: get_target(loss.target))
        if not target.space:
            raise ValueError(f"loss.target: {target.name} ({target.label}) needs a continuous process "
                             "(process.name: edm, flow, vp_cosine, ...)")
        if time_input not in cls.TIME_INPUTS:
            raise ValueError(f"model.time_input: {time_input!r} is not one of {', '.join(cls.TIME_INPUTS)}")
        if loss.uncertainty:
            raise ValueError("loss.uncertainty (EDM2's learned log-variance) needs a continuous process "
                             "(process.name: edm, flow, vp_cosine, ...)")

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

    def grid(self, steps: int, spacing: str = "even") -> torch.Tensor:
        """``steps`` integer steps spaced as ADM's space_timesteps, from T - 1 down to 0, then 0."""
        _check_steps(steps)
        _check_spacing(self, spacing)
        kept = sorted(space_timesteps(self.schedule.T, int(steps)), reverse=True)
        return _f64(kept + [0])

    def describe(self) -> dict:
        return {"process": "discrete_vp", "schedule": self.schedule.name, "T": self.schedule.T}


class ContinuousVP(Process):
    """Continuous-time VP with alpha^2 = sigmoid(logsnr(t)), t in [0, 1].

    ``kind="cosine"``: iDDPM's abar(tau) = f(tau) / f(0), f(tau) = cos^2(phi(tau)),
    phi(tau) = (tau + s) / (1 + s) pi / 2 (Nichol & Dhariwal 2021, Eq. 17), so
    logsnr = log(abar / (1 - abar)) = 2 log cos phi - log(sin(phi - phi0) sin(phi + phi0)); the
    offset ``s`` defaults to 0 (VDM's -2 log tan(pi tau / 2), Kingma et al. 2021, and what
    biaskit's vp_cosine runs were trained with); s = 0.008 is iDDPM's (up to 0.57 apart in logsnr).
    tau is mapped linearly from t in [0, 1] onto [tau(logsnr_max), tau(logsnr_min)] (truncation).
    ``kind="linear_logsnr"``: logsnr(t) = logsnr_max + t (logsnr_min - logsnr_max).
    """

    KINDS = ("cosine", "linear_logsnr")

    def __init__(self, kind: str = "cosine", logsnr_min: float = -15.0, logsnr_max: float = 15.0,
                 s: float = 0.0):
        if kind not in self.KINDS:
            raise ValueError(f"unknown continuous VP kind {kind!r}; valid: {', '.join(self.KINDS)}")
        # the cosine kind may run untruncated (-inf, inf); a linear logsnr needs finite ends
        bound = checks.finite if kind == "linear_logsnr" else checks.not_nan
        logsnr_min = bound("process.logsnr_min", logsnr_min)
        logsnr_max = bound("process.logsnr_max", logsnr_max)
        if not logsnr_min < logsnr_max:
            raise ValueError(f"need logsnr_min < logsnr_max, got {logsnr_min} and {logsnr_max}")
        if not 0 <= s < 1 or (kind != "cosine" and s != 0):
            raise ValueError(f"the cosine offset s must lie in [0, 1) (iDDPM: 0.008), got {s}")
        self.kind, self.name = kind, f"vp_{kind}"
        self.logsnr_min, self.logsnr_max, self.s = float(logsnr_min), float(logsnr_max), float(s)
        self._phi0 = self.s / (1 + self.s) * math.pi / 2

    def _tau(self, lam) -> torch.Tensor:
        """iDDPM time tau at logsnr lam (inverse of _lam): cos^2 phi = sigmoid(lam) cos^2 phi0,
        i.e. tan^2 phi = (exp(-lam) + sin^2 phi0) / cos^2 phi0."""
        tan_phi = (torch.exp(-_f64(lam)) + math.sin(self._phi0) ** 2).sqrt() / math.cos(self._phi0)
        return torch.atan(tan_phi) * 2 / math.pi * (1 + self.s) - self.s

    def _lam(self, tau) -> torch.Tensor:
        phi = (_f64(tau) + self.s) / (1 + self.s) * math.pi / 2
        if self.s == 0:
            return -2 * torch.tan(phi).log()
        return 2 * torch.cos(phi).log() - (torch.sin(phi - self._phi0) * torch.sin(phi + self._phi0)).log()

    def _ends(self) -> tuple[float, float]:
        return tuple(float(self._tau(torch.tensor(v, dtype=torch.float64)))
                     for v in (self.logsnr_max, self.logsnr_min))

    def logsnr(self, t) -> torch.Tensor:
        t = _f64(t)
        if self.kind == "linear_logsnr":
            return self.logsnr_max + t * (self.logsnr_min - self.logsnr_max)
        u0, u1 = self._ends()
        return self._lam(u0 + t * (u1 - u0))

    def t_of_logsnr(self, logsnr) -> torch.Tensor:
        lam = _f64(logsnr)
        if self.kind == "linear_logsnr":
            return (lam - self.logsnr_max) / (self.logsnr_min - self.logsnr_max)
        u0, u1 = self._ends()
        return (self._tau(lam) - u0) / (u1 - u0)

    def alpha(self, t) -> torch.Tensor:
        return vp_coefficients(self.logsnr(t))[0]

    def sigma(self, t) -> torch.Tensor:
        return vp_coefficients(self.logsnr(t))[1]

    def describe(self) -> dict:
        return {"process": self.name, "logsnr_min": self.logsnr_min, "logsnr_max": self.logsnr_max,
                **({"s": self.s} if self.kind == "cosine" else {})}


class VPCosine(ContinuousVP):
    """``vp_cosine``: :class:`ContinuousVP` of kind ``cosine``."""

    key = "vp_cosine"

    def __init__(self, logsnr_min: float = -15.0, logsnr_max: float = 15.0, s: float = 0.0):
        super().__init__("cosine", logsnr_min, logsnr_max, s)


class VPLinearLogsnr(ContinuousVP):
    """``vp_linear_logsnr``: :class:`ContinuousVP` of kind ``linear_logsnr``."""

    key = "vp_linear_logsnr"

    def __init__(self, logsnr_min: float = -15.0, logsnr_max: float = 15.0):
        super().__init__("linear_logsnr", logsnr_min, logsnr_max)


class VE(Process):
    """Variance exploding, EDM's form (Karras et al. 2022): alpha = 1, sigma = t, t in [sigma_min, sigma_max].

    logsnr = -2 log sigma; :meth:`grid` is EDM's Eq. 5 discretisation with exponent rho, then 0.
    Its networks are fed sigma (EDM's preconditioned ones c_noise) and sampled by EDM's ``heun``
    (Karras et al. 2022, Algorithm 2).
    """

    key, default_target, sampler = "ve", "x0", "heun"
    own_time_input = "sigma"
    diffusers_kind = "edm"  # EDMEulerScheduler's sigma is sigma = t

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
        sigma_min = checks.positive("process.sigma_min", sigma_min)
        sigma_max = checks.positive("process.sigma_max", sigma_max)
        if not sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        rho = checks.positive("process.rho", rho)  # Karras et al. Eq. 5 takes 1 / rho
        self.name = "ve"
        self.t_min, self.t_max, self.rho = float(sigma_min), float(sigma_max), float(rho)

    def scheduler_defaults(self, sigma_data: float = 0.5) -> dict:
        """EDM's schedulers on this process's sigma range and rho (Karras et al. 2022, Eq. 5)."""
        return {"sigma_min": self.t_min, "sigma_max": self.t_max, "rho": self.rho,
                "sigma_data": sigma_data}

    @classmethod
    def from_scheduler_config(cls, cfg: dict) -> "VE":
        """The VE process of an EDM scheduler config (a key it lacks: this class's default)."""
        return cls(**{k: float(cfg[k]) for k in ("sigma_min", "sigma_max", "rho") if k in cfg})

    def alpha(self, t) -> torch.Tensor:
        return torch.ones_like(_f64(t))

    def sigma(self, t) -> torch.Tensor:
        return _f64(t)

    def t_of_logsnr(self, logsnr) -> torch.Tensor:
        return torch.exp(-_f64(logsnr) / 2)

    def grid(self, steps: int, spacing: str = "even") -> torch.Tensor:
        # Karras et al. 2022, Eq. 5: sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho
        _check_steps(steps)
        _check_spacing(self, spacing)
        i = torch.arange(steps, dtype=torch.float64)
        a, b = self.t_max ** (1 / self.rho), self.t_min ** (1 / self.rho)
        frac = i / (steps - 1) if steps > 1 else torch.zeros(1, dtype=torch.float64)
        return torch.cat([(a + frac * (b - a)) ** self.rho, torch.zeros(1, dtype=torch.float64)])

    def describe(self) -> dict:
        return {"process": "ve", "sigma_min": self.t_min, "sigma_max": self.t_max, "rho": self.rho}


class EDM(VE):
    """``edm``: the :class:`VE` process of a network trained with EDM's preconditioning (target
    ``edm`` by default, fed c_noise); the process itself is VE's (its name stays ``ve``)."""

    key, default_target = "edm", "edm"


class Flow(Process):
    """Linear interpolant x_t = (1 - s) x0 + s eps, s = shift t / (1 + (shift - 1) t), t in [0, 1].

    shift > 1 spends more of t at high noise (SD3, Esser et al. 2024, Sec. 5.3.2). The velocity
    target is u = d x_t / d s = eps - x0, so x0_hat = x_t - s u_hat.

    ``reverse=True``: the model's code counts time the other way, t' = 1 - t (x = t' x0 +
    (1 - t') eps at shift 1, t' = 0 pure noise; Lipman et al. 2023); t' is what it is fed
    (:meth:`own_time`). Its velocity d x / d t' = x0 - eps is the flow target negated
    (``target_sign=-1`` of :class:`~biaskit.formulations.ProcessDenoiser`). Sampled by
    ``flow_euler`` (Euler steps on the velocity).
    """

    key, default_target, sampler = "flow", "flow", "flow_euler"
    diffusers_kind = "flow"  # FlowMatchEulerDiscreteScheduler's sigma is s(t)

    def __init__(self, shift: float = 1.0, t_min: float = 0.0, t_max: float = 1.0,
                 reverse: bool = False):
        shift = checks.positive("process.shift", shift)
        if not 0 <= t_min < t_max <= 1:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got {t_min} and {t_max}")
        self.shift, self.name, self.reverse = float(shift), "flow", bool(reverse)
        self.t_min, self.t_max = float(t_min), float(t_max)

    def scheduler_defaults(self, sigma_data: float = 0.5) -> dict:
        """FlowMatchEulerDiscreteScheduler with this process's (SD3) time shift."""
        return {"shift": self.shift}

    @classmethod
    def from_scheduler_config(cls, cfg: dict) -> "Flow":
        """The flow of a FlowMatch* scheduler config: its ``shift`` (default 1); under
        ``use_dynamic_shifting`` (a shift set per image size) shift 1, the network's time input
        being s N whatever the shift (only the sampling grid depends on it)."""
        return cls(shift=1.0 if cfg.get("use_dynamic_shifting") else float(cfg.get("shift", 1.0)))

    def own_time(self, t) -> torch.Tensor:
        return 1 - _f64(t) if self.reverse else _f64(t)

    def s(self, t) -> torch.Tensor:
        """The flow time s = shift t / (1 + (shift - 1) t) (SD3's time shift) at process time t."""
        t = _f64(t)
        return self.shift * t / (1 + (self.shift - 1) * t)

    @staticmethod
    def s_of_logsnr(logsnr) -> torch.Tensor:
        """The flow time s = sigma / (alpha + sigma) = sigmoid(-logsnr / 2) at a logsnr
        (snr = ((1 - s) / s)^2), whatever the shift."""
        return torch.sigmoid(-_f64(logsnr) / 2)

    def unshift_denominator(self, s) -> torch.Tensor:
        """d(s) = shift - (shift - 1) s: t = s / d(s) inverts :meth:`s`, dt/ds = shift / d(s)^2."""
        return self.shift - (self.shift - 1) * s

    def t_of_s(self, s) -> torch.Tensor:
        """The inverse of :meth:`s`: t = s / (shift - (shift - 1) s)."""
        return s / self.unshift_denominator(s)

    def alpha(self, t) -> torch.Tensor:
        return 1 - self.s(t)

    def sigma(self, t) -> torch.Tensor:
        return self.s(t)

    def t_of_logsnr(self, logsnr) -> torch.Tensor:
        return self.t_of_s(self.s_of_logsnr(logsnr))

    SPACINGS = ("even", "flow_match")

    def grid(self, steps: int, spacing: str = "even", num_train_timesteps: int = 1000) -> torch.Tensor:
        """``steps + 1`` times from t_max to t_min: ``even`` is uniform in t (s = shift(t));
        ``flow_match`` is diffusers' FlowMatchEulerDiscreteScheduler.set_timesteps(steps):
        t uniform from 1 to s_min = shift(1 / N) (its sigma_min, the shifted last training
        sigma, which it shifts once more), then 0 (N = num_train_timesteps)."""
        _check_steps(steps)
        _check_spacing(self, spacing, self.SPACINGS)
        if spacing == "even":
            return torch.linspace(self.t_max, self.t_min, steps + 1, dtype=torch.float64)
        s_min = float(self.s(1.0 / num_train_timesteps))
        return torch.cat([torch.linspace(1.0, s_min, steps, dtype=torch.float64),
                          torch.zeros(1, dtype=torch.float64)])

    def describe(self) -> dict:
        return {"process": "flow", "shift": self.shift, "reverse": self.reverse}


# the processes built by name (a config's ``process.name``, ``--process``), each class's ``key``
PROCESSES: dict[str, type[Process]] = {cls.key: cls for cls in (
    VPCosine, VPLinearLogsnr, VE, EDM, Flow, VESDEGeometric, VESDETutorial)}

# the config keys of each named process: its constructor's keywords (:meth:`Process.keys`)
PROCESS_KEYS: dict[str, tuple[str, ...]] = {name: cls.keys() for name, cls in PROCESSES.items()}


def get_process(name, **kwargs) -> Process:
    """A process by name (``vp_cosine``, ``vp_linear_logsnr``, ``ve``/``edm``, ``flow``,
    ``vesde``, ``vesde_tutorial``) with the keywords of its class (:meth:`Process.keys`), or a
    :class:`Schedule` (-> :class:`DiscreteVP`), or a Process as is."""
    if isinstance(name, Process):
        return name
    if isinstance(name, Schedule):
        return DiscreteVP(name)
    if name not in PROCESSES:
        raise ValueError(f"unknown process {name!r}; valid: {', '.join(PROCESSES)} "
                         "(or a discrete schedule)")
    keys = PROCESSES[name].keys()
    bad = sorted(set(kwargs) - set(keys))
    if bad:
        raise ValueError(f"{', '.join(bad)} do(es) not apply to process {name!r}; it takes "
                         f"{', '.join(keys)}")
    return PROCESSES[name](**kwargs)


def process_from_config(d: dict, schedule: Schedule | None = None) -> Process:
    """The process of a config mapping ``{name, shift, sigma_min, ...}``, e.g. a training
    config's ``process:`` or a run's biaskit.json ``process``: the keys its class takes that
    are set (not None) are passed, typed by its constructor; other keys are ignored. Name
    ``discrete`` is :class:`DiscreteVP` of ``schedule``."""
    name = d["name"]
    if name == DiscreteVP.key and schedule is not None:
        return DiscreteVP(schedule)
    if name not in PROCESSES:
        raise ValueError(f"unknown process {name!r}; valid: {', '.join(PROCESSES)}")
    types = PROCESSES[name].key_types()
    return get_process(name, **{k: bool(d[k]) if types[k] is bool else float(d[k])
                                for k in types if d.get(k) is not None})


# Karras et al. 2022, Table 1 (EDM column): D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)
