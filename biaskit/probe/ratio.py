"""Relative differences over a range of noise levels, as ratios with intervals that stay in
their range.

Over the probed steps t_1..t_K of a named range (e.g. t >= T/2), with weights w_k >= 0 that sum
to 1, model B against the reference A:

    log R = sum_k w_k log(m_B(t_k) / m_A(t_k)),     relative difference R - 1 in (-1, inf)

the weighted geometric mean of the per-t ratios (each t counts by its weight, not by the size
of its error, so t = T - 1, whose x0 error is the largest, does not decide it alone). m is a
non-negative statistic of the per-sample values z_{k,i} at t_k:

- ``mean`` statistics (x0_mse, eps_mse ...): m = mean_i z_{k,i};
- ``norm`` statistics (x0_bias_l2): m = sqrt(||zbar_k||^2 - tr(S_k) / n), the unbiased
  squared norm of the per-channel mean (:func:`~biaskit.probe.bias_norm.bias_sq`), z_{k,i} in R^C.

Interval: the delta method on log R with the draws i shared by both models and every t (the
probe draws each x0 once for all t, common random numbers for the models), so the per-sample
influence value

    psi_i = sum_k w_k [g_B,k(z_B,k,i) - g_A,k(z_A,k,i)],   g_k(z) = d log m_k / d zbar_k . (z - zbar_k)

carries the reference's own uncertainty and every correlation between models and steps; log R
+- t_{0.975, n-1} sd(psi) / sqrt(n) (:func:`biaskit.intervals.t_interval`), mapped back by exp.
The ratio's interval therefore never crosses 0 (a relative difference never below -100%).

Weights (:data:`WEIGHTS`): ``logsnr`` gives each probed t the trapezoid share of the range's
log-SNR span it stands for (per unit log SNR); ``t`` gives each probed t the same weight.
"""

from __future__ import annotations

import numpy as np

from ..intervals import LEVEL, t_interval

WEIGHTS = {"logsnr": "per unit log SNR (trapezoid shares of the probed log-SNR span)",
           "t": "equal per probed t"}
KINDS = ("mean", "norm")


def range_weights(logsnr: np.ndarray, weights: str = "logsnr") -> np.ndarray:
    """(K,) weights summing to 1 of probed points at ``logsnr`` (K,): :data:`WEIGHTS`."""
    logsnr = np.asarray(logsnr, dtype=np.float64)
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    K = logsnr.size
    if K == 0:
        raise ValueError("no probed t in the range")
    if weights == "t" or K == 1:
        return np.full(K, 1.0 / K)
    order = np.argsort(logsnr)
    gaps = np.diff(logsnr[order])
    share = np.zeros(K)
    share[order[:-1]] += gaps / 2   # each gap split between its two ends (trapezoid rule)
    share[order[1:]] += gaps / 2
    if share.sum() <= 0:
        return np.full(K, 1.0 / K)
    return share / share.sum()


