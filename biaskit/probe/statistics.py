"""The probe's statistics, one entry each in :data:`STATISTICS`.

Statistics, one row per (model, t). Every error is a per-element mean (over C, H, W for images,
over D for vectors), never a sum; d = C H W or D:
  eps_mse          mean_i ||eps_hat - eps||^2 / d
  x0_mse           mean_i ||x0_hat - x0||^2 / d          (= eps_mse / snr for every model)
  x0_abs_err       mean_i ||x0_hat - x0||_1 / d: the mean absolute x0 error (less weight on outliers)
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
from B resamples of the n samples. x0_bias_l2: test inversion
(:func:`~.bias_norm.bias_l2_interval`), which covers whether the bias is 0 or not; x0_bias_sq:
its square. Paired differences (:func:`~biaskit.probe.compare`) use the same rules on per-sample
differences, and :func:`~.paired_bias.bias_difference` for the bias norm. ``METHODS`` describes
this in the metadata.

An entry says how its per-sample value is computed from a batch, how the values combine into one
number per t, and how its interval is made:

- :class:`Mean`: the mean over samples of a per-sample value (one column, or k columns named
  ``name0 .. name{k-1}``); interval: the t-interval of the (paired) per-sample values.
- :class:`Smooth`: a smooth function of the column means; interval: the delta method (the
  t-interval of its per-sample influence values) or, with bootstrap weights, the percentile
  bootstrap.
- :class:`Joint`: a statistic with its own estimator and interval over named columns (the
  colour-bias norm).

Adding a statistic is adding one entry: the per-sample matrix Z gets the columns of every
:class:`Mean` in the list's order, and the frame the names of every entry in that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import torch

from .. import parameterization as P
from ..intervals import LEVEL, percentile, t_interval
from .bias_norm import BIAS_NORM, channel_moments
from .paired_bias import bias_norm

# A value counts as outside [lo, hi] only beyond 1% of the width (0.02 on [-1, 1], 2.55 levels of
# 8-bit pixels): an estimate of an edge pixel (MNIST's background, 80% of its pixels, lies at lo)
# within its own small error of the edge is not an excursion. On the real MNIST DDPM at t = 1
# (x0-MSE 4.4e-5) 40% of x0_hat lie below lo, 0.4% below lo - 0.01 (hi - lo).
CLIP_TOL = 0.01

# t positions summarised together. Every statistic of a t depends on that t's rows alone (a test
# asserts that any grouping gives the same bits), and groups of this size keep the bias-norm
# inversion's (t, draws) arrays in cache: 2.8 ms per t instead of 4.5 ms with all K = 50 at once
# (n = 4096, C = 2, one thread); :mod:`.pipeline` summarises each group while the next are evaluated.
GROUP = 8


def outside_range(x: torch.Tensor, data_range, tol: float = CLIP_TOL) -> torch.Tensor:
    """Boolean mask of elements of ``x`` below lo - tol (hi - lo) or above hi + tol (hi - lo)."""
    lo, hi = data_range
    margin = tol * (hi - lo)
    return (x < lo - margin) | (x > hi + margin)


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


@dataclass(frozen=True)
class Setup:
    """What decides which statistics a probe has: C channels, the number of frequency bands
    (0 for vectors) and whether an oracle E[x0 | x_t] is given."""

    C: int
    bands: int
    oracle: bool


@dataclass
class Batch:
    """One batch of B (t, sample) pairs: x0, eps (B, *shape), alpha, sigma broadcastable to them,
    the model's x0_hat, eps_hat (float32), the oracle's o_hat (or None), the model's data range
    and the band matrix M (or None)."""

    x0: torch.Tensor
    eps: torch.Tensor
    alpha: torch.Tensor
    sigma: torch.Tensor
    x0_hat: torch.Tensor
    eps_hat: torch.Tensor
    o_hat: torch.Tensor | None
    data_range: tuple
    M: torch.Tensor | None

    @cached_property
    def e(self) -> torch.Tensor:
        """x0_hat - x0, (B, *shape)."""
        return self.x0_hat - self.x0

    def mean(self, a: torch.Tensor) -> torch.Tensor:
        """Per-element mean of a (B, *shape) -> (B, 1)."""
        return a.reshape(a.shape[0], -1).float().mean(1, keepdim=True)


class Sample:
    """Per-sample statistics Z (K, n, S) of one model and what the entries read from them:
    column means zbar (K, S), deviations D = Z - zbar (K, n, S), bootstrap means (K, B, S)."""

    def __init__(self, Z: np.ndarray, W: np.ndarray | None):
        self.Z, self.W = Z, W
        self._moments: dict = {}

    @cached_property
    def zbar(self) -> np.ndarray:
        return self.Z.mean(1)

    @cached_property
    def D(self) -> np.ndarray:
        return self.Z - self.zbar[:, None]                 # zbar's reduction, not a second one

    @cached_property
    def boot(self) -> np.ndarray:
        return np.einsum("bn,kns->kbs", self.W, self.Z)

    def moments(self, cols) -> tuple[np.ndarray, np.ndarray, int]:
        """:func:`~.bias_norm.channel_moments` of the columns ``cols`` (a slice), computed once
        (the bias norm and x0_var both read them)."""
        key = (cols.start, cols.stop)
        if key not in self._moments:
            self._moments[key] = channel_moments(self.Z[..., cols])
        return self._moments[key]


def _always(setup: Setup) -> bool:
    return True


@dataclass(frozen=True)
class Mean:
    """mean_i value_i per t: ``value(batch)`` gives (B, 1), or (B, k) with k = ``columns(setup)``
    columns named name0 .. name{k-1}; present when ``when(setup)``."""

    name: str
    value: Callable[[Batch], torch.Tensor]
    columns: Callable[[Setup], int] | None = None
    when: Callable[[Setup], bool] = _always

    def names(self, setup: Setup) -> list[str]:
        return [self.name] if self.columns is None else [f"{self.name}{k}" for k in range(self.columns(setup))]

    def summarise(self, samples: list[Sample], signs, at: dict, seed: int, level: float) -> dict:
        cols = at[self.name]
        cols = range(cols.start, cols.stop) if isinstance(cols, slice) else [cols]
        out = {}
        for name, j in zip(self.names(at["setup"]), cols):
            est = sum(s * m.zbar[..., j] for s, m in zip(signs, samples))
            psi = sum(s * m.D[..., j] for s, m in zip(signs, samples))
            out[name] = (est, *t_interval(est, psi, level))
        return out


@dataclass(frozen=True)
class Smooth:
    """A smooth function of the column means: ``point(zbar, at, sample)`` with zbar (K, S) or
    bootstrap means (K, B, S) (``sample``: the :class:`Sample` they come from), and
    ``influence(sample, at)`` its per-sample influence values (K, n)."""

    name: str
    point: Callable
    influence: Callable
    when: Callable[[Setup], bool] = _always

    def names(self, setup: Setup) -> list[str]:
        return [self.name]

    def summarise(self, samples: list[Sample], signs, at: dict, seed: int, level: float) -> dict:
        est = sum(s * self.point(m.zbar, at, m) for s, m in zip(signs, samples))
        if samples[0].W is not None:
            lo, hi = percentile(sum(s * self.point(m.boot, at, m) for s, m in zip(signs, samples)), level)
        else:
            lo, hi = t_interval(est, sum(s * self.influence(m, at) for s, m in zip(signs, samples)), level)
        return {self.name: (est, lo, hi)}


@dataclass(frozen=True)
class Joint:
    """Statistics with their own estimator and interval: ``estimate(zs, seed, level, moments)``
    of the per-sample columns ``of`` (zs = [z] for one model, [z_B, z_A] for B - A; ``moments``
    their :meth:`Sample.moments`, each computed once)."""

    names_: tuple
    of: str
    estimate: Callable
    when: Callable[[Setup], bool] = _always

    def names(self, setup: Setup) -> list[str]:
        return list(self.names_)

    def summarise(self, samples: list[Sample], signs, at: dict, seed: int, level: float) -> dict:
        cols = at[self.of]
        return self.estimate([m.Z[..., cols] for m in samples], seed, level,
                             [m.moments(cols) for m in samples])


def _v_err(b: Batch) -> torch.Tensor:
    v = P.v_from(b.x0, b.eps, b.alpha, b.sigma)
    v_hat = P.v_from(b.x0_hat, b.eps_hat, b.alpha, b.sigma)
    return b.mean((v_hat - v).square())


def _band_power(b: Batch) -> torch.Tensor:
    B, (H, W) = b.e.shape[0], b.e.shape[-2:]
    # Parseval: sum_f |E(f)|^2 = H W sum_x e(x)^2, so dividing by (H W) (C H W) gives x0_mse
    power = torch.fft.rfft2(b.e.contiguous()).abs().square().sum(1).reshape(B, -1)
    return power @ b.M / (b.e[0].numel() * H * W)


def _bias_noise(m: Sample, at: dict) -> np.ndarray:
    """tr(S) / n of the channel biases, (K,): E ||b_hat||^2 - ||b||^2."""
    S = m.moments(at["x0_bias_c"])[1]
    return np.trace(S, axis1=1, axis2=2) / m.Z.shape[1]


def _x0_var(zbar: np.ndarray, at: dict, m: Sample) -> np.ndarray:
    """x0_var = x0_mse - (||b_hat||^2 - tr(S) / n) / C from column means zbar (K, [B,] S) of
    the :class:`Sample` m."""
    noise = _bias_noise(m, at).reshape((-1,) + (1,) * (zbar.ndim - 2))
    bias = at["x0_bias_c"]
    return zbar[..., at["x0_mse"]] - ((zbar[..., bias] ** 2).sum(-1) - noise) / at["setup"].C


def _x0_var_influence(m: Sample, at: dict) -> np.ndarray:
    """Gradient of x0_var at zbar applied to z - zbar, (K, n) (the tr(S) / n is O(1/n), left out)."""
    bias, zbar = at["x0_bias_c"], m.zbar[:, None]
    return m.D[..., at["x0_mse"]] - (2.0 / at["setup"].C) * (m.D[..., bias] * zbar[..., bias]).sum(-1)


STATISTICS = [
    Mean("eps_mse", lambda b: b.mean((b.eps_hat - b.eps).square())),
    Mean("x0_mse", lambda b: b.mean(b.e.square())),
    Mean("x0_abs_err", lambda b: b.mean(b.e.abs())),
    Mean("v_mse", _v_err),
    Mean("x0_bias_c", lambda b: b.e.reshape(b.e.shape[0], b.e.shape[1], -1).mean(2), columns=lambda s: s.C),
    Joint(BIAS_NORM, "x0_bias_c", bias_norm),
    Smooth("x0_var", _x0_var, _x0_var_influence),
    Mean("clip_frac", lambda b: b.mean(outside_range(b.x0_hat, b.data_range))),
    Mean("x0_err_band", _band_power, columns=lambda s: s.bands, when=lambda s: s.bands > 0),
    Mean("oracle_mse", lambda b: b.mean((b.o_hat.float() - b.x0).square()), when=lambda s: s.oracle),
    Mean("excess_mse", lambda b: b.mean((b.x0_hat - b.o_hat.float()).square()), when=lambda s: s.oracle),
]


def statistics(setup: Setup) -> list:
    """The entries of :data:`STATISTICS` present under ``setup``."""
    return [s for s in STATISTICS if s.when(setup)]


def columns(setup: Setup) -> dict:
    """Where each :class:`Mean` lies in Z's last axis: name -> column (one) or slice (several);
    ``"width"`` the number of columns and ``"setup"`` the setup."""
    at, j = {"setup": setup}, 0
    for s in statistics(setup):
        if isinstance(s, Mean):
            k = 1 if s.columns is None else s.columns(setup)
            at[s.name] = j if s.columns is None else slice(j, j + k)
            j += k
    at["width"] = j
    return at


def names(setup: Setup) -> list[str]:
    """The frame's statistic names, in order."""
    return [name for s in statistics(setup) for name in s.names(setup)]


