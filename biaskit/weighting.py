"""Loss weightings, each defined once, in x0 space, and derived in every other space.

Every weighting is written as

    w_x0(snr) = snr^p * g(snr)                                     (one definition)

with an order p and a regular part g that is finite and positive at snr = 0. The other spaces
follow from ||x0_hat - x0||^2 = ||eps_hat - eps||^2 / snr, ||v_hat - v||^2 = (snr + 1) / snr
||eps_hat - eps||^2 and ||u_hat - u||^2 = (1 + snr^-1/2)^2 ||eps_hat - eps||^2:

    w_eps  = snr^(p-1) g
    w_v    = snr^p g / (snr + 1)
    w_flow = snr^p g / (1 + sqrt(snr))^2

so the snr -> 0 limit (zero terminal SNR) is exact in every space: 0^0 = 1, 0^q = 0 for q > 0,
and an infinite limit (q < 0) raises :class:`InfiniteWeightError` unless the caller asks for the
documented clamp ``snr_min`` (snr is raised to snr_min before evaluating).

These are *per-sample* weights: the loss is E_t[w(t) ||.||^2] under the timestep distribution
(uniform over t unless stated). A *per-unit-logsnr density* (EDM, Kingma & Gao 2023) is
w(t) p(t) / |d logsnr / dt|; :func:`per_logsnr_density` converts.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

SPACES = ("x0", "eps", "v", "flow")


class InfiniteWeightError(ValueError):
    """A weight whose limit at snr = 0 is infinite was requested without a clamp."""


@dataclass(frozen=True)
class Weighting:
    """w_x0(snr) = snr^order * regular(snr, logsnr, ctx); ``ctx`` holds schedule terms (vlb)."""

    name: str
    order: float
    regular: Callable
    params: dict = field(default_factory=dict)
    label: str = ""

    @property
    def column(self) -> str:
        """Column name: registry name, plus the parameter values when they differ from defaults."""
        defaults = _defaults(self.name)
        changed = [v for k, v in self.params.items() if defaults.get(k) != v]
        return "_".join([self.name] + [f"{v:g}" if isinstance(v, float) else str(v) for v in changed])

    def __call__(self, snr, space: str = "x0", *, snr_min: float | None = None, ctx: dict | None = None):
        """The weight in ``space`` at each snr (tensor or array; float64 in, float64 out)."""
        return weight(self, snr, space, snr_min=snr_min, ctx=ctx)


def weight(w: Weighting, snr, space: str = "x0", *, snr_min: float | None = None,
           ctx: dict | None = None) -> torch.Tensor:
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; valid: {', '.join(SPACES)}")
    snr = torch.as_tensor(snr, dtype=torch.float64) if not torch.is_tensor(snr) else snr
    if snr_min is not None:
        snr = snr.clamp(min=snr_min)
    logsnr = torch.log(snr)
    g = w.regular(snr, logsnr, ctx or {})
    power = {"x0": w.order, "eps": w.order - 1, "v": w.order, "flow": w.order}[space]
    lead = torch.pow(snr, power)
    if space == "v":
        lead = lead / (snr + 1)
    elif space == "flow":
        lead = lead / (1 + snr.sqrt()) ** 2
    out = lead * g
    if not torch.all(torch.isfinite(out)):
        bad = snr[~torch.isfinite(out)]
        raise InfiniteWeightError(
            f"weighting {w.column!r} in {space} space is infinite at snr = {float(bad.min()):g} "
            f"(its limit at snr -> 0 is infinite); evaluate it in x0 or v space, or pass "
            f"snr_min=... to clamp snr from below")
    return out


# --- the registry: each entry is the x0-space weight, once -----------------------------------
_REGISTRY: dict[str, Callable[..., Weighting]] = {}


def register(fn):
    _REGISTRY[fn.__name__] = fn
    return fn


def _defaults(name):
    fn = _REGISTRY.get(name)
    if fn is None:
        return {}
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _ones(snr, *_):
    return torch.ones_like(snr)


# Ho et al. 2020, L_simple: constant on eps, i.e. snr on x0
@register
def constant() -> Weighting:
    return Weighting("constant", 1.0, _ones, label="constant (L_simple)")


# plain x0-MSE ("SNR weighting" in eps space: 1/snr)
@register
def snr() -> Weighting:
    return Weighting("snr", 0.0, _ones, label="snr (x0-MSE)")


# Hang et al. 2023 (Min-SNR-gamma): w_x0 = min(snr, gamma) = snr * min(1, gamma / snr)
@register
def min_snr(gamma: float = 5.0) -> Weighting:
    return Weighting("min_snr", 1.0, lambda s, *_: (gamma / s).clamp(max=1.0), {"gamma": gamma},
                     f"min_snr(γ={gamma:g})")


# Choi et al. 2022 (P2): w_eps = (k + snr)^-gamma
@register
def p2(k: float = 1.0, gamma: float = 1.0) -> Weighting:
    return Weighting("p2", 1.0, lambda s, *_: (k + s) ** -gamma, {"k": k, "gamma": gamma},
                     f"p2(k={k:g}, γ={gamma:g})")


# Yu et al. 2024 (Unmasking Bias): w_eps = snr^-1/2, i.e. sqrt(snr) on x0
@register
def debias() -> Weighting:
    return Weighting("debias", 0.5, _ones, label="debias")


# Crowson et al. 2024 (HDiT / k-diffusion soft-min-snr): w_eps = 1 / (1 + sd^2 snr)
@register
def soft_min_snr(sigma_data: float = 0.5) -> Weighting:
    return Weighting("soft_min_snr", 1.0, lambda s, *_: 1 / (1 + sigma_data**2 * s),
                     {"sigma_data": sigma_data}, f"soft_min_snr(σd={sigma_data:g})")


# Karras et al. 2022 (EDM) lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 with snr = 1/sigma^2
@register
def edm(sigma_data: float = 0.5) -> Weighting:
    return Weighting("edm", 0.0, lambda s, *_: s + 1 / sigma_data**2, {"sigma_data": sigma_data},
                     f"edm(σd={sigma_data:g})")


# Kingma & Gao 2023, sigmoid weighting: w_eps = sigmoid(b - logsnr)
@register
def sigmoid(b: float = 0.0) -> Weighting:
    return Weighting("sigmoid", 1.0, lambda s, lam, _: torch.sigmoid(b - lam), {"b": b},
                     f"sigmoid(b={b:g})")


# Salimans & Ho 2022, truncated SNR: w_x0 = max(snr, gamma) (gamma = 1 in the paper)
@register
def trunc_snr(gamma: float = 1.0) -> Weighting:
    return Weighting("trunc_snr", 0.0, lambda s, *_: s.clamp(min=gamma), {"gamma": gamma},
                     f"trunc_snr(γ={gamma:g})")


@register
def max_snr(gamma: float = 1.0) -> Weighting:
    """Alias of trunc_snr under the name some codebases use: w_x0 = max(snr, gamma)."""
    return Weighting("max_snr", 0.0, lambda s, *_: s.clamp(min=gamma), {"gamma": gamma},
                     f"max_snr(γ={gamma:g})")


def _vlb_regular(s, lam, ctx):
    # Ho et al. 2020, Eq. 12: w_eps = beta^2 / (2 s_t^2 (1 - beta) (1 - abar)), with s_t^2 the
    # posterior variance beta~_t; s_0^2 := s_1^2 as ADM clips.
    if "schedule" not in ctx:
        raise ValueError("the vlb weighting depends on the discrete schedule: pass "
                         "ctx=schedule_context(schedule) (weights_table does this)")
    sched = ctx["schedule"]
    beta, abar = sched.betas.to(s.dtype), sched.abar.to(s.dtype)
    post_var = sched.posterior_variance.to(s.dtype)
    if post_var.numel() > 1:
        post_var = torch.cat([post_var[1:2], post_var[1:]])
    return beta**2 / (2 * post_var * (1 - beta) * (1 - abar))


@register
def vlb() -> Weighting:
    return Weighting("vlb", 1.0, _vlb_regular, label="vlb (DDPM bound)")


def from_callable(fn: Callable, space: str = "x0", name: str | None = None) -> Weighting:
    """A user weighting ``fn(snr) -> weight`` given in ``space``, converted to the x0 form once."""
    name = name or getattr(fn, "__name__", "custom")
    if space == "x0":
        return Weighting(name, 0.0, lambda s, *_: fn(s))
    if space == "eps":
        return Weighting(name, 1.0, lambda s, *_: fn(s))
    if space == "v":
        return Weighting(name, 0.0, lambda s, *_: fn(s) * (s + 1))
    if space == "flow":
        return Weighting(name, 0.0, lambda s, *_: fn(s) * (1 + s.sqrt()) ** 2)
    raise ValueError(f"unknown space {space!r}; valid: {', '.join(SPACES)}")


def names() -> list[str]:
    return sorted(_REGISTRY)


def get_weighting(spec, **params) -> Weighting:
    """A weighting from a Weighting, a callable (x0 space), or a spec string.

    Spec strings: ``"debias"``, ``"min_snr:5"`` (positional), ``"p2:k=1:gamma=0.5"``.
    """
    if isinstance(spec, Weighting):
        return spec
    if callable(spec):
        return from_callable(spec)
    name, *args = str(spec).strip().split(":")
    if name not in _REGISTRY:
        raise ValueError(f"unknown weighting {name!r}; valid weightings: {', '.join(names())}")
    fn = _REGISTRY[name]
    sig = list(inspect.signature(fn).parameters)
    for i, a in enumerate(args):
        key, _, val = a.rpartition("=")
        key = key or (sig[i] if i < len(sig) else None)
        if key not in sig:
            raise ValueError(f"weighting {name!r} takes parameters {sig}, got {a!r}")
        params[key] = float(val)
    try:
        return fn(**params)
    except TypeError:
        raise ValueError(f"weighting {name!r} takes parameters {sig}, got {sorted(params)}") from None


def schedule_context(schedule) -> dict:
    return {"schedule": schedule}


def logsnr_jacobian(schedule):
    """(logsnr_t, finite mask, |d logsnr/dt|): the Jacobian between per-step and per-unit-logsnr
    quantities, by central differences over the steps with finite logsnr (NaN elsewhere)."""
    lam = schedule.logsnr.numpy()
    finite = np.isfinite(lam)
    dlam = np.full_like(lam, np.nan)
    if finite.sum() > 1:
        dlam[finite] = np.abs(np.gradient(lam[finite]))
    return lam, finite, dlam


def per_logsnr_density(w_t, schedule, p_t=None, normalize: str = "integral") -> np.ndarray:
    """Convert a per-sample weight w(t) under timestep probabilities p(t) (uniform by default) into
    a density over logsnr: rho(logsnr_t) = w(t) p(t) / |d logsnr/dt| (central differences in t).

    normalize: ``"integral"`` (integrates to 1 over logsnr), ``"max"`` (peak 1) or ``"none"``.
    Steps where logsnr is infinite (zero terminal SNR) get density 0.
    """
    lam, finite, dlam = logsnr_jacobian(schedule)
    w_t = np.asarray(w_t, dtype=np.float64)
    p_t = np.full(schedule.T, 1.0 / schedule.T) if p_t is None else np.asarray(p_t, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(finite, w_t * p_t / dlam, 0.0)
    if normalize == "integral":
        area = np.trapezoid(rho[finite][::-1], lam[finite][::-1]) if finite.sum() > 1 else 1.0
        rho = rho / area
    elif normalize == "max":
        rho = rho / np.nanmax(rho)
    elif normalize != "none":
        raise ValueError(f"normalize must be 'integral', 'max' or 'none', got {normalize!r}")
    return rho


def timestep_probabilities(density, schedule) -> np.ndarray:
    """The inverse of :func:`per_logsnr_density`: probabilities p(t) of drawing step t when logsnr
    should follow ``density(logsnr)`` (unnormalised), p(t) ∝ density(logsnr_t) |d logsnr/dt|.
    Steps with infinite logsnr (zero terminal SNR) get probability 0."""
    lam, finite, dlam = logsnr_jacobian(schedule)
    if finite.sum() < 2:
        raise ValueError("a density over logsnr needs at least two steps with finite logsnr")
    p = np.where(finite, np.asarray(density(np.where(finite, lam, 0.0)), float) * dlam, 0.0)
    if not np.all(np.isfinite(p)) or p.sum() <= 0:
        raise ValueError("the logsnr density puts no finite, positive mass on this schedule's steps")
    return p / p.sum()


def normalize_weights(w_t, mode: str = "mean", p_t=None):
    """Rescale per-sample weights: ``"mean"`` makes E_t[w] = 1 under p_t (uniform by default),
    ``"max"`` makes the largest weight 1, ``"none"`` leaves them."""
    w_t = torch.as_tensor(w_t, dtype=torch.float64)
    if mode == "none":
        return w_t
    if mode == "max":
        return w_t / w_t.max()
    if mode == "mean":
        p = torch.full_like(w_t, 1 / w_t.numel()) if p_t is None else torch.as_tensor(p_t, dtype=w_t.dtype)
        return w_t / (w_t * p).sum()
    raise ValueError(f"normalize mode must be 'mean', 'max' or 'none', got {mode!r}")


def weights_table(schedule, weightings, space: str = "x0", snr_min: float | None = None):
    """DataFrame: t, snr, logsnr, then one column per weighting (its ``column`` name).

    A weighting whose limit is infinite at some step (snr = 0 in eps space) raises unless
    ``snr_min`` is given.
    """
    import pandas as pd
    ws = [get_weighting(w) for w in weightings]
    df = pd.DataFrame({"t": np.arange(schedule.T), "snr": schedule.snr.numpy(),
                       "logsnr": schedule.logsnr.numpy()})
    ctx = schedule_context(schedule)
    for w in ws:
        # the "snr" weighting would collide with the snr column
        col = w.column if w.column not in ("t", "snr", "logsnr") else f"{w.column}_weighting"
        df[col] = weight(w, schedule.snr, space, snr_min=snr_min, ctx=ctx).numpy()
    return df


def amplification(snr) -> torch.Tensor:
    """1 / sqrt(snr): how much an eps error is magnified in x0 (x0_hat - x0 = -(eps_hat - eps) / sqrt(snr))."""
    snr = torch.as_tensor(snr, dtype=torch.float64)
    return snr.rsqrt()


def share_by_quarter(w_t, p_t=None) -> np.ndarray:
    """Share of the total expected weight sum_t p(t) w(t) that falls in each quarter of t."""
    w_t = np.asarray(w_t, dtype=np.float64)
    p_t = np.full(len(w_t), 1 / len(w_t)) if p_t is None else np.asarray(p_t, float)
    mass = w_t * p_t
    return np.array([q.sum() for q in np.array_split(mass, 4)]) / mass.sum()
