"""Per-timestep probe: error, per-channel bias, variance, clipping and frequency split of the x0
estimate of any :class:`~biaskit.denoiser.Denoiser` on held-out data, with 95% intervals.

Timesteps. ``t`` is always the model's own timestep, the one it was trained with and is fed: for
a model trained on timesteps 1..999 of a 1000-step schedule (a schedule of 999 steps whose
``timesteps`` are 1..999) t = 999 is its noisiest step. Asked-for timesteps are such t; the grid of
``num_timesteps`` is evenly spaced over the schedule's steps; ``schedule_index`` is the position k
of t among the schedule's steps (what a :class:`Denoiser` is called with).

Draws (common random numbers). For every timestep t of the grid the same n held-out samples x0_i
are noised as x_t = alpha_t x0_i + sigma_t eps_{t,i}, with eps_{t,i} drawn from a generator seeded
by (seed, t, i // r), r = :func:`chunk_rows` (at least 64 samples and 2^12 numbers per generator).
A draw therefore depends on nothing but (seed, t, i) and the sample shape: not on the batch size,
the number of processes, the t grid or the other models. :func:`compare` feeds every model
the same draws, so per-sample differences between models are paired.

Statistics, one row per (model, t). Every error is a per-element mean (over C, H, W for images,
over D for vectors), never a sum; d = C H W or D:
  eps_mse          mean_i ||eps_hat - eps||^2 / d
  x0_mse           mean_i ||x0_hat - x0||^2 / d          (= eps_mse / snr for every model)
  v_mse            mean_i ||v_hat - v||^2 / d
  x0_bias_c{k}     b_k: mean of x0_hat - x0 over samples and the pixels of channel k (RGB: colour bias)
  x0_bias_sq       unbiased ||b||^2 = ||b_hat||^2 - tr(S) / n (S the covariance of the per-sample
                   channel means; the plug-in ||b_hat||^2 is too large by tr(Sigma) / n on average)
  x0_bias_l2       sqrt(max(0, x0_bias_sq)), the Euclidean norm of (b_0, .., b_{C-1})
  x0_bias_p        p-value of "no colour bias" (b = 0), Hotelling's T^2 (no interval columns);
                   in difference rows, of "the same colour bias" (paired)
  x0_var           x0_mse - x0_bias_sq / C: what is left of x0_mse once the channel bias is removed
  clip_frac        fraction of x0_hat elements outside the model's data range [lo, hi] by more than
                   CLIP_TOL (hi - lo): values on the edge (an MNIST background) are not outside
  x0_err_band{j}   the share of x0_mse in radial spatial-frequency band j (images only): the bands
                   split x0_mse exactly (Parseval), so they sum to it. Band j holds the frequencies
                   of radius [j, j + 1) * 0.5 / bands cycles per pixel; the last band also takes the
                   corners beyond the Nyquist radius 0.5.
  oracle_mse       mean_i ||E[x0 | x_t] - x0||^2 / d: the irreducible error (with an oracle)
  excess_mse       mean_i ||x0_hat - E[x0 | x_t]||^2 / d: the model's estimation error

Intervals (columns ``_lo``, ``_hi``): 95%. Means of per-sample values get the t-interval
mean +- t_{0.975, n-1} s / sqrt(n) (CLT over samples). x0_var: the delta method (the same
interval on its per-sample influence values), or, with ``bootstrap=B``, percentile intervals
from B resamples of the n samples. x0_bias_l2: test inversion (:func:`bias_l2_interval`), which
covers whether the bias is 0 or not; x0_bias_sq: its square. Paired differences
(:func:`compare`) use the same rules on per-sample differences, and :func:`bias_difference`
for the bias norm. ``METHODS`` describes this in the metadata.
"""

from __future__ import annotations

import math
import platform
import sys
import time
import types
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import __version__
from . import parameterization as P
from .denoiser import Denoiser
from .distributed import rank_world
from .results import load_results, save_results
from .rng import derive_seed
from .safeload import file_sha256

__all__ = ["probe", "compare", "timestep_grid", "schedule_indices", "draw_noise", "select_samples",
           "save_results", "load_results", "METHODS", "chunk_rows", "CLIP_TOL", "outside_range"]

LEVEL = 0.95
METHODS = {
    "level": LEVEL,
    "means": "t-interval: mean +- t_{0.975,n-1} * sd / sqrt(n) over the n per-sample values (CLT)",
    "nonlinear_delta": "x0_var: delta method, the t-interval of its per-sample influence values",
    "nonlinear_bootstrap": "x0_var: percentile interval over bootstrap resamples of the n samples",
    "bias_sq": "x0_bias_sq = ||b_hat||^2 - tr(S)/n, unbiased for ||b||^2 (x0_var uses it)",
    "bias_l2": "x0_bias_l2 = sqrt(max(0, x0_bias_sq)); interval by test inversion of "
               "Q = ||b_hat||^2 / tr(S), whose law under ||b|| = r (Sigma = S, Wishart trace) is "
               "simulated with 8192 draws, r kept if kept along b_hat's direction or S's least- "
               "or most-spread eigenvector; Neyman construction with lower-tail share "
               "(a/2)(1 - exp(-r^2 n / tr S)), one-sided at r = 0; x0_bias_sq: its square",
    "bias_p": "x0_bias_p: Hotelling T^2 test of b = 0, F(q, n - q), q = rank S",
    "bias_difference": "difference rows of x0_bias_l2 / x0_bias_sq: delta method on paired "
                       "influence values when both norms' 99% intervals exclude 0, else the "
                       "Bonferroni combination of the two single-model 97.5% intervals",
    "paired": "differences: the same rules applied to per-sample differences of the two models "
              "on the same draws (common random numbers)",
}


