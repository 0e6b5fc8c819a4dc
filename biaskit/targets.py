"""Prediction targets: one :class:`Target` record per target, the one place a target is defined.

With x_t = alpha x0 + sigma eps (variance preserving, VP, when alpha^2 + sigma^2 = 1; a
process's own scale otherwise, :mod:`biaskit.processes`) and snr = alpha^2 / sigma^2:

  x0    x0, the clean sample ("sample" in diffusers, predict_xstart in ADM)
  eps   eps, the noise
  v     v = alpha_vp eps - sigma_vp x0, in VP scale                  (Salimans & Ho 2022)
  flow  u = eps - x0, the velocity d x_f / d s of the interpolant
        x_f = x_t / (alpha + sigma) = (1 - s) x0 + s eps, s = sigma / (alpha + sigma)
                                                                      (Liu et al. 2022)
  edm   F of EDM's preconditioning (Karras et al. 2022, Table 1): with sigma_e = sigma / alpha
        and x_e = x_t / alpha, the network sees c_in x_e and D = c_skip x_e + c_out F = x0_hat
  score grad_x log p_t(x_t) = -E[eps | x_t] / sigma, in the process's scale (Song et al. 2021)

A record owns everything that depends on the target:

  output(x0, eps, alpha, sigma)   the regression target (in the record's scale)
  read(out, x_t, alpha, sigma)    (x0_hat, eps_hat) from an output ``out`` (same scale)
  inputs(...)                     (network input, regression target) of one training batch
  oracle_output(...)              the exact network's output: every target is affine in
                                  (x0, eps) at fixed x_t, so it is ``output`` at the posterior
                                  means E[x0 | x_t], E[eps | x_t] = (x_t - alpha E[x0 | x_t]) / sigma
  x0_error_factor(snr)            |d x0_hat / d out|^2, the factor turning a squared output error
                                  into a squared x0 error (a function of snr alone)

The first four (x0, eps, v, flow) are ``space`` targets: a discrete VP
:class:`~biaskit.denoiser.Denoiser` reads them and :mod:`biaskit.weighting` evaluates weights in
their spaces. Their x0-error factor is snr^snr_power / divisor(snr), and the weighting code uses
exactly those two pieces (:func:`biaskit.weighting.core.x0_form`). Adding a target is adding one
record to :data:`TARGETS`. Tensors: x0, eps, x_t, out (B, ...); alpha, sigma broadcast against
them (e.g. (B, 1, 1, 1)); snr float64 of any shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


__all__ = ["Target", "TARGETS", "SPACES", "get_target", "space_target", "noisy", "vp_scale",
           "edm_preconditioning"]


def noisy(x0: torch.Tensor, eps: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """x_t = alpha x0 + sigma eps, the forward (noising) process at one step."""
    return alpha * x0 + sigma * eps


def vp_scale(alpha, sigma):
    """(alpha, sigma) / sqrt(alpha^2 + sigma^2): the VP coefficients at the same snr."""
    norm = (alpha**2 + sigma**2).sqrt()
    return alpha / norm, sigma / norm


def edm_preconditioning(sigma, sigma_data: float = 0.5) -> dict[str, torch.Tensor]:
    """EDM's c_skip, c_out, c_in, c_noise at ``sigma`` and the loss weight lambda(sigma) on the D-MSE."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    sd2 = sigma_data**2
    return {"c_skip": sd2 / (sigma**2 + sd2), "c_out": sigma * sigma_data / (sigma**2 + sd2).sqrt(),
            "c_in": (sigma**2 + sd2).rsqrt(), "c_noise": sigma.log() / 4,
            "weight": (sigma**2 + sd2) / (sigma * sigma_data) ** 2}


