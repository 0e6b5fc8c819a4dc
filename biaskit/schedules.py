"""Discrete variance-preserving noise schedules.

A schedule is the sequence abar_t, t = 0..T-1, of x_t = alpha_t x0 + sigma_t eps with
alpha_t^2 = abar_t and sigma_t^2 = 1 - abar_t. Everything else is derived from abar:
betas (beta_t = 1 - abar_t / abar_{t-1}), snr = abar / (1 - abar), logsnr = log snr.

A respaced schedule keeps, in ``timesteps``, the index of each of its steps in the schedule it
was cut from (the index a network trained on the full schedule must be fed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import checks
from .respacing import diffusers_spacing, respace, space_timesteps  # re-exported here

__all__ = [
    "Schedule", "SCHEDULES", "get_schedule", "linear", "linear_adm", "scaled_linear", "cosine",
    "sigmoid", "adm_schedule",
    "from_betas", "from_abar", "rescale_zero_terminal_snr", "respace", "space_timesteps",
    "diffusers_spacing", "from_diffusers_config", "scheduler_config", "as_schedule",
]


@dataclass(frozen=True, eq=False)
class Schedule:
    """abar_t for t = 0..T-1 (float64, shape (T,)), plus where each step sits in its parent.

    ``timesteps[t]`` is the parent-schedule index of step t (``arange(T)`` unless respaced) and
    ``num_train_timesteps`` the parent's length: a network trained on the parent is fed those.
    ``exact_logsnr`` (T,): when given (the VP view of another process), logsnr, snr, alpha and
    sigma are computed from it (alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr)) instead of
    from abar = sigmoid(logsnr), which cannot hold 1 - abar below float64's 1e-16 (logsnr read
    back from abar is off by 1e-3 at logsnr 30).
    """

    abar: torch.Tensor
    name: str = "custom"
    timesteps: torch.Tensor | None = None
    num_train_timesteps: int | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    exact_logsnr: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        abar = torch.as_tensor(self.abar, dtype=torch.float64).flatten()
        if abar.numel() < 1:
            raise ValueError("a schedule needs at least one timestep")
        if not torch.all(torch.isfinite(abar)) or abar.min() < 0 or abar.max() > 1:
            raise ValueError("abar must lie in [0, 1] at every timestep")
        if torch.any(abar[1:] > abar[:-1] + 1e-12):
            raise ValueError("abar must be non-increasing in t (noise grows with t)")
        ts = torch.arange(abar.numel()) if self.timesteps is None else torch.as_tensor(self.timesteps).long()
        if ts.numel() != abar.numel():
            raise ValueError(f"timesteps has {ts.numel()} entries but abar has {abar.numel()}")
        if self.exact_logsnr is not None:
            lam = torch.as_tensor(self.exact_logsnr, dtype=torch.float64).flatten()
            if lam.numel() != abar.numel() or torch.isnan(lam).any():
                raise ValueError(f"exact_logsnr needs {abar.numel()} values, none nan")
            object.__setattr__(self, "exact_logsnr", lam)
        object.__setattr__(self, "abar", abar)
        object.__setattr__(self, "timesteps", ts)
        object.__setattr__(self, "num_train_timesteps", int(self.num_train_timesteps or abar.numel()))

    @property
    def T(self) -> int:
        return self.abar.numel()

    @property
    def alpha(self) -> torch.Tensor:
        if self.exact_logsnr is not None:
            return torch.sigmoid(self.exact_logsnr).sqrt()
        return self.abar.sqrt()

    @property
    def sigma(self) -> torch.Tensor:
        if self.exact_logsnr is not None:
            return torch.sigmoid(-self.exact_logsnr).sqrt()
        return (1 - self.abar).sqrt()

    @property
    def snr(self) -> torch.Tensor:
        if self.exact_logsnr is not None:
            return self.exact_logsnr.exp()
        return self.abar / (1 - self.abar)

    @property
    def logsnr(self) -> torch.Tensor:
        if self.exact_logsnr is not None:
            return self.exact_logsnr
        return self.abar.log() - torch.log1p(-self.abar)

    @property
    def betas(self) -> torch.Tensor:
        # beta_t = 1 - abar_t / abar_{t-1}, abar_{-1} = 1 (also the respaced betas, as ADM computes them)
        return 1 - self.abar / self.abar_prev

    @property
    def abar_prev(self) -> torch.Tensor:
        return torch.cat([self.abar.new_ones(1), self.abar[:-1]])

    @property
    def posterior_variance(self) -> torch.Tensor:
        """beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t), the variance of q(x_{t-1} | x_t, x0)
        (Ho et al. 2020, Eq. 7); 0 at t = 0."""
        return self.betas * (1 - self.abar_prev) / (1 - self.abar)

    @property
    def posterior_variance_clipped(self) -> torch.Tensor:
        """beta~_t with beta~_0 := beta~_1 (ADM's ``posterior_log_variance_clipped``: beta~_0 = 0
        has no logarithm); beta~ itself when T = 1."""
        beta_tilde = self.posterior_variance
        return torch.cat([beta_tilde[1:2], beta_tilde[1:]]) if self.T > 1 else beta_tilde

    def same_as(self, other: "Schedule", rtol: float = 1e-6, atol: float = 1e-10) -> bool:
        """Whether two schedules have the same steps (equal abar within float tolerance)."""
        return self.T == other.T and torch.allclose(self.abar, other.abar, rtol=rtol, atol=atol)

    def coefficients(self, t: torch.Tensor, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_t, sigma_t) gathered at integer steps ``t`` (any shape), on t's device."""
        key = (t.device, dtype)
        if key not in self._cache:
            self._cache[key] = (self.alpha.to(t.device, dtype), self.sigma.to(t.device, dtype))
        alpha, sigma = self._cache[key]
        return alpha[t], sigma[t]

    def to_dict(self) -> dict:
        """JSON-able description that :func:`from_dict` rebuilds exactly."""
        d = {"name": self.name, "abar": self.abar.tolist(), "timesteps": self.timesteps.tolist(),
             "num_train_timesteps": self.num_train_timesteps}
        if self.exact_logsnr is not None:
            d["logsnr"] = self.exact_logsnr.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Schedule":
        return cls(torch.tensor(d["abar"], dtype=torch.float64), name=d.get("name", "custom"),
                   timesteps=torch.tensor(d["timesteps"]) if "timesteps" in d else None,
                   num_train_timesteps=d.get("num_train_timesteps"),
                   exact_logsnr=torch.tensor(d["logsnr"], dtype=torch.float64) if "logsnr" in d else None)

    def __repr__(self) -> str:
        return (f"Schedule({self.name!r}, T={self.T}, snr {float(self.snr[0]):.3g} .. "
                f"{float(self.snr[-1]):.3g})")