# ---------------------------------------------------------------------------------------------
# what is drawn

def timestep_grid(T: int, timesteps=None, num_timesteps: int | None = None, stratified: bool = False,
                  seed: int = 0) -> np.ndarray:
    """The probed steps (sorted, unique, in 0..T-1): ``timesteps`` as given, else K =
    ``num_timesteps`` (default min(T, 50)) evenly spaced from 0 to T-1, or with ``stratified`` one
    uniform step in each of K equal strata of 0..T-1 (drawn with ``seed``)."""
    if timesteps is not None:
        ts = np.unique(np.asarray([int(t) for t in np.ravel(timesteps)], dtype=np.int64))
        if ts.size == 0:
            raise ValueError("timesteps is empty")
        if ts[0] < 0 or ts[-1] >= T:
            raise ValueError(f"timesteps must lie in 0..{T - 1} (the model's schedule has T = {T}); "
                             f"got {ts[0]}..{ts[-1]}")
        return ts
    K = min(T, 50) if num_timesteps is None else int(num_timesteps)
    if not 1 <= K <= T:
        raise ValueError(f"num_timesteps must be in 1..{T}, got {K}")
    if stratified:
        edges = np.linspace(0, T, K + 1).round().astype(np.int64)
        u = np.random.default_rng(seed).random(K)
        return np.unique(edges[:-1] + np.floor(u * (edges[1:] - edges[:-1])).astype(np.int64))
    return np.unique(np.linspace(0, T - 1, K).round().astype(np.int64))


def schedule_indices(schedule, timesteps) -> np.ndarray:
    """Positions k (sorted, unique) of the model's timesteps ``timesteps`` among the schedule's
    steps, ``schedule.timesteps[k] == t``; a timestep the schedule does not hold is an error naming
    the ones it does (a model trained on 1..999 of 1000 has no t = 0)."""
    ts = np.unique(np.asarray([int(t) for t in np.ravel(timesteps)], dtype=np.int64))
    if ts.size == 0:
        raise ValueError("timesteps is empty")
    known = schedule.timesteps.numpy()
    k = np.searchsorted(known, ts).clip(max=known.size - 1)  # timesteps increase with k
    bad = ts[known[k] != ts]
    if bad.size:
        held = f"{known[0]}..{known[-1]}" if known[-1] - known[0] + 1 == known.size else \
            f"{known.size} timesteps from {known[0]} to {known[-1]}"
        raise ValueError(f"timestep(s) {', '.join(map(str, bad[:5].tolist()))} not in the model's "
                         f"schedule: it has t = {held} (T = {known.size} steps)")
    return k


# A value counts as outside [lo, hi] only beyond 1% of the width (0.02 on [-1, 1], 2.55 levels of
# 8-bit pixels): an estimate of an edge pixel (MNIST's background, 80% of its pixels, lies at lo)
# within its own small error of the edge is not an excursion. On the real MNIST DDPM at t = 1
# (x0-MSE 4.4e-5) 40% of x0_hat lie below lo, 0.4% below lo - 0.01 (hi - lo).
CLIP_TOL = 0.01


def outside_range(x: torch.Tensor, data_range, tol: float = CLIP_TOL) -> torch.Tensor:
    """Boolean mask of elements of ``x`` below lo - tol (hi - lo) or above hi + tol (hi - lo)."""
    lo, hi = data_range
    margin = tol * (hi - lo)
    return (x < lo - margin) | (x > hi + margin)


def chunk_rows(shape) -> int:
    """Samples per noise generator for per-sample ``shape``: part of the definition of the draws
    (large enough that seeding a generator costs little next to filling it)."""
    return max(64, 1 << max(0, math.ceil(math.log2(2**12 / max(math.prod(shape), 1)))))


def _noise_chunk(seed: int, t: int, chunk: int, shape, device) -> torch.Tensor:
    device = torch.device(device)
    rows = chunk_rows(shape)
    on_device = device.type in ("cpu", "cuda")
    g = torch.Generator(device=device if on_device else "cpu").manual_seed(derive_seed(seed, t, chunk))
    eps = torch.randn((rows, *shape), generator=g, device=device if on_device else "cpu")
    return eps if on_device else eps.to(device)


