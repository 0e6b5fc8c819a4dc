"""Samplers over any :class:`biaskit.Denoiser`: a flat list with one signature, k-diffusion style.

Every sampler is ``sampler(model, x, grid, *, generator, callback, progress, **options) -> x0``
over one model-call convention (:class:`ModelCall`: ``model(x_t, k)`` at kept step k of a
:class:`Grid`): :func:`ddpm`, :func:`ddim` (``native``), :func:`heun` (EDM) and :func:`flow_euler` (``ode``), and each diffusers scheduler
(:func:`diffusers_method`, see :data:`DIFFUSERS_SAMPLERS`). All walk the same kept steps of a
respaced view of the denoiser's schedule. Each model call reports a :class:`StepInfo` (x_t,
x0_hat, eps_hat, x_next, the model's timestep t) to ``callback`` and can be kept in a
:class:`Trajectory`. Hybrid sampling is a model: :class:`SwitchAfter` (A for the first k calls).
Each sampler is one row of the sampler table (:class:`SamplerSpec`, :mod:`.table`): adding one is
its function and ``register(SamplerSpec(name, function, ...))``.
"""

from .chain import PROCESS_SPACINGS, SPACINGS, Grid, ModelCall, SampleResult, StepInfo, Trajectory, kept_steps
# the sampler modules register their rows on import: this order is sampler_names()'s
from .native import NATIVE, VARIANCES, ddim, ddim_sigma, ddpm, posterior_mean_coefficients  # noqa: I001
from .ode import ODE_SAMPLERS, edm_sigmas, flow_euler, flow_times, heun
from .diffusers_adapter import DIFFUSERS_SAMPLERS, diffusers_method, make_scheduler, scheduler_chain
from .hybrid import SwitchAfter, hybrid_model, hybrid_sample, hybrid_sweep
from .process_schedulers import PROCESS_SCHEDULERS, process_scheduler_method, scheduler_logsnr
from .run import check_steps, model_calls, sample, sampler_method, sampling_grid
from .table import SamplerSpec, lookup, register, sampler_names, unregister

NATIVE_SAMPLERS = tuple(NATIVE)

__all__ = ["sample", "hybrid_sample", "hybrid_sweep", "hybrid_model", "SwitchAfter", "SampleResult",
           "Trajectory", "StepInfo", "Grid", "ModelCall", "NATIVE_SAMPLERS", "DIFFUSERS_SAMPLERS",
           "VARIANCES", "SPACINGS", "PROCESS_SPACINGS", "sampler_names", "sampler_method", "kept_steps", "ddpm", "ddim",
           "diffusers_method", "posterior_mean_coefficients", "ddim_sigma", "make_scheduler",
           "scheduler_chain", "model_calls", "check_steps", "heun", "flow_euler", "ODE_SAMPLERS",
           "edm_sigmas", "flow_times", "sampling_grid", "PROCESS_SCHEDULERS",
           "process_scheduler_method", "scheduler_logsnr", "SamplerSpec", "register", "unregister",
           "lookup"]
