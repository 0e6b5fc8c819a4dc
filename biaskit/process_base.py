"""The :class:`Process` interface every noise process of :mod:`biaskit.processes` implements:
x_t = alpha(t) x0 + sigma(t) eps, placed on the log-SNR axis, and the VP coefficients at a
logsnr.

A process class owns its facts, each in one place: its config name (``key``), its config keys
and loader flags (its constructor's keyword arguments, :meth:`Process.keys`), its default target
and time input, its own sampler (``sampler``, a name of :mod:`biaskit.sampling`), its state
scale (:meth:`Process.vp_scale`) and its diffusers scheduler (``diffusers_kind``,
:meth:`Process.scheduler_defaults`, read back by :meth:`Process.from_scheduler_config`). Adding
a process is one subclass, listed in :data:`biaskit.processes.PROCESSES` to be built by name;
its models are then loaded (:func:`biaskit.formulations.denoiser_under`), probed and sampled
with no other change."""

from __future__ import annotations

import inspect
import typing

import torch

from . import checks
from .targets import get_target

__all__ = ["Process", "vp_coefficients"]


def _f64(t) -> torch.Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


def vp_coefficients(logsnr) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, sigma) of the VP process at ``logsnr``: alpha^2 = sigmoid(logsnr), sigma^2 = 1 - alpha^2."""
    lam = _f64(logsnr)
    return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


class Process:
    """x_t = alpha(t) x0 + sigma(t) eps for t in [t_min, t_max] (t_max is the noisiest end).

    Subclasses define :meth:`alpha`, :meth:`sigma` and :meth:`t_of_logsnr` (the inverse of
    :meth:`logsnr`); :meth:`grid` gives sampling times from t_max towards t_min.
    """

    name = "process"
    t_min: float = 0.0
    t_max: float = 1.0
    #: the config's ``process.name`` of this class (None: not built by name)
    key: str | None = None
    #: the target a network of this process predicts unless told (:data:`biaskit.formulations.TARGETS`)
    default_target: str = "eps"
    #: the process's own sampler (a :func:`biaskit.sampling.sample` name), None: the common ones
    sampler: str | None = None
    #: the kind of diffusers scheduler whose own noise levels are this process's (``flow``:
    #: FlowMatch*, ``edm``: EDM*; :mod:`biaskit.sampling.process_schedulers`), None: none
    diffusers_kind: str | None = None
    #: the network time inputs a model of this process can be fed (:meth:`default_time_input`)
    TIME_INPUTS: tuple[str, ...] = ("sigma", "c_noise", "t", "logsnr")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The config keys of this process: its constructor's keyword arguments, in order."""
        return tuple(k for k in inspect.signature(cls.__init__).parameters if k != "self")

    @classmethod
    def key_types(cls) -> dict[str, type]:
        """Each config key's type, from the constructor's annotations (float or bool)."""
        hints = typing.get_type_hints(cls.__init__)
        return {k: hints.get(k, float) for k in cls.keys()}

    @classmethod
    def check_objective(cls, loss, weighting, time_input: str) -> None:
        """ValueError naming the config key (``loss.target``, ...) for what this process cannot
        train: ``loss`` a :class:`~biaskit.config.LossConfig`, ``weighting`` its parsed
        :class:`~biaskit.weighting.Weighting`, ``time_input`` the config's ``model.time_input``."""
        if weighting.native:
            raise ValueError(f"loss.weighting: {weighting.name} is defined on the discrete VP targets' "
                             f"own MSE (eps, x0, v); under process {cls.key!r} use debias (its x0-space form)")
        checks.keyed("loss.target", lambda: get_target(loss.target))
        if time_input not in ("index",) + cls.TIME_INPUTS:
            raise ValueError(f"model.time_input: {time_input!r} is not a process time input "
                             f"({', '.join(cls.TIME_INPUTS)}, or index for the process's default)")
        if loss.uncertainty and loss.normalize != "none":
            raise ValueError("loss.uncertainty: the learned log-variance sets each level's scale itself; "
                             "use loss.normalize: none")
        if weighting.name == "vlb":
            raise ValueError("loss.weighting: vlb needs a discrete schedule's steps (process.name: discrete)")

    own_time_input = "t"  # what a network of this process is fed unless its target says otherwise

    def default_time_input(self, target: str) -> str:
        """The time input a network of this process is fed unless told: its target's own
        (EDM's preconditioned nets take c_noise), else the process's :attr:`own_time_input`."""
        return get_target(target).time_input or self.own_time_input

    def scheduler_defaults(self, sigma_data: float = 0.5) -> dict:
        """The config of a diffusers scheduler of kind :attr:`diffusers_kind` that walks this
        process's own noise levels ({} without one); ``sigma_data``: the model's (EDM's
        preconditioning)."""
        return {}

    @classmethod
    def from_scheduler_config(cls, cfg: dict) -> "Process":
        """The process whose noise levels a diffusers scheduler config of kind
        :attr:`diffusers_kind` walks (the inverse of :meth:`scheduler_defaults`); a ValueError
        for a process without one."""
        raise ValueError(f"process {cls.key or cls.__name__!r} has no diffusers scheduler "
                         f"({cfg.get('_class_name')} names another process)")

    def alpha(self, t) -> torch.Tensor:
        raise NotImplementedError

    def sigma(self, t) -> torch.Tensor:
        raise NotImplementedError

    def t_of_logsnr(self, logsnr) -> torch.Tensor:
        raise NotImplementedError

    def own_time(self, t) -> torch.Tensor:
        """The time t in the convention of the model's own code (what a ``t`` time input feeds and
        the ``process_t`` column reports): t itself unless a subclass counts time the other way."""
        return _f64(t)

    def logsnr(self, t) -> torch.Tensor:
        return 2 * (self.alpha(t).log() - self.sigma(t).log())

    def snr(self, t) -> torch.Tensor:
        return (self.alpha(t) / self.sigma(t)) ** 2

    def dlogsnr_dt(self, t) -> torch.Tensor:
        """d logsnr / d t (negative: noise grows with t), by automatic differentiation of :meth:`logsnr`."""
        t = _f64(t).detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.logsnr(t).sum(), t)
        return g.detach()

    def vp_scale(self, t) -> torch.Tensor:
        """The state scale 1 / sqrt(alpha^2 + sigma^2): x_t times this is the VP process's x at
        the same logsnr."""
        return (self.alpha(t) ** 2 + self.sigma(t) ** 2).rsqrt()

    def grid(self, steps: int, spacing: str = "even") -> torch.Tensor:
        """``steps + 1`` sampling times from t_max down to t_min (uniform in t unless overridden);
        ``spacing``: ``even`` (the process's own grid), or a rule a subclass names."""
        _check_steps(steps)
        _check_spacing(self, spacing)
        return torch.linspace(self.t_max, self.t_min, steps + 1, dtype=torch.float64)

    def describe(self) -> dict:
        return {"process": self.name}

    def __repr__(self) -> str:
        lo, hi = (float(self.logsnr(_f64(v))) for v in (self.t_max, self.t_min))
        return f"{type(self).__name__}({self.name!r}, logsnr {lo:.3g} .. {hi:.3g})"


def _check_steps(steps) -> None:
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


def _check_spacing(process: "Process", spacing: str, valid=("even",)) -> None:
    if spacing not in valid:
        raise ValueError(f"spacing {spacing!r} does not apply to process {process.name!r}; "
                         f"valid: {', '.join(valid)}")
