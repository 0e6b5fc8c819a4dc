"""diffusers' flow-matching and EDM schedulers as samplers of any biaskit model, through the VP
equivalence.

A kept step with VP coefficients (alpha, sigma) and logsnr lam is, in the scheduler's own state,

  flow  (``FlowMatchEulerDiscreteScheduler``): z = x_vp / (alpha + sigma) = (1 - s) x0 + s eps at
        the scheduler's sigma s = sigma / (alpha + sigma) = sigmoid(-lam / 2); the scheduler is fed
        the velocity u = eps_hat - x0_hat and steps z' = z + (s' - s) u.
  edm   (``EDMEulerScheduler``, ``EDMDPMSolverMultistepScheduler``): z = x_vp / alpha = x0 +
        sigma_e eps with sigma_e = sigma / alpha = exp(-lam / 2); the scheduler is fed the raw
        output F its preconditioning turns back into D = c_skip z + c_out F (c_out < 0 under its
        ``prediction_type="v_prediction"``), with F = (x0_hat - c_skip z) / c_out computed by the
        scheduler's own ``precondition_outputs`` (it is affine in z and F), so D = x0_hat up to
        float32 rounding.

Which noise levels are visited:

- a model that can be evaluated at any logsnr (a :class:`~biaskit.formulations.ProcessDenoiser`,
  ``with_schedule``) walks the scheduler's *own* sigmas: :func:`scheduler_logsnr` reads them after
  ``set_timesteps(steps)`` (its config from the model's process when the scheduler is of the
  process's ``diffusers_kind``: :meth:`~biaskit.processes.Process.scheduler_defaults`, e.g.
  Flow's shift, VE's sigma_min, sigma_max, rho with the model's sigma_data; ``scheduler_kwargs``
  over those) and the model is re-viewed at their logsnr (:func:`biaskit.sampling.run.sampling_grid`);
- a discrete VP :class:`~biaskit.denoiser.Denoiser` is exact only at its schedule's steps, so the
  scheduler walks the kept steps of ``spacing`` instead: its sigmas are set to theirs (the
  scheduler's update rule on biaskit's grid; no interpolation between trained timesteps).

Each model call reports a :class:`~biaskit.sampling.chain.StepInfo` in VP scale, like every other
sampler; the chain ends at zero noise (``final_sigmas_type="sigma_min"`` is refused).
"""

from __future__ import annotations

import inspect
from functools import partial

import torch
from tqdm.auto import tqdm

from .chain import Grid, ModelCall
from .table import SamplerSpec, register, register_family

__all__ = ["PROCESS_SCHEDULERS", "scheduler_kind", "is_process_scheduler", "make_process_scheduler",
           "scheduler_logsnr", "process_scheduler_sampler", "process_scheduler_method"]

# short name -> (diffusers class, extra config)
PROCESS_SCHEDULERS = {
    "flow_match_euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "edm_euler": ("EDMEulerScheduler", {}),
    "edm_dpmpp_2m": ("EDMDPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++",
                                                        "solver_order": 2}),
}
_KIND = {"FlowMatchEulerDiscreteScheduler": "flow", "EDMEulerScheduler": "edm",
         "EDMDPMSolverMultistepScheduler": "edm"}
# config values that would leave the chain's contract (a fixed grid ending at zero noise)
_REFUSED = {"use_dynamic_shifting": True, "invert_sigmas": True, "final_sigmas_type": "sigma_min"}


def _class_name(name: str) -> str:
    return PROCESS_SCHEDULERS.get(name, (name, {}))[0]


def is_process_scheduler(name: str) -> bool:
    """True for the short names above and every diffusers ``FlowMatch*`` / ``EDM*`` class name
    (the unsupported ones are then refused by :func:`scheduler_kind` with what is supported)."""
    cls = _class_name(str(name))
    return cls in _KIND or (cls.endswith("Scheduler") and cls.startswith(("FlowMatch", "EDM")))


