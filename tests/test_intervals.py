"""The interval rules against a second library (scipy) and closed forms."""

import math

import numpy as np
import pytest
from scipy import stats

from biaskit.intervals import (bias_corrected_levels, bootstrap_weights, mean_of_intervals, percentile,
                               t_interval, welch_half_width)


def test_t_interval_is_scipys_t_interval_of_the_mean():
    z = np.random.default_rng(0).exponential(size=(3, 40))
    est = z.mean(-1)
    lo, hi = t_interval(est, z - est[:, None], 0.9)
    for k in range(3):
        ref = stats.t.interval(0.9, 39, loc=est[k], scale=stats.sem(z[k]))
        np.testing.assert_allclose([lo[k], hi[k]], ref, rtol=1e-12)


def test_t_interval_of_a_paired_difference_uses_the_differences_spread():
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    b = a + 0.1 + 0.01 * rng.normal(size=200)          # strongly correlated with a
    d = b - a
    lo, hi = t_interval(d.mean(), (b - b.mean()) - (a - a.mean()))
    ref = stats.ttest_rel(b, a).confidence_interval(0.95)
    np.testing.assert_allclose([lo, hi], [ref.low, ref.high], rtol=1e-10)


def test_bootstrap_weights_are_resamples_and_the_percentile_interval_of_a_mean():
    n, B = 50, 4000
    W = bootstrap_weights(n, B, seed=3)
    counts = W * n
    assert W.shape == (B, n) and np.allclose(counts, counts.round()) and np.allclose(W.sum(1), 1)
    # each sample appears Binomial(n, 1/n) times: mean 1, variance 1 - 1/n
    assert abs(counts.mean() - 1) < 0.01 and abs(counts.var() - (1 - 1 / n)) < 0.03
    z = np.random.default_rng(4).normal(2.0, 1.5, size=n)
    lo, hi = percentile((W @ z)[None], 0.95)
    # the bootstrap mean's spread is sd * sqrt((n - 1) / n) / sqrt(n): the normal interval of it
    sd = z.std() / math.sqrt(n)
    assert lo[0] == pytest.approx(z.mean() - 1.96 * sd, abs=0.15 * sd)
    assert hi[0] == pytest.approx(z.mean() + 1.96 * sd, abs=0.15 * sd)


def test_bias_corrected_levels():
    # resamples centred on the value: z0 = 0, the plain percentile levels
    reps = np.linspace(-1, 1, 1001)
    np.testing.assert_allclose(bias_corrected_levels(reps, 0.0, 0.9), [0.05, 0.95], atol=1e-12)
    # 84.13% of the resamples below the value: z0 = 1, levels Phi(2 -+ 1.645)
    reps = np.arange(10000) / 10000
    levels = bias_corrected_levels(reps, stats.norm.cdf(1.0), 0.9)
    z = stats.norm.ppf(0.95)
    np.testing.assert_allclose(levels, stats.norm.cdf([2 - z, 2 + z]), atol=1e-3)


def test_mean_of_intervals_is_exact_for_perfectly_correlated_estimates():
    # estimates x_j = mu_j + s_j Z (one Z): the mean's half-width is z * mean(s_j), which the rule gives
    est, s = np.array([1.0, 2.0, 4.0]), np.array([0.1, 0.3, 0.2])
    mean, lo, hi = mean_of_intervals(est, est - 1.96 * s, est + 1.96 * s)
    assert (mean, lo, hi) == pytest.approx((7 / 3, 7 / 3 - 1.96 * 0.2, 7 / 3 + 1.96 * 0.2))


def test_welch_half_width_is_scipys_welch_interval():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.0, 1.0, 30), rng.normal(0.5, 3.0, 12)
    half = welch_half_width(a.std(ddof=1), len(a), b.std(ddof=1), len(b))
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert half == pytest.approx((ref.high - ref.low) / 2, rel=1e-10)
