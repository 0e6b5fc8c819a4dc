"""Gaussian-mixture metrics: log-likelihood under the true density, mode coverage, off-mode
fraction and mode weights."""

from __future__ import annotations


import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .estimate import N_BOOT, Estimate, bootstrap, _flat


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