def from_betas(betas, name: str = "betas") -> Schedule:
    betas = torch.as_tensor(np.asarray(betas, dtype=np.float64))
    if betas.ndim != 1 or torch.any(betas <= 0) or torch.any(betas > 1):
        raise ValueError("betas must be a 1-D sequence with 0 < beta <= 1")
    return Schedule(torch.cumprod(1 - betas, 0), name=name)


def from_abar(abar, name: str = "abar") -> Schedule:
    return Schedule(torch.as_tensor(np.asarray(abar, dtype=np.float64)), name=name)


# Ho et al. 2020 (DDPM), Sec. 4
def linear(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """DDPM's betas linspace(1e-4, 0.02, T) at every T (the endpoints do not move with T), as
    diffusers' ``beta_schedule="linear"``; guided-diffusion's ``linear`` is :func:`linear_adm`."""
    return from_betas(np.linspace(beta_start, beta_end, T), name="linear")


# guided-diffusion / improved-diffusion get_named_beta_schedule("linear", T): DDPM's endpoints
# scaled by 1000 / T, so that T steps cover the same noise range as DDPM's 1000
def linear_adm(T: int = 1000) -> Schedule:
    """betas linspace(1e-4 * 1000/T, 0.02 * 1000/T, T) in float64; equals :func:`linear` at T = 1000."""
    scale = 1000 / T
    return from_betas(np.linspace(scale * 1e-4, scale * 0.02, T, dtype=np.float64), name="linear_adm")


# Rombach et al. 2022 (LDM / Stable Diffusion): linear in sqrt(beta)
def scaled_linear(T: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> Schedule:
    return from_betas(np.linspace(beta_start**0.5, beta_end**0.5, T) ** 2, name="scaled_linear")


# Nichol & Dhariwal 2021 (iDDPM), Eq. 17; betas capped at max_beta as they do
def cosine(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * math.pi / 2) ** 2
    return from_betas(np.minimum(1 - f[1:] / f[:-1], max_beta), name="cosine")


# Xu et al. 2022 (GeoDiff), as diffusers' beta_schedule="sigmoid"
def sigmoid(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    x = np.linspace(-6, 6, T)
    return from_betas(1 / (1 + np.exp(-x)) * (beta_end - beta_start) + beta_start, name="sigmoid")


# Lin et al. 2023, Algorithm 1: shift and scale sqrt(abar) so that abar_{T-1} = 0, abar_0 unchanged
def rescale_zero_terminal_snr(schedule: Schedule) -> Schedule:
    s = schedule.abar.sqrt()
    s0, sT = s[0].clone(), s[-1].clone()
    s = (s - sT) * s0 / (s0 - sT)
    return Schedule(s**2, name=f"{schedule.name}+zero_snr", timesteps=schedule.timesteps,
                    num_train_timesteps=schedule.num_train_timesteps)


SCHEDULES = {"linear": linear, "linear_adm": linear_adm, "scaled_linear": scaled_linear,
             "cosine": cosine, "sigmoid": sigmoid}
# what guided-diffusion's --noise_schedule names mean (its get_named_beta_schedule)
ADM_SCHEDULES = {"linear": "linear_adm", "cosine": "cosine"}
_ALIASES = {"squaredcos_cap_v2": "cosine", "ddpm": "linear"}


# sampling starts from x_T ~ N(0, I), the marginal of x_T = sqrt(abar_T) x0 + sqrt(1 - abar_T) eps
# only as abar_T -> 0: above this abar_T (SNR_T about 0.01) the start is named as off
TERMINAL_ABAR = 0.01


def terminal_snr_warning(schedule: Schedule, limit: float = TERMINAL_ABAR) -> str | None:
    """A one-line warning when the last step of ``schedule`` keeps abar_T > ``limit`` of the
    data (DDPM's linear betas at T = 50 end at abar_T = 0.60, SNR 1.5), so that x_T ~ N(0, I) is
    far from the model's x_T = sqrt(abar_T) x0 + sqrt(1 - abar_T) eps; None otherwise."""
    abar = float(schedule.abar[-1])
    if abar <= limit:
        return None
    return (f"schedule {schedule.name} (T={schedule.T}) ends at abar_T = {abar:.3g} (SNR "
            f"{abar / (1 - abar):.3g}, not ~0): samples started from N(0, I) begin off the "
            f"model's x_T, which keeps sqrt(abar_T) = {abar ** 0.5:.3g} of the data; check the "
            f"schedule flags (--noise-schedule, --diffusion-steps, --beta-start / --beta-end), "
            f"or use a zero-terminal-SNR schedule (name_zsnr)")


def get_schedule(name, T: int = 1000, zero_terminal_snr: bool = False, **kwargs) -> Schedule:
    """A named schedule (``linear``, ``linear_adm``, ``scaled_linear``, ``cosine``, ``sigmoid``)
    with T steps. ``linear`` keeps DDPM's 1e-4..0.02 at any T; ``linear_adm`` is guided-diffusion's
    (scaled by 1000/T). The two agree at T = 1000.

    ``name + "_zsnr"`` or ``zero_terminal_snr=True`` applies :func:`rescale_zero_terminal_snr`.
    ``name`` may also be a diffusers scheduler object or its config dict (:func:`as_schedule`;
    T and the other arguments then come from it).
    """
    if not isinstance(name, str):
        return as_schedule(name)
    if name.endswith("_zsnr"):
        name, zero_terminal_snr = name[: -len("_zsnr")], True
    key = _ALIASES.get(name, name)
    if key not in SCHEDULES:
        valid = sorted(SCHEDULES) + sorted(_ALIASES)
        raise ValueError(f"unknown schedule {name!r}; valid schedules: {', '.join(valid)} "
                         "(append _zsnr for zero terminal SNR)")
    if int(T) < 1:
        raise ValueError(f"T must be a positive integer, got {T}")
    sched = SCHEDULES[key](int(T), **kwargs)
    return rescale_zero_terminal_snr(sched) if zero_terminal_snr else sched


def adm_schedule(name: str, T: int = 1000) -> Schedule:
    """guided-diffusion's ``get_named_beta_schedule(name, T)``: ``linear`` is :func:`linear_adm`,
    ``cosine`` iDDPM's; other biaskit names keep their biaskit meaning."""
    return get_schedule(ADM_SCHEDULES.get(name, name), T)


def _text(what, v):
    if not isinstance(v, str):
        raise ValueError(f"{what} must be a string, got {v!r}")
    return v


def _flag(what, v):
    if not isinstance(v, bool):
        raise ValueError(f"{what} must be true or false, got {v!r}")
    return v


def _betas(what, v):
    if not isinstance(v, (list, tuple)) or not v:
        raise ValueError(f"{what} must be a list of numbers in (0, 1), got {type(v).__name__}")
    return [checks.in_interval(f"{what}[{i}]", b, 0, 1, closed="(]") for i, b in enumerate(v)]


# the diffusers scheduler-config keys biaskit reads, each with its valid range (checked once here,
# so that a value of the wrong type is one line naming the key, not a traceback)
SCHEDULER_KEYS = {
    "_class_name": _text, "beta_schedule": _text, "prediction_type": _text, "timestep_spacing": _text,
    "num_train_timesteps": lambda w, v: checks.integer(w, v, lo=1),
    "beta_start": lambda w, v: checks.in_interval(w, v, 0, 1, closed="()"),
    "beta_end": lambda w, v: checks.in_interval(w, v, 0, 1, closed="()"),
    "trained_betas": _betas, "rescale_betas_zero_snr": _flag, "use_dynamic_shifting": _flag,
    "shift": checks.positive, "sigma_min": checks.positive, "sigma_max": checks.positive,
    "rho": checks.positive, "sigma_data": checks.positive,
}


def check_scheduler_config(config: dict, where: str = "scheduler config") -> dict:
    """``config`` with every key of :data:`SCHEDULER_KEYS` it holds (not null) checked."""
    if not isinstance(config, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(config).__name__}")
    for key, check in SCHEDULER_KEYS.items():
        if config.get(key) is not None:
            check(f"{where}: {key}", config[key])
    return config


def from_diffusers_config(config) -> Schedule:
    """Build the training schedule of a diffusers scheduler config (dict, or path to its JSON)."""
    where = "scheduler config"
    if isinstance(config, (str, Path)):
        path = Path(config)
        if path.is_dir():
            path = path / "scheduler_config.json"
        if not path.is_file():
            raise FileNotFoundError(f"scheduler config not found: {path}")
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"scheduler config {path} is not valid JSON: {e}") from None
        where = f"scheduler config {path}"
    config = check_scheduler_config(config, where)
    T = int(config.get("num_train_timesteps", 1000))
    b0, b1 = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    if config.get("trained_betas") is not None:
        sched = from_betas(config["trained_betas"], name="trained_betas")
    elif kind in ("linear", "scaled_linear", "sigmoid"):
        sched = SCHEDULES[kind](T, beta_start=b0, beta_end=b1)
    elif kind == "squaredcos_cap_v2":
        sched = cosine(T)
    else:
        raise ValueError(f"unsupported diffusers beta_schedule {kind!r}; supported: linear, "
                         "scaled_linear, squaredcos_cap_v2, sigmoid, or trained_betas")
    return rescale_zero_terminal_snr(sched) if config.get("rescale_betas_zero_snr") else sched


# diffusers schedulers that describe a continuous process, not a discrete VP schedule
PROCESS_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler",
                      "EDMEulerScheduler", "EDMDPMSolverMultistepScheduler")


def scheduler_config(obj) -> dict | None:
    """The config dict of a diffusers scheduler object (with its ``_class_name``) or of a config
    mapping; None for anything else."""
    from collections.abc import Mapping
    if isinstance(obj, Mapping):
        return dict(obj)
    config = getattr(obj, "config", None)
    if isinstance(config, Mapping) and hasattr(obj, "set_timesteps"):
        return {"_class_name": type(obj).__name__, **dict(config)}
    return None


def as_schedule(obj) -> Schedule:
    """A :class:`Schedule` from a Schedule, a schedule name, or a diffusers (DDPM-family)
    scheduler object or config dict. A scheduler object's own ``alphas_cumprod`` must match the
    schedule read from its config (to 1e-5): a scheduler biaskit cannot read is an error, never
    a default. TypeError for any other type; ValueError for a flow-matching or EDM scheduler
    (a process: ``biaskit.load(net, scheduler=...)`` reads those)."""
    if isinstance(obj, Schedule):
        return obj
    if isinstance(obj, str):
        return get_schedule(obj)
    cfg = scheduler_config(obj)
    if cfg is None:
        raise TypeError(f"schedule: expected a biaskit Schedule, a schedule name, or a diffusers scheduler "
                        f"(object or config dict), got {type(obj).__name__}")
    if cfg.get("_class_name") in PROCESS_SCHEDULERS:
        raise ValueError(f"{cfg['_class_name']} describes a continuous process, not a discrete VP "
                         "schedule: use biaskit.load(net, scheduler=...) for a ProcessDenoiser")
    sched = from_diffusers_config(cfg)
    abar = getattr(obj, "alphas_cumprod", None)
    if abar is not None:
        abar = torch.as_tensor(abar, dtype=torch.float64).flatten()
        if abar.shape != sched.abar.shape or not torch.allclose(abar, sched.abar, rtol=1e-5, atol=1e-7):
            raise ValueError(f"{type(obj).__name__}'s alphas_cumprod differ from the schedule read "
                             f"from its config ({sched!r}); pass a biaskit Schedule instead "
                             "(schedules.from_abar(scheduler.alphas_cumprod))")
    return sched
