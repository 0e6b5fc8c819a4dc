"""A model around a denoiser: called like one, ``model(x_t, t[, labels]) -> Prediction`` with t
steps of the denoiser's schedule, carrying its schedule, parameterization, data range, shape and
device, and changing only what a call returns. Every sampler takes one as it takes a denoiser.

Subclasses write :meth:`Wrapped.predict`: :class:`~biaskit.sampling.SwitchAfter` (which of two
models a call goes to) and :class:`~biaskit.exposure.EpsScaled` (eps_hat / lambda_t).
"""

from __future__ import annotations

import torch

from .. import parameterization as P
from ..denoiser import Prediction


class Wrapped:
    """The facts of ``denoiser`` (``name`` its own); subclasses define :meth:`predict`."""

    def __init__(self, denoiser, name: str):
        self.denoiser, self.name = denoiser, name
        # a target without a VP reading (a process model's edm, score) is fed to schedulers as eps
        kind = denoiser.parameterization
        self.parameterization = kind if kind in P.PARAMETERIZATIONS else "eps"
        self.schedule = denoiser.schedule
        self.data_range, self.shape = denoiser.data_range, denoiser.shape

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    def check_shape(self, shape) -> None:
        self.denoiser.check_shape(shape)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, labels=None) -> Prediction:
        return self.predict(x_t, t, labels)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, labels=None) -> Prediction:
        raise NotImplementedError


def call(model, x_t: torch.Tensor, t: torch.Tensor, labels=None) -> Prediction:
    """``model(x_t, t)``, or ``model(x_t, t, labels)`` for a class-conditional call."""
    return model(x_t, t) if labels is None else model(x_t, t, labels)
