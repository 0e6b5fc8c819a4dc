"""The colour-bias norm of x0_hat: ||b|| of the per-channel mean errors b = (b_0, .., b_{C-1}),
its unbiased square, Hotelling's test of b = 0, and their intervals (one model; the paired
difference of two models on the same draws is :mod:`.paired_bias`).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..intervals import LEVEL
from .kept_count import KeptCount

BIAS_NORM = ("x0_bias_sq", "x0_bias_l2", "x0_bias_p")
BIAS_DRAWS = 8192      # Monte Carlo draws of the sampling law of ||b_hat||^2 (common to every t)
NARROW_AFTER = (6, 12, 20)   # bisection steps after which the draws settled in the bracket are dropped


def bias_sq(b_hat: np.ndarray, S: np.ndarray, n: int) -> np.ndarray:
    """Unbiased ||b||^2 = ||b_hat||^2 - tr(S) / n, (...,) from b_hat (..., C) and S (..., C, C):
    E ||b_hat||^2 = ||b||^2 + tr(Sigma) / n and E tr(S) = tr(Sigma). Equal to the U-statistic
    sum_{i != j} z_i . z_j / (n (n - 1)); negative when the bias is below the noise."""
    return (b_hat**2).sum(-1) - np.trace(S, axis1=-2, axis2=-1) / n


def bias_l2(b_hat: np.ndarray, S: np.ndarray, n: int) -> np.ndarray:
    """The reported norm sqrt(max(0, bias_sq)), (...,)."""
    return np.sqrt(np.maximum(bias_sq(b_hat, S, n), 0.0))


def hotelling_p(b_hat: np.ndarray, S: np.ndarray, n: int) -> np.ndarray:
    """p-value of "no colour bias" (b = 0), (...,): Hotelling's T^2 = n b_hat' S^-1 b_hat with
    (n - q) / (q (n - 1)) T^2 ~ F(q, n - q) under b = 0, q = rank S (exact for Gaussian z_i). A
    direction without spread (S singular there) and a non-zero mean along it gives p = 0."""
    from scipy.stats import f as f_dist
    lam, V = np.linalg.eigh(S)
    keep = lam > 1e-12 * np.maximum(np.abs(lam).max(-1, keepdims=True), 1e-300)
    proj = np.einsum("...ck,...c->...k", V, b_hat)
    q = keep.sum(-1)
    T2 = n * (np.where(keep, proj, 0.0) ** 2 / np.where(keep, lam, 1.0)).sum(-1)
    qq = np.clip(q, 1, n - 1)
    p = f_dist.sf((n - qq) / (qq * (n - 1)) * T2, qq, n - qq)
    size = np.sqrt((b_hat**2).sum(-1, keepdims=True))
    spreadless = (~keep & (np.abs(proj) > 1e-9 * size)).any(-1)   # a mean along a direction without spread
    return np.where(spreadless, 0.0, np.where(q > 0, p, 1.0))


def bias_l2_interval(b_hat: np.ndarray, S: np.ndarray, n: int, level: float = LEVEL, seed: int = 0,
                     draws: int = BIAS_DRAWS) -> tuple[np.ndarray, np.ndarray]:
    """Interval (lo, hi), each (K,), for ||b|| from b_hat (K, C), S (K, C, C): test inversion.

    Statistic Q = ||b_hat||^2 / tr(S). Under b = r u its law is that of
    ||r u + Sigma^1/2 Z / sqrt(n)||^2 / tr(S*), Z ~ N(0, I_C), with tr(S*) = sum_k lam_k
    chi2_{n-1} / (n - 1) independent of Z (Wishart), evaluated at Sigma = S (a generalized
    non-central chi-square over a trace). F_r(Q) is its CDF, by Monte Carlo with the same
    ``draws`` for every r and t. The direction u is a nuisance (it sets the spread u' Sigma u of
    the cross term): F_r is taken for u = b_hat / ||b_hat|| and the eigenvectors of S of least
    and most spread, and r is kept if one of them keeps it (plugging in b_hat's direction alone
    covered 78% with correlated channels; exact when Sigma is isotropic or C = 1).
    Neyman construction: r is kept when a1(r) <= F_r(Q) <= 1 - (a - a1(r)), a = 1 - level,
    with the lower-tail share a1(r) = (a / 2) (1 - exp(-r^2 n / tr S)) moving from a one-sided
    test at r = 0 (so the interval can start at 0 and covers a zero bias at the nominal level)
    to equal tails once r exceeds the noise. F_r(Q) - a1(r) falls with r, so the kept set is
    [lo, hi] (bisection).
    """
    K, C = b_hat.shape
    a = 1.0 - level
    Z, W = _null_draws(int(seed), int(draws), int(C), int(n))
    lo, hi = np.zeros(K), np.zeros(K)
    for k0 in range(0, K, 128):
        sl = slice(k0, min(K, k0 + 128))
        lo[sl], hi[sl] = _invert_bias_test(b_hat[sl], S[sl], n, a, Z, W)
    return lo, hi


@functools.lru_cache(maxsize=8)
def _null_draws(seed: int, draws: int, C: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The Monte Carlo draws every t shares: Z (draws, C) ~ N(0, I) and the Wishart trace
    factors W (draws, C) ~ chi2_{n-1} / (n - 1); cached (read-only) for the probe's groups of t."""
    rng = np.random.default_rng([seed, 0xB1A5])
    Z = rng.standard_normal((draws, C))
    W = rng.chisquare(n - 1, (draws, C)) / (n - 1)
    Z.flags.writeable = W.flags.writeable = False
    return Z, W


