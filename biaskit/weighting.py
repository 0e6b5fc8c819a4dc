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

Each weighting also carries its *measure* (:data:`MEASURES`), the measure it is defined under:

    per_sample   a weight per sampled step: the loss is E_t[w(t) ||.||^2] with t drawn from the
                 time density of the run (uniform over t unless stated). P2, Min-SNR, debias, ...
    per_logsnr   a density over logsnr: the loss is  ∫ w(logsnr) ||.||^2 d logsnr  (Kingma & Gao
                 2023). With t ~ p(t) the per-sample weight is w(logsnr_t) |d logsnr/dt| / (T p(t)).

:func:`per_sample_weights` is the one place that turns either into the weight each sampled t gets
(and normalises it); :func:`per_logsnr_density` goes the other way.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

SPACES = ("x0", "eps", "v", "flow")
MEASURES = ("per_sample", "per_logsnr")
# how a user names snr_min in each front end (Python, training config, command line)
_CLAMP = "clamp snr from below with snr_min (loss.snr_min in training, --snr-min on the command line)"


class InfiniteWeightError(ValueError):
    """A weight whose limit at snr = 0 is infinite was requested without a clamp."""


@dataclass(frozen=True)
class Weighting:
    """w_x0(snr) = snr^order * regular(snr, logsnr, ctx); ``ctx`` holds schedule terms (vlb).
    ``measure``: ``per_sample`` or ``per_logsnr`` (see the module docstring)."""

    name: str
    order: float
    regular: Callable
    params: dict = field(default_factory=dict)
    label: str = ""
    measure: str = "per_sample"

    def __post_init__(self):
        if self.measure not in MEASURES:
            raise ValueError(f"unknown measure {self.measure!r}; valid: {', '.join(MEASURES)}")

    @property
    def column(self) -> str:
        """Column name: registry name, plus the parameter values when they differ from defaults."""
        defaults = _defaults(self.name)
        changed = [v for k, v in self.params.items() if defaults.get(k) != v]
        return "_".join([self.name] + [f"{v:g}" if isinstance(v, float) else str(v) for v in changed])

    def __call__(self, snr, space: str = "x0", *, snr_min: float | None = None, ctx: dict | None = None):
        """The weight in ``space`` at each snr, in the weighting's own measure (float64)."""
        return weight(self, snr, space, snr_min=snr_min, ctx=ctx)


def _evaluate(w: Weighting, snr: torch.Tensor, space: str, snr_min, ctx) -> torch.Tensor:
    """snr^power(space) * g(snr) / (the space's factor), without checks (snr float64)."""
    if snr_min is not None:
        snr = snr.clamp(min=snr_min)
    g = w.regular(snr, torch.log(snr), ctx or {})
    power = {"x0": w.order, "eps": w.order - 1, "v": w.order, "flow": w.order}[space]
    lead = torch.pow(snr, power)
    if space == "v":
        lead = lead / (snr + 1)
    elif space == "flow":
        lead = lead / (1 + snr.sqrt()) ** 2
    return lead * g


def weight(w: Weighting, snr, space: str = "x0", *, snr_min: float | None = None,
           ctx: dict | None = None, what: str = "weighting") -> torch.Tensor:
    """w in ``space`` at each snr, in w's own measure; :class:`InfiniteWeightError` where it is
    not finite, with what would make it finite (another space, the snr_min clamp) if anything."""
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; valid: {', '.join(SPACES)}")
    snr = torch.as_tensor(snr, dtype=torch.float64) if not torch.is_tensor(snr) else snr
    out = _evaluate(w, snr, space, snr_min, ctx)
    if not torch.all(torch.isfinite(out)):
        raise InfiniteWeightError(_infinite_message(w, snr, space, snr_min, ctx, out, what))
    return out


