"""Confidence intervals, one home for every rule biaskit uses (level 0.95 unless told).

- :func:`t_interval`: est +- t_{(1+level)/2, n-1} sd(psi) / sqrt(n) over n per-sample influence
  values psi (psi = z - zbar for a mean, CLT). The same function serves a paired difference
  (psi of model B minus psi of model A on the same draws) and the delta method (psi = the
  gradient of a smooth statistic at the means applied to z - zbar).
- :func:`welch_half_width`: the difference of two means of independent samples (Welch).
- :func:`bootstrap_weights` / :func:`percentile`: the percentile bootstrap over resampled samples.
- :func:`bias_corrected_levels`: the quantile levels of the bias-corrected (BC) percentile
  bootstrap (Efron 1981).
- :func:`mean_of_intervals`: a conservative interval for the mean of several estimates whose
  correlation is unknown.
"""

from __future__ import annotations

import functools
import math

import numpy as np

LEVEL = 0.95


@functools.lru_cache(maxsize=256)
def t_quantile(n: int, level: float = LEVEL) -> float:
    """t_{(1 + level) / 2, n - 1}, the two-sided quantile of Student's t with n - 1 degrees of
    freedom (cached: every column of every t of a probe asks for the same one)."""
    from scipy.stats import t as student_t
    return float(student_t.ppf(0.5 + level / 2, n - 1))


def t_interval(est, psi: np.ndarray, level: float = LEVEL) -> tuple:
    """(lo, hi) = est -+ t_{(1+level)/2, n-1} sd(psi) / sqrt(n); psi (..., n) the per-sample
    influence values along the last axis, est (...,) (a float for psi (n,))."""
    n = psi.shape[-1]
    half = t_quantile(n, level) * psi.std(-1, ddof=1) / math.sqrt(n)
    return est - half, est + half


def welch_half_width(sd_a, n_a, sd_b, n_b, level: float = LEVEL):
    """Half-width of the interval for mean_a - mean_b of two independent samples (Welch):
    t_{(1+level)/2, nu} sqrt(v), v = sd_a^2 / n_a + sd_b^2 / n_b, with the Welch-Satterthwaite
    nu = v^2 / ((sd_a^2 / n_a)^2 / (n_a - 1) + (sd_b^2 / n_b)^2 / (n_b - 1)). Arrays or Series."""
    from scipy.stats import t as student_t
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    nu = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    return student_t.ppf(0.5 + level / 2, nu) * (va + vb) ** 0.5


def bootstrap_weights(n: int, B: int, seed: int) -> np.ndarray:
    """(B, n) resampling weights: row b holds the multiplicities / n of a resample with
    replacement of the n samples (a seeded multinomial), so weights @ z is the resampled mean."""
    rng = np.random.default_rng([int(seed), 0xB007])
    return rng.multinomial(n, np.full(n, 1.0 / n), size=B) / n


def percentile(draws: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval (lo, hi) of resampled values ``draws`` (K, B), each (K,)."""
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=1)
    return lo, hi


def bias_corrected_levels(reps: np.ndarray, value: float, level: float = LEVEL) -> np.ndarray:
    """The two quantile levels Phi(2 z0 + z_{(1 -+ level)/2}) of the BC percentile bootstrap,
    z0 = Phi^-1(P*(v* < v)) from the resampled values ``reps`` (ties count half), clipped to
    half a resample from 0 and 1 so that z0 stays finite."""
    from scipy.stats import norm
    below = float(np.mean(reps < value) + 0.5 * np.mean(reps == value))
    z0 = norm.ppf(np.clip(below, 0.5 / len(reps), 1 - 0.5 / len(reps)))
    return norm.cdf(2 * z0 + norm.ppf([(1 - level) / 2, (1 + level) / 2]))


def mean_of_intervals(est, lo, hi) -> tuple:
    """(mean, lo, hi) for the mean of m estimates with intervals [lo_j, hi_j] (arrays or Series):
    the mean of the half-widths (hi_j - lo_j) / 2 bounds the half-width of the mean of correlated
    estimates from above (sd of a sum <= the sum of the sds), so the interval is conservative."""
    mean, half = est.mean(), ((hi - lo) / 2).mean()
    return mean, mean - half, mean + half


def over_seeds(est, level: float = LEVEL) -> tuple:
    """(mean, lo, hi) of the per-seed estimates ``est`` (S,) of S independently trained models
    (one training seed each, each estimate from its own probe draws): the t-interval
    mean +- t_{(1+level)/2, S-1} sd(est) / sqrt(S) over seeds. Under the two-level model
    est_s = mu + u_s + e_s (seed effect u_s, probe noise e_s, both centred) sd(est) estimates
    sqrt(var u + var e), so the interval covers mu with seed-to-seed variance and probe noise
    both included; it needs S >= 2 (S = 1: NaN bounds; say that one seed covers probe noise
    only)."""
    est = np.asarray(est, dtype=np.float64)
    mean = float(est.mean())
    if est.size < 2:
        return mean, float("nan"), float("nan")
    lo, hi = t_interval(mean, est, level)
    return mean, float(lo), float(hi)
