"""Samplers over any :class:`biaskit.Denoiser`: a flat list with one signature, k-diffusion style.

Native samplers walk a respaced view of the denoiser's schedule, k = n-1 .. 0, with
abar_prev = abar of the next kept step (1 after the last), so that the respaced betas are
beta_k = 1 - abar_k / abar_prev (ADM's rule):

  ddpm  ancestral, Ho et al. 2020 Eq. 6-7: x_prev ~ N(c0 x0_hat + ct x_t, s^2), with s^2 the
        posterior variance beta_tilde ("fixed_small"), beta ("fixed_large"), or ADM's learned
        interpolation of their logs ("learned", Nichol & Dhariwal 2021 Eq. 15).
  ddim  Song et al. 2021 Eq. 12/16: x_prev = sqrt(abar_prev) x0_hat
        + sqrt(1 - abar_prev - s^2) eps_hat + s z,  s = eta sqrt(beta_tilde).

Every other name goes to a diffusers scheduler (see :data:`DIFFUSERS_SAMPLERS`), fed the model's
output in its own parameterization. It runs on the same respaced view as the native samplers (the
n kept steps of ``spacing`` become a schedule of n steps, all visited, whose k-th step is kept
step idx[k]), so every scheduler calls the model at the kept steps and steps from each to the next
one, whatever its own ``timestep_spacing`` rules would have picked. ``even`` (ADM) keeps t = 0, so
a multistep solver's last step there is long in logsnr (t = 111 -> 0 at 10 steps, 5x the previous
one) and its second-order extrapolation suffers: compare samplers on one grid; ``trailing`` suits
multistep solvers.

Each model call reports a :class:`StepInfo` to ``callback`` and can be kept in a
:class:`Trajectory`. Noise comes from one ``torch.Generator`` seeded by ``seed``: the initial
x_T first, then each stochastic step's draw, in order.
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import parameterization as P
from .denoiser import Denoiser
from .schedules import Schedule, diffusers_spacing, respace, space_timesteps

__all__ = ["sample", "hybrid_sample", "hybrid_sweep", "SampleResult", "Trajectory", "StepInfo",
           "NATIVE_SAMPLERS", "DIFFUSERS_SAMPLERS", "VARIANCES", "SPACINGS", "sampler_names",
           "kept_steps", "ddpm_coefficients", "ddim_sigma", "make_scheduler", "scheduler_chain",
           "model_calls", "sample_table", "PAPER_STEPS"]

NATIVE_SAMPLERS = ("ddpm", "ddim")
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
    "heun": ("HeunDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "diffusers_ddim": ("DDIMScheduler", {}),
    "diffusers_ddpm": ("DDPMScheduler", {}),
}
VARIANCES = ("fixed_small", "fixed_large", "learned")
SPACINGS = ("even", "linspace", "leading", "trailing")
# eps and v models are fed in their own parameterization; x0 and flow models as their eps_hat
# (not every scheduler implements prediction_type="sample"; the scheduler's x0 is the same x0_hat)
_PREDICTION_TYPE = {"eps": "epsilon", "v": "v_prediction"}
_DIFFUSERS_VARIANCE = {"fixed_small": "fixed_small", "fixed_large": "fixed_large",
                       "learned": "learned_range"}


def sampler_names() -> list[str]:
    """Every accepted sampler name (any diffusers ``*Scheduler`` class name works too)."""
    return list(NATIVE_SAMPLERS) + sorted(DIFFUSERS_SAMPLERS)


@dataclass
class StepInfo:
    """What ``callback`` receives at each model call (i = 0 is the noisiest).

    ``t`` is the step of the denoiser's schedule the model was called at; ``x_t`` the model's
    input (B, ...) in variance-preserving scale; ``x0_hat`` / ``eps_hat`` its estimates (after
    clipping when ``clip``); ``x_next`` the sampler's state after the step.
    """

    i: int
    t: int
    x_t: torch.Tensor
    x0_hat: torch.Tensor
    eps_hat: torch.Tensor
    x_next: torch.Tensor


@dataclass
class Trajectory:
    """Stacked per-call states: ``t`` (S,) steps of the denoiser's schedule, ``x_t`` and
    ``x0_hat`` (S, B, ...), noisiest first."""

    t: torch.Tensor
    x_t: torch.Tensor
    x0_hat: torch.Tensor

    def __len__(self) -> int:
        return self.t.numel()


@dataclass
class SampleResult:
    """``x0`` (B, ...): final samples; ``timesteps``: the schedule steps visited, noisiest first."""

    x0: torch.Tensor
    timesteps: list[int]
    sampler: str
    trajectory: Trajectory | None = None

    @property
    def nfe(self) -> int:
        return len(self.timesteps)


def kept_steps(T: int, steps: int, spacing: str = "even") -> list[int]:
    """Which of T schedule steps a sampler with ``steps`` steps visits (increasing order).

    ``even``: ADM's ``space_timesteps`` (first and last step kept); ``linspace``, ``leading``,
    ``trailing``: diffusers' ``timestep_spacing``.
    """
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; valid: {', '.join(SPACINGS)}")
    if not 1 <= int(steps) <= T:
        raise ValueError(f"steps must be in 1..{T} for a schedule of T = {T}, got {steps}")
    if spacing == "even":
        return space_timesteps(T, int(steps))
    return diffusers_spacing(T, int(steps), spacing)


# Ho et al. 2020, Eq. 7: q(x_prev | x_t, x0) = N(c0 x0 + ct x_t, beta_tilde)
def ddpm_coefficients(schedule: Schedule) -> dict[str, torch.Tensor]:
    """Posterior coefficients per step of ``schedule`` (a respaced one for fewer steps): c0, ct,
    beta, beta_tilde, each (T,)."""
    abar, abar_prev, beta = schedule.abar, schedule.abar_prev, schedule.betas
    beta_tilde = schedule.posterior_variance
    c0 = abar_prev.sqrt() * beta / (1 - abar)
    ct = (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar)
    return {"c0": c0, "ct": ct, "beta": beta, "beta_tilde": beta_tilde}


# Song et al. 2021, Eq. 16: sigma_t(eta) = eta sqrt((1 - abar_prev) / (1 - abar) (1 - abar / abar_prev))
def ddim_sigma(schedule: Schedule, eta: float) -> torch.Tensor:
    return eta * ddpm_coefficients(schedule)["beta_tilde"].sqrt()


def _pick(denoiser, n: int) -> Callable[[int], Denoiser]:
    if isinstance(denoiser, (list, tuple)):
        if len(denoiser) != n:
            raise ValueError(f"got {len(denoiser)} denoisers for {n} model calls; pass one per call")
        return denoiser.__getitem__
    return lambda i: denoiser


def _first(denoiser) -> Denoiser:
    return denoiser[0] if isinstance(denoiser, (list, tuple)) else denoiser


def _initial_noise(shape_or_noise, device, generator) -> torch.Tensor:
    if isinstance(shape_or_noise, torch.Tensor):
        dtype = shape_or_noise.dtype if shape_or_noise.is_floating_point() else torch.float32
        return shape_or_noise.to(device, dtype)
    shape = (shape_or_noise,) if isinstance(shape_or_noise, int) else tuple(shape_or_noise)
    return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)


def _estimates(pred, x_t, clip: bool, data_range):
    """(x0_hat, eps_hat), x0_hat clamped to data_range and eps_hat re-derived from it when clip."""
    if not clip:
        return pred.x0_hat, pred.eps_hat
    x0_hat = P.clip_to_range(pred.x0_hat, data_range)
    return x0_hat, P.to_x0_eps("x0", x0_hat, x_t, pred.alpha, pred.sigma)[1]


class _Recorder:
    def __init__(self, callback, keep: bool):
        self.callback, self.keep = callback, keep
        self.t, self.x_t, self.x0_hat = [], [], []
        self.last = None

    def __call__(self, i, t, x_t, x0_hat, eps_hat, x_next):
        self.last = x_next
        if self.keep:
            self.t.append(t)
            self.x_t.append(x_t)
            self.x0_hat.append(x0_hat)
        if self.callback is not None:
            self.callback(StepInfo(i, t, x_t, x0_hat, eps_hat, x_next))

    def trajectory(self) -> Trajectory | None:
        if not self.keep:
            return None
        return Trajectory(torch.tensor(self.t), torch.stack(self.x_t), torch.stack(self.x0_hat))


def _native(kind, denoiser, x, schedule: Schedule, steps, spacing, eta, variance, clip, generator,
            record, progress) -> list[int]:
    idx = kept_steps(schedule.T, steps, spacing)
    pick = _pick(denoiser, len(idx))
    kept = respace(schedule, idx)
    c = ddpm_coefficients(kept)
    if kind == "ddim":
        s = ddim_sigma(kept, eta)
        abar_prev = kept.abar_prev
        coef = {"a0": abar_prev.sqrt(), "ae": (1 - abar_prev - s**2).clamp_min(0).sqrt(), "s": s}
    else:
        # ADM: the log variances at the first kept step use beta_tilde of the second (beta_tilde_0 = 0)
        bt = c["beta_tilde"].clone()
        if len(bt) > 1:
            bt[0] = bt[1]
        coef = {"c0": c["c0"], "ct": c["ct"], "s": c["beta_tilde"].sqrt() if variance == "fixed_small"
                else c["beta"].sqrt(), "log_small": bt.log(), "log_large": c["beta"].log()}
    coef = {k: v.tolist() for k, v in coef.items()}  # python floats: no device syncs in the loop
    t_dev = [torch.tensor(k, device=x.device) for k in idx]
    data_range = pick(0).data_range
    for i, k in enumerate(tqdm(range(len(idx) - 1, -1, -1), disable=not progress, leave=False,
                               desc=kind)):
        den = pick(i)
        pred = den(x, t_dev[k])
        x0_hat, eps_hat = _estimates(pred, x, clip, data_range)
        noisy = k > 0 and (kind == "ddpm" or eta > 0)
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if noisy else None
        if kind == "ddim":
            x_next = coef["a0"][k] * x0_hat + coef["ae"][k] * eps_hat
            if noisy:
                x_next = x_next + coef["s"][k] * z
        else:
            x_next = coef["c0"][k] * x0_hat + coef["ct"][k] * x
            if noisy:
                x_next = x_next + _ddpm_std(variance, coef, k, pred) * z
        record(i, idx[k], x, x0_hat, eps_hat, x_next)
        x = x_next
    return idx[::-1]


def _var_out(pred) -> torch.Tensor:
    if pred.var_out is None:
        raise ValueError("variance='learned' needs a network with 2C outputs (ADM learn_sigma); "
                         "this denoiser returns C channels: use fixed_small or fixed_large")
    return pred.var_out


# Nichol & Dhariwal 2021, Eq. 15: log s^2 = frac log beta + (1 - frac) log beta_tilde, frac = (v + 1) / 2
def _ddpm_std(variance, coef, k, pred):
    if variance != "learned":
        return coef["s"][k]
    frac = (_var_out(pred) + 1) / 2
    return torch.exp(0.5 * (frac * coef["log_large"][k] + (1 - frac) * coef["log_small"][k]))


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


def scheduler_chain(sampler: str, schedule: Schedule, steps: int, spacing: str = "even",
                    parameterization: str = "eps", *, variance: str = "fixed_small",
                    clip: bool = False, device=None, scheduler_kwargs: dict | None = None):
    """(scheduler, prediction_type, ts): a diffusers scheduler on the respaced view of ``schedule``
    at the kept steps idx = :func:`kept_steps` (T, steps, spacing), its timesteps set, and ``ts``
    the step of ``schedule`` (idx[k]) that each of its model calls is at, noisiest first.

    Raises ValueError when the scheduler does not visit every kept step once in order (repeats,
    as Heun's and PNDM's second evaluations, are allowed), or when it would end above zero noise
    at a spacing whose smallest kept step is not step 0 (its final noise level would be that step's).
    """
    idx = kept_steps(schedule.T, steps, spacing)
    with _quiet_numpy():
        scheduler, prediction_type = make_scheduler(sampler, respace(schedule, idx), parameterization,
                                                    variance=variance, clip=clip,
                                                    **(scheduler_kwargs or {}))
        scheduler.set_timesteps(len(idx), device=device)
    ks = scheduler.timesteps.detach().cpu().double()
    visited = torch.unique_consecutive(ks).tolist()
    if not torch.equal(ks, ks.round()) or visited != list(range(len(idx) - 1, -1, -1)):
        raise ValueError(f"{sampler} picks timesteps of its own with these settings ({visited[:4]} ... "
                         f"of a schedule of {len(idx)} kept steps), so it would not visit the kept "
                         f"steps of spacing={spacing!r}: drop the scheduler_kwargs that set its sigmas")
    if idx[0] != 0 and _ends_above_zero(scheduler):
        ok = [s for s in SPACINGS if kept_steps(schedule.T, steps, s)[0] == 0]
        raise ValueError(f"{sampler} ends at the noise level of the smallest kept step, which "
                         f"spacing={spacing!r} puts at t = {idx[0]}, not 0: use spacing "
                         f"{', '.join(ok)}")
    return scheduler, prediction_type, [idx[int(k)] for k in ks.long().tolist()]


@contextmanager
def _quiet_numpy():
    # some diffusers schedulers call numpy on tensors: numpy 2 deprecation noise, not ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _diffusers(name, denoiser, x, schedule, parameterization, steps, spacing, variance, clip,
               generator, record, progress, scheduler_kwargs) -> list[int]:
    scheduler, prediction_type, ts = scheduler_chain(
        name, schedule, steps, spacing, parameterization, variance=variance, clip=clip,
        device=x.device, scheduler_kwargs=scheduler_kwargs)
    pick = _pick(denoiser, len(ts))
    step_params = inspect.signature(scheduler.step).parameters
    step_kwargs = {"generator": generator} if "generator" in step_params else {}
    learned = getattr(scheduler.config, "variance_type", None) == "learned_range"
    t_dev = [torch.tensor(t, device=x.device) for t in ts]
    data_range = pick(0).data_range
    with _quiet_numpy():
        # the scheduler's state is x_T in its own scale (VE for Euler & co.): scale_model_input
        # maps it back, so divide by that map's factor (exact, unlike init_noise_sigma's sigma_max)
        first = scheduler.timesteps[0]
        x = x / scheduler.scale_model_input(torch.ones(1, device=x.device, dtype=x.dtype), first)
        for i, k in enumerate(tqdm(scheduler.timesteps, disable=not progress, leave=False, desc=name)):
            x_t = scheduler.scale_model_input(x, k)
            pred = pick(i)(x_t, t_dev[i])
            x0_hat, eps_hat = _estimates(pred, x_t, clip, data_range)
            out = eps_hat if prediction_type == "epsilon" else pred.out
            if learned:
                out = torch.cat([out, _var_out(pred)], 1)
            x_next = scheduler.step(out, k, x, return_dict=True, **step_kwargs).prev_sample
            record(i, ts[i], x_t, x0_hat, eps_hat, x_next)
            x = x_next
    return ts


def model_calls(sampler: str, denoiser, steps: int, spacing: str = "even",
                scheduler_kwargs: dict | None = None) -> int:
    """How many network evaluations ``sample`` makes (2nd-order diffusers schedulers make more)."""
    den = _first(denoiser)
    if sampler in NATIVE_SAMPLERS:
        return len(kept_steps(den.schedule.T, steps, spacing))
    return len(scheduler_chain(sampler, den.schedule, steps, spacing, den.parameterization,
                               scheduler_kwargs=scheduler_kwargs)[2])


@torch.inference_mode()
def check_steps(sampler: str, denoiser, steps) -> None:
    """ValueError unless 1 <= ``steps`` <= T of the denoiser's schedule (every sampler visits
    distinct schedule steps)."""
    T = _first(denoiser).schedule.T
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= T:
        raise ValueError(f"{sampler}: steps must be in 1..{T} (an integer), got {steps!r}")


def sample(denoiser, shape_or_noise, *, sampler: str = "ddim", steps: int = 50, eta: float = 0.0,
           variance: str = "fixed_small", clip: bool = False, seed: int = 0,
           callback: Callable[[StepInfo], None] | None = None, return_trajectory: bool = False,
           progress: bool = True, spacing: str = "even", device=None,
           scheduler_kwargs: dict | None = None) -> SampleResult:
    """Draw samples from ``denoiser`` with ``steps`` steps of ``sampler``.

    Args:
        denoiser: a :class:`Denoiser`, or a list of them, one per model call (noisiest first;
            they must share a schedule), as :func:`hybrid_sample` builds.
        shape_or_noise: (B, ...) shape of the samples, or the initial noise x_T itself.
        sampler: ``ddpm`` or ``ddim`` (native), or a diffusers name (see :func:`sampler_names`).
        eta: DDIM stochasticity (0 = deterministic, 1 = DDPM-like variance).
        variance: DDPM reverse variance: fixed_small (beta_tilde), fixed_large (beta), learned.
        clip: clamp x0_hat to the denoiser's data_range at every step.
        seed: seeds the generator for x_T (when a shape is given) and every step's noise.
        callback: called with a :class:`StepInfo` after every model call.
        spacing: which steps to keep: even (ADM), linspace, leading, trailing (diffusers'
            rules); native and diffusers samplers visit the same kept steps (see
            :func:`scheduler_chain`).
        device: where to sample (default: the denoiser's device, else the noise's, else CPU).
    """
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; valid: {', '.join(VARIANCES)}")
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM), got {eta}")
    first = _first(denoiser)
    check_steps(sampler, first, steps)
    first.check_shape(shape_or_noise.shape[1:] if isinstance(shape_or_noise, torch.Tensor)
                      else tuple(shape_or_noise)[1:])
    schedule = first.schedule
    if isinstance(denoiser, (list, tuple)) and any(
            not d.schedule.same_as(schedule)
            for d in denoiser):
        raise ValueError("hybrid sampling needs denoisers that share one schedule")
    if device is None:
        device = shape_or_noise.device if isinstance(shape_or_noise, torch.Tensor) else \
            first.device
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    x = _initial_noise(shape_or_noise, device, generator)
    record = _Recorder(callback, return_trajectory)
    if sampler in NATIVE_SAMPLERS:
        ts = _native(sampler, denoiser, x, schedule, steps, spacing, eta, variance, clip, generator,
                     record, progress)
    else:
        kinds = {d.parameterization for d in denoiser} if isinstance(denoiser, (list, tuple)) else \
            {first.parameterization}
        # a chain of models with different outputs is fed to the scheduler as eps
        parameterization = kinds.pop() if len(kinds) == 1 else "eps"
        ts = _diffusers(sampler, denoiser, x, schedule, parameterization, steps, spacing, variance,
                        clip, generator, record, progress, scheduler_kwargs)
    return SampleResult(record.last, ts, sampler, record.trajectory())


def hybrid_sample(den_a: Denoiser, den_b: Denoiser, k: int, shape_or_noise, *,
                  sampler: str = "ddim", steps: int = 50, spacing: str = "even",
                  scheduler_kwargs: dict | None = None, **kwargs) -> SampleResult:
    """Model A for the first (noisiest) ``k`` model calls, model B for the rest; other keyword
    arguments as :func:`sample`. k = 0 is pure B, k = the number of calls pure A."""
    n = model_calls(sampler, den_a, steps, spacing, scheduler_kwargs)
    if not 0 <= int(k) <= n:
        raise ValueError(f"k must be in 0..{n} (the number of model calls), got {k}")
    chain = [den_a] * int(k) + [den_b] * (n - int(k))
    return sample(chain, shape_or_noise, sampler=sampler, steps=steps, spacing=spacing,
                  scheduler_kwargs=scheduler_kwargs, **kwargs)


def hybrid_sweep(den_a: Denoiser, den_b: Denoiser, ks: Sequence[int], metric_fn, shape_or_noise, *,
                 progress: bool = True, **kwargs) -> pd.DataFrame:
    """:func:`hybrid_sample` for each k in ``ks`` (same seed, same x_T), scored by
    ``metric_fn(x0) -> float | dict[str, float]``. One row per (k, metric)."""
    rows = []
    for k in tqdm(list(ks), disable=not progress, desc="hybrid k"):
        x0 = hybrid_sample(den_a, den_b, int(k), shape_or_noise, progress=False, **kwargs).x0
        scores = metric_fn(x0)
        if not isinstance(scores, dict):
            scores = {"value": scores}
        rows += [{"k": int(k), "model_a": den_a.name, "model_b": den_b.name, "metric": name,
                  "value": float(v)} for name, v in scores.items()]
    return pd.DataFrame(rows)


PAPER_STEPS = (2, 3, 4, 5, 10, 50, 100, 500, 1000)  # the step counts of the paper's first figure


def sample_table(denoisers: dict, shape_or_noise, steps=PAPER_STEPS, *, seed: int = 0,
                 progress: bool = True, **kwargs) -> dict:
    """``{model name: {"<n> steps": x0}}`` for every model and step count, all from the same x_T
    (the first draw of ``seed``'s generator when a shape is given) and the same seed, as the paper's first
    figure; feed it to :func:`biaskit.plots.plot_image_table` (images) or
    :func:`biaskit.plots.plot_points_table` (2-D). Other keyword arguments go to :func:`sample`."""
    # a shape is passed on as it is: sample() draws x_T first from its seeded generator (the same
    # x_T for every model and step count) and the step noise after it; drawing x_T here from the
    # same seed would make the first stochastic step's noise equal to x_T
    T = min(d.schedule.T for d in denoisers.values())
    table = {}
    for name, den in denoisers.items():
        table[name] = {}
        for n in tqdm([s for s in steps if s <= T], disable=not progress, desc=str(name)):
            r = sample(den, shape_or_noise, steps=int(n), seed=seed, progress=False, **kwargs)
            table[name][f"{n} steps"] = r.x0
    return table