def _rows(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return c.to(x.device, x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


@dataclass(frozen=True)
class Target:
    """One prediction target (see the module docstring).

    name, aliases: the canonical name and the other spellings accepted for it (diffusers').
    output, read: the target's two formulas, (x0, eps, alpha, sigma) -> target and
        (out, x_t, alpha, sigma) -> (x0_hat, eps_hat), in VP scale when ``in_vp_scale``, else in
        the scale alpha, sigma are given in.
    space: a discrete VP parameterization and a weighting space (x0_hat is snr^snr_power /
        divisor(snr) times the output error squared); else ``factor(snr, sigma_data)`` is its
        x0-error factor, or ``no_factor`` says why it has none.
    label: a few words for messages.
    time_input: the time input its networks take under any process (EDM's c_noise); empty: the
        process's own (:meth:`~biaskit.process_base.Process.default_time_input`).
    """

    name: str
    output: Callable
    read: Callable
    aliases: tuple[str, ...] = ()
    in_vp_scale: bool = False
    space: bool = True
    snr_power: int = 0
    divisor: Callable | None = None
    factor: Callable | None = None
    no_factor: str = ""
    label: str = ""
    time_input: str = ""

    def own_scale(self, alpha, sigma):
        """The (alpha, sigma) this target is defined in, from a process's own ones."""
        return vp_scale(alpha, sigma) if self.in_vp_scale else (alpha, sigma)

    def coefficients(self, alpha, sigma, sigma_data: float, like: torch.Tensor):
        """Preconditioning coefficients as rows of ``like`` (None: no preconditioning)."""
        return None

    def net_input(self, x: torch.Tensor, alpha, c) -> torch.Tensor:
        """What the network is fed at the process's x_t (alpha as rows of x)."""
        return x

    def inputs(self, x0: torch.Tensor, eps: torch.Tensor, alpha, sigma, sigma_data: float = 0.5):
        """(network input, regression target) for x_t = alpha x0 + sigma eps in the process's
        scale; alpha, sigma broadcast against x0 (e.g. (B, 1))."""
        x = noisy(x0, eps, alpha, sigma)
        a, s = self.own_scale(alpha, sigma)
        return x, self.output(x0, eps, a, s)

    def read_process(self, out, x, alpha, sigma, x_vp, alpha_vp, sigma_vp, c=None):
        """(x0_hat, eps_hat) from ``out`` at the process's x = x_vp sqrt(alpha^2 + sigma^2), with
        alpha, sigma (process scale) and alpha_vp, sigma_vp rows of x; c: :meth:`coefficients`."""
        if self.in_vp_scale:
            return self.read(out, x_vp, alpha_vp, sigma_vp)
        return self.read(out, x, alpha, sigma)

    def oracle_output(self, x: torch.Tensor, alpha, sigma, posterior_mean: Callable, c=None):
        """The exact network's output at its input x (process scale; alpha, sigma rows of x),
        with ``posterior_mean(x_t)`` = E[x0 | x_t]: ``output`` at the posterior means."""
        d = posterior_mean(x)
        eps = (x - alpha * d) / sigma
        a, s = self.own_scale(alpha, sigma)
        return self.output(d, eps, a, s)

    def x0_error_factor(self, snr: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
        """|d x0_hat / d out|^2 at ``snr`` (float64): the same in every process. Each line is the
        derivative of the x0_hat that ``read`` / ``read_process`` forms:

          x0    x0_hat = out                                           -> 1
          eps   x0_hat = (x - sigma eps_hat) / alpha                   -> sigma^2 / alpha^2 = 1 / snr
          v     x0_hat = alpha_vp x_vp - sigma_vp v_hat (VP scale)     -> sigma_vp^2 = 1 / (1 + snr)
          flow  x0_hat = x_f - s u_hat, x_f = x / (alpha + sigma) = (1 - s) x0 + s eps,
                s = sigma / (alpha + sigma) = 1 / (1 + sqrt(snr))      -> s^2 = 1 / (1 + sqrt(snr))^2
                (u = d x_f / d s, the shifted time s of :class:`~biaskit.processes.Flow`)
          edm   x0_hat = c_skip x_e + c_out F, sigma_e = sigma / alpha = snr^-1/2
                                                                       -> c_out^2 = sd^2 / (1 + sd^2 snr)
          score x0_hat = (x + sigma^2 out) / alpha                     -> sigma^4 / alpha^2: not a
                function of snr alone (ValueError)
        """
        if self.no_factor:
            raise ValueError(self.no_factor)
        if self.factor is not None:
            return self.factor(snr, sigma_data)
        lead = torch.pow(snr, self.snr_power) if self.snr_power else torch.ones_like(snr)
        return lead if self.divisor is None else lead / self.divisor(snr)


class _Preconditioned(Target):
    """EDM's F: the network sees c_in x_e and D = c_skip x_e + c_out F, x_e = x_t / alpha, with
    the coefficients of :func:`edm_preconditioning` at sigma_e = sigma / alpha."""

    def coefficients(self, alpha, sigma, sigma_data: float, like: torch.Tensor):
        return {k: _rows(v, like) for k, v in edm_preconditioning(sigma / alpha, sigma_data).items()}

    def net_input(self, x, alpha, c):
        return c["c_in"] * (x / alpha)

    def inputs(self, x0, eps, alpha, sigma, sigma_data: float = 0.5):
        x = noisy(x0, eps, alpha, sigma)
        c = self.coefficients(alpha, sigma, sigma_data, x0)
        x_e = x / alpha
        return c["c_in"] * x_e, (x0 - c["c_skip"] * x_e) / c["c_out"]

    def read_process(self, out, x, alpha, sigma, x_vp, alpha_vp, sigma_vp, c=None):
        x_e = x / alpha
        x0_hat = c["c_skip"] * x_e + c["c_out"] * out
        return x0_hat, (x - alpha * x0_hat) / sigma

    def oracle_output(self, x, alpha, sigma, posterior_mean, c=None):
        x_e = x / c["c_in"]  # the input is c_in x_e
        return (posterior_mean(x_e * alpha) - c["c_skip"] * x_e) / c["c_out"]


def _no_discrete(*_):
    raise ValueError("this target needs a process's preconditioning: read it with a ProcessDenoiser")


def _read_score(out, x_t, alpha, sigma):
    eps_hat = -sigma * out
    return (x_t - sigma * eps_hat) / alpha, eps_hat


# every target: the only place a target name is branched on
TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("x0", lambda x0, eps, a, s: x0,
           lambda out, x_t, a, s: (out, (x_t - a * out) / s),
           aliases=("sample", "x_start", "xstart"), label="x0"),
    # for eps at alpha = 0 (zero terminal SNR) x0_hat is undefined; x0, v and flow stay finite
    Target("eps", lambda x0, eps, a, s: eps,
           lambda out, x_t, a, s: ((x_t - s * out) / a, out),
           aliases=("epsilon",), snr_power=-1, label="eps"),
    # alpha x_t - sigma v = x0 and sigma x_t + alpha v = eps, since alpha^2 + sigma^2 = 1
    Target("v", lambda x0, eps, a, s: a * eps - s * x0,
           lambda out, x_t, a, s: (a * x_t - s * out, s * x_t + a * out),
           aliases=("v_prediction",), in_vp_scale=True, divisor=lambda snr: snr + 1, label="v"),
    # solve alpha x0 + sigma eps = x_t, eps - x0 = u
    Target("flow", lambda x0, eps, a, s: eps - x0,
           lambda out, x_t, a, s: ((x_t - s * out) / (a + s), (x_t + a * out) / (a + s)),
           aliases=("u", "flow_matching"), divisor=lambda snr: (1 + snr.sqrt()) ** 2,
           label="the flow velocity"),
    _Preconditioned("edm", _no_discrete, _no_discrete, space=False,
                    factor=lambda snr, sd: sd**2 / (1 + sd**2 * snr), label="EDM's preconditioned F",
                    time_input="c_noise"),
    Target("score", lambda x0, eps, a, s: -eps / s, _read_score, space=False,
           no_factor="the score target's x0 error factor sigma^4 / alpha^2 depends on the "
                     "process's scale, not on snr alone: train on x0, eps, v, flow or edm",
           label="the score grad log p_t"),
)}
SPACES = tuple(name for name, t in TARGETS.items() if t.space)
_ALIASES = {a: t.name for t in TARGETS.values() for a in t.aliases}


def get_target(kind: str) -> Target:
    """The record of ``kind``: any name of :data:`TARGETS` or an alias (diffusers' spellings)."""
    found = TARGETS.get(_ALIASES.get(kind, kind))
    if found is None:
        raise ValueError(f"unknown target {kind!r}; valid: {', '.join(TARGETS)} "
                         f"(aliases: {', '.join(sorted(_ALIASES))})")
    return found


def space_target(kind: str, what: str = "parameterization") -> Target:
    """The record of a ``space`` target (one a discrete VP denoiser reads), by name or alias."""
    found = TARGETS.get(_ALIASES.get(kind, kind))
    if found is None or not found.space:
        aliases = sorted(a for a, n in _ALIASES.items() if TARGETS[n].space)
        raise ValueError(f"unknown {what} {kind!r}; valid: {', '.join(SPACES)} "
                         f"(aliases: {', '.join(aliases)})")
    return found
