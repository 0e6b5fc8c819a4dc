"""Gaussian mixtures sum_k w_k N(m_k, S_k): the known data distributions of biaskit's oracles.

The marginal of x_t = alpha x0 + sigma eps under a mixture is again a mixture,

  x_t | k ~ N(alpha m_k, alpha^2 S_k + sigma^2 I)                                     (1)
  E[x0 | x_t, k] = m_k + alpha S_k (alpha^2 S_k + sigma^2 I)^-1 (x_t - alpha m_k)     (2)

and :func:`_log_marginal` evaluates both in the eigenbasis of S_k (see :mod:`biaskit.oracle`
for the posterior mean built from them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

__all__ = ["GaussianMixture"]

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
