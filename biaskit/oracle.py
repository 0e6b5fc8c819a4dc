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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .denoiser import Denoiser
from .parameterization import noisy
from .schedules import Schedule, get_schedule

__all__ = ["GaussianMixture", "posterior_mean", "OracleNet", "oracle_denoiser",
           "empirical_denoiser", "irreducible_error", "from_spec"]

_LOG_2PI = math.log(2 * math.pi)


@dataclass(eq=False)
class GaussianMixture:
    """sum_k w_k N(m_k, S_k) in flattened data coordinates (D = prod of the per-sample shape).

    weights: (K,), normalised on construction; means: (K, D); covs: (K, D, D), symmetric positive
    semi-definite (zero = a point mass). Stored as float64. ``covs`` may be a stride-0 expansion
    (as :meth:`from_points` builds) so that N point masses in D dimensions cost no N D^2 memory.
    """

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor
    _factors: dict = field(default_factory=dict, init=False, repr=False)
    _on_device: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        w = torch.as_tensor(self.weights, dtype=torch.float64).flatten()
        m = torch.as_tensor(self.means, dtype=torch.float64)
        c = torch.as_tensor(self.covs, dtype=torch.float64)
        if m.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(m.shape)}")
        K, D = m.shape
        if w.shape != (K,):
            raise ValueError(f"weights must have shape ({K},) to match means, got {tuple(w.shape)}")
        if c.shape != (K, D, D):
            raise ValueError(f"covs must have shape ({K}, {D}, {D}), got {tuple(c.shape)}")
        if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        self.weights, self.means, self.covs = w / w.sum(), m, c

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def K(self) -> int:
        return self.means.shape[0]

    @classmethod
    def isotropic(cls, weights, means, std) -> "GaussianMixture":
        """Components N(m_k, std_k^2 I); ``std`` a scalar or (K,)."""
        means = torch.as_tensor(means, dtype=torch.float64)
        K, D = means.shape
        var = torch.as_tensor(std, dtype=torch.float64).expand(K) ** 2
        g = cls(weights, means, var[:, None, None] * torch.eye(D, dtype=torch.float64))
        g._factors["iso_var"] = var.clone()
        return g

    @classmethod
    def from_points(cls, points) -> "GaussianMixture":
        """The empirical distribution of N points (N, D): equal-weight point masses."""
        points = torch.as_tensor(points, dtype=torch.float64)
        points = points.reshape(points.shape[0], -1)
        N, D = points.shape
        covs = torch.zeros(1, D, D, dtype=torch.float64).expand(N, D, D)
        g = cls(torch.ones(N, dtype=torch.float64), points, covs)
        g._factors["iso_var"] = torch.zeros(N, dtype=torch.float64)
        return g

    @classmethod
    def from_eigen(cls, weights, means, U, l) -> "GaussianMixture":
        """Components given by their eigendecomposition S_k = U_k diag(l_k) U_k^T, U: (K, D, D)
        orthogonal, l: (K, D) >= 0; no factorisation is needed later."""
        U, l = torch.as_tensor(U, dtype=torch.float64), torch.as_tensor(l, dtype=torch.float64)
        g = cls(weights, means, U @ (l[:, :, None] * U.transpose(1, 2)))
        g._factors.update(U=U, l=l.clamp_min(0))
        return g

    def affine(self, a: float, b: float) -> "GaussianMixture":
        """The law of a x + b for x from this mixture (a, b scalars)."""
        f = self.factors()
        if "iso_var" in f:
            return GaussianMixture.isotropic(self.weights, a * self.means + b, abs(a) * f["iso_var"].sqrt())
        return GaussianMixture.from_eigen(self.weights, a * self.means + b, f["U"], a**2 * f["l"])

    def factors(self) -> dict:
        """Cached ``iso_var`` (K,) for isotropic mixtures, else ``U`` (K, D, D) and ``l`` (K, D)
        with S_k = U_k diag(l_k) U_k^T (eigenvalues clamped at 0)."""
        if not self._factors:
            shared = self.covs.stride(0) == 0  # one covariance expanded over all K components
            covs = self.covs[:1] if shared else self.covs
            var = covs.diagonal(dim1=1, dim2=2).mean(1)
            off = (covs - var[:, None, None] * torch.eye(self.dim, dtype=torch.float64)).abs().max()
            if off <= 1e-12 * covs.abs().max():
                self._factors["iso_var"] = var.clamp_min(0).expand(self.K).clone()
            else:
                l, U = torch.linalg.eigh(0.5 * (covs + covs.transpose(1, 2)))
                self._factors.update(U=U.expand(self.K, -1, -1), l=l.clamp_min(0).expand(self.K, -1))
        return self._factors

    def on(self, device) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(means, log weights, factors) on ``device``, copied once per device."""
        device = torch.device(device)
        if device not in self._on_device:
            self._on_device[device] = (self.means.to(device), self.weights.log().to(device),
                                       {k: v.to(device) for k, v in self.factors().items()})
        return self._on_device[device]

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype=torch.float32) -> torch.Tensor:
        """n draws, shape (n, D), in ``dtype``: x0 = m_k + U_k diag(sqrt(l_k)) z with k ~ w."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        f = self.factors()
        if "iso_var" in f:
            x = self.means[k] + f["iso_var"][k].sqrt()[:, None] * z
        else:
            x = self.means[k].clone()
            for j in k.unique().tolist():  # per component: no (n, D, D) gather
                rows = k == j
                x[rows] += (f["l"][j].sqrt() * z[rows]) @ f["U"][j].T
        return x.to(dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log density at x (n, D), float64 (n,); needs nonsingular covariances."""
        x = torch.as_tensor(x, dtype=torch.float64).reshape(-1, self.dim)
        f = self.factors()
        var = f.get("iso_var", f.get("l"))
        if (var <= 0).any():
            raise ValueError("log_prob needs positive-definite covariances (point masses have no density)")
        ones = torch.ones(x.shape[0], dtype=torch.float64)
        logp = _log_marginal(x, ones, 0 * ones, self.means, self.weights.log(), f)[0]
        return torch.logsumexp(logp, 1)


def _log_marginal(x, alpha, sigma, means, log_w, f):
    """log w_k N(x; alpha m_k, alpha^2 S_k + sigma^2 I) (1) and E[x0 | x, k] (2), for the
    components in ``means``. x (B, D); alpha, sigma (B,). Returns (B, K) and a callable that
    contracts responsibilities p (B, K) with the conditional means: sum_k p_k E[x0 | x, k]."""
    B, D = x.shape
    a, s2 = alpha[:, None], sigma[:, None] ** 2
    if "iso_var" in f:
        var = a**2 * f["iso_var"][None] + s2                                          # (B, K)
        dist2 = ((x**2).sum(1, keepdim=True) - 2 * a * x @ means.T
                 + a**2 * (means**2).sum(1)[None]).clamp_min(0)
        logp = log_w[None] - 0.5 * (dist2 / var + D * (_LOG_2PI + var.log()))
        c = a * f["iso_var"][None] / var                                              # (2), (B, K)

        def contract(p):
            # sum_k p_k [(1 - alpha c_k) m_k + c_k x]
            return (p * (1 - a * c)) @ means + (p * c).sum(1, keepdim=True) * x
        return logp, contract
    U, l = f["U"], f["l"]
    z = torch.einsum("bkd,kde->bke", x[:, None] - a[:, :, None] * means[None], U)     # U^T d
    var = a[:, :, None] ** 2 * l[None] + s2[:, :, None]                               # (B, K, D)
    logp = log_w[None] - 0.5 * ((z**2 / var).sum(2) + (_LOG_2PI + var.log()).sum(2))
    gain = a[:, :, None] * l[None] / var * z

    def contract(p):
        return p @ means + torch.einsum("bke,kde->bd", p[:, :, None] * gain, U)
    return logp, contract


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
                    info={"oracle": True, "K": mixture.K, "dim": mixture.dim, **(info or {})})


def empirical_denoiser(points: torch.Tensor, schedule: Schedule, data_range=(-1.0, 1.0),
                       name: str = "empirical", info: dict | None = None) -> Denoiser:
    """The memorising oracle: posterior mean under the empirical distribution of ``points``
    (N, *shape); it maps every x_t to a convex combination of training points."""
    points = torch.as_tensor(points)
    return oracle_denoiser(GaussianMixture.from_points(points), schedule, tuple(points.shape[1:]),
                           data_range, name, info)


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
    draws at every t) with a 95% normal interval from the per-sample spread.
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
            mse, half = float(err.mean()), 1.96 * float(err.std()) / math.sqrt(n)
            rows.append(dict(t=s, oracle_mse=mse, oracle_mse_lo=mse - half, oracle_mse_hi=mse + half,
                             method="monte_carlo", n=n))
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
