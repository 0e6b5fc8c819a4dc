"""``sample``: draw samples from a denoiser with any sampler, on the same seeded noise.

Noise comes from one ``torch.Generator`` seeded by ``seed``: the initial x_T first, then each
stochastic step's draw, in order.
"""

from __future__ import annotations

import numbers
import warnings
from contextlib import contextmanager
from typing import Callable

import torch

from .chain import PROCESS_SPACINGS, Grid, ModelCall, Recorder, SampleResult, StepInfo
from .native import VARIANCES
from .process_schedulers import scheduler_logsnr
from .table import SamplerSpec, lookup


def sampler_method(sampler: str) -> Callable:
    """The sampler function of the common signature for a name (:func:`~.table.lookup`)."""
    return lookup(sampler).function


def _grid(spec: SamplerSpec, denoiser, steps: int, spacing: str, scheduler_kwargs):
    on_grid = getattr(denoiser, "on_process_grid", None)
    if on_grid is not None and spec.grid == "scheduler":
        denoiser = denoiser.with_schedule(scheduler_logsnr(spec.name, denoiser, steps, scheduler_kwargs))
        return denoiser, Grid(denoiser.schedule, list(range(denoiser.schedule.T)), "scheduler")
    if on_grid is not None and spec.grid == "process":
        denoiser = on_grid(steps, spacing if spacing in PROCESS_SPACINGS else "even")
        return denoiser, Grid(denoiser.schedule, list(range(denoiser.schedule.T)), "process")
    return denoiser, Grid.of(denoiser.schedule, steps, spacing)


def sampling_grid(sampler: str, denoiser, steps: int, spacing: str = "even",
                  scheduler_kwargs: dict | None = None):
    """(model, grid) a chain walks, by the sampler's grid kind (:data:`~.table.GRIDS`): the kept
    steps of ``spacing`` on the denoiser's schedule; for a process model (``on_process_grid``)
    under a ``process`` sampler (``heun``, ``flow_euler``), every step of the view of its
    process's own grid of ``steps`` times (EDM's Karras sigmas, the shifted flow times;
    ``spacing="flow_match"``: FlowMatchEulerDiscreteScheduler's sigmas), and under a
    ``scheduler`` one (a diffusers flow / EDM scheduler) every step of the view of that
    scheduler's own sigmas (:mod:`.process_schedulers`), whatever ``spacing`` says."""
    return _grid(lookup(sampler), denoiser, steps, spacing, scheduler_kwargs)


def model_calls(sampler: str, denoiser, steps: int, spacing: str = "even",
                scheduler_kwargs: dict | None = None) -> int:
    """How many network evaluations ``sample`` makes (the row's ``calls`` on its grid: 2n - 1
    for heun, more than n for 2nd-order diffusers schedulers)."""
    spec = lookup(sampler)
    grid = _grid(spec, denoiser, steps, spacing, scheduler_kwargs)[1]
    return spec.calls(grid, denoiser.parameterization, {"scheduler_kwargs": scheduler_kwargs})


def check_steps(sampler: str, denoiser, steps) -> None:
    """ValueError for an unknown sampler, or unless 1 <= ``steps`` <= T of the denoiser's
    schedule (every sampler visits distinct schedule steps)."""
    _check_steps(lookup(sampler), denoiser, steps)


def _check_steps(spec: SamplerSpec, denoiser, steps) -> None:
    """:func:`check_steps` for the looked-up row ``spec`` of a sampler."""
    _check_model(spec, denoiser)
    T = denoiser.schedule.T
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= T:
        raise ValueError(f"{spec.name}: steps must be in 1..{T} (an integer), got {steps!r}")


def _check_model(spec: SamplerSpec, denoiser) -> None:
    if spec.models == "process" and getattr(denoiser, "on_process_grid", None) is None:
        raise ValueError(f"{spec.name} samples only process models (evaluable at any noise level); "
                         f"{getattr(denoiser, 'name', 'this model')} is read on a discrete schedule")


def _initial_noise(shape_or_noise, device, generator) -> torch.Tensor:
    if isinstance(shape_or_noise, torch.Tensor):
        dtype = shape_or_noise.dtype if shape_or_noise.is_floating_point() else torch.float32
        return shape_or_noise.to(device, dtype)
    shape = (shape_or_noise,) if isinstance(shape_or_noise, int) else tuple(shape_or_noise)
    return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)


@contextmanager
def _evaluating(model):
    """Eval mode (no dropout) and no autograd graph while sampling; a network in memory that is
    being trained gets its train mode back afterwards, submodule by submodule."""
    modes = [(m, m.training) for m in model.modules()] if hasattr(model, "modules") else []
    for m, _ in modes:
        m.training = False
    try:
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes:
            m.training = mode


def _warn_terminal_snr(denoiser, shape_or_noise) -> None:
    """Drawing x_T ~ N(0, I) for a discrete schedule that ends far from SNR 0: say so."""
    from ..formulations import ProcessDenoiser
    from ..schedules import Schedule, terminal_snr_warning
    schedule = getattr(denoiser, "schedule", None)
    if isinstance(shape_or_noise, torch.Tensor) or isinstance(denoiser, ProcessDenoiser) \
            or not isinstance(schedule, Schedule):
        return
    message = terminal_snr_warning(schedule)
    if message:
        warnings.warn(message, stacklevel=3)