def per_sample(batch: Batch, setup: Setup) -> torch.Tensor:
    """Z rows (B, width) for one batch: every :class:`Mean`'s columns, in order."""
    return torch.cat([s.value(batch) for s in statistics(setup) if isinstance(s, Mean)], 1)


def summarise(Zs: list[np.ndarray], signs: list[float], setup: Setup, W: np.ndarray | None,
              seed: int = 0, level: float = LEVEL) -> dict:
    """Estimate and interval of sum_m signs[m] * statistic(model m), per t, from per-sample
    statistics Zs[m] (K, n, S): one model (signs [1]) or a paired difference ([1, -1]); W the
    (B, n) bootstrap weights or None. Returns name -> (est, lo, hi), each (K,) (lo, hi None for
    the p-value)."""
    if list(signs) not in ([1.0], [1.0, -1.0]):
        raise ValueError(f"signs must be [1] or [1, -1], got {signs}")
    K = Zs[0].shape[0]
    parts = [summarise_samples([Sample(Z[k0:k0 + GROUP], W) for Z in Zs], signs, setup, seed, level)
             for k0 in range(0, K, GROUP)]
    return join(parts)


def summarise_samples(samples: list[Sample], signs, setup: Setup, seed: int = 0, level: float = LEVEL) -> dict:
    """:func:`summarise` of :class:`Sample` objects as they are (one group of t; a Sample shared by
    several calls computes its means, deviations and moments once)."""
    at = columns(setup)
    out = {}
    for s in statistics(setup):
        out.update(s.summarise(samples, signs, at, seed, level))
    return out


def join(parts: list[dict]) -> dict:
    """The summaries of consecutive groups of t (each name -> (est, lo, hi), (K_g,) arrays or None)
    as one: each array concatenated along t."""
    if len(parts) == 1:
        return parts[0]
    return {name: tuple(None if parts[0][name][i] is None else
                        np.concatenate([p[name][i] for p in parts]) for i in range(3))
            for name in parts[0]}
