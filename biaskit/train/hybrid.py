"""L_hybrid (Nichol & Dhariwal 2021, Sec. 3.1), as guided-diffusion trains ``learn_sigma`` models
with ``rescale_learned_sigmas`` (and the Debias fork, whose weight multiplies only the MSE):

    L = w(t) ||mean_out - target||^2 / D  +  (T / 1000) L_vlb(t)
    L_vlb(t) = KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) / (D ln 2)       t > 0  (bits/dim)
             = -log p(x0 | x_1) / (D ln 2)                                   t = 0  (decoder)

p(x_{t-1} | x_t) = N(c0 x0_hat + ct x_t, exp(log s^2)) with x0_hat from the network's mean half
*stopped* (the bound trains only the variance half v, log s^2 = frac log beta + (1 - frac)
log beta_tilde, frac = (v + 1) / 2) and q the forward posterior N(c0 x0 + ct x_t, beta_tilde).
The decoder is a Gaussian discretised to 256 levels over the data range.
"""

from __future__ import annotations

import math

import torch

from .. import parameterization as P
from ..sampling.native import posterior_mean_coefficients
from ..schedules import Schedule

__all__ = ["normal_kl", "approx_standard_normal_cdf", "discretized_gaussian_log_likelihood",
           "VarianceBound"]


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element (nats)."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


# Page (1977) tanh approximation of Phi, the one guided-diffusion uses
def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, mean, log_scale, data_range=(-1.0, 1.0),
                                        levels: int = 256) -> torch.Tensor:
    """log P(bin of x) per element under N(mean, e^(2 log_scale)) cut into ``levels`` bins over
    ``data_range``; the end bins reach to -inf / +inf (Ho et al. 2020, Eq. 13). x, mean,
    log_scale broadcast together. Bin probabilities are invariant to the affine map of
    ``data_range`` onto [-1, 1], which is where they are computed."""
    lo, hi = data_range
    mid, half = (hi + lo) / 2, (hi - lo) / 2
    u = (x - mid) / half
    inv_std = torch.exp(-(log_scale - math.log(half)))
    centred = u - (mean - mid) / half
    bin_half = 1.0 / (levels - 1)
    cdf_plus = approx_standard_normal_cdf(inv_std * (centred + bin_half))
    cdf_min = approx_standard_normal_cdf(inv_std * (centred - bin_half))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(u < -0.999, log_cdf_plus, torch.where(u > 0.999, log_one_minus_cdf_min, log_delta))


class VarianceBound:
    """The (T / 1000)-rescaled L_vlb(t) of a 2C network on ``schedule`` (its T steps are the
    steps t = 0..T-1 the loss draws). Tables are float64, gathered in the batch's dtype."""

    def __init__(self, schedule: Schedule, parameterization: str, data_range=(-1.0, 1.0)):
        self.parameterization = P.canonical(parameterization)
        self.data_range = tuple(float(v) for v in data_range)
        c0, ct = posterior_mean_coefficients(schedule)
        self.tables = {"c0": c0, "ct": ct, "alpha": schedule.alpha, "sigma": schedule.sigma,
                       "log_beta": schedule.betas.log(),
                       "log_beta_tilde": schedule.posterior_variance_clipped.log()}
        self.scale = schedule.T / 1000.0  # guided-diffusion's rescale_learned_sigmas (RESCALED_MSE)

    def _at(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        table = self.tables[name]
        if table.device != t.device:
            table = self.tables[name] = table.to(t.device)
        return table[t].to(like.dtype).reshape((-1,) + (1,) * (like.ndim - 1))

    def __call__(self, mean_out, var_out, x0, x_t, t) -> torch.Tensor:
        """(B,) bits/dim, times T / 1000; gradients reach ``var_out`` only (mean_out is stopped).
        mean_out, var_out, x0, x_t: (B, ...) alike; t: (B,) integer steps."""
        alpha, sigma = self._at("alpha", t, x0), self._at("sigma", t, x0)
        c0, ct = self._at("c0", t, x0), self._at("ct", t, x0)
        x0_hat, _ = P.to_x0_eps(self.parameterization, mean_out.detach(), x_t, alpha, sigma)
        log_beta_tilde = self._at("log_beta_tilde", t, x0)
        log_var = P.learned_log_variance(var_out, self._at("log_beta", t, x0), log_beta_tilde)
        mean_p, mean_q = c0 * x0_hat + ct * x_t, c0 * x0 + ct * x_t
        kl = normal_kl(mean_q, log_beta_tilde, mean_p, log_var).flatten(1).mean(1)
        nll = -discretized_gaussian_log_likelihood(x0, mean_p, 0.5 * log_var,
                                                   self.data_range).flatten(1).mean(1)
        return self.scale * torch.where(t == 0, nll, kl) / math.log(2.0)
