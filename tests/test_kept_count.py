"""The active-set count of the bias-norm test inversion gives the integers of evaluating every
draw (the reference, :func:`count_kept`): on adversarial draws whose roots sit on or next to the
bisection's points, and through :func:`bias_l2_interval`'s inversion on varied inputs (lo and hi
equal bit for bit)."""

import numpy as np
import pytest

from biaskit.probe import bias_norm
from biaskit.probe.bias_norm import BIAS_DRAWS, NARROW_AFTER, _invert_bias_test, _null_draws
from biaskit.probe.kept_count import KeptCount, count_kept


class EveryDraw:
    """The reference counter: every draw evaluated at every step (the inversion before the active set)."""

    def __init__(self, Bs, D):
        self.Bs, self.D = Bs, D

    def restart(self):
        return self

    def __call__(self, r32, delta=None):
        return np.stack([count_kept(B, self.D, r32) for B in self.Bs])


def _bisect(count, r_true, right, steps=32):
    """A bisection towards r_true (K,) from [0, right], narrowing after NARROW_AFTER; the counts
    at every step, (steps, J, K)."""
    left, out = np.zeros_like(right), []
    for i in range(steps):
        mid = (left + right) / 2
        delta = (right - left) / 2 + 2.0**-20 * right + 2.0**-140 if i in NARROW_AFTER else None
        out.append(count(mid.astype(np.float32)[:, None], delta))
        above = mid < r_true
        left, right = np.where(above, mid, left), np.where(above, right, mid)
    return np.array(out)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")                      # the overflowing scale
@pytest.mark.parametrize("scale, settles", [(1.0, True), (1e-3, True), (1e12, True), (1e-30, False),
                                            (1e25, False), (1e-42, False)])
def test_counts_equal_every_draw_when_roots_sit_on_the_bisection_points(scale, settles):
    """(scale 1e-30 and below: float32 underflows, 1e25: r^2 overflows; the draws stay live)"""
    rng = np.random.default_rng(7)
    K, R = 5, 4096
    right = np.array([1.0, 2.0, 0.5, 3.0, 1.0]) * scale
    r_true = right * rng.uniform(0.1, 0.9, K)
    # the points the bisection visits, in float32, and their float32 neighbours
    pts = _bisect(lambda r32, delta: r32[:, 0].copy(), r_true, right)               # (steps, K)
    near = np.concatenate([pts, np.nextafter(pts, np.inf, dtype=np.float32),
                           np.nextafter(pts, -np.inf, dtype=np.float32)]).T.astype(np.float64)  # (K, 96)
    roots = near[np.arange(K)[:, None], rng.integers(0, near.shape[1], (K, R))]
    other = roots + rng.choice([-1, 1], (K, R)) * rng.exponential(1, (K, R)) * 10.0 ** rng.uniform(-8, 0, (K, R)) * scale
    B = (-(roots + other)).astype(np.float32)                                  # q = (r - roots)(r - other)
    D = (roots * other).astype(np.float32)
    # double roots (disc ~ 0), draws never kept, and non-finite values (in the last row: they
    # leave its draws all live)
    D[:, :200] = (B[:, :200].astype(np.float64) ** 2 / 4).astype(np.float32)
    D[:, 200:300] = np.float32(3 * scale**2) if scale**2 > 1e-40 else np.float32(1e-40)
    B[-1, 300:310], D[-1, 310:320], D[-1, 320:330] = np.nan, np.inf, -np.inf
    Bs = [B, -B, B * np.float32(0.5)]
    fast, ref = KeptCount(Bs, D), EveryDraw(Bs, D)
    assert np.array_equal(_bisect(fast, r_true, right), _bisect(ref, r_true, right))
    assert (fast.n.reshape(3, K)[:, :-1].sum() < 0.5 * 3 * (K - 1) * R) == settles   # most draws settled


def _inputs(rng, C, n, K, kind, scale):
    if kind == "isotropic":
        S = np.eye(C) * rng.uniform(0.1, 2, (K, 1, 1))
    elif kind == "correlated":
        S = np.full((K, C, C), 0.99) + 0.01 * np.eye(C)
    elif kind == "zero":
        S = np.zeros((K, C, C))
    else:                                                                   # singular: rank one
        v = rng.standard_normal((K, C, 1))
        S = v @ v.transpose(0, 2, 1)
    sd = np.sqrt(np.trace(S, axis1=1, axis2=2) / n)[:, None] + (kind == "zero") * 1e-3
    return rng.standard_normal((K, C)) * sd * scale * rng.uniform(0, 2, (K, 1)), S


CASES = [(C, n, K, kind, scale)
         for C, n, K in [(1, 4096, 8), (2, 4096, 8), (3, 10, 50), (4, 2, 8), (2, 10, 1), (3, 4096, 50), (1, 2, 50)]
         for kind, scale in [("isotropic", 0.0), ("correlated", 1e-7), ("isotropic", 1.0), ("correlated", 3.0),
                             ("singular", 1e6), ("zero", 1.0)]]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_inversion_equals_every_draw_bit_for_bit(case):
    C, n, K, kind, scale = CASES[case]
    rng = np.random.default_rng(case)
    b, S = _inputs(rng, C, n, K, kind, scale)
    Z, W = _null_draws(0, BIAS_DRAWS, C, n)
    fast = _invert_bias_test(b, S, n, 0.05, Z, W)
    ref = _invert_bias_test(b, S, n, 0.05, Z, W, counter=EveryDraw)
    assert np.array_equal(fast[0], ref[0]) and np.array_equal(fast[1], ref[1])


def test_the_interval_uses_the_active_set():
    assert bias_norm._invert_bias_test.__defaults__[-1] is KeptCount