def _infinite_message(w, snr, space, snr_min, ctx, out, what) -> str:
    bad = ~torch.isfinite(out)
    at = float(snr[bad].min())
    snr_c = snr if snr_min is None else snr.clamp(min=snr_min)
    regular_ok = bool(torch.isfinite(w.regular(snr_c, torch.log(snr_c), ctx or {})[bad]).all())
    why = " (its limit at snr -> 0 is infinite)" if regular_ok and at == 0 else ""
    spaces = [s for s in SPACES if s != space
              and bool(torch.isfinite(_evaluate(w, snr, s, snr_min, ctx)).all())]
    fixes = [f"evaluate it in {_or(spaces)} space"] if spaces else []
    if snr_min is None and bool(torch.isfinite(_evaluate(w, snr, space, 1e-12, ctx)).all()):
        fixes.append(_CLAMP)
    fix = ", or ".join(fixes) if fixes else (
        "no space makes it finite" + (f" and snr_min={snr_min:g} does not either" if snr_min is not None
                                      else " and clamping snr does not either"))
    return f"{what} {w.column!r} in {space} space is infinite at snr = {at:g}{why}; {fix}"


def _or(items) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


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
    if k < 0:
        raise ValueError(f"weighting 'p2' needs k >= 0, got k={k:g}")
    params, label = {"k": k, "gamma": gamma}, f"p2(k={k:g}, γ={gamma:g})"
    if k == 0:  # w_x0 = snr^(1-gamma): the snr^-gamma goes into the order, so g stays finite at 0
        return Weighting("p2", 1.0 - gamma, _ones, params, label)
    return Weighting("p2", 1.0, lambda s, *_: (k + s) ** -gamma, params, label)


# Yu et al. 2024 (Unmasking Bias): w_eps = snr^-1/2, i.e. sqrt(snr) on x0
@register
def debias() -> Weighting:
    return Weighting("debias", 0.5, _ones, label="debias")


# Crowson et al. 2024 (HDiT / k-diffusion soft-min-snr): w_eps = 1 / (1 + sd^2 snr)
@register
def soft_min_snr(sigma_data: float = 0.5) -> Weighting:
    return Weighting("soft_min_snr", 1.0, lambda s, *_: 1 / (1 + sigma_data**2 * s),
                     {"sigma_data": sigma_data}, f"soft_min_snr(σd={sigma_data:g})")


# Karras et al. 2022 (EDM) lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 with snr = 1/sigma^2: a
# per-sample weight under EDM's ln sigma ~ N(-1.2, 1.2^2), i.e. t_sampling lognormal:2.4:2.4
@register
def edm(sigma_data: float = 0.5) -> Weighting:
    return Weighting("edm", 0.0, lambda s, *_: s + 1 / sigma_data**2, {"sigma_data": sigma_data},
                     f"edm(σd={sigma_data:g})")


# Kingma & Gao 2023, sigmoid weighting: w_eps = sigmoid(b - logsnr) per unit logsnr (their loss is
# E_t[-dlogsnr/dt w(logsnr_t) ||eps_hat - eps||^2] / 2 with t ~ U(0, 1))
@register
def sigmoid(b: float = 0.0) -> Weighting:
    return Weighting("sigmoid", 1.0, lambda s, lam, _: torch.sigmoid(b - lam), {"b": b},
                     f"sigmoid(b={b:g})", measure="per_logsnr")


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
    if space == "x0":
        return Weighting(name, 0.0, lambda s, *_: fn(s), measure=measure)
    if space == "eps":
        return Weighting(name, 1.0, lambda s, *_: fn(s), measure=measure)
    if space == "v":
        return Weighting(name, 0.0, lambda s, *_: fn(s) * (s + 1), measure=measure)
    if space == "flow":
        return Weighting(name, 0.0, lambda s, *_: fn(s) * (1 + s.sqrt()) ** 2, measure=measure)
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


def _per_sample(w: Weighting, schedule, space: str, snr_min, p_t) -> torch.Tensor:
    """(T,) per-sample weights of w in ``space`` under p_t (uniform when None), unnormalised."""
    snr = schedule.snr.to(torch.float64)
    if w.measure == "per_sample":
        return weight(w, snr, space, snr_min=snr_min, ctx=schedule_context(schedule))
    # per unit logsnr: rho(logsnr_t) |d logsnr/dt| / (T p(t))
    _, finite, dlam = logsnr_jacobian(schedule)
    if finite.sum() < 2:
        raise ValueError(f"weighting {w.column!r} is defined per unit logsnr: its per-sample weights "
                         f"need |dlogsnr/dt|, i.e. at least 2 steps with finite logsnr "
                         f"(this schedule has {int(finite.sum())})")
    finite = torch.as_tensor(finite)
    out = torch.zeros(schedule.T, dtype=torch.float64)
    what = "per-sample weight (per-logsnr density x |dlogsnr/dt|) of"
    out[finite] = weight(w, snr[finite], space, snr_min=snr_min, what=what) * \
        torch.as_tensor(dlam, dtype=torch.float64)[finite]
    if not bool(finite.all()):
        # snr = 0 (zero terminal SNR): rho |dlogsnr/dt| = (rho / snr) |dsnr/dt|, whose limit is
        # exact in the snr^p g form (order p - 1); |dsnr/dt| by differences of snr
        dsnr = torch.as_tensor(np.abs(np.gradient(snr.numpy())))
        out[~finite] = weight(replace(w, order=w.order - 1), snr[~finite], space, snr_min=snr_min,
                              what=what) * dsnr[~finite]
    if p_t is None:
        return out
    Tp = schedule.T * torch.as_tensor(p_t, dtype=torch.float64)
    return torch.where(Tp > 0, out / torch.where(Tp > 0, Tp, 1.0), 0.0)  # never drawn: weight 0


