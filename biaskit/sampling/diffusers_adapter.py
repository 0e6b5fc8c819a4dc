"""Any diffusers scheduler as a sampler of the common signature, fed the model's output in its
own parameterization.

It runs on the same respaced view as the native samplers (the n kept steps of ``spacing`` become
a schedule of n steps, all visited, whose k-th step is kept step idx[k]), so every scheduler
calls the model at the kept steps and steps from each to the next one, whatever its own
``timestep_spacing`` rules would have picked. ``even`` (ADM) keeps t = 0, so a multistep
solver's last step there is long in logsnr (t = 111 -> 0 at 10 steps, 5x the previous one) and
its second-order extrapolation suffers: compare samplers on one grid; ``trailing`` suits
multistep solvers.
"""

from __future__ import annotations

import inspect
import warnings
from contextlib import contextmanager
from functools import partial

import torch
from tqdm.auto import tqdm

from ..schedules import Schedule
from .chain import SPACINGS, Grid, ModelCall, kept_steps
from .native import var_out
from .table import SamplerSpec, register, register_family, sampler_names

# short name -> (diffusers class, extra config)
DIFFUSERS_SAMPLERS = {
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm_solver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm_solver": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver", "solver_order": 2,
                                                   "final_sigmas_type": "sigma_min"}),
    "dpmpp_3m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 3}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "diffusers_heun": ("HeunDiscreteScheduler", {}),  # "heun" is biaskit's own (ode.py)
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "diffusers_ddim": ("DDIMScheduler", {}),
    "diffusers_ddpm": ("DDPMScheduler", {}),
}
# eps and v models are fed in their own parameterization; x0 and flow models as their eps_hat
# (not every scheduler implements prediction_type="sample"; the scheduler's x0 is the same x0_hat)
_PREDICTION_TYPE = {"eps": "epsilon", "v": "v_prediction"}
_DIFFUSERS_VARIANCE = {"fixed_small": "fixed_small", "fixed_large": "fixed_large",
                       "learned": "learned_range"}
# keys of the scheduler config that the respaced view sets: a user value would break the chain
_OWN_CONFIG = ("num_train_timesteps", "trained_betas", "timestep_spacing", "steps_offset",
               "beta_start", "beta_end", "beta_schedule")


def make_scheduler(sampler: str, schedule: Schedule, parameterization: str = "eps", *,
                   variance: str = "fixed_small", clip: bool = False, **scheduler_kwargs):
    """A diffusers scheduler on ``schedule`` (trained_betas = its betas, abar set exactly), by
    short name (:data:`DIFFUSERS_SAMPLERS`) or class name, for a chain that visits every step of
    ``schedule`` (a respaced view: ``timestep_spacing="trailing"``, which with as many inference
    steps as steps gives T-1, ..., 0 for every scheduler). Returns (scheduler, prediction_type)."""
    import diffusers
    cls_name, extra = DIFFUSERS_SAMPLERS.get(sampler, (sampler, {}))
    cls = getattr(diffusers, cls_name, None) if cls_name.endswith("Scheduler") else None
    if cls is None:
        raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(sampler_names())} "
                         "or any diffusers *Scheduler class name")
    own = sorted(set(scheduler_kwargs) & set(_OWN_CONFIG))
    if own:
        raise ValueError(f"scheduler_kwargs may not set {', '.join(own)}: the schedule comes from the "
                         f"denoiser and the steps from spacing= ({', '.join(SPACINGS)})")
    prediction_type = "epsilon" if clip else _PREDICTION_TYPE.get(parameterization, "epsilon")
    accepted = inspect.signature(cls.__init__).parameters
    config = {"num_train_timesteps": schedule.T, "trained_betas": schedule.betas.numpy(),
              "prediction_type": prediction_type, "clip_sample": False, "thresholding": False,
              "timestep_spacing": "trailing", "set_alpha_to_one": True, "steps_offset": 0}
    if cls_name == "DDPMScheduler" and variance in _DIFFUSERS_VARIANCE:
        config["variance_type"] = _DIFFUSERS_VARIANCE[variance]
    config = {**config, **extra, **scheduler_kwargs}
    scheduler = cls(**{k: v for k, v in config.items() if k in accepted})
    _set_exact_abar(scheduler, schedule.abar)
    return scheduler, prediction_type


def _set_exact_abar(scheduler, abar: torch.Tensor) -> None:
    """diffusers rebuilds abar as the float32 cumprod of 1 - beta, which loses digits where a
    respaced beta is close to 1 (1.5e-3 relative at t = 999 of the 2-step linear grid): give it
    the schedule's abar and what its __init__ derives from abar (set_timesteps derives the rest)."""
    abar32 = abar.to(torch.float32)
    scheduler.alphas_cumprod = abar32
    if hasattr(scheduler, "lambda_t"):  # the multistep solvers (DPM-Solver, UniPC, DEIS)
        scheduler.alpha_t, scheduler.sigma_t = abar32.sqrt(), (1 - abar32).sqrt()
        scheduler.lambda_t = scheduler.alpha_t.log() - scheduler.sigma_t.log()


def _ends_above_zero(scheduler) -> bool:
    """True when the scheduler's last step ends at a noise level > 0 (DEIS, DPM-Solver with
    final_sigmas_type="sigma_min"): the smallest step of the schedule it runs on."""
    sigmas = getattr(scheduler, "sigmas", None)
    return sigmas is not None and float(sigmas[-1]) > 0


