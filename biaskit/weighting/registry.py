"""The registry of named weightings: each entry is the x0-space weight, once; spec strings
(``"min_snr:5"``) and callables become Weightings through :func:`get_weighting`."""

from __future__ import annotations

import inspect
from typing import Callable

import torch

from .. import checks
from .core import _REGISTRY, SPACES, Weighting, x0_form


def register(fn):
    """Add a factory ``fn(**params) -> Weighting`` under its name (``get_weighting("name:...")``)."""
    _REGISTRY[fn.__name__] = fn
    return fn


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
    gamma = checks.positive("weighting min_snr: gamma", gamma)
    return Weighting("min_snr", 1.0, lambda s, *_: (gamma / s).clamp(max=1.0), {"gamma": gamma},
                     f"min_snr(γ={gamma:g})")


# Choi et al. 2022 (P2): w_eps = (k + snr)^-gamma
@register
def p2(k: float = 1.0, gamma: float = 1.0) -> Weighting:
    # k >= 0 keeps (k + snr) > 0; gamma >= 0 keeps the weight from growing with snr
    k = checks.non_negative("weighting p2: k", k)
    gamma = checks.non_negative("weighting p2: gamma", gamma)
    params, label = {"k": k, "gamma": gamma}, f"p2(k={k:g}, γ={gamma:g})"
    if k == 0:  # w_x0 = snr^(1-gamma): the snr^-gamma goes into the order, so g stays finite at 0
        return Weighting("p2", 1.0 - gamma, _ones, params, label)
    return Weighting("p2", 1.0, lambda s, *_: (k + s) ** -gamma, params, label)


# Yu et al. 2024 (Unmasking Bias): w_eps = snr^-1/2, i.e. sqrt(snr) on x0
@register
def debias() -> Weighting:
    return Weighting("debias", 0.5, _ones, label="debias")


# Yu et al.'s code (the yuhuUSTC/Debias fork of guided-diffusion): 1/sqrt(snr) multiplies the MSE
# of the trained target in its own space. eps target: debias itself; x0 target: w_x0 = snr^-1/2,
# 1/snr times debias's sqrt(snr); v target: w_v = snr^-1/2, (snr + 1)/snr times debias's
# sqrt(snr)/(snr + 1)
@register
def debias_fork() -> Weighting:
    return Weighting("debias_fork", -0.5, _ones, label="debias_fork (1/√snr on the target's MSE)",
                     native=True)


# Crowson et al. 2024 (HDiT / k-diffusion soft-min-snr): w_eps = 1 / (1 + sd^2 snr)
@register
def soft_min_snr(sigma_data: float = 0.5) -> Weighting:
    sigma_data = checks.positive("weighting soft_min_snr: sigma_data", sigma_data)
    return Weighting("soft_min_snr", 1.0, lambda s, *_: 1 / (1 + sigma_data**2 * s),
                     {"sigma_data": sigma_data}, f"soft_min_snr(σd={sigma_data:g})")


# Karras et al. 2022 (EDM) lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 with snr = 1/sigma^2: a
# per-sample weight under EDM's ln sigma ~ N(-1.2, 1.2^2), i.e. t_sampling lognormal:2.4:2.4
@register
def edm(sigma_data: float = 0.5) -> Weighting:
    sigma_data = checks.positive("weighting edm: sigma_data", sigma_data)
    return Weighting("edm", 0.0, lambda s, *_: s + 1 / sigma_data**2, {"sigma_data": sigma_data},
                     f"edm(σd={sigma_data:g})")


# Kingma & Gao 2023, sigmoid weighting: w_eps = sigmoid(b - logsnr) per unit logsnr (their loss is
# E_t[-dlogsnr/dt w(logsnr_t) ||eps_hat - eps||^2] / 2 with t ~ U(0, 1))
@register
def sigmoid(b: float = 0.0) -> Weighting:
    b = checks.finite("weighting sigmoid: b", b)
    return Weighting("sigmoid", 1.0, lambda s, lam, _: torch.sigmoid(b - lam), {"b": b},
                     f"sigmoid(b={b:g})", measure="per_logsnr")


# Salimans & Ho 2022, truncated SNR: w_x0 = max(snr, gamma) (gamma = 1 in the paper)
@register
def trunc_snr(gamma: float = 1.0) -> Weighting:
    gamma = checks.positive("weighting trunc_snr: gamma", gamma)
    return Weighting("trunc_snr", 0.0, lambda s, *_: s.clamp(min=gamma), {"gamma": gamma},
                     f"trunc_snr(γ={gamma:g})")


@register
def max_snr(gamma: float = 1.0) -> Weighting:
    """Alias of trunc_snr under the name some codebases use: w_x0 = max(snr, gamma)."""
    gamma = checks.positive("weighting max_snr: gamma", gamma)
    return Weighting("max_snr", 0.0, lambda s, *_: s.clamp(min=gamma), {"gamma": gamma},
                     f"max_snr(γ={gamma:g})")


# Salimans & Ho 2022, the v-prediction loss: constant on v, i.e. w_x0 = snr + 1
@register
def v_constant() -> Weighting:
    return Weighting("v_constant", 0.0, lambda s, *_: s + 1, label="v_constant (v-MSE)")


# Lipman et al. 2023 / Liu et al. 2022 (flow matching, rectified flow): constant on the velocity
# u = eps - x0, i.e. w_x0 = 1 / s^2 = (1 + sqrt(snr))^2 with s = 1 / (1 + sqrt(snr)) the flow time
@register
def flow_constant() -> Weighting:
    return Weighting("flow_constant", 0.0, lambda s, *_: (1 + s.sqrt()) ** 2,
                     label="flow_constant (velocity MSE)")


def _vlb_regular(s, lam, ctx):
    # Ho et al. 2020, Eq. 12: w_eps = beta^2 / (2 s_t^2 (1 - beta) (1 - abar)), with s_t^2 the
    # posterior variance beta~_t; s_0^2 := s_1^2 as ADM clips.
    if "schedule" not in ctx:
        raise ValueError("the vlb weighting depends on the discrete schedule: pass "
                         "ctx=schedule_context(schedule) (weights_table does this)")
    sched = ctx["schedule"]
    if sched.T < 2:
        raise ValueError("the vlb weighting needs T >= 2: its t = 0 weight borrows the posterior "
                         "variance of t = 1, and this schedule has T = 1")
    beta, abar = sched.betas.to(s.dtype), sched.abar.to(s.dtype)
    post_var = sched.posterior_variance_clipped.to(s.dtype)
    return beta**2 / (2 * post_var * (1 - beta) * (1 - abar))


@register
def vlb() -> Weighting:
    return Weighting("vlb", 1.0, _vlb_regular, label="vlb (DDPM bound)")


def from_callable(fn: Callable, space: str = "x0", name: str | None = None,
                  measure: str = "per_sample") -> Weighting:
    """A user weighting ``fn(snr) -> weight`` given in ``space`` and ``measure``, converted to the
    x0 form once."""
    name = name or getattr(fn, "__name__", "custom")
    order, regular = x0_form(0.0, lambda s, *_: fn(s), space)
    return Weighting(name, order, regular, measure=measure)


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
        params[key] = checks.number(f"weighting {name}: {key}", val)
    try:
        return fn(**params)
    except TypeError:
        raise ValueError(f"weighting {name!r} takes parameters {sig}, got {sorted(params)}") from None
