"""What every sampler shares: the kept steps it walks, the one model-call convention, and what
it reports per model call.

A sampler is a function ``sampler(model, x, grid, *, generator, callback, progress, **options)
-> x0`` (k-diffusion's shape): ``grid`` holds the n kept steps, ``model(x_t, k)`` evaluates the
denoiser at kept step k (0 = least noisy) and ``callback`` receives a :class:`StepInfo` after
every model call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .. import parameterization as P
from ..denoiser import Prediction
from ..schedules import Schedule, diffusers_spacing, respace, space_timesteps

SPACINGS = ("even", "linspace", "leading", "trailing")
PROCESS_SPACINGS = ("flow_match",)  # grids of a process's own sampler (flow_euler on a flow model)


def kept_steps(T: int, steps: int, spacing: str = "even") -> list[int]:
    """Which of T schedule steps a sampler with ``steps`` steps visits (increasing order).

    ``even``: ADM's ``space_timesteps`` (first and last step kept); ``linspace``, ``leading``,
    ``trailing``: diffusers' ``timestep_spacing``.
    """
    if spacing in PROCESS_SPACINGS:
        raise ValueError(f"spacing {spacing!r} applies to flow_euler on a flow process model")
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; valid: {', '.join(SPACINGS)}")
    if not 1 <= int(steps) <= T:
        raise ValueError(f"steps must be in 1..{T} for a schedule of T = {T}, got {steps}")
    if spacing == "even":
        return space_timesteps(T, int(steps))
    return diffusers_spacing(T, int(steps), spacing)


@dataclass(frozen=True)
class Grid:
    """The kept steps of a chain: ``idx`` (n,) increasing indices into the denoiser's schedule,
    and ``kept``, the respaced view on them (kept step k is schedule step idx[k]; its betas are
    beta_k = 1 - abar_k / abar_{k-1}, ADM's rule)."""

    schedule: Schedule
    idx: list[int]
    spacing: str = "even"  # the rule that chose idx (named in errors)
    kept: Schedule = field(init=False, repr=False)
    _timesteps: list[int] = field(init=False, repr=False)  # kept.timesteps as ints
    _logsnr: list[float] = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "kept", respace(self.schedule, self.idx))
        object.__setattr__(self, "_timesteps", self.kept.timesteps.tolist())
        object.__setattr__(self, "_logsnr", self.kept.logsnr.tolist())

    @classmethod
    def of(cls, schedule: Schedule, steps: int, spacing: str = "even") -> "Grid":
        return cls(schedule, kept_steps(schedule.T, steps, spacing), spacing)

    @property
    def n(self) -> int:
        return len(self.idx)

    def timestep(self, k: int) -> int:
        """The model's own timestep at kept step k (``schedule.timesteps[idx[k]]``)."""
        return self._timesteps[k]

    def logsnr(self, k: int) -> float:
        """log(abar / (1 - abar)) at kept step k: the axis shared by every process."""
        return self._logsnr[k]


@dataclass
class StepInfo:
    """What ``callback`` receives at each model call (i = 0 is the noisiest).

    ``t`` is the model's own timestep of the call (``schedule.timesteps[schedule_index]``, as
    ``biaskit probe`` reports it); ``schedule_index`` the step of the denoiser's schedule; ``x_t``
    the model's input (B, ...) in variance-preserving scale; ``x0_hat`` / ``eps_hat`` its
    estimates (after clipping when ``clip``); ``x_next`` the sampler's state after the step;
    ``logsnr`` that of the call's step (the common axis of models of every process).
    """

    i: int
    t: int
    x_t: torch.Tensor
    x0_hat: torch.Tensor
    eps_hat: torch.Tensor
    x_next: torch.Tensor
    schedule_index: int = -1
    logsnr: float = float("nan")


class ModelCall:
    """The one convention samplers call a model by: ``model(x_t, k) -> Prediction`` at kept step
    k of ``grid``, x0_hat clamped to the data range and eps_hat re-derived from it when ``clip``.

    ``denoiser`` is anything called as ``denoiser(x_t, t) -> Prediction`` with t a step of its
    schedule (a :class:`biaskit.Denoiser`, or :class:`biaskit.sampling.SwitchAfter`); with
    ``labels`` (B,) it is called as ``denoiser(x_t, t, labels)`` (a class-conditional model)."""

    def __init__(self, denoiser, grid: Grid, clip: bool, device, labels=None):
        self.denoiser, self.grid, self.clip = denoiser, grid, clip
        self.labels = None if labels is None else torch.as_tensor(labels, device=device).long()
        self.parameterization = denoiser.parameterization
        self.data_range = denoiser.data_range
        self._t = [torch.tensor(t, device=device) for t in grid.idx]

    def __call__(self, x_t: torch.Tensor, k: int) -> Prediction:
        pred = self.denoiser(x_t, self._t[k]) if self.labels is None else \
            self.denoiser(x_t, self._t[k], self.labels)
        if not self.clip:
            return pred
        x0_hat, eps_hat = P.clip_estimates(pred.x0_hat, x_t, pred.alpha, pred.sigma, self.data_range)
        return replace(pred, x0_hat=x0_hat, eps_hat=eps_hat)

    def info(self, i: int, k: int, x_t, pred: Prediction, x_next) -> StepInfo:
        """The :class:`StepInfo` of call i, made at kept step k."""
        return StepInfo(i, self.grid.timestep(k), x_t, pred.x0_hat, pred.eps_hat, x_next,
                        self.grid.idx[k], self.grid.logsnr(k))


@dataclass
class Trajectory:
    """Stacked per-call states, noisiest first: ``t`` (S,) the model's own timesteps,
    ``schedule_index`` (S,) the steps of the denoiser's schedule, ``x_t`` and ``x0_hat``
    (S, B, ...), ``logsnr`` (S,) float64."""

    t: torch.Tensor
    x_t: torch.Tensor
    x0_hat: torch.Tensor
    schedule_index: torch.Tensor | None = None
    logsnr: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.t.numel()


@dataclass
class SampleResult:
    """``x0`` (B, ...): final samples; ``timesteps``: the model's own timesteps of the model
    calls, noisiest first; ``schedule_index``: the same calls as steps of the denoiser's schedule
    (they differ for a model trained on part of its schedule, or a respaced one)."""

    x0: torch.Tensor
    timesteps: list[int]
    sampler: str
    trajectory: Trajectory | None = None
    schedule_index: list[int] = field(default_factory=list)

    @property
    def nfe(self) -> int:
        return len(self.timesteps)


class Recorder:
    """A callback that keeps every call's t (and, when ``keep``, x_t and x0_hat), then passes the
    :class:`StepInfo` on to the user's ``callback``."""

    def __init__(self, callback, keep: bool):
        self.callback, self.keep = callback, keep
        self.t, self.index, self.x_t, self.x0_hat, self.logsnr = [], [], [], [], []

    def __call__(self, step: StepInfo) -> None:
        self.t.append(step.t)
        self.logsnr.append(step.logsnr)
        self.index.append(step.schedule_index)
        if self.keep:
            self.x_t.append(step.x_t)
            self.x0_hat.append(step.x0_hat)
        if self.callback is not None:
            self.callback(step)

    def trajectory(self) -> Trajectory | None:
        if not self.keep:
            return None
        return Trajectory(torch.tensor(self.t), torch.stack(self.x_t), torch.stack(self.x0_hat),
                          torch.tensor(self.index), torch.tensor(self.logsnr, dtype=torch.float64))
