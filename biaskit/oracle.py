"""Exact denoisers: the posterior mean E[x0 | x_t] of a known data distribution.

For x_t = alpha x0 + sigma eps and x0 from a Gaussian mixture sum_k w_k N(m_k, S_k):

  x_t | k ~ N(alpha m_k, alpha^2 S_k + sigma^2 I)                                     (1)
  E[x0 | x_t, k] = m_k + alpha S_k (alpha^2 S_k + sigma^2 I)^-1 (x_t - alpha m_k)     (2)
  E[x0 | x_t] = sum_k r_k(x_t) E[x0 | x_t, k],  r_k proportional to w_k N(x_t; (1))   (3)
  Cov[x0 | x_t, k] = S_k - alpha^2 S_k (alpha^2 S_k + sigma^2 I)^-1 S_k                (4)

With S_k = U diag(l) U^T every matrix above is diagonal in U (eigenvalues alpha^2 l + sigma^2 in
(1), alpha l / (alpha^2 l + sigma^2) in (2), l sigma^2 / (alpha^2 l + sigma^2) in (4)), so the
eigendecomposition is computed once and no t needs a new factorisation. Isotropic components
(S_k = s_k^2 I, including point masses s_k = 0 of an empirical distribution) skip it altogether.

The posterior mean minimises every positively weighted MSE, so a model's distance to it is the
estimation error and the oracle's own error (:func:`irreducible_error`) the part no model removes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .denoiser import Denoiser
from .intervals import t_interval
from .mixture import GaussianMixture, _log_marginal
from .parameterization import noisy
from .schedules import Schedule, get_schedule
from .source import Source

__all__ = ["GaussianMixture", "posterior_mean", "OracleNet", "ConditionalOracleNet", "oracle_denoiser",
           "empirical_denoiser", "irreducible_error", "from_spec"]

def _posterior_mean(x, alpha, sigma, means, log_w, f, chunk_elems: int = 2**22):
    """E[x0 | x_t] (3) in float64 with a running log-sum-exp over chunks of components."""
    B, D = x.shape
    K = means.shape[0]
    # memory per component: a few (B,) columns when isotropic, (B, D) vectors otherwise
    per = B * (16 if "iso_var" in f else 4 * D)
    step = max(1, min(K, chunk_elems // max(per, 1)))
    run_max = x.new_full((B, 1), -math.inf)
    num, den = torch.zeros_like(x), x.new_zeros(B, 1)
    for k0 in range(0, K, step):
        fk = {key: v[k0:k0 + step] for key, v in f.items()}
        logp, contract = _log_marginal(x, alpha, sigma, means[k0:k0 + step], log_w[k0:k0 + step], fk)
        # floored so that a chunk of zero-weight components (log w = -inf) gives no nan
        new_max = torch.maximum(run_max, logp.max(1, keepdim=True).values)
        new_max = new_max.clamp_min(torch.finfo(x.dtype).min)
        scale = torch.exp(run_max - new_max)
        p = torch.exp(logp - new_max)
        num = num * scale + contract(p)
        den = den * scale + p.sum(1, keepdim=True)
        run_max = new_max
    return num / den


def _as_rows(c, B, like):
    c = torch.as_tensor(c, dtype=torch.float64, device=like.device).flatten()
    return c.expand(B) if c.numel() == 1 else c


def posterior_mean(mixture: GaussianMixture, x_t: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """E[x0 | x_t] for x_t = alpha x0 + sigma eps, x0 ~ ``mixture``.

    x_t: (B, D) or (B, *shape) with prod(shape) = D; alpha, sigma: scalars, (B,) or (B, 1).
    Computed in float64 on x_t's device, returned in x_t's shape and dtype. At sigma = 0 exactly
    it is x_t / alpha.
    """
    return _posterior_mean_rows(x_t, alpha, sigma, *mixture.on(x_t.device))


def _posterior_mean_rows(x_t, alpha, sigma, means, log_w, f):
    B = x_t.shape[0]
    x = x_t.reshape(B, -1).to(torch.float64)
    means, log_w = means.to(torch.float64), log_w.to(torch.float64)
    f = {k: v.to(torch.float64) for k, v in f.items()}
    alpha, sigma = _as_rows(alpha, B, x), _as_rows(sigma, B, x)
    noisy = sigma > 0
    if noisy.all():
        out = _posterior_mean(x, alpha, sigma, means, log_w, f)
    else:
        out = x / alpha[:, None]
        if noisy.any():
            out[noisy] = _posterior_mean(x[noisy], alpha[noisy], sigma[noisy], means, log_w, f)
    return out.to(x_t.dtype).reshape(x_t.shape)


class OracleNet(nn.Module):
    """net(x_t, time_in) = E[x0 | x_t] with time_in the (B, 2) tensor [alpha, sigma].

    x_t may be (B, D) or (B, *shape); the output has x_t's shape. The mixture's factors are
    non-persistent buffers: ``.to(device)`` moves them, checkpoints do not store them.
    """

    def __init__(self, mixture: GaussianMixture, shape=None):
        super().__init__()
        self.shape = tuple(shape) if shape is not None else (mixture.dim,)
        if math.prod(self.shape) != mixture.dim:
            raise ValueError(f"shape {self.shape} has {math.prod(self.shape)} entries but the "
                             f"mixture has dimension {mixture.dim}")
        self.register_buffer("means", mixture.means.clone(), persistent=False)
        self.register_buffer("log_w", mixture.weights.log(), persistent=False)
        self._keys = sorted(mixture.factors())
        for key in self._keys:
            self.register_buffer(f"f_{key}", mixture.factors()[key].clone(), persistent=False)

    def forward(self, x_t: torch.Tensor, time_in: torch.Tensor) -> torch.Tensor:
        if x_t[0].numel() != self.means.shape[1]:
            raise ValueError(f"x_t has per-sample shape {tuple(x_t.shape[1:])} but the oracle "
                             f"expects {self.shape}")
        f = {key: getattr(self, f"f_{key}") for key in self._keys}
        return _posterior_mean_rows(x_t, time_in[:, 0], time_in[:, 1], self.means, self.log_w, f)


def oracle_denoiser(mixture: GaussianMixture, schedule: Schedule, shape=None, data_range=(-1.0, 1.0),
                    name: str = "oracle", info: dict | None = None) -> Denoiser:
    """The exact x0-predicting :class:`Denoiser` of ``mixture`` (per-sample ``shape``, default (D,))."""
    net = OracleNet(mixture, shape)
    return Denoiser(net, schedule, "x0", time_input="alpha_sigma", data_range=data_range,
                    channels=net.shape[0], name=name,
                    source=Source("oracle", shape=net.shape,
                                  extras={"K": mixture.K, "dim": mixture.dim, **(info or {})}))


def empirical_denoiser(points: torch.Tensor, schedule: Schedule, data_range=(-1.0, 1.0),
                       name: str = "empirical", info: dict | None = None) -> Denoiser:
    """The memorising oracle: posterior mean under the empirical distribution of ``points``
    (N, *shape); it maps every x_t to a convex combination of training points."""
    points = torch.as_tensor(points)
    return oracle_denoiser(GaussianMixture.from_points(points), schedule, tuple(points.shape[1:]),
                           data_range, name, info)


class ConditionalOracleNet(nn.Module):
    """net(x_t, time_in, y) = E[x0 | x_t, y] for x0 drawn from the labelled points of class y
    (the empirical distribution of each class, :meth:`GaussianMixture.from_points`); at
    ``y == null_label`` (default: the number of classes) the unconditional E[x0 | x_t] over all
    points. time_in: (B, 2) [alpha, sigma]. The exact class-conditional network of a labelled
    set, with the null class of a classifier-free-guidance net.
    """

    def __init__(self, points: torch.Tensor, labels: torch.Tensor, null_label: int | None = None):
        super().__init__()
        points, labels = torch.as_tensor(points), torch.as_tensor(labels).long().reshape(-1)
        self.shape = tuple(points.shape[1:])
        self.classes = torch.unique(labels).tolist()
        self.null_label = int(max(self.classes) + 1 if null_label is None else null_label)
        if self.null_label in self.classes:
            raise ValueError(f"null_label {self.null_label} is also a class of the points")
        parts = {c: points[labels == c] for c in self.classes}
        parts[self.null_label] = points
        self.nets = nn.ModuleDict({str(c): OracleNet(GaussianMixture.from_points(p), self.shape)
                                   for c, p in parts.items()})

    def forward(self, x_t: torch.Tensor, time_in: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x_t)
        for c in torch.unique(y).tolist():
            if str(c) not in self.nets:
                raise ValueError(f"label {c} is not a class of the oracle ({self.classes}; null "
                                 f"{self.null_label})")
            rows = y == c
            out[rows] = self.nets[str(c)](x_t[rows], time_in[rows])
        return out


def _steps(t, schedule: Schedule) -> list[int]:
    steps = [int(t)] if np.ndim(t) == 0 else [int(s) for s in np.asarray(t).ravel()]
    bad = [s for s in steps if not 0 <= s < schedule.T]
    if bad:
        raise ValueError(f"timesteps {bad} outside 0..{schedule.T - 1}")
    return steps


def irreducible_error(mixture: GaussianMixture, schedule: Schedule, t, n: int = 4096, seed: int = 0,
                      batch_size: int = 1024, device=None, progress: bool = True) -> pd.DataFrame:
    """Per-dimension MSE of the oracle, E||x0 - E[x0 | x_t]||^2 / D, at each step in ``t``.

    One Gaussian (K = 1): closed form, the mean eigenvalue of the posterior covariance (4),
    l sigma^2 / (alpha^2 l + sigma^2). Otherwise Monte Carlo over n draws of (x0, eps) (the same
    draws at every t) with the 95% t-interval of the mean (:func:`biaskit.intervals.t_interval`).
    Columns: t, snr, logsnr, oracle_mse, oracle_mse_lo, oracle_mse_hi, method, n.
    """
    steps = _steps(t, schedule)
    f = mixture.factors()
    rows = []
    if mixture.K == 1:
        l = f["iso_var"].expand(mixture.dim) if "iso_var" in f else f["l"][0]
        for s in steps:
            a2, s2 = schedule.abar[s], 1 - schedule.abar[s]
            mse = float((l * s2 / (a2 * l + s2)).mean()) if s2 > 0 else 0.0
            rows.append(dict(t=s, oracle_mse=mse, oracle_mse_lo=mse, oracle_mse_hi=mse,
                             method="closed_form", n=0))
    else:
        device = torch.device(device or "cpu")
        g = torch.Generator().manual_seed(seed)
        x0 = mixture.sample(n, generator=g, dtype=torch.float64)
        eps = torch.randn(n, mixture.dim, generator=g, dtype=torch.float64)
        for s in tqdm(steps, desc="irreducible error", disable=not progress):
            alpha, sigma = float(schedule.alpha[s]), float(schedule.sigma[s])
            err = []
            for i in range(0, n, batch_size):
                x0_b, eps_b = x0[i:i + batch_size].to(device), eps[i:i + batch_size].to(device)
                x0_hat = posterior_mean(mixture, noisy(x0_b, eps_b, alpha, sigma), alpha, sigma)
                err.append(((x0_hat - x0_b) ** 2).mean(1).cpu())
            err = torch.cat(err)
            mse = float(err.mean())
            lo, hi = t_interval(mse, err.numpy())
            rows.append(dict(t=s, oracle_mse=mse, oracle_mse_lo=lo, oracle_mse_hi=hi, method="monte_carlo", n=n))
    df = pd.DataFrame(rows)
    idx = torch.tensor(steps)
    df.insert(1, "snr", schedule.snr[idx].numpy())
    df.insert(2, "logsnr", schedule.logsnr[idx].numpy())
    return df


def from_spec(spec: str, schedule: Schedule | str | None = None, dataset=None, name: str | None = None,
              **options) -> Denoiser:
    """``oracle:NAME`` -> the exact denoiser of dataset NAME's distribution (gaussian, gmm, gmm2d);
    ``oracle:empirical:NAME`` -> the memorising oracle of NAME's training split (any dataset,
    including an image folder path).

    ``schedule``: a Schedule or schedule name (default linear, T = 1000). ``dataset``: a
    :class:`biaskit.data.Dataset` to use as is, or a dict of options for ``load_dataset``; further
    keyword ``options`` are dataset options too (e.g. ``dim=4``, ``seed=1``).
    """
    from .data import Dataset, load_dataset
    text = str(spec)
    if not text.startswith("oracle:"):
        raise ValueError(f"oracle spec must start with 'oracle:', got {text!r}")
    rest = text[len("oracle:"):]
    empirical = rest == "empirical" or rest.startswith("empirical:")
    data_name = rest[len("empirical:"):] if rest.startswith("empirical:") else rest
    if isinstance(schedule, str) or schedule is None:
        schedule = get_schedule(schedule or "linear")
    if isinstance(dataset, Dataset):
        ds = dataset
    else:
        opts = {**(dataset or {}), **options}
        if not data_name or data_name == "empirical":
            raise ValueError(f"oracle spec {text!r} names no dataset; use e.g. oracle:gmm2d, "
                             "oracle:gaussian, oracle:gmm or oracle:empirical:digits")
        ds = load_dataset(opts.pop("name", data_name), **opts)
    info = {"dataset": ds.spec}
    if empirical:
        return empirical_denoiser(ds.train, schedule, ds.data_range, name or f"empirical:{ds.name}", info)
    if ds.mixture is None:
        raise ValueError(f"dataset {ds.name!r} has no known distribution; use "
                         f"'oracle:empirical:{ds.name}' for the memorising oracle of its training "
                         "set, or a dataset with a mixture: oracle:gaussian, oracle:gmm, oracle:gmm2d")
    return oracle_denoiser(ds.mixture, schedule, ds.shape, ds.data_range, name or f"oracle:{ds.name}", info)
