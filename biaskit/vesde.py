"""Song et al. 2021's variance-exploding SDE as a :class:`~biaskit.processes.Process`
(``vesde`` and ``vesde_tutorial`` of :data:`~biaskit.processes.PROCESSES`)."""

from __future__ import annotations

import math

import torch

from .process_base import Process, _f64

__all__ = ["VESDE", "VESDEGeometric", "VESDETutorial"]


class VESDE(Process):
    """Song et al. 2021's variance-exploding SDE: alpha = 1, sigma(t) for t in [t_min, 1].

    ``kind="geometric"`` (score_sde's VESDE): sigma(t) = sigma_min (sigma_max / sigma_min)^t
    (CIFAR-10: sigma_min 0.01, sigma_max 50). ``kind="tutorial"`` (the score-SDE MNIST tutorial,
    dx = b^t dw from x0): sigma(t)^2 = (b^(2t) - 1) / (2 ln b), b = sigma_base (25 there: sigma(1)
    = 9.85). t_min = 1e-5 is both codes' smallest training time; the grid is uniform in t, as
    both codes sample. Such networks are fed t (or score_sde's sigma) and predict the score
    -eps / sigma (target ``score``). By name: :class:`VESDEGeometric` (``vesde``) and
    :class:`VESDETutorial` (``vesde_tutorial``).
    """

    KINDS = ("geometric", "tutorial")
    default_target = "score"

    def __init__(self, kind: str = "geometric", sigma_min: float = 0.01, sigma_max: float = 50.0,
                 sigma_base: float = 25.0, t_min: float = 1e-5):
        if kind not in self.KINDS:
            raise ValueError(f"unknown VE SDE kind {kind!r}; valid: {', '.join(self.KINDS)}")
        if kind == "geometric" and not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        if kind == "tutorial" and not sigma_base > 1:
            raise ValueError(f"sigma_base must be > 1, got {sigma_base}")
        if not 0 <= t_min < 1 or (kind == "tutorial" and t_min == 0):
            raise ValueError(f"need 0 {'<' if kind == 'tutorial' else '<='} t_min < 1, got {t_min}")
        self.kind, self.name = kind, "vesde" if kind == "geometric" else "vesde_tutorial"
        self.sigma_min, self.sigma_max, self.sigma_base = float(sigma_min), float(sigma_max), float(sigma_base)
        self.t_min, self.t_max = float(t_min), 1.0

    def alpha(self, t) -> torch.Tensor:
        return torch.ones_like(_f64(t))

    def sigma(self, t) -> torch.Tensor:
        t = _f64(t)
        if self.kind == "geometric":
            return self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        ln_b = math.log(self.sigma_base)
        return (torch.expm1(2 * ln_b * t) / (2 * ln_b)).sqrt()

    def logsnr(self, t) -> torch.Tensor:
        return -2 * self.sigma(t).log()

    def t_of_logsnr(self, logsnr) -> torch.Tensor:
        sigma2 = torch.exp(-_f64(logsnr))
        if self.kind == "geometric":
            return (sigma2.log() / 2 - math.log(self.sigma_min)) / math.log(self.sigma_max / self.sigma_min)
        ln_b = math.log(self.sigma_base)
        return torch.log1p(2 * ln_b * sigma2) / (2 * ln_b)

    def describe(self) -> dict:
        keys = ("sigma_min", "sigma_max") if self.kind == "geometric" else ("sigma_base",)
        return {"process": self.name, **{k: getattr(self, k) for k in keys}, "t_min": self.t_min}


class VESDEGeometric(VESDE):
    """``vesde``: :class:`VESDE` of kind ``geometric`` (score_sde's)."""

    key = "vesde"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_min: float = 1e-5):
        super().__init__("geometric", sigma_min=sigma_min, sigma_max=sigma_max, t_min=t_min)


class VESDETutorial(VESDE):
    """``vesde_tutorial``: :class:`VESDE` of kind ``tutorial`` (the score-SDE MNIST tutorial)."""

    key = "vesde_tutorial"

    def __init__(self, sigma_base: float = 25.0, t_min: float = 1e-5):
        super().__init__("tutorial", sigma_base=sigma_base, t_min=t_min)
