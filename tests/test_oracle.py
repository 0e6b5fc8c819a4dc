"""Oracles against numbers derived independently: the Wiener filter written out with numpy, and
Monte-Carlo posterior means from importance weighting prior samples."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

import biaskit
from biaskit.oracle import (GaussianMixture, empirical_denoiser, from_spec, irreducible_error,
                            oracle_denoiser, posterior_mean)
from biaskit.schedules import linear

SCHED = linear()
STEPS = [0, 50, 300, 700, 999]


def _random_cov(D, rng):
    A = rng.standard_normal((D, D))
    return A @ A.T / D + 0.01 * np.eye(D)


def test_gaussian_oracle_is_the_wiener_filter():
    rng = np.random.default_rng(1)
    D = 6
    m, S = rng.standard_normal(D), _random_cov(D, rng)
    den = oracle_denoiser(GaussianMixture(torch.ones(1), torch.tensor(m)[None], torch.tensor(S)[None]),
                          SCHED, (D,))
    x0 = rng.multivariate_normal(m, S, size=5)
    for t in STEPS:
        abar = np.prod(1 - np.linspace(1e-4, 0.02, 1000)[: t + 1])
        a, s = math.sqrt(abar), math.sqrt(1 - abar)
        x_t = a * x0 + s * rng.standard_normal(x0.shape)
        # E[x0|x_t] = m + Cov(x0, x_t) Cov(x_t)^-1 (x_t - a m), Cov(x0, x_t) = a S
        ref = m + np.linalg.solve(a * a * S + s * s * np.eye(D), (x_t - a * m).T).T @ (a * S).T
        got = den(torch.tensor(x_t, dtype=torch.float64), torch.tensor(t)).x0_hat.numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def _importance_mean(x0, x_t, a, s):
    """E[x0 | x_t] ~ sum_i x0_i N(x_t; a x0_i, s^2) / sum_i N(...), with its standard error."""
    logw = -((x_t - a * x0) ** 2).sum(1) / (2 * s * s)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    est = (w[:, None] * x0).sum(0)
    se = np.sqrt((w[:, None] ** 2 * (x0 - est) ** 2).sum(0))  # delta method, self-normalised IS
    return est, se


def test_gmm_oracle_matches_importance_weighted_monte_carlo():
    rng = np.random.default_rng(2)
    w, mu, sd = np.array([0.5, 0.3, 0.2]), np.array([-0.8, 0.1, 0.9]), np.array([0.1, 0.3, 0.05])
    mix = GaussianMixture(torch.tensor(w), torch.tensor(mu)[:, None], torch.tensor(sd**2)[:, None, None])
    k = rng.choice(3, size=400_000, p=w)
    x0 = (mu[k] + sd[k] * rng.standard_normal(k.size))[:, None]
    for t, x_t in [(100, -0.5), (100, 0.6), (400, 0.2), (800, -0.1)]:
        a, s = float(SCHED.alpha[t]), float(SCHED.sigma[t])
        est, se = _importance_mean(x0, np.array([x_t]), a, s)
        got = posterior_mean(mix, torch.tensor([[x_t]]), a, s).numpy()[0]
        assert abs(got - est)[0] < 5 * se[0] + 1e-4, (t, x_t, got, est, se)


def test_full_covariance_gmm_matches_importance_weighted_monte_carlo():
    rng = np.random.default_rng(6)
    w, mu = np.array([0.6, 0.4]), np.array([[-0.5, 0.2], [0.6, -0.3]])
    S = np.array([[[0.09, 0.08], [0.08, 0.09]], [[0.04, -0.03], [-0.03, 0.05]]])
    mix = GaussianMixture(torch.tensor(w), torch.tensor(mu), torch.tensor(S))
    k = rng.choice(2, size=400_000, p=w)
    x0 = mu[k] + np.einsum("nde,ne->nd", np.linalg.cholesky(S)[k], rng.standard_normal((k.size, 2)))
    for t in (150, 450, 850):
        a, s = float(SCHED.alpha[t]), float(SCHED.sigma[t])
        x_t = a * x0[t] + s * rng.standard_normal(2)
        est, se = _importance_mean(x0, x_t, a, s)
        got = posterior_mean(mix, torch.tensor(x_t)[None], a, s).numpy()[0]
        assert np.all(np.abs(got - est) < 5 * se + 1e-4), (t, got, est, se)


def test_empirical_oracle_matches_monte_carlo_and_memorises():
    rng = np.random.default_rng(3)
    points = rng.uniform(-1, 1, size=(20, 2))
    den = empirical_denoiser(torch.tensor(points), SCHED)
    x0 = points[rng.integers(0, 20, 400_000)]
    for t in (300, 600, 900):
        a, s = float(SCHED.alpha[t]), float(SCHED.sigma[t])
        x_t = a * points[0] + s * rng.standard_normal(2)
        est, se = _importance_mean(x0, x_t, a, s)
        got = den(torch.tensor(x_t)[None], torch.tensor(t)).x0_hat.numpy()[0]
        assert np.all(np.abs(got - est) < 5 * se + 1e-4), (t, got, est, se)
    # at t = 0 (sigma = 0.01) the nearest training point in x_t / alpha dominates
    x_t = points + 0.003 * rng.standard_normal(points.shape)
    got = den(torch.tensor(x_t), torch.tensor(0)).x0_hat.numpy()
    np.testing.assert_allclose(got, points, atol=1e-6)


def test_limits_sigma_zero_and_alpha_zero_in_one_batch():
    mix = GaussianMixture.isotropic(torch.tensor([0.25, 0.75]), torch.tensor([[1.0, 0.0], [-1.0, 2.0]]), 0.2)
    x_t = torch.tensor([[0.3, 0.4], [0.3, 0.4], [5.0, -3.0]], dtype=torch.float64)
    out = posterior_mean(mix, x_t, torch.tensor([0.5, 0.0, 1e-6]), torch.tensor([0.0, 1.0, 1.0]))
    np.testing.assert_allclose(out[0], [0.6, 0.8])                       # x_t / alpha
    np.testing.assert_allclose(out[1], [-0.5, 1.5])                      # prior mean sum_k w_k m_k
    assert torch.allclose(out[2], torch.tensor([-0.5, 1.5], dtype=torch.float64), atol=1e-4)
    tiny = posterior_mean(mix, x_t[:1], 0.9, 1e-9)
    np.testing.assert_allclose(tiny[0], x_t[0] / 0.9, atol=1e-6)


def test_dtype_shape_and_device_follow_the_input():
    means = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    mix = GaussianMixture.isotropic(torch.ones(3), means, 0.3)
    den = oracle_denoiser(mix, SCHED, (1, 4, 4))
    pred = den(torch.randn(5, 1, 4, 4), torch.full((5,), 500))
    assert pred.x0_hat.shape == (5, 1, 4, 4) and pred.x0_hat.dtype == torch.float32
    assert torch.isfinite(pred.eps_hat).all()
    with pytest.raises(ValueError, match="per-sample shape"):
        den(torch.randn(2, 1, 3, 3), torch.tensor(10))
    half = oracle_denoiser(mix, SCHED, (1, 4, 4)).to(torch.float32)   # buffers cast by the caller
    x_t = torch.randn(2, 1, 4, 4)
    assert torch.allclose(half(x_t, torch.tensor(300)).x0_hat, den(x_t, torch.tensor(300)).x0_hat, atol=1e-5)
    assert den.state_dict() == {}


def test_sample_and_log_prob_against_scipy():
    rng = np.random.default_rng(4)
    w = np.array([0.7, 0.3])
    m = rng.standard_normal((2, 3))
    S = np.stack([_random_cov(3, rng), _random_cov(3, rng)])
    mix = GaussianMixture(torch.tensor(w), torch.tensor(m), torch.tensor(S))
    x = rng.standard_normal((10, 3))
    ref = np.log(sum(w[k] * stats.multivariate_normal(m[k], S[k]).pdf(x) for k in range(2)))
    np.testing.assert_allclose(mix.log_prob(torch.tensor(x)).numpy(), ref, rtol=1e-10)
    xs = mix.sample(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    mean = w @ m
    cov = sum(w[k] * (S[k] + np.outer(m[k] - mean, m[k] - mean)) for k in range(2))
    np.testing.assert_allclose(xs.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(np.cov(xs.T), cov, atol=0.03)
    with pytest.raises(ValueError, match="point masses"):
        GaussianMixture.from_points(torch.zeros(3, 2)).log_prob(torch.zeros(1, 2))


def test_irreducible_error_closed_form_and_monte_carlo():
    rng = np.random.default_rng(5)
    D = 4
    m, S = rng.standard_normal(D), _random_cov(D, rng)
    one = GaussianMixture(torch.ones(1), torch.tensor(m)[None], torch.tensor(S)[None])
    twice = GaussianMixture(torch.ones(2), torch.tensor(np.stack([m, m])), torch.tensor(np.stack([S, S])))
    steps = [20, 250, 900]
    closed = irreducible_error(one, SCHED, steps)
    mc = irreducible_error(twice, SCHED, steps, n=8192, seed=1, batch_size=4096, progress=False)
    assert list(closed.columns[:7]) == ["t", "snr", "logsnr", "oracle_mse", "oracle_mse_lo",
                                        "oracle_mse_hi", "method"]
    assert set(closed.method) == {"closed_form"} and set(mc.method) == {"monte_carlo"}
    for t, row in zip(steps, closed.itertuples()):
        a2, s2 = float(SCHED.abar[t]), 1 - float(SCHED.abar[t])
        # posterior covariance S - a^2 S (a^2 S + s^2 I)^-1 S, trace / D
        post = S - a2 * S @ np.linalg.solve(a2 * S + s2 * np.eye(D), S)
        assert row.oracle_mse == pytest.approx(np.trace(post) / D, rel=1e-9)
        assert row.snr == pytest.approx(a2 / s2, rel=1e-9)
    assert (mc.oracle_mse_lo.values <= closed.oracle_mse.values).all()
    assert (closed.oracle_mse.values <= mc.oracle_mse_hi.values).all()


def test_from_spec_and_load():
    den = biaskit.load("oracle:gmm2d")
    assert den.schedule.T == 1000 and den.parameterization == "x0"
    json.dumps(den.describe())
    ds = biaskit.data.load_dataset("gmm", dim=3, K=4)
    den = from_spec("oracle:gmm", dataset=ds)
    assert den.info["K"] == 4 and den.info["dim"] == 3
    assert (den.source.format, den.source.path, den.source.shape) == ("oracle", None, (3,))
    assert list(den.info) == ["oracle", "K", "dim", "dataset"] and den.shape == (3,)
    emp = from_spec("oracle:empirical:digits", schedule="cosine", n_train=100)
    assert emp(torch.zeros(2, 1, 8, 8), torch.tensor(999)).x0_hat.shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="oracle:empirical:digits"):
        from_spec("oracle:digits")
    with pytest.raises(ValueError, match="valid datasets"):
        from_spec("oracle:nonsense")
