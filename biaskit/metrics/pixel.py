"""Pixel-space distances on flattened samples (any shape, 2-D toys included): sliced
Wasserstein and RBF-kernel MMD^2 (unbiased U-statistic, also the core of KID)."""

from __future__ import annotations

import math

import torch

from .estimate import N_BOOT, Estimate, bootstrap, _flat


def _wasserstein_1d(px: torch.Tensor, py: torch.Tensor, p: float) -> torch.Tensor:
    """W_p^p between the empirical laws of the columns of px (..., n, L) and py (..., m, L), per
    column (..., L): the integral over u in (0, 1) of |F_x^-1(u) - F_y^-1(u)|^p, exact (both
    quantile functions are constant between the breakpoints i / n and j / m)."""
    qx, qy = px.sort(-2).values, py.sort(-2).values
    w, ix, iy = _quantile_grid(px.shape[-2], py.shape[-2])
    return (w[:, None] * (qx[..., ix, :] - qy[..., iy, :]).abs() ** p).sum(-2)


def _quantile_grid(n: int, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The merged breakpoints of two empirical quantile functions of n and m points: the width w
    (n + m,) of each piece of (0, 1) and the ranks ix, iy of the order statistics there."""
    u = torch.cat([torch.arange(1, n + 1) / n, torch.arange(1, m + 1) / m]).double().sort().values
    w = torch.diff(u, prepend=u.new_zeros(1))
    mid = u - w / 2
    return w, (mid * n).long().clamp_max(n - 1), (mid * m).long().clamp_max(m - 1)


def _resampled_order_statistics(sorted_cols: torch.Tensor, order: torch.Tensor, i: torch.Tensor,
                                ranks: torch.Tensor) -> torch.Tensor:
    """Order statistics of ranks ``ranks`` (P,) of the resamples ``i`` (B, n) of every column,
    (B, L, P), without sorting them: a resample holds each original point c times (B, n), so in
    the column's sorted order it is the sorted points, the k-th repeated c_k times; repeating
    each k by its c_k gives the source of every order statistic (exact integer indices, so the
    values equal those of sorting the resample). ``sorted_cols`` (L, n) and ``order`` (L, n) are
    each column's sorted values and argsort."""
    B, n = i.shape
    L = order.shape[0]
    c = torch.zeros(B, n, dtype=torch.long).scatter_add_(1, i, torch.ones_like(i))
    source = torch.repeat_interleave(torch.arange(n).repeat(B * L), c[:, order].reshape(-1))
    k = source.view(B, L, n).gather(-1, ranks.expand(B, L, -1))
    return sorted_cols.expand(B, -1, -1).gather(-1, k)


def _sliced_wp_resampler(px: torch.Tensor, py: torch.Tensor, p: float):
    """stat(i, j) -> (B,): SW_p^p (the mean over columns of W_p^p) between the resamples i
    (B, n) of the rows of px (n, L) and j (B, m) of py (m, L); equal to
    ``_wasserstein_1d(px[i], py[j], p).mean(-1)``, with each column sorted once."""
    w, ix, iy = _quantile_grid(len(px), len(py))
    (sx, ox), (sy, oy) = (torch.sort(q.T.contiguous(), -1) for q in (px, py))

    def stat(i, j):
        qx = _resampled_order_statistics(sx, ox, i, ix)
        qy = _resampled_order_statistics(sy, oy, j, iy)
        return (w * (qx - qy).abs() ** p).sum(-1).mean(-1)
    return stat


# Bonneel et al. 2015: SW_p^p = E_theta W_p^p(theta . X, theta . Y), theta uniform on the sphere
def sliced_wasserstein(x, y, n_projections: int = 256, p: float = 2.0, seed: int = 0,
                       n_boot: int = N_BOOT, ci: float = 0.95) -> Estimate:
    """Sliced p-Wasserstein distance SW_p between sets x (n, ...) and y (m, ...), flattened, over
    ``n_projections`` directions theta drawn with ``seed`` (the value and its interval are for
    the mean over these directions). The plug-in distance between empirical laws is biased
    upwards: SW_p^p is bias-corrected by the bootstrap (see :func:`bootstrap`) and the value and
    interval are its p-th root (so a value can be 0 when the sets are as close as two samples
    of one law)."""
    x, y = _flat(x), _flat(y)
    g = torch.Generator().manual_seed(int(seed))
    theta = torch.randn(x.shape[1], n_projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, py = x @ theta, y @ theta
    stat = _sliced_wp_resampler(px, py, p)                                 # SW_p^p
    e = bootstrap(stat, (len(x), len(y)), "swd", n_boot, seed, ci, biased=True,
                  chunk=max(1, 2**22 // (px.numel() + py.numel())))
    # the bias is corrected on SW_p^p (a mean over directions of W_p^p, smoother than its root);
    # the root is monotone, so value and interval map through it (clipped at 0)
    root = lambda v: max(v, 0.0) ** (1 / p) if math.isfinite(v) else v  # noqa: E731
    return Estimate("swd", root(e.value), root(e.lo), root(e.hi), e.n_boot, ci,
                    e.method + "; on SW_p^p, then the p-th root", root(e.plugin))


def median_bandwidth(x, y) -> float:
    """Median heuristic (Gretton et al. 2012): the median pairwise distance in the pooled set."""
    z = torch.cat([_flat(x), _flat(y)])
    d = torch.cdist(z, z)
    return float(d[torch.triu_indices(len(z), len(z), 1).unbind()].median())


# Gretton et al. 2012, Eq. 3: unbiased MMD^2 with k(a, b) = exp(-|a - b|^2 / (2 h^2))
def mmd(x, y, bandwidth: float | None = None, seed: int = 0, n_boot: int = N_BOOT,
        ci: float = 0.95) -> Estimate:
    """Unbiased squared MMD between x (n, ...) and y (m, ...) with an RBF kernel of bandwidth h
    (default: median heuristic on the pooled sets)."""
    x, y = _flat(x), _flat(y)
    h = float(bandwidth) if bandwidth is not None else median_bandwidth(x, y)
    k = lambda a, b: torch.exp(-torch.cdist(a, b) ** 2 / (2 * h * h))  # noqa: E731
    Kxx, Kyy, Kxy = k(x, x), k(y, y), k(x, y)
    return bootstrap(lambda i, j: _mmd2_u(Kxx, Kyy, Kxy, i, j), (len(x), len(y)), "mmd2", n_boot, seed, ci)



def _counts(i: torch.Tensor, n: int) -> torch.Tensor:
    """How often each of n rows occurs in each index set i (B, k): (B, n) float64."""
    return torch.zeros(i.shape[0], n, dtype=torch.float64).scatter_add_(1, i, torch.ones_like(i, dtype=torch.float64))


# Gretton et al. 2012, Eq. 3: MMD^2_u = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j)
# - 2 mean_{i, j} k(x_i, y_j); a resample repeats rows, so "i != j" means distinct rows there
def _mmd2_u(Kxx, Kyy, Kxy, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 of B resampled index sets i (B, n'), j (B, m') of x and y from the kernel
    matrices, (B,)."""
    wx, wy = _counts(i, Kxx.shape[0]), _counts(j, Kyy.shape[0])

    def within(w, K):
        pairs = w.sum(1) ** 2 - (w**2).sum(1)
        return (((w @ K) * w).sum(1) - (w**2 * K.diagonal()).sum(1)) / pairs
    return within(wx, Kxx) + within(wy, Kyy) - 2 * ((wx @ Kxy) * wy).sum(1) / (wx.sum(1) * wy.sum(1))


# Binkowski et al. 2018: unbiased MMD^2 with the cubic kernel k(a, b) = (a.b / d + 1)^3,
# averaged over random subsets
