"""Counting the Monte Carlo draws that the bias-norm test keeps at a candidate norm r, for the
bisection of :func:`~.bias_norm.bias_l2_interval`: per t and draw, kept(r) is the float32
``B * r32 + D <= -r32**2`` at r32 = float32(r), i.e. q(r) = r^2 + B r + D <= 0 up to rounding.

:class:`KeptCount` gives the same integers as :func:`count_kept` (which evaluates every draw),
but once asked to narrow it evaluates only the draws whose answer can still change within the
bisection's bracket.
"""

from __future__ import annotations

import functools

import numpy as np

_U = 2.0**-24           # float32 unit roundoff
_TINY = 2.0**-140       # above every float32 underflow error here (a few 2^-150)
_UP = 1 + 2.0**-20      # float64 -> float32 casts and float32(r) ~ r, with room


def count_true(flags: np.ndarray) -> np.ndarray:
    """The number of True along the last axis of a contiguous bool array (..., R), (...,) int64
    (a 16-bit sum of the bytes holds it exactly up to 65535 and is several times faster than a
    64-bit one; count / R is bit for bit flags.mean(-1), whose float64 sum of 0s and 1s is exact)."""
    dtype = np.uint16 if flags.shape[-1] <= np.iinfo(np.uint16).max else np.int64
    return flags.view(np.uint8).sum(-1, dtype=dtype).astype(np.int64)


def count_kept(B: np.ndarray, D: np.ndarray, r32: np.ndarray, work=None, kept=None) -> np.ndarray:
    """The number of draws kept at r32 (K, 1) float32, (K,) int64, from B, D (K, R) float32: every
    draw evaluated (``work``, ``kept``: optional (K, R) float32 and bool buffers; on return they
    hold fl(B r32 + D) and the kept draws)."""
    work = np.empty_like(D) if work is None else work
    kept = np.empty(D.shape, dtype=bool) if kept is None else kept
    np.multiply(B, r32, out=work)
    np.add(work, D, out=work)
    np.less_equal(work, -r32**2, out=kept)
    return count_true(kept)


def settled_thresholds(c: np.ndarray, delta: np.ndarray, Bmax: np.ndarray, Dmax: np.ndarray):
    """Per t (K,), float32 thresholds (T_out, T_in) and the float32 half-width d32 >= delta, such
    that a draw with w = fl(B c + D), s = fl(c^2) at c = r32 >= 0 is not kept at any float32
    r' with |r' - c| <= delta when fl(fl(w + s) - fl(|B| d32)) > T_out, and kept at every such r'
    when fl(fl(w + s) + fl(|B| d32)) < T_in (Bmax, Dmax: max |B|, max |D| over the t's draws).

    Proof. With S = (c + delta)^2 + Bmax (c + delta) + Dmax >= r^2 + |B| r + |D| for r in {c, r'},
    float32 gives w' + s' = q(r') + e', |e'| <= u |B r'| + u (|B r'| (1 + u) + |D|) + u r'^2 +
    3 * 2^-150 <= 4 u S + 2^-147 (u = 2^-24), likewise at c; kept is exactly w' + s' <= 0.
    q(r') = q(c) + (2 c + B)(r' - c) + (r' - c)^2 lies within (2 c + |B|) delta (+ delta^2 above)
    of q(c). The check's own roundings (w + s, |B| d32 >= |B| delta, the sum or difference) are
    below u (4 S + Bmax delta) (1 + 4 u) + 3 * 2^-150, so with M = 16 u (S + Bmax delta) + 2^-140
    (more than 12 u S + u Bmax delta + 2^-146 needed): fl(..) > M + 2 c delta gives w' + s' > 0, and
    fl(..) < -(M + 2 c delta + delta^2) gives w' + s' < 0. Casting to float32 rounds the
    thresholds outward; where S is not finite or >= 1e37 (float32 could overflow) no claim is made.
    """
    c = c.astype(np.float64)
    S = (c + delta) ** 2 + Bmax * (c + delta) + Dmax
    M = 16 * _U * (S + Bmax * delta) + _TINY
    fine = S < 1e37                                                          # False for nan, inf
    T_out = np.where(fine, (M + 2 * c * delta) * _UP + _TINY, np.inf).astype(np.float32)
    T_in = np.where(fine, -(M + 2 * c * delta + delta**2) * _UP - _TINY, -np.inf).astype(np.float32)
    return T_out, T_in, (delta * _UP + _TINY).astype(np.float32)