def _invert_bias_test(b_hat, S, n, a, Z, W, iterations: int = 32, counter=KeptCount):
    """(lo, hi), (K,) each, for the K rows of b_hat (K, C), S (K, C, C); see :func:`bias_l2_interval`.
    ``counter``: how the kept draws are counted (:class:`.kept_count.KeptCount`, or a reference
    with the same interface that evaluates every draw)."""
    lam, V = np.linalg.eigh(S)
    lam = np.clip(lam, 0.0, None)                                            # (K, C), ascending
    norm = np.sqrt((b_hat**2).sum(-1))
    u_hat = np.einsum("kcj,kc->kj", V, b_hat) / np.where(norm > 0, norm, 1.0)[:, None]
    u_hat[norm == 0, -1] = 1.0
    C = lam.shape[1]
    # directions in the eigenbasis: b_hat's, and those of the least and most spread
    directions = [u_hat, np.tile(np.eye(C)[0], (len(norm), 1)), np.tile(np.eye(C)[-1], (len(norm), 1))]
    A = (Z**2) @ lam.T / n                                                   # (R, K) ||Sigma^1/2 Z||^2 / n
    trS = lam.sum(-1)
    tr_sim = W @ lam.T                                                       # (R, K)
    degenerate = trS <= 0
    Q = norm**2 / np.where(degenerate, 1.0, trS)
    tau2 = np.where(degenerate, 1.0, trS / n)
    # (K, R) copies, each t's draws contiguous: F_r(Q) below counts along the last axis
    D = _by_t((A - Q * tr_sim).astype(np.float32))                           # Q_sim(r) <= Q  <=>  2 r B + D <= -r^2
    B2 = [_by_t((2 * Z @ (np.sqrt(lam) * u).T / math.sqrt(n)).astype(np.float32))  # 2 u' Sigma^1/2 Z / sqrt(n)
          for u in directions]

    # F_r(Q): the share of draws with Q_sim(r) <= Q (count / R is the mean of the booleans
    # exactly: the count is an integer), counted where the answer can still change in the bracket
    R = D.shape[1]

    def G(r, pick, count, delta=None):                                       # F_r(Q) - a1(r), (K,)
        F = pick(count(r.astype(np.float32)[:, None], delta) / R)
        return F - (a / 2) * (1 - np.exp(-r**2 / tau2))

    counts = counter(B2, D)

    def root(target, pick):  # the r where G crosses target (G falls with r); 0 when G(0) <= target
        count = counts.restart()
        start = G(np.zeros_like(norm), pick, count) > target
        left, right = np.zeros_like(norm), norm + 12 * np.sqrt(tau2) + 1e-300
        for i in range(iterations):
            mid = (left + right) / 2
            # every later r32 is within delta of this one: float32(mid') for mid' in [left, right]
            delta = (right - left) / 2 + 2.0**-20 * right + 2.0**-140 if i in NARROW_AFTER else None
            above = G(mid, pick, count, delta) > target
            left, right = np.where(above, mid, left), np.where(above, right, mid)
        return np.where(start, (left + right) / 2, 0.0)

    # r is kept if some direction keeps it: the lower bound from the direction that makes Q
    # least extreme above, the upper from the one that makes it least extreme below
    lo = root(1 - a, lambda F: F.min(0))
    hi = root(0.0, lambda F: F.max(0))
    return np.where(degenerate, norm, lo), np.where(degenerate, norm, hi)


def _by_t(a: np.ndarray) -> np.ndarray:
    """(R, K) draws -> a contiguous (K, R) copy, the same values."""
    return np.ascontiguousarray(a.T)


def channel_moments(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-sample channel means z (K, n, C) -> their mean b_hat (K, C), sample covariance
    S (K, C, C) and n."""
    n = z.shape[1]
    b = z.mean(1)
    D = z - b[:, None]
    return b, np.einsum("kni,knj->kij", D, D) / (n - 1), n