def grid_scheduler(sampler: str, grid: Grid, parameterization: str = "eps", *,
                   variance: str = "fixed_small", clip: bool = False, device=None,
                   scheduler_kwargs: dict | None = None):
    """(scheduler, prediction_type, ks): a diffusers scheduler on ``grid.kept``, its timesteps
    set, and ``ks`` the kept step (0..n-1) of each of its model calls, noisiest first.

    Raises ValueError when the scheduler does not visit every kept step once in order (repeats,
    as Heun's and PNDM's second evaluations, are allowed), or when it would end above zero noise
    on a grid whose smallest kept step is not step 0 (its final noise level would be that step's).
    """
    with _quiet_numpy():
        scheduler, prediction_type = make_scheduler(sampler, grid.kept, parameterization,
                                                    variance=variance, clip=clip,
                                                    **(scheduler_kwargs or {}))
        scheduler.set_timesteps(grid.n, device=device)
    ks = scheduler.timesteps.detach().cpu().double()
    visited = torch.unique_consecutive(ks).tolist()
    if not torch.equal(ks, ks.round()) or visited != list(range(grid.n - 1, -1, -1)):
        raise ValueError(f"{sampler} picks timesteps of its own with these settings ({visited[:4]} ... "
                         f"of a schedule of {grid.n} kept steps), so it would not visit the kept "
                         f"steps of spacing={grid.spacing!r}: drop the scheduler_kwargs that set its sigmas")
    if grid.idx[0] != 0 and _ends_above_zero(scheduler):
        ok = [s for s in SPACINGS if kept_steps(grid.schedule.T, grid.n, s)[0] == 0]
        raise ValueError(f"{sampler} ends at the noise level of the smallest kept step, which "
                         f"spacing={grid.spacing!r} puts at t = {grid.idx[0]}, not 0: use spacing "
                         f"{', '.join(ok)}")
    return scheduler, prediction_type, ks.long().tolist()


def scheduler_chain(sampler: str, schedule: Schedule, steps: int, spacing: str = "even",
                    parameterization: str = "eps", *, variance: str = "fixed_small",
                    clip: bool = False, device=None, scheduler_kwargs: dict | None = None):
    """(scheduler, prediction_type, ts): :func:`grid_scheduler` on the kept steps
    idx = :func:`kept_steps` (T, steps, spacing) of ``schedule``, with ``ts`` the step of
    ``schedule`` (idx[k]) of each model call, noisiest first."""
    grid = Grid.of(schedule, steps, spacing)
    scheduler, prediction_type, ks = grid_scheduler(
        sampler, grid, parameterization, variance=variance, clip=clip, device=device,
        scheduler_kwargs=scheduler_kwargs)
    return scheduler, prediction_type, [grid.idx[k] for k in ks]


@contextmanager
def _quiet_numpy():
    # some diffusers schedulers call numpy on tensors: numpy 2 deprecation noise, not ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def diffusers_sampler(name: str, model: ModelCall, x: torch.Tensor, grid: Grid, *,
                      generator=None, callback=None, progress: bool = False,
                      variance: str = "fixed_small",
                      scheduler_kwargs: dict | None = None) -> torch.Tensor:
    """The diffusers scheduler ``name`` (:func:`make_scheduler`) from x (B, ...) at the noisiest
    kept step; returns x0 (B, ...)."""
    scheduler, prediction_type, ks = grid_scheduler(
        name, grid, model.parameterization, variance=variance, clip=model.clip, device=x.device,
        scheduler_kwargs=scheduler_kwargs)
    step_params = inspect.signature(scheduler.step).parameters
    step_kwargs = {"generator": generator} if "generator" in step_params else {}
    learned = getattr(scheduler.config, "variance_type", None) == "learned_range"
    with _quiet_numpy():
        # the scheduler's state is x_T in its own scale (VE for Euler & co.): scale_model_input
        # maps it back, so divide by that map's factor (exact, unlike init_noise_sigma's sigma_max)
        first = scheduler.timesteps[0]
        x = x / scheduler.scale_model_input(torch.ones(1, device=x.device, dtype=x.dtype), first)
        for i, step in enumerate(tqdm(scheduler.timesteps, disable=not progress, leave=False, desc=name)):
            x_t = scheduler.scale_model_input(x, step)
            pred = model(x_t, ks[i])
            out = pred.eps_hat if prediction_type == "epsilon" else pred.out
            if learned:
                out = torch.cat([out, var_out(pred)], 1)
            x_next = scheduler.step(out, step, x, return_dict=True, **step_kwargs).prev_sample
            if callback is not None:
                callback(model.info(i, ks[i], x_t, pred, x_next))
            x = x_next
    return x


def diffusers_method(name: str):
    """The sampler of the common signature that runs diffusers scheduler ``name``."""
    return partial(diffusers_sampler, name)


def _calls(name: str, grid: Grid, parameterization: str, options: dict) -> int:
    """The scheduler's own count: one per kept step, more for 2nd-order ones (Heun, PNDM)."""
    return len(grid_scheduler(name, grid, parameterization,
                              scheduler_kwargs=options.get("scheduler_kwargs"))[2])


def _spec(name: str) -> SamplerSpec:
    return SamplerSpec(name, diffusers_method(name), options=("variance", "scheduler_kwargs"),
                       calls=partial(_calls, name))


def _resolve(name: str) -> SamplerSpec | None:
    """Any other diffusers ``*Scheduler`` class name (flow / EDM ones: :mod:`.process_schedulers`)."""
    from .process_schedulers import is_process_scheduler
    return _spec(name) if name.endswith("Scheduler") and not is_process_scheduler(name) else None


for _name in sorted(DIFFUSERS_SAMPLERS):
    register(_spec(_name))
register_family(_resolve, "any diffusers *Scheduler class name")