def sample(denoiser, shape_or_noise, *, sampler: str = "ddim", steps: int = 50, eta: float = 0.0,
           variance: str = "fixed_small", clip: bool = False, seed: int = 0,
           callback: Callable[[StepInfo], None] | None = None, return_trajectory: bool = False,
           progress: bool = True, spacing: str = "even", device=None,
           scheduler_kwargs: dict | None = None, labels=None, check_finite: bool = True) -> SampleResult:
    """Draw samples from ``denoiser`` with ``steps`` steps of ``sampler``.

    Args:
        denoiser: a :class:`Denoiser`, or any model called like one (``model(x_t, t)``, e.g.
            :class:`biaskit.sampling.SwitchAfter` for hybrid sampling).
        shape_or_noise: (B, ...) shape of the samples, or the initial noise x_T itself (VP
            scale, unit variance; ``heun`` from EDM's sigma_max eps: pass sigma_vp eps, see
            :func:`~biaskit.sampling.ode.heun`).
        sampler: a name of the sampler table (:mod:`.table`): ``ddpm`` or ``ddim`` (native),
            ``heun`` (EDM) or ``flow_euler`` (the ODE samplers of :mod:`.ode`; a process model
            walks its process's own grid, see :func:`sampling_grid`), or a diffusers name (see
            :func:`~.table.sampler_names`).
        eta: DDIM stochasticity (0 = deterministic, 1 = DDPM-like variance).
        variance: DDPM reverse variance: fixed_small (beta_tilde), fixed_large (beta), learned.
        clip: clamp x0_hat to the denoiser's data_range at every step.
        seed: seeds the generator for x_T (when a shape is given) and every step's noise.
        callback: called with a :class:`StepInfo` after every model call.
        spacing: which steps to keep: even (ADM), linspace, leading, trailing (diffusers'
            rules); native and diffusers samplers visit the same kept steps (see
            :func:`scheduler_chain`). ``flow_match``: flow_euler on a flow process model walks
            FlowMatchEulerDiscreteScheduler's sigmas (default: uniform t after the shift).
        device: where to sample (default: the denoiser's device, else the noise's, else CPU).
        labels: (B,) the class of each sample, for a class-conditional model (one class for all
            and classifier-free guidance are the model's own settings, :class:`Conditioning`).
        check_finite: raise a one-line ValueError when the samples hold NaN or inf
            (:func:`check_finite_samples`); False returns them, for a sweep that records a
            diverging chain as a NaN row.

    Returns a :class:`SampleResult` whose ``timesteps`` (and trajectory ``t``) are the model's
    own timesteps, ``schedule_index`` the steps of its schedule.
    """
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; valid: {', '.join(VARIANCES)}")
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM), got {eta}")
    spec = lookup(sampler)
    _check_steps(spec, denoiser, steps)
    denoiser.check_shape(shape_or_noise.shape[1:] if isinstance(shape_or_noise, torch.Tensor)
                         else tuple(shape_or_noise)[1:])
    if device is None:
        device = shape_or_noise.device if isinstance(shape_or_noise, torch.Tensor) else \
            denoiser.device
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    x = _initial_noise(shape_or_noise, device, generator)
    _warn_terminal_snr(denoiser, shape_or_noise)
    denoiser, grid = _grid(spec, denoiser, steps, spacing, scheduler_kwargs)
    record = Recorder(callback, return_trajectory)
    with _evaluating(denoiser):
        x0 = spec.function(ModelCall(denoiser, grid, clip, device, labels), x, grid,
                           generator=generator, callback=record, progress=progress,
                           **spec.own_options(eta=eta, variance=variance, scheduler_kwargs=scheduler_kwargs))
    if check_finite:
        check_finite_samples(x0, sampler, denoiser, grid)
    return SampleResult(x0, record.t, sampler, record.trajectory(), record.index)


def check_finite_samples(x0: torch.Tensor, sampler: str, denoiser, grid: Grid) -> None:
    """Raise, in one line, when a chain's samples x0 (B, ...) hold NaN or inf (never return them):
    a chain that starts at zero SNR (logsnr = -inf at its noisiest step: a flow model's t = 1, a
    flow scheduler's sigma = 1) where the sampler or the model's target is undefined (x0 from an
    eps estimate divides by alpha = 0; a VP scheduler's step does too), or a model or step that
    returned non-finite values."""
    bad = ~torch.isfinite(x0).flatten(1).all(1)  # (B,); B = 0 gives nothing to refuse
    if not bool(bad.any()):
        return
    name = getattr(denoiser, "name", None) or type(denoiser).__name__
    target = getattr(denoiser, "parameterization", "?")
    start = grid.kept.logsnr[-1].item()
    why = (f"the chain starts at zero SNR (logsnr = -inf at its noisiest step), where this model (target "
           f"{target}) or {sampler}'s step is undefined: sample on a grid without that step (the "
           "model's own sampler), or a flow model with flow_euler and an x0, v or flow target"
           if start == float("-inf") else
           f"the model or a step returned NaN/inf (noisiest step logsnr {start:.3g})")
    raise ValueError(f"sampler {sampler!r} gave {int(bad.sum())} of {bad.numel()} samples that are not "
                     f"finite from model {name!r}: {why}")