class KeptCount:
    """The counts of kept draws (J, K) at r32 (K, 1) for the directions B_j (K, R) and the shared D
    (K, R), each the integers of :func:`count_kept`, for a bisection whose later r all lie within
    ``delta`` (K,) of the r32 of a call that passes it: such a call also drops the draws whose
    answer is fixed for all of them (counting those kept once, by :func:`settled_thresholds`),
    and later calls evaluate only the rest (flat, sorted by row j K + k)."""

    def __init__(self, Bs: list[np.ndarray], D: np.ndarray, block: int = 2**16):
        self.Bs, self.D = Bs, D
        (self.K, self.R), J = D.shape, len(Bs)
        self.Bmax = np.concatenate([np.maximum(B.max(1), -B.min(1)) for B in Bs]).astype(np.float64)
        self.Dmax = np.tile(np.maximum(D.max(1), -D.min(1)).astype(np.float64), J)
        # every draw is evaluated a block of rows of about ``block`` draws at a time (in cache)
        rows = max(1, block // self.R)
        self.blocks = [(j, slice(k, min(self.K, k + rows))) for j in range(J) for k in range(0, self.K, rows)]
        shape = (min(rows, self.K), self.R)
        self.work, self.spare, self.spare2 = (np.empty(shape, np.float32) for _ in range(3))
        self.kept, self.settled = np.empty(shape, dtype=bool), np.empty(shape, dtype=bool)
        self.restart()

    def restart(self) -> KeptCount:
        """Back to every draw live, for a new bisection; returns itself."""
        self.fixed = np.zeros(len(self.Bs) * self.K, dtype=np.int64)
        self.n = None                                       # live draws per row (None: all)
        return self

    def __call__(self, r32: np.ndarray, delta: np.ndarray | None = None) -> np.ndarray:
        if self.n is None:
            return self._every_draw(r32, delta).reshape(len(self.Bs), self.K)
        r = np.concatenate([r32[:, 0]] * len(self.Bs))
        per_row = functools.partial(np.repeat, repeats=self.n)
        w = self.Bl * per_row(r) + self.Dl
        np.less_equal(w, per_row(-r**2), out=self.live_kept[:-1])
        count = self.fixed + self._row_sums(self.live_kept)
        if delta is not None:
            self._narrow(r, delta, w, per_row)
        return count.reshape(len(self.Bs), self.K)

    @np.errstate(over="ignore", invalid="ignore")         # rows with overflow have no claims
    def _narrow(self, r, delta, w, per_row):  # drop the live draws settled within delta of r
        T_out, T_in, d32 = settled_thresholds(r, np.concatenate([delta] * len(self.Bs)), self.Bmax, self.Dmax)
        z, p = w + per_row(r**2), np.abs(self.Bl) * per_row(d32)
        inside = np.append(z + p < per_row(T_in), False)
        live = ~(inside[:-1] | (z - p > per_row(T_out)))
        self.fixed += self._row_sums(inside)
        self._keep(self._row_sums(np.append(live, False)), self.Bl[live], self.Dl[live])

    def _every_draw(self, r32, delta):  # the counts over every draw; with delta, the first narrowing
        r, counts, n, Bl, Dl = r32[:, 0], [], [], [], []
        if delta is not None:
            J = len(self.Bs)
            T_out, T_in, d32 = (x.reshape(J, self.K) for x in settled_thresholds(
                np.tile(r, J), np.tile(delta, J), self.Bmax, self.Dmax))
        for j, sl in self.blocks:
            k = sl.stop - sl.start
            z, p, inside, settled = self.work[:k], self.spare[:k], self.kept[:k], self.settled[:k]
            B, D = self.Bs[j][sl], self.D[sl]
            counts.append(count_kept(B, D, r32[sl], z, inside))
            if delta is None:
                continue
            with np.errstate(over="ignore", invalid="ignore"):  # the tests of _narrow, in place
                np.add(z, (r[sl] ** 2)[:, None], out=z)                          # z = fl(w + s)
                np.multiply(np.abs(B, out=p), d32[j, sl, None], out=p)         # p = fl(|B| d32)
                np.less(np.add(z, p, out=self.spare2[:k]), T_in[j, sl, None], out=inside)
                np.greater(np.subtract(z, p, out=p), T_out[j, sl, None], out=settled)
            settled |= inside
            self.fixed[j * self.K + sl.start:j * self.K + sl.stop] += inside.view(np.uint8).sum(1, dtype=np.int64)
            np.logical_not(settled, out=settled)
            n.append(settled.view(np.uint8).sum(1, dtype=np.int64))
            live = np.flatnonzero(settled)
            Bl.append(B.ravel()[live])
            Dl.append(D.ravel()[live])
        if delta is not None:
            self._keep(np.concatenate(n), np.concatenate(Bl), np.concatenate(Dl))
        return np.concatenate(counts)

    def _keep(self, n, Bl, Dl):  # the live draws from now on, n (J K,) per row
        self.n, self.Bl, self.Dl = n, Bl, Dl
        self.start = np.minimum(np.cumsum(n) - n, len(Bl))
        self.live_kept = np.zeros(len(Bl) + 1, dtype=bool)

    def _row_sums(self, flags):  # (J K,) sums over each row's live draws of flags (m + 1,), flags[m] False
        return np.add.reduceat(flags.view(np.uint8), self.start, dtype=np.int64) * (self.n > 0)
