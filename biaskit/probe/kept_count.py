"""Counting the Monte Carlo draws that the bias-norm test keeps at a candidate norm r, for the
bisection of :func:`~.bias_norm.bias_l2_interval`: per t and draw, kept(r) is the float32
``B * r32 + D <= -r32**2`` at r32 = float32(r), i.e. q(r) = r^2 + B r + D <= 0 up to rounding.

:class:`KeptCount` counts exactly what that float32 expression gives, but evaluates it only on the
draws whose answer can still change inside the bisection's bracket; :func:`count_kept` evaluates
it on every draw (the reference; both give the same integers).
"""

from __future__ import annotations

import numpy as np

_U = 2.0**-24           # float32 unit roundoff
_TINY = 2.0**-140       # above the float32 underflow errors (3 * 2^-150)
_SLACK = 2.0**-18       # r32 = float32(r) lies within (1 +- 2^-24) r + 2^-149 of r


def count_kept(B: np.ndarray, D: np.ndarray, r32: np.ndarray, work=None, kept=None) -> np.ndarray:
    """The number of draws kept at r32 (K, 1) float32, (K,) int64, from B, D (K, R) float32: every
    draw evaluated (``work``, ``kept``: optional (K, R) float32 and bool buffers)."""
    work = np.empty_like(D) if work is None else work
    kept = np.empty(D.shape, dtype=bool) if kept is None else kept
    np.multiply(B, r32, out=work)
    np.add(work, D, out=work)
    np.less_equal(work, -r32**2, out=kept)
    dtype = np.uint16 if D.shape[1] <= np.iinfo(np.uint16).max else np.int64
    return kept.view(np.uint8).sum(1, dtype=dtype).astype(np.int64)


def settled_bands(B: np.ndarray, D: np.ndarray, top: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per draw, (K, R) float64 each, bounds (a1, a4, a2, a3) such that for every float32 r32 in
    [0, H0], H0 = top (1 + 2^-18) + 2^-140 (top (K,) the bisection's first right end): the float32
    expression is False (not kept) when r32 <= a1 or r32 >= a4, and True when a2 <= r32 <= a3.
    A bound that cannot be proved is -inf / +inf (a1, a3) or +inf / -inf (a4, a2): no claim.

    Proof. In float32, w = fl(fl(B r) + D) and s = fl(r^2) give w + s = q(r) + e with
    |e| <= u |B r| + u (|B r| (1 + u) + |D|) + u r^2 + 3 * 2^-150 <= 4 u S(r) + 3 * 2^-150,
    u = 2^-24, S(r) = r^2 + |B| r + |D| <= S(H0) for 0 <= r <= H0; the comparison w <= -s is
    exact, so kept = (w + s <= 0). With m = 64 u S(H0) + 2^-140: q(r) > m - 2^-50 S(H0) forces
    not kept, q(r) < -(m - 2^-50 S(H0)) forces kept, and 2^-50 S(H0) bounds the float64 error of
    q(x) = (x + B) x + D at any 0 <= x <= H0. q is convex with its minimum at v = -B / 2
    (exact): q(x) > m at x <= v gives q > m on [0, x]; at x >= v on [x, H0]; q(x2), q(x3) < -m
    give q < -m on [x2, x3]; and q(v) > m + 2^-50 (|D| + B^2 / 4) (the float64 error of
    D - B^2 / 4, B^2 exact) gives q > m everywhere. The candidate x are the roots of q = +-2m
    clipped to [0, H0], each checked as above (so their own rounding does not matter); draws with
    a non-finite value, or S(H0) >= 1e37 (float32 overflow), get no claim.
    """
    B, D = B.astype(np.float64), D.astype(np.float64)
    H0 = (top * (1 + _SLACK) + _TINY)[:, None]
    S = (H0 + np.abs(B)) * H0 + np.abs(D)
    m = 64 * _U * S + _TINY
    ok = np.isfinite(B) & np.isfinite(D) & (S < 1e37)
    v = -B / 2

    def q(x):
        return (x + B) * x + D

    def roots(level):  # the roots of q = level, clipped to [0, H0] (nan where there are none)
        half = np.sqrt(np.maximum(B**2 / 4 - (D - level), 0.0))
        return np.clip(v - half, 0, H0), np.clip(v + half, 0, H0)

    x1, x4 = roots(2 * m)
    x2, x3 = roots(-2 * m)
    everywhere = ok & (D - B**2 / 4 > m + 2.0**-50 * (np.abs(D) + B**2 / 4))
    a1 = np.where(everywhere, np.inf, np.where(ok & (x1 <= v) & (q(x1) > m), x1, -np.inf))
    a4 = np.where(everywhere, -np.inf, np.where(ok & (x4 >= v) & (q(x4) > m), x4, np.inf))
    inside = ok & (x2 <= x3) & (q(x2) < -m) & (q(x3) < -m)
    return a1, a4, np.where(inside, x2, np.inf), np.where(inside, x3, -np.inf)


class KeptCount:
    """The count of kept draws (K,) at r32 (K, 1), as :func:`count_kept`, for a bisection whose
    bracket [left, right] (K,) only shrinks inside its first one (``bands``: :func:`settled_bands`
    at that first right end). :meth:`narrow` drops the draws whose answer is fixed for every r32
    within the bracket (counting those kept once); later counts evaluate only the rest."""

    def __init__(self, B: np.ndarray, D: np.ndarray, bands: tuple[np.ndarray, ...]):
        self.B, self.D, self.bands = B, D, bands
        self.K, self.R = D.shape
        self.fixed = np.zeros(self.K, dtype=np.int64)
        self.idx = None                                     # flat indices of the live draws (None: all)
        self.work, self.kept = np.empty_like(D), np.empty(D.shape, dtype=bool)

    def narrow(self, left: np.ndarray, right: np.ndarray) -> None:
        # every r32 = float32(mid), left <= mid <= right, lies in [L, H]
        L = np.maximum(left * (1 - _SLACK) - _TINY, 0.0)                       # r32 >= 0
        H = right * (1 + _SLACK) + _TINY
        a1, a4, a2, a3 = (a.ravel() for a in self.bands)
        idx = np.arange(self.K * self.R) if self.idx is None else self.idx
        t = idx // self.R
        Lt, Ht = L[t], H[t]
        kept = (a2[idx] <= Lt) & (Ht <= a3[idx])
        live = ~kept & (Ht > a1[idx]) & (Lt < a4[idx])
        self.fixed += np.bincount(t[kept], minlength=self.K)
        self.idx, self.t = idx[live], t[live]
        self.Bl, self.Dl = self.B.ravel()[self.idx], self.D.ravel()[self.idx]

    def __call__(self, r32: np.ndarray) -> np.ndarray:
        if self.idx is None:
            return count_kept(self.B, self.D, r32, self.work, self.kept)
        r = r32[:, 0][self.t]
        kept = self.Bl * r + self.Dl <= (-r32[:, 0] ** 2)[self.t]
        return self.fixed + np.bincount(self.t[kept], minlength=self.K)
