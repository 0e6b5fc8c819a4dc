"""The target conversions of a discrete VP denoiser, by target name: thin calls of the records
of :mod:`biaskit.targets` (where each target's formulas live).

With x_t = alpha x0 + sigma eps (alpha^2 + sigma^2 = 1), a parameterization is one of the
``space`` targets: eps, x0, v (= alpha eps - sigma x0), flow (u = eps - x0). Every function takes
alpha, sigma broadcastable against x (e.g. shape (B, 1, 1, 1)).
"""

from __future__ import annotations

import torch

from .targets import SPACES, noisy, space_target

PARAMETERIZATIONS = SPACES

__all__ = ["PARAMETERIZATIONS", "canonical", "noisy", "target", "to_x0_eps", "v_from",
           "split_learned_variance", "learned_log_variance", "clip_to_range", "clip_estimates"]


def canonical(kind: str) -> str:
    """Map any accepted spelling (diffusers' ``epsilon``/``sample``/``v_prediction`` too) to one name."""
    return space_target(kind).name


def target(kind: str, x0: torch.Tensor, eps: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """What a network of this parameterization is trained to output."""
    return space_target(kind).output(x0, eps, alpha, sigma)


def to_x0_eps(kind: str, out: torch.Tensor, x_t: torch.Tensor, alpha, sigma):
    """(x0_hat, eps_hat) from a network output ``out`` of the given parameterization.

    For eps at alpha = 0 (zero terminal SNR) x0_hat is undefined; x0, v and flow stay finite.
    """
    return space_target(kind).read(out, x_t, alpha, sigma)


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
