"""Prediction targets and the conversions between them.

With x_t = alpha x0 + sigma eps (alpha^2 + sigma^2 = 1):
  eps  : the noise
  x0   : the clean sample ("sample" in diffusers, predict_xstart in ADM)
  v    : v = alpha eps - sigma x0                      (Salimans & Ho 2022)
  flow : u = eps - x0, the rectified-flow velocity     (Liu et al. 2022; x_t / (alpha + sigma) is
         the flow interpolant (1 - s) x0 + s eps with s = sigma / (alpha + sigma))
Every function takes alpha, sigma broadcastable against x (e.g. shape (B, 1, 1, 1)).
"""

from __future__ import annotations

import torch

PARAMETERIZATIONS = ("eps", "x0", "v", "flow")
_ALIASES = {"epsilon": "eps", "sample": "x0", "x_start": "x0", "xstart": "x0", "v_prediction": "v",
            "u": "flow", "flow_matching": "flow"}


def canonical(kind: str) -> str:
    """Map any accepted spelling (diffusers' ``epsilon``/``sample``/``v_prediction`` too) to one name."""
    key = _ALIASES.get(kind, kind)
    if key not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {kind!r}; valid: {', '.join(PARAMETERIZATIONS)} "
                         f"(aliases: {', '.join(sorted(_ALIASES))})")
    return key


def noisy(x0: torch.Tensor, eps: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """x_t = alpha x0 + sigma eps, the forward (noising) process at one step."""
    return alpha * x0 + sigma * eps


def target(kind: str, x0: torch.Tensor, eps: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """What a network of this parameterization is trained to output."""
    kind = canonical(kind)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return alpha * eps - sigma * x0
    return eps - x0


def to_x0_eps(kind: str, out: torch.Tensor, x_t: torch.Tensor, alpha, sigma):
    """(x0_hat, eps_hat) from a network output ``out`` of the given parameterization.

    For eps at alpha = 0 (zero terminal SNR) x0_hat is undefined; x0, v and flow stay finite.
    """
    kind = canonical(kind)
    if kind == "eps":
        return (x_t - sigma * out) / alpha, out
    if kind == "x0":
        return out, (x_t - alpha * out) / sigma
    if kind == "v":
        # alpha x_t - sigma v = x0 and sigma x_t + alpha v = eps, since alpha^2 + sigma^2 = 1
        return alpha * x_t - sigma * out, sigma * x_t + alpha * out
    # solve alpha x0 + sigma eps = x_t, eps - x0 = u
    return (x_t - sigma * out) / (alpha + sigma), (x_t + alpha * out) / (alpha + sigma)


def v_from(x0: torch.Tensor, eps: torch.Tensor, alpha, sigma) -> torch.Tensor:
    return target("v", x0, eps, alpha, sigma)


def split_learned_variance(out: torch.Tensor, channels: int):
    """Split an ADM ``learn_sigma`` output of 2C channels into (mean part, variance part)."""
    if out.shape[1] == channels:
        return out, None
    if out.shape[1] != 2 * channels:
        raise ValueError(f"network returned {out.shape[1]} channels; expected {channels} "
                         f"or {2 * channels} (learned variance)")
    return out[:, :channels], out[:, channels:]


# Nichol & Dhariwal 2021, Eq. 15: log s^2 = frac log beta + (1 - frac) log beta_tilde, frac = (v + 1) / 2
def learned_log_variance(var_out: torch.Tensor, log_beta, log_beta_tilde) -> torch.Tensor:
    """The reverse step's log variance from the variance half ``var_out`` (v in [-1, 1], shaped
    like x) of a 2C output; log_beta, log_beta_tilde (clipped at t = 0) broadcast against it."""
    frac = (var_out + 1) / 2
    return frac * log_beta + (1 - frac) * log_beta_tilde


def clip_to_range(x0_hat: torch.Tensor, data_range=(-1.0, 1.0)) -> torch.Tensor:
    return x0_hat.clamp(*data_range)


def clip_estimates(x0_hat: torch.Tensor, x_t: torch.Tensor, alpha, sigma, data_range=(-1.0, 1.0)):
    """(x0_hat clamped to data_range, eps_hat re-derived from it): the pair stays consistent,
    x_t = alpha x0_hat + sigma eps_hat."""
    x0_hat = clip_to_range(x0_hat, data_range)
    return x0_hat, to_x0_eps("x0", x0_hat, x_t, alpha, sigma)[1]