def normalization_constant(w_t, mode: str = "mean", p_t=None) -> float:
    """c such that c w_t has E_t[c w] = 1 under p_t (uniform by default) for ``"mean"``, or
    max 1 for ``"max"``; 1 for ``"none"``."""
    w_t = torch.as_tensor(w_t, dtype=torch.float64)
    if mode == "none":
        return 1.0
    if mode == "max":
        total = w_t.max()
    elif mode == "mean":
        p = torch.full_like(w_t, 1 / w_t.numel()) if p_t is None else torch.as_tensor(p_t, dtype=w_t.dtype)
        total = (w_t * p).sum()
    else:
        raise ValueError(f"normalize mode must be 'mean', 'max' or 'none', got {mode!r}")
    if not (torch.isfinite(total) and total > 0):
        raise ValueError(f"cannot normalise ({mode}) weights whose {mode} is {float(total):g}")
    return float(1 / total)


def normalize_weights(w_t, mode: str = "mean", p_t=None):
    """Rescale per-sample weights by their own :func:`normalization_constant`."""
    w_t = torch.as_tensor(w_t, dtype=torch.float64)
    return w_t * normalization_constant(w_t, mode, p_t)


def per_sample_weights(w, schedule, space: str = "x0", *, snr_min: float | None = None, p_t=None,
                       normalize: str = "none") -> torch.Tensor:
    """(T,) float64: the weight each sampled step t gets in the loss E_{t ~ p_t}[w(t) ||.||^2] on
    the ``space`` error, for a weighting of either measure (p_t uniform when None).

    normalize (``none``, ``mean``, ``max``) is done once for every space: the constant c makes the
    **x0-space** weight have mean 1 under p_t (or max 1), and every space gets c times its weight,
    so one weighting with one normalisation is one objective whatever the network predicts.
    """
    w = get_weighting(w)
    w_t = _per_sample(w, schedule, space, snr_min, p_t)
    if normalize == "none":
        return w_t
    w_x0 = w_t if space == "x0" else _per_sample(w, schedule, "x0", snr_min, p_t)
    return w_t * normalization_constant(w_x0, normalize, p_t)


def weights_table(schedule, weightings, space: str = "x0", snr_min: float | None = None,
                  normalize: str = "none"):
    """DataFrame: t, snr, logsnr, then one column per weighting (its ``column`` name) holding its
    :func:`per_sample_weights` under uniform t, whichever measure it is defined in (``measures``
    gives that per column).

    A weighting whose limit is infinite at some step (snr = 0 in eps space) raises unless
    ``snr_min`` is given.
    """
    import pandas as pd
    ws = [get_weighting(w) for w in weightings]
    df = pd.DataFrame({"t": np.arange(schedule.T), "snr": schedule.snr.numpy(),
                       "logsnr": schedule.logsnr.numpy()})
    for w in ws:
        df[table_column(w)] = per_sample_weights(w, schedule, space, snr_min=snr_min,
                                                 normalize=normalize).numpy()
    return df


def table_column(w) -> str:
    """w's column in :func:`weights_table` (the ``snr`` weighting would collide with the snr column)."""
    col = get_weighting(w).column
    return col if col not in ("t", "snr", "logsnr") else f"{col}_weighting"


def measures(weightings) -> dict[str, str]:
    """{table column: measure} for each weighting."""
    return {table_column(w): get_weighting(w).measure for w in weightings}


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