def _log_m(z: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """log m_k (K,) and the influence values g_k (K, n) of z (K, n) or, for ``norm``, (K, n, C)."""
    n = z.shape[1]
    if kind == "mean":
        m = z.mean(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(m), (z - m[:, None]) / m[:, None]
    b = z.mean(1)                                           # (K, C) channel means
    d = z - b[:, None]
    tr = (d ** 2).sum((1, 2)) / (n - 1) / n                 # tr(S) / n
    sq = (b ** 2).sum(1) - tr                               # unbiased ||b||^2
    with np.errstate(divide="ignore", invalid="ignore"):
        # d log sqrt(||b||^2) / d b = b / ||b||^2 (the tr(S)/n term is O(1/n), left out)
        return 0.5 * np.log(np.where(sq > 0, sq, np.nan)), np.einsum("knc,kc->kn", d, b) / sq[:, None]


def log_ratio(z_b: np.ndarray, z_a: np.ndarray, w: np.ndarray, kind: str = "mean",
              level: float = LEVEL) -> dict:
    """log R of model B against reference A and its delta-method interval, from paired
    per-sample values z (K, n) (``mean``) or (K, n, C) (``norm``) on the same draws, and
    weights w (K,) summing to 1. Returns log_ratio, log_ratio_lo, log_ratio_hi, ratio,
    relative (= R - 1), relative_lo, relative_hi; NaN where a reference or model statistic is 0
    or an unbiased squared norm is not positive (no ratio can be formed: say so, do not guess)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if z_a.shape != z_b.shape or z_a.shape[0] != len(w):
        raise ValueError(f"z_b {z_b.shape}, z_a {z_a.shape} and w ({len(w)},) do not match")
    lb, gb = _log_m(np.asarray(z_b, np.float64), kind)
    la, ga = _log_m(np.asarray(z_a, np.float64), kind)
    w = np.asarray(w, np.float64)
    est = float(w @ (lb - la))
    psi = w @ (gb - ga)                                     # (n,)
    if not np.isfinite(est) or not np.all(np.isfinite(psi)):
        lo = hi = est = float("nan")
    else:
        lo, hi = (float(v) for v in t_interval(est, psi, level))
    return {"log_ratio": est, "log_ratio_lo": lo, "log_ratio_hi": hi, "ratio": np.exp(est),
            "relative": np.expm1(est), "relative_lo": np.expm1(lo), "relative_hi": np.expm1(hi)}


def compare_ratio(denoisers, data, *, reference: str | None = None, statistics=("x0_mse",),
                  t_min: int | None = None, t_max: int | None = None, weights: str = "logsnr",
                  per_t: bool = False, options=None, **settings):
    """Relative differences against ``reference`` over the probed t in [``t_min``, ``t_max``] (the grid of
    ``options``/``settings`` as in :func:`compare`, restricted to the range), as ratios with
    delta-method intervals on their log (:mod:`biaskit.probe.ratio`), weighted by ``weights``
    (:data:`~biaskit.probe.ratio.WEIGHTS`). ``statistics``: per-sample means (x0_mse, eps_mse,
    excess_mse ...) or ``x0_bias_l2`` (the colour-bias norm).

    Returns one row per (other model, statistic): model, reference, statistic, t_from, t_to,
    logsnr_from, logsnr_to, n_t, weights (their rule, in words), n, reference_mean and
    model_mean (the weighted means of m over the range), then log_ratio, ratio, relative and
    their ``_lo``/``_hi`` (:func:`~biaskit.probe.ratio.log_ratio`). ``per_t``: also one row per
    probed t (weight 1 on that t; t_from == t_to), the per-t relative differences."""
    import dataclasses

    import pandas as pd
    import torch

    from ..formulations import on_common_logsnr
    from .api import _check_models, _evaluate, _named, _options
    from .draws import schedule_indices, timestep_grid
    from .statistics import columns
    o = _options(options, settings)
    models = on_common_logsnr(_named(denoisers))
    reference = list(models)[0] if reference is None else reference
    if reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models: {', '.join(models)}")
    schedule = _check_models(models, data, o)
    grid = timestep_grid(schedule.T, num_timesteps=o.num_timesteps, stratified=o.stratified, seed=o.seed) \
        if o.timesteps is None else schedule_indices(schedule, o.timesteps)
    t_of = schedule.timesteps.numpy()
    grid = np.asarray([k for k in grid if (t_min is None or t_of[k] >= t_min)
                       and (t_max is None or t_of[k] <= t_max)])
    if grid.size == 0:
        raise ValueError(f"no probed t in [{t_min}, {t_max}]: widen the grid (num_timesteps) or the range")
    ev = _evaluate(models, data, dataclasses.replace(o, timesteps=t_of[grid].tolist()))
    at = columns(ev.setup)
    logsnr = ev.schedule.logsnr[torch.as_tensor(ev.ts)].numpy().astype(np.float64)
    w = range_weights(logsnr, weights)
    r = ev.names.index(reference)
    ranges = [(np.arange(len(ev.ts)), w)] + ([(np.array([k]), np.ones(1)) for k in range(len(ev.ts))]
                                             if per_t else [])
    rows = []
    for s in statistics:
        kind, col = ("norm", at["x0_bias_c"]) if s == "x0_bias_l2" else ("mean", at.get(s))
        if col is None:
            raise ValueError(f"statistic {s!r} has no per-sample values here; choose among "
                             f"{', '.join(k for k in at if k not in ('setup', 'width'))} or x0_bias_l2")
        z = ev.Z[..., col]
        m_of = (lambda zz: np.sqrt(np.maximum(0.0, (zz.mean(1) ** 2).sum(1)))) if kind == "norm" \
            else (lambda zz: zz.mean(1))
        for m, name in enumerate(ev.names):
            if m == r:
                continue
            for ks, wk in ranges:
                ts_k = t_of[np.asarray(ev.ts)[ks]]
                rows.append({"model": name, "reference": reference, "statistic": s,
                             "t_from": int(ts_k.min()), "t_to": int(ts_k.max()),
                             "logsnr_from": float(logsnr[ks].max()), "logsnr_to": float(logsnr[ks].min()),
                             "n_t": len(ks), "weights": WEIGHTS[weights] if len(ks) > 1 else "one t",
                             "n": ev.n, "reference_mean": float(wk @ m_of(z[r][ks])),
                             "model_mean": float(wk @ m_of(z[m][ks])), **log_ratio(z[m][ks], z[r][ks], wk, kind)})
    return pd.DataFrame(rows)