def scheduler_kind(name: str) -> str:
    """``flow`` or ``edm``; ValueError naming the supported ones for any other scheduler."""
    kind = _KIND.get(_class_name(name))
    if kind is None:
        supported = ", ".join(f"{k} ({c})" for k, (c, _) in PROCESS_SCHEDULERS.items())
        raise ValueError(f"{name}: biaskit runs the diffusers flow-matching / EDM schedulers "
                         f"{supported}; other FlowMatch* / EDM* schedulers are not supported")
    return kind


def _model_defaults(denoiser, kind: str) -> dict:
    """The scheduler settings that match the model's own process when the scheduler is of its
    kind (:attr:`~biaskit.processes.Process.diffusers_kind`): the process's
    :meth:`~biaskit.processes.Process.scheduler_defaults`, with the model's sigma_data."""
    process = getattr(denoiser, "process", None)
    if getattr(process, "diffusers_kind", None) != kind:
        return {}
    return process.scheduler_defaults(sigma_data=getattr(denoiser, "sigma_data", 0.5))


def make_process_scheduler(name: str, denoiser=None, **scheduler_kwargs):
    """The diffusers scheduler ``name`` (short name or class name) configured for ``denoiser``
    (:func:`_model_defaults`), ``scheduler_kwargs`` over that."""
    import diffusers
    kind = scheduler_kind(name)
    cls_name, extra = PROCESS_SCHEDULERS.get(name, (name, {}))
    cls = getattr(diffusers, cls_name, None)
    if cls is None:
        raise ValueError(f"diffusers {diffusers.__version__} has no {cls_name}")
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(scheduler_kwargs) - accepted)
    if unknown:
        raise ValueError(f"{cls_name} takes no {', '.join(unknown)}; its settings: "
                         f"{', '.join(sorted(accepted))}")
    config = {**_model_defaults(denoiser, kind), **extra, **scheduler_kwargs}
    for key, bad in _REFUSED.items():
        if config.get(key) == bad:
            raise ValueError(f"{cls_name} with {key}={bad!r} is not supported: biaskit's chains walk "
                             "a fixed grid of noise levels down to zero noise")
    if kind == "edm" and config.get("prediction_type", "epsilon") not in ("epsilon", "v_prediction"):
        raise ValueError(f"{cls_name}: prediction_type must be epsilon or v_prediction (the sign "
                         f"of its c_out), got {config['prediction_type']!r}")
    return cls(**{k: v for k, v in config.items() if k in accepted})


# A scheduler kind's sigma <-> logsnr: a fact of the kind (what its state z is), not of the
# model's process: a VP model sampled by flow_match_euler is walked by the same formulas. They
# are the times of the kind's plain process (flow: Flow at shift 1, s = sigmoid(-lam / 2); edm:
# VE, sigma_e = exp(-lam / 2)), written here once for the scheduler state (float64, log1p).
def _sigmas_to_logsnr(kind: str, sigmas: torch.Tensor) -> torch.Tensor:
    s = sigmas.double()
    if kind == "flow":  # snr = ((1 - s) / s)^2
        return 2 * (torch.log1p(-s) - s.log())
    return -2 * s.log()


def _logsnr_to_sigmas(kind: str, lam: torch.Tensor) -> torch.Tensor:
    lam = lam.double()
    return torch.sigmoid(-lam / 2) if kind == "flow" else torch.exp(-lam / 2)


def scheduler_logsnr(name: str, denoiser, steps: int, scheduler_kwargs: dict | None = None):
    """logsnr (steps,) float64, noisiest first, of the noise levels the scheduler ``name`` calls
    the model at with ``steps`` steps (its sigmas after ``set_timesteps``, without the final 0)."""
    scheduler = make_process_scheduler(name, denoiser, **(scheduler_kwargs or {}))
    scheduler.set_timesteps(int(steps))
    sig = scheduler.sigmas.detach().cpu()
    if float(sig[-1]) != 0 or sig.numel() != int(steps) + 1:
        raise ValueError(f"{name} does not walk {steps} noise levels down to zero with these settings")
    return _sigmas_to_logsnr(scheduler_kind(name), sig[:-1])


