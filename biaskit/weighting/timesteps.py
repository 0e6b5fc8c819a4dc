"""From a weighting to what each sampled timestep gets: the per-logsnr Jacobian, per-sample
weights and their normalisation, the per-timestep tables and quarter shares (the atlas)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .core import weight, Weighting
from .registry import get_weighting

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
    w = get_weighting(w).for_target(space)  # a native weighting: the objective of a `space` target
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