class _Noise:
    """:func:`draw_noise` with the last few chunks cached: batches walk t-major through (t, i)."""

    def __init__(self, seed, shape, device, keep: int = 8):
        self.seed, self.shape, self.device, self.keep, self.cache = seed, tuple(shape), device, keep, {}
        self.rows = chunk_rows(shape)

    def __call__(self, t: int, i0: int, i1: int) -> torch.Tensor:
        parts = []
        R = self.rows
        for c in range(i0 // R, (i1 - 1) // R + 1):
            if (t, c) not in self.cache:
                if len(self.cache) >= self.keep:
                    self.cache.pop(next(iter(self.cache)))
                self.cache[(t, c)] = _noise_chunk(self.seed, t, c, self.shape, self.device)
            lo, hi = max(i0 - c * R, 0), min(i1 - c * R, R)
            parts.append(self.cache[(t, c)][lo:hi])
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def draw_noise(seed: int, t: int, i0: int, i1: int, shape, device="cpu") -> torch.Tensor:
    """eps_{t,i} for samples i0 <= i < i1, shape (i1 - i0, *shape): the probe's noise at step t."""
    return _Noise(seed, shape, device)(t, i0, i1)


def select_samples(data, n: int, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """The n held-out x0 the probe uses, (n, *shape) float32, and a JSON-able description.

    ``data``: a :class:`biaskit.data.Dataset` (its ``test`` split) or a tensor (N, ...) of held-out
    samples. With n < N the samples are the first n of a permutation seeded by ``seed``, so a
    larger n extends a smaller one.
    """
    if hasattr(data, "test"):
        x, spec = data.test, {"dataset": getattr(data, "spec", None) or getattr(data, "name", None),
                              "split": "test"}
    elif isinstance(data, (torch.Tensor, np.ndarray)):
        x, spec = torch.as_tensor(data), {"dataset": "tensor", "split": "given"}
    else:
        raise ValueError("data must be a biaskit Dataset or a tensor of held-out x0, "
                         f"got {type(data).__name__}")
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"held-out data must have shape (N, ...) with N >= 2, got {tuple(x.shape)}")
    N = x.shape[0]
    if int(n) < 2:
        raise ValueError(f"n must be at least 2 (intervals need a spread), got {n}")
    if n > N:
        warnings.warn(f"asked for n={n} samples but the held-out set has {N}; using all {N}")
    n = min(int(n), N)
    idx = np.arange(N) if n == N else np.sort(np.random.default_rng(seed).permutation(N)[:n])
    x0 = x[torch.as_tensor(idx)].to(torch.float32).contiguous()
    return x0, {**spec, "N": int(N), "n": n, "shape": list(x0.shape[1:])}


# ---------------------------------------------------------------------------------------------
# per-sample statistics

@dataclass(frozen=True)
class _Layout:
    """Columns of the per-sample statistics matrix Z (one row per (t, sample))."""

    C: int
    bands: int
    oracle: bool

    @property
    def bias(self) -> slice:
        return slice(3, 3 + self.C)

    @property
    def means(self) -> list[tuple[str, int]]:
        """(statistic, column) of every statistic that is a plain mean of one column."""
        cols = [("eps_mse", 0), ("x0_mse", 1), ("v_mse", 2)]
        cols += [(f"x0_bias_c{k}", 3 + k) for k in range(self.C)]
        j = 3 + self.C
        cols += [("clip_frac", j)] + [(f"x0_err_band{b}", j + 1 + b) for b in range(self.bands)]
        if self.oracle:
            cols += [("oracle_mse", j + 1 + self.bands), ("excess_mse", j + 2 + self.bands)]
        return cols

    @property
    def width(self) -> int:
        return len(self.means)

    @property
    def names(self) -> list[str]:
        m = [name for name, _ in self.means]
        at = 3 + self.C
        return m[:at] + list(BIAS_NORM) + ["x0_var"] + m[at:]


def band_matrix(H: int, W: int, bands: int, device=None) -> torch.Tensor:
    """(H * (W // 2 + 1), bands) weights M so that |rfft2(e)|^2 flattened @ M sums the power of
    the full spectrum in each radial band (rfft2 keeps half the columns: the mirrored ones count
    twice)."""
    fy = torch.fft.fftfreq(H, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(W, dtype=torch.float64)[None, :]
    radius = (fy**2 + fx**2).sqrt()
    band = (radius / (0.5 / bands)).floor().clamp_max(bands - 1).long().flatten()
    mult = torch.full((W // 2 + 1,), 2.0, dtype=torch.float64)
    mult[0] = 1.0
    if W % 2 == 0:
        mult[-1] = 1.0
    M = torch.zeros(H * (W // 2 + 1), bands, dtype=torch.float64)
    M[torch.arange(band.numel()), band] = mult.expand(H, -1).flatten()
    return M.to(device=device, dtype=torch.float32)


def _per_sample(x0, eps, alpha, sigma, pred, o_hat, lay: _Layout, data_range, M) -> torch.Tensor:
    """Z rows (B, lay.width) for one batch; every error a per-element mean."""
    B = x0.shape[0]
    mean = lambda a: a.reshape(B, -1).float().mean(1, keepdim=True)  # noqa: E731  per element
    x0_hat, eps_hat = pred.x0_hat.float(), pred.eps_hat.float()
    e = x0_hat - x0
    v = P.v_from(x0, eps, alpha, sigma)
    v_hat = P.v_from(x0_hat, eps_hat, alpha, sigma)
    cols = [mean((eps_hat - eps).square()), mean(e.square()), mean((v_hat - v).square()),
            e.reshape(B, lay.C, -1).mean(2), mean(outside_range(x0_hat, data_range))]
    if lay.bands:
        H, W = e.shape[-2:]
        # Parseval: sum_f |E(f)|^2 = H W sum_x e(x)^2, so dividing by (H W) (C H W) gives x0_mse
        power = torch.fft.rfft2(e.contiguous()).abs().square().sum(1).reshape(B, -1)
        cols.append(power @ M / (e[0].numel() * H * W))
    if lay.oracle:
        o_hat = o_hat.float()
        cols += [mean((o_hat - x0).square()), mean((x0_hat - o_hat).square())]
    return torch.cat(cols, 1)


def _gather(Z: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate every rank's Z (M, sizes[r], S) along dim 1, on every rank."""
    d = torch.distributed
    comm_device = Z.device if d.get_backend() == "nccl" else torch.device("cpu")
    width = max(sizes)
    pad = torch.zeros(Z.shape[0], width, Z.shape[2], dtype=Z.dtype, device=comm_device)
    pad[:, :Z.shape[1]] = Z.to(comm_device)
    parts = [torch.empty_like(pad) for _ in sizes]
    d.all_gather(parts, pad)
    return torch.cat([p[:, :s] for p, s in zip(parts, sizes)], 1)


def _evaluate(models: list[Denoiser], oracle, x0, ts, *, seed, batch_size, device, amp, channels_last,
              lay: _Layout, progress) -> np.ndarray:
    """Per-sample statistics of every model, (M, K, n, S) float64: the (t, sample) pairs are walked
    t-major in batches of ``batch_size`` with a per-sample t (one forward per model and batch);
    under torch.distributed each rank takes a contiguous shard of the pairs."""
    n, K = x0.shape[0], len(ts)
    rank, world = rank_world()
    sizes = [(K * n * (r + 1)) // world - (K * n * r) // world for r in range(world)]
    start = (K * n * rank) // world
    stop = start + sizes[rank]
    x0 = x0.to(device)
    ts_dev = torch.as_tensor(ts, device=device)
    noise_t = models[0].schedule.timesteps[torch.as_tensor(ts)].tolist()  # draws follow the model's t
    noise = _Noise(seed, x0.shape[1:], device)
    M = band_matrix(*x0.shape[-2:], lay.bands, device) if lay.bands else None
    Z = torch.empty(len(models), stop - start, lay.width, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()
    per_sample = (-1,) + (1,) * (x0.ndim - 1)
    bar = tqdm(total=stop - start, desc="probe", unit="pair", disable=not progress or rank != 0)
    with torch.inference_mode():
        for p0 in range(start, stop, batch_size):
            p1 = min(p0 + batch_size, stop)
            pieces, p = [], p0
            while p < p1:
                k, i0 = divmod(p, n)
                i1 = min(n, i0 + p1 - p)
                pieces.append((k, i0, i1))
                p += i1 - i0
            x0_b = torch.cat([x0[i0:i1] for _, i0, i1 in pieces])
            eps_b = torch.cat([noise(noise_t[k], i0, i1) for k, i0, i1 in pieces])
            t_b = torch.cat([ts_dev[k].expand(i1 - i0) for k, i0, i1 in pieces])
            alpha, sigma = (c.reshape(per_sample) for c in models[0].schedule.coefficients(t_b))
            x_t = P.noisy(x0_b, eps_b, alpha, sigma)
            o_hat = oracle(x_t, t_b).x0_hat if oracle is not None else None
            x_in = x_t.contiguous(memory_format=torch.channels_last) if channels_last else x_t
            for m, model in enumerate(models):
                with autocast:
                    pred = model(x_in, t_b)
                Z[m, p0 - start:p1 - start] = _per_sample(x0_b, eps_b, alpha, sigma, pred, o_hat, lay,
                                                          model.data_range, M)
            bar.update(p1 - p0)
    bar.close()
    if world > 1:
        Z = _gather(Z, sizes)
    return Z.double().cpu().numpy().reshape(len(models), K, n, lay.width)


def _check_finite(Z: np.ndarray, ts, names: list[str], schedule):
    for m, Zm in enumerate(Z):
        bad = ~np.isfinite(Zm).all(axis=(1, 2))
        if bad.any():
            k = int(ts[np.argmax(bad)])
            hint = " (alpha = 0 there: an eps-model's x0_hat = (x_t - sigma eps_hat) / alpha is undefined)" \
                if float(schedule.abar[k]) == 0 else ""
            raise ValueError(f"model {names[m]!r} returned NaN or inf at t={int(schedule.timesteps[k])} "
                             f"(snr {float(schedule.snr[k]):.4g}){hint}")


# ---------------------------------------------------------------------------------------------
# estimates and intervals

def _point(zbar: np.ndarray, lay: _Layout, noise: np.ndarray) -> dict[str, np.ndarray]:
    """The plain means and x0_var from column means zbar (..., S); ``noise`` = tr(S) / n of the
    channel biases, broadcast against zbar[..., 0]: x0_var = x0_mse - bias_sq / C."""
    est = {name: zbar[..., j] for name, j in lay.means}
    est["x0_var"] = zbar[..., 1] - ((zbar[..., lay.bias] ** 2).sum(-1) - noise) / lay.C
    return est


def _influence(Z: np.ndarray, lay: _Layout) -> dict[str, np.ndarray]:
    """Per-sample influence values psi (K, n): z - zbar for means, the gradient of x0_var at zbar
    applied to z - zbar (delta method; the tr(S) / n of bias_sq is O(1/n) and left out)."""
    zbar = Z.mean(1, keepdims=True)
    D = Z - zbar
    psi = {name: D[..., j] for name, j in lay.means}
    psi["x0_var"] = D[..., 1] - (2.0 / lay.C) * (D[..., lay.bias] * zbar[..., lay.bias]).sum(-1)
    return psi


BIAS_NORM = ("x0_bias_sq", "x0_bias_l2", "x0_bias_p")
BIAS_DRAWS = 8192      # Monte Carlo draws of the sampling law of ||b_hat||^2 (common to every t)


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
    rng = np.random.default_rng([int(seed), 0xB1A5])
    Z = rng.standard_normal((draws, C))
    W = rng.chisquare(n - 1, (draws, C)) / (n - 1)
    lo, hi = np.zeros(K), np.zeros(K)
    for k0 in range(0, K, 128):
        sl = slice(k0, min(K, k0 + 128))
        lo[sl], hi[sl] = _invert_bias_test(b_hat[sl], S[sl], n, a, Z, W)
    return lo, hi


def _invert_bias_test(b_hat, S, n, a, Z, W, iterations: int = 32):
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
    D = (A - Q * tr_sim).astype(np.float32)                                  # Q_sim(r) <= Q  <=>  2 r B + D <= -r^2
    B2 = [(2 * Z @ (np.sqrt(lam) * u).T / math.sqrt(n)).astype(np.float32)   # 2 u' Sigma^1/2 Z / sqrt(n)
          for u in directions]

    def G(r, pick):                                                          # F_r(Q) - a1(r), (K,)
        r32 = r.astype(np.float32)
        F = pick([(B * r32 + D <= -r32**2).mean(0) for B in B2])
        return F - (a / 2) * (1 - np.exp(-r**2 / tau2))

    def root(target, pick):  # the r where G crosses target (G falls with r); 0 when G(0) <= target
        left, right = np.zeros_like(norm), norm + 12 * np.sqrt(tau2) + 1e-300
        for _ in range(iterations):
            mid = (left + right) / 2
            above = G(mid, pick) > target
            left, right = np.where(above, mid, left), np.where(above, right, mid)
        return np.where(G(np.zeros_like(norm), pick) > target, (left + right) / 2, 0.0)

    # r is kept if some direction keeps it: the lower bound from the direction that makes Q
    # least extreme above, the upper from the one that makes it least extreme below
    lo = root(1 - a, lambda Fs: np.minimum.reduce(Fs))
    hi = root(0.0, lambda Fs: np.maximum.reduce(Fs))
    return np.where(degenerate, norm, lo), np.where(degenerate, norm, hi)


def bias_difference(zA: np.ndarray, zB: np.ndarray, level: float = LEVEL, seed: int = 0) -> dict[str, tuple]:
    """Paired differences of the bias norm and of its square between models B and A from their
    per-sample channel means zA, zB (K, n, C) on the same draws: name -> (est, lo, hi), (K,).

    est = stat(B) - stat(A), stat = :func:`bias_l2` or :func:`bias_sq`. Interval, per t:
      - both norms clearly non-zero (both :func:`bias_l2_interval` at level 1 - (1 - level) / 5
        exclude 0): the
        delta method on the paired per-sample influence values, psi = (z - b_hat) . b_hat / l2
        for the norm and 2 (z - b_hat) . b_hat for its square (the norm is smooth there);
      - otherwise (a norm within the noise of 0, where it is not differentiable): the
        Bonferroni combination [lo_B - hi_A, hi_B - lo_A] of the two single-model intervals at
        level 1 - (1 - level) / 2, conservative (coverage at least ``level``).
    """
    K, n, C = zA.shape
    a = 1.0 - level
    tq = _t_quantile(n)
    stats = {}
    for key, z in (("A", zA), ("B", zB)):
        b = z.mean(1)
        D = z - b[:, None]
        S = np.einsum("kni,knj->kij", D, D) / (n - 1)
        l2 = bias_l2(b, S, n)
        infl = (D * b[:, None]).sum(-1)                                      # (K, n)
        stats[key] = dict(sq=bias_sq(b, S, n), l2=l2, psi_sq=2 * infl,
                          psi_l2=infl / np.where(l2 > 0, l2, 1.0)[:, None],
                          clear=bias_l2_interval(b, S, n, 1 - a / 5, seed)[0] > 0,
                          wide=bias_l2_interval(b, S, n, 1 - a / 2, seed))
    A, B = stats["A"], stats["B"]
    smooth = A["clear"] & B["clear"]
    out = {}
    for name, key, power in (("x0_bias_sq", "sq", 2), ("x0_bias_l2", "l2", 1)):
        est = B[key] - A[key]
        half = tq * (B[f"psi_{key}"] - A[f"psi_{key}"]).std(1, ddof=1) / math.sqrt(n)
        (loA, hiA), (loB, hiB) = A["wide"], B["wide"]
        lo = np.where(smooth, est - half, loB**power - hiA**power)
        hi = np.where(smooth, est + half, hiB**power - loA**power)
        out[name] = (est, lo, hi)
    return out


def _t_quantile(n: int) -> float:
    from scipy.stats import t as student_t
    return float(student_t.ppf(0.5 + LEVEL / 2, n - 1))


def _bootstrap_weights(n: int, B: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([int(seed), 0xB007])
    return rng.multinomial(n, np.full(n, 1.0 / n), size=B) / n          # (B, n)


def _bias_moments(Z: np.ndarray, lay: _Layout) -> tuple[np.ndarray, np.ndarray, int]:
    """Channel biases of per-sample statistics Z (K, n, S): their mean b_hat (K, C), sample
    covariance S (K, C, C) and n."""
    z = Z[..., lay.bias]
    n = z.shape[1]
    b = z.mean(1)
    D = z - b[:, None]
    return b, np.einsum("kni,knj->kij", D, D) / (n - 1), n


def _bias_norm(Zs: list[np.ndarray], lay: _Layout, seed: int) -> dict:
    """x0_bias_sq, x0_bias_l2 (with intervals) and x0_bias_p of one model (Zs = [Z]) or of the
    paired difference Zs[0] - Zs[1]."""
    if len(Zs) == 1:
        b, S, n = _bias_moments(Zs[0], lay)
        lo, hi = bias_l2_interval(b, S, n, LEVEL, seed)
        return {"x0_bias_sq": (bias_sq(b, S, n), lo**2, hi**2), "x0_bias_l2": (bias_l2(b, S, n), lo, hi),
                "x0_bias_p": (hotelling_p(b, S, n), None, None)}
    out = bias_difference(Zs[1][..., lay.bias], Zs[0][..., lay.bias], LEVEL, seed)
    b, S, n = _bias_moments(Zs[0] - Zs[1], lay)       # "no difference in colour bias": b_B = b_A
    out["x0_bias_p"] = (hotelling_p(b, S, n), None, None)
    return out


def _summarise(Zs: list[np.ndarray], signs: list[float], lay: _Layout, W: np.ndarray | None,
               seed: int = 0) -> dict:
    """Estimate and interval of sum_m signs[m] * statistic(model m), per t: one model (signs [1])
    or a paired difference ([1, -1]). Returns name -> (est, lo, hi), each (K,) (lo, hi None for
    the p-value)."""
    if list(signs) not in ([1.0], [1.0, -1.0]):
        raise ValueError(f"signs must be [1] or [1, -1], got {signs}")
    n = Zs[0].shape[1]
    tq = _t_quantile(n)
    noise = [np.trace(_bias_moments(Z, lay)[1], axis1=1, axis2=2) / n for Z in Zs]      # (K,)
    ests = [_point(Z.mean(1), lay, e) for Z, e in zip(Zs, noise)]
    psis = [_influence(Z, lay) for Z in Zs]
    boot = [_point(np.einsum("bn,kns->kbs", W, Z), lay, e[:, None]) for Z, e in zip(Zs, noise)] \
        if W is not None else None
    out = _bias_norm(Zs, lay, seed)
    for name in lay.names:
        if name in out:
            continue
        est = sum(s * e[name] for s, e in zip(signs, ests))
        psi = sum(s * p[name] for s, p in zip(signs, psis))
        half = tq * psi.std(1, ddof=1) / math.sqrt(n)
        lo, hi = est - half, est + half
        if name == "x0_var" and boot is not None:
            draws = sum(s * b[name] for s, b in zip(signs, boot))                # (K, B)
            lo, hi = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=1)
        out[name] = (est, lo, hi)
    return out


def _frame(model: str, summary: dict, ts, n: int, schedule, lay: _Layout) -> pd.DataFrame:
    idx = torch.as_tensor(ts)
    cols = {"model": model, "t": schedule.timesteps[idx].numpy().astype(np.int64),
            "schedule_index": np.asarray(ts, dtype=np.int64),
            "snr": schedule.snr[idx].numpy(), "logsnr": schedule.logsnr[idx].numpy(), "n": n}
    for name in lay.names:
        est, lo, hi = summary[name]
        cols[name] = est
        if lo is not None:
            cols[f"{name}_lo"], cols[f"{name}_hi"] = lo, hi
    return pd.DataFrame(cols)


# ---------------------------------------------------------------------------------------------
# public API

def _default_oracle(data, schedule, x0_shape):
    mixture = getattr(data, "mixture", None)
    if mixture is None:
        return None
    from .oracle import oracle_denoiser
    return oracle_denoiser(mixture, schedule, x0_shape, getattr(data, "data_range", (-1.0, 1.0)),
                           name="oracle")


def model_identity(denoiser: Denoiser) -> dict:
    """denoiser.describe(), plus the sha256 of its file when it names one and has no hash yet."""
    info = dict(denoiser.describe()) if hasattr(denoiser, "describe") else {"name": str(denoiser)}
    if "sha256" in info:
        return info
    files = [info[k] for k in ("path", "checkpoint", "file") if isinstance(info.get(k), str)]
    if isinstance(info.get("run_dir"), str):  # a biaskit run: the weights file of its step
        from .checkpoint import checkpoint_dir
        try:
            ckpt = checkpoint_dir(info["run_dir"], info.get("step"))
            files.append(str(ckpt / f"{'model' if info.get('weights') == 'online' else 'ema'}.safetensors"))
        except (FileNotFoundError, ValueError):
            pass
    for f in files:
        if Path(f).is_file():
            info["sha256"], info["sha256_of"] = file_sha256(f), f
            break
    return info


def _probe_models(models: dict[str, Denoiser], data, *, timesteps, num_timesteps, stratified, n, seed,
                  batch_size, oracle, device, bootstrap, progress, amp, channels_last, bands):
    names = list(models)
    dens = list(models.values())
    schedule = dens[0].schedule
    for name, d in models.items():
        if not d.schedule.same_as(schedule):
            raise ValueError(f"model {name!r} uses schedule {d.schedule!r}, but {names[0]!r} uses "
                             f"{schedule!r}: compared models must share one schedule")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = torch.device(device) if device is not None else dens[0].device
    x0, data_spec = select_samples(data, n, seed)
    n = x0.shape[0]
    ts = timestep_grid(schedule.T, num_timesteps=num_timesteps, stratified=stratified, seed=seed) \
        if timesteps is None else schedule_indices(schedule, timesteps)
    if oracle is None:
        oracle = _default_oracle(data, schedule, tuple(x0.shape[1:]))
    elif oracle is False:
        oracle = None
    if oracle is not None and not oracle.schedule.same_as(schedule):
        raise ValueError(f"the oracle's schedule {oracle.schedule!r} differs from the model's {schedule!r}")
    data_range = getattr(data, "data_range", None)
    for name, d in models.items():
        if data_range is not None and tuple(map(float, data_range)) != tuple(d.data_range):
            warnings.warn(f"model {name!r} expects data in {d.data_range} but the data lie in "
                          f"{tuple(data_range)}; probing without rescaling")
    image = x0.ndim == 4
    lay = _Layout(C=x0.shape[1], bands=int(bands) if image else 0, oracle=oracle is not None)
    amp = (device.type == "cuda") if amp is None else bool(amp)
    channels_last = image and (device.type == "cuda" if channels_last is None else bool(channels_last))
    modes = [d.training for d in dens]
    for d in dens:
        d.to(device).eval()
        if channels_last:
            d.to(memory_format=torch.channels_last)
    if oracle is not None:
        oracle.to(device).eval()
    start = time.perf_counter()
    try:
        Z = _evaluate(dens, oracle, x0, ts, seed=seed, batch_size=int(batch_size), device=device, amp=amp,
                      channels_last=channels_last, lay=lay, progress=progress)
    finally:
        for d, mode in zip(dens, modes):
            d.train(mode)
    wall = time.perf_counter() - start
    _check_finite(Z, ts, names, schedule)
    W = _bootstrap_weights(n, int(bootstrap), seed) if bootstrap else None
    meta = {
        "schedule": schedule.to_dict(),
        "parameterization": {k: d.parameterization for k, d in models.items()},
        "data": data_spec, "n": n, "seed": int(seed),
        "noise": f"randn per (seed, t, sample // {chunk_rows(x0.shape[1:])})",
        "timesteps": schedule.timesteps[torch.as_tensor(ts)].tolist(),
        "schedule_indices": [int(k) for k in ts], "grid": {"timesteps": None if timesteps is None else "given",
                                                    "num_timesteps": num_timesteps, "stratified": stratified},
        "models": {k: model_identity(d) for k, d in models.items()},
        "oracle": model_identity(oracle) if oracle is not None else None,
        "statistics": lay.names, "errors": "per-element means over C, H, W (or D)",
        "clip_tol": CLIP_TOL,
        "ci": {**METHODS, "nonlinear": "bootstrap" if bootstrap else "delta", "bootstrap": int(bootstrap)},
        "bands": lay.bands, "batch_size": int(batch_size), "device": str(device), "amp_bf16": amp,
        "channels_last": channels_last, "world_size": rank_world()[1], "wall_time_s": wall,
        "versions": {"biaskit": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "pandas": pd.__version__, "python": platform.python_version()},
    }
    return names, Z, ts, n, schedule, lay, W, meta


def probe(denoiser: Denoiser, data, *, timesteps=None, num_timesteps: int | None = None,
          stratified: bool = False, n: int = 512, seed: int = 0, batch_size: int = 256, oracle=None,
          device=None, bootstrap: int = 0, progress: bool = True, amp: bool | None = None,
          channels_last: bool | None = None, bands: int = 4) -> pd.DataFrame:
    """Per-timestep statistics of ``denoiser`` on held-out data (see the module docstring).

    Args:
        denoiser: any :class:`Denoiser`; t are its own timesteps (``schedule.timesteps``).
        data: a Dataset (its test split is used) or a tensor (N, C, H, W) / (N, D) of held-out x0.
        timesteps: the model's timesteps to probe (see :func:`schedule_indices`); else
            num_timesteps / stratified: the grid over the schedule's steps, see :func:`timestep_grid`.
        n: held-out samples per t (all of them if fewer). seed: samples, noise, grid, bootstrap.
        batch_size: (t, sample) pairs per forward pass; the results do not depend on it.
        oracle: a Denoiser giving E[x0 | x_t] (same schedule); None builds it from ``data.mixture``
            when the Dataset has one; False turns it off. Adds oracle_mse and excess_mse.
        device: where to run (default: the denoiser's device). The models are moved there.
        bootstrap: B > 0 gives x0_var percentile-bootstrap intervals (else delta method).
        amp, channels_last: bf16 autocast and channels_last inputs (default on for cuda, off on cpu).
        bands: spatial-frequency bands for x0_err_band{j} (images only).

    Returns a DataFrame with one row per t: model, t (the model's timestep), schedule_index (its
    position k among the schedule's steps), snr, logsnr, n, then each statistic followed by its
    ``_lo`` and ``_hi``. ``df.attrs["metadata"]`` holds the metadata for :func:`save_results`.
    Under torch.distributed every rank computes a shard and every rank returns the full, identical
    frame. NaN/inf from the model raise a ValueError naming the t.
    """
    name = getattr(denoiser, "name", None) or "model"
    names, Z, ts, n, schedule, lay, W, meta = _probe_models(
        {name: denoiser}, data, timesteps=timesteps, num_timesteps=num_timesteps, stratified=stratified,
        n=n, seed=seed, batch_size=batch_size, oracle=oracle, device=device, bootstrap=bootstrap,
        progress=progress, amp=amp, channels_last=channels_last, bands=bands)
    df = _frame(name, _summarise([Z[0]], [1.0], lay, W, seed), ts, n, schedule, lay)
    df.attrs["metadata"] = meta
    return df


def compare(denoisers, data, *, reference: str | None = None, timesteps=None,
            num_timesteps: int | None = None, stratified: bool = False, n: int = 512, seed: int = 0,
            batch_size: int = 256, oracle=None, device=None, bootstrap: int = 0, progress: bool = True,
            amp: bool | None = None, channels_last: bool | None = None, bands: int = 4) -> pd.DataFrame:
    """Probe several models on the same draws (common random numbers) and difference them.

    ``denoisers``: {name: Denoiser} or a list (named by ``.name``, made unique). ``reference``: the
    name the others are compared to (default: the first). Other arguments as :func:`probe`.

    Returns the :func:`probe` columns plus ``kind`` and ``reference`` after ``model``:
      - kind == "model": one row per (model, t) with that model's statistics, reference "";
      - kind == "difference": one row per (other model, t) with model "NAME - REF", reference REF,
        and every statistic replaced by statistic(NAME) - statistic(REF), its interval computed
        from the per-sample paired differences.
    """
    if isinstance(denoisers, dict):
        models = dict(denoisers)
    else:
        models = {}
        for d in denoisers:
            base = getattr(d, "name", None) or "model"
            name, k = base, 1
            while name in models:
                k += 1
                name = f"{base}#{k}"
            models[name] = d
    if len(models) < 1:
        raise ValueError("compare needs at least one model")
    reference = list(models)[0] if reference is None else reference
    if reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models: {', '.join(models)}")
    names, Z, ts, n, schedule, lay, W, meta = _probe_models(
        models, data, timesteps=timesteps, num_timesteps=num_timesteps, stratified=stratified, n=n,
        seed=seed, batch_size=batch_size, oracle=oracle, device=device, bootstrap=bootstrap,
        progress=progress, amp=amp, channels_last=channels_last, bands=bands)
    r = names.index(reference)
    frames = []
    for m, name in enumerate(names):
        df = _frame(name, _summarise([Z[m]], [1.0], lay, W, seed), ts, n, schedule, lay)
        df.insert(1, "kind", "model")
        df.insert(2, "reference", "")
        frames.append(df)
    for m, name in enumerate(names):
        if m == r:
            continue
        df = _frame(f"{name} - {reference}", _summarise([Z[m], Z[r]], [1.0, -1.0], lay, W, seed), ts, n,
                    schedule, lay)
        df.insert(1, "kind", "difference")
        df.insert(2, "reference", reference)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["metadata"] = {**meta, "reference": reference}
    return out


class _CallableModule(types.ModuleType):
    """``biaskit.probe(denoiser, data, ...)`` calls :func:`probe` even once this module has been
    imported (importing a submodule makes ``biaskit.probe`` the module, shadowing the lazy export)."""

    def __call__(self, *args, **kwargs):
        return probe(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