def _pin(scheduler, kind: str, lam: torch.Tensor, device) -> None:
    """Set the scheduler's sigmas (and its timesteps, as it derives them) to the noise levels of
    logsnr ``lam`` (noisiest first), followed by 0."""
    sig = _logsnr_to_sigmas(kind, lam)
    if not torch.all(torch.isfinite(sig)):
        raise ValueError("an EDM scheduler needs a finite sigma at the noisiest step; this grid starts "
                         "at zero SNR: use flow_match_euler, ddim or a grid without that step")
    sig32 = torch.cat([sig, torch.zeros(1, dtype=torch.float64)]).float()
    if len(scheduler.timesteps) != lam.numel():
        raise ValueError(f"the scheduler set {len(scheduler.timesteps)} timesteps for {lam.numel()} steps")
    if kind == "flow":
        timesteps = sig32[:-1] * scheduler.config.num_train_timesteps
    else:
        timesteps = scheduler.precondition_noise(sig32[:-1])
    scheduler.sigmas = sig32
    scheduler.timesteps = timesteps.to(device)


def _edm_raw_output(scheduler, x0_hat: torch.Tensor, z: torch.Tensor, sigma) -> torch.Tensor:
    """F with precondition_outputs(z, F, sigma) = x0_hat (that map is affine in F)."""
    skip = scheduler.precondition_outputs(z, torch.zeros_like(z), sigma)
    out = scheduler.precondition_outputs(torch.zeros_like(z), torch.ones_like(z), sigma)
    return (x0_hat - skip) / out


def process_scheduler_sampler(name: str, model: ModelCall, x: torch.Tensor, grid: Grid, *,
                              generator=None, callback=None, progress: bool = False,
                              scheduler_kwargs: dict | None = None) -> torch.Tensor:
    """The diffusers flow / EDM scheduler ``name`` from x (B, ...) in VP scale at the noisiest
    kept step of ``grid``, at the grid's noise levels; returns x0 (B, ...)."""
    kind = scheduler_kind(name)
    scheduler = make_process_scheduler(name, model.denoiser, **(scheduler_kwargs or {}))
    scheduler.set_timesteps(grid.n, device=x.device)
    lam = torch.tensor([grid.logsnr(k) for k in range(grid.n - 1, -1, -1)], dtype=torch.float64)
    _pin(scheduler, kind, lam, x.device)
    a, s = grid.kept.alpha.tolist(), grid.kept.sigma.tolist()
    # z = x_vp * scale[k] is the scheduler's state at kept step k
    scale = [1 / (ak + sk) if kind == "flow" else 1 / ak for ak, sk in zip(a, s)]
    params = inspect.signature(scheduler.step).parameters
    step_kwargs = {"generator": generator} if "generator" in params else {}
    z = x * scale[-1]
    for i, step in enumerate(tqdm(scheduler.timesteps, disable=not progress, leave=False, desc=name)):
        k = grid.n - 1 - i
        x_in = z / scale[k]
        pred = model(x_in, k)
        if kind == "flow":
            out = pred.eps_hat - pred.x0_hat
        else:
            scheduler.scale_model_input(z, step)  # the scheduler's bookkeeping; the model takes x_in
            out = _edm_raw_output(scheduler, pred.x0_hat.to(z.dtype), z, scheduler.sigmas[i])
        z = scheduler.step(out, step, z, return_dict=True, **step_kwargs).prev_sample
        if callback is not None:
            callback(model.info(i, k, x_in, pred, z / scale[k - 1] if k > 0 else z))
    return z


def process_scheduler_method(name: str):
    """The sampler of the common signature that runs the flow / EDM scheduler ``name``."""
    scheduler_kind(name)
    return partial(process_scheduler_sampler, name)


def _spec(name: str) -> SamplerSpec:
    return SamplerSpec(name, process_scheduler_method(name), options=("scheduler_kwargs",),
                       grid="scheduler")


for _name in PROCESS_SCHEDULERS:
    register(_spec(_name))
# a FlowMatch* / EDM* class name: its row, or scheduler_kind's error naming the supported ones
register_family(lambda name: _spec(name) if is_process_scheduler(name) else None)
