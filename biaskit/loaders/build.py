"""What every third-party loader shares: the schedule from exactly one source, the data range,
the trained timesteps, the class label, and the denoiser built from them: a loader resolves the
process once (:func:`discrete_process` of its schedule, or
:func:`~biaskit.loaders.process_options.named_process`; both by :func:`process_of` for a plugin
or a network in memory) and calls :func:`model_under`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .. import safeload
from ..denoiser import TIME_INPUTS, Conditioning, Denoiser
from ..formulations import denoiser_under
from ..processes import DiscreteVP, Process
from ..source import Source
from ..schedules import (ADM_SCHEDULES, Schedule, adm_schedule, as_schedule, from_abar, from_betas,
                         from_diffusers_config, get_schedule, respace)
from .process_options import SCHEDULE_OPTIONS, check_no_process_options, named_process

__all__ = ["DEFAULT_SCHEDULER", "checked_conditioning", "conditioning_of",
           "resolve_schedule", "discrete_process", "process_of", "model_under", "make_denoiser",
           "file_source", "image_shape", "read_json", "parse_range", "parse_timestep_range"]

# DDPM (Ho et al. 2020): what a bare diffusers UNet is assumed to be trained with
DEFAULT_SCHEDULER = {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                     "num_train_timesteps": 1000, "prediction_type": "epsilon"}


def checked_conditioning(o, conditional: bool | None, what: str, why: str = "") -> list[str]:
    """The class-conditioning options of loader options ``o`` that are given (class_label,
    guidance_scale, null_label, label_keyword: those ``o`` has), checked against the network
    ``what``: a ValueError when it is not class-conditional (``conditional`` False; ``why`` says
    how that is known) and any is given, or when guidance_scale is a comma list (latent
    pipelines only). ``conditional`` None: unknown (a plugin), nothing to check."""
    given = [k for k in ("class_label", "guidance_scale", "null_label", "label_keyword")
             if getattr(o, k, None) is not None]
    if conditional is False and given:
        raise ValueError(f"{what} is not class-conditional{why}: drop "
                         f"{', '.join('--' + k.replace('_', '-') for k in given)}")
    if isinstance(getattr(o, "guidance_scale", None), tuple):
        raise ValueError("--guidance-scale: a comma list of scales applies to latent pipelines; "
                         f"give {what} one scale")
    return given


def conditioning_of(o, conditional: bool | None, keyword: str, what: str):
    """The :class:`~biaskit.denoiser.Conditioning` of loader options ``o`` (class_label,
    guidance_scale, null_label, label_keyword; :func:`checked_conditioning`) for a network that
    takes labels as ``keyword``, None for one that is not class-conditional.
    ``conditional``: whether the weights say it is class-conditional (None: unknown, as for a
    plugin, which is then conditional when any of these options is given)."""
    given = checked_conditioning(o, conditional, what)
    if not (conditional or given):
        return None
    # a format without guidance (a network in memory) has no guidance_scale / null_label option
    return Conditioning(getattr(o, "label_keyword", None) or keyword, o.class_label,
                        getattr(o, "guidance_scale", None), getattr(o, "null_label", None))


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


# ---------------------------------------------------------------------------------------------
# shared options: schedule, time input, range

def parse_range(data_range) -> tuple[float, float]:
    if data_range is None:
        return (-1.0, 1.0)
    if isinstance(data_range, str):
        parts = data_range.replace(":", ",").strip("[]() ").split(",")
        try:
            data_range = [float(p) for p in parts]
        except ValueError:
            data_range = []
    lo_hi = tuple(float(v) for v in data_range)
    if len(lo_hi) != 2 or not lo_hi[0] < lo_hi[1]:
        raise ValueError(f"data range must be two numbers LO,HI with LO < HI, got {data_range!r}")
    return lo_hi


def parse_timestep_range(spec, T: int) -> list[int]:
    if isinstance(spec, str):
        lo, sep, hi = spec.partition(":")
        try:
            lo, hi = int(lo), int(hi)
        except ValueError:
            raise ValueError(f"trained timesteps must be LO:HI (inclusive integers), got {spec!r}") \
                from None
    else:
        lo, hi = (int(v) for v in spec)
    if not 0 <= lo <= hi < T:
        raise ValueError(f"trained timesteps {lo}:{hi} must satisfy 0 <= LO <= HI < {T}")
    return list(range(lo, hi + 1))


def _vector(sd: dict, key: str, what: str) -> torch.Tensor:
    if key not in sd:
        vectors = [k for k, v in sd.items() if v.ndim == 1 and v.numel() > 10]
        raise ValueError(f"{what} key {key!r} is not in the checkpoint; 1-D tensors found: "
                         f"{', '.join(vectors) or 'none'}")
    return sd[key].detach().double().cpu()


# the named schedules whose betas run between two bounds (schedules.linear, scaled_linear, sigmoid)
BETA_BOUNDED = ("linear", "scaled_linear", "sigmoid")


def _beta_bounds(name: str, beta_start, beta_end) -> dict:
    """{beta_start, beta_end} given for a linear-family schedule, checked: 0 < start < end < 1."""
    given = {k: float(v) for k, v in (("beta_start", beta_start), ("beta_end", beta_end))
             if v is not None}
    if not given:
        return {}
    if name not in BETA_BOUNDED:
        raise ValueError(f"--beta-start / --beta-end apply to the {', '.join(BETA_BOUNDED)} "
                         f"schedules, not {name!r}")
    import inspect
    from ..schedules import SCHEDULES
    bounds = {k: p.default for k, p in inspect.signature(SCHEDULES[name]).parameters.items()
              if k in ("beta_start", "beta_end")}
    bounds.update(given)
    if not 0 < bounds["beta_start"] < bounds["beta_end"] < 1:
        raise ValueError(f"--beta-start {bounds['beta_start']:g} and --beta-end "
                         f"{bounds['beta_end']:g} must satisfy 0 < start < end < 1")
    return bounds


def resolve_schedule(state_dict: dict | None = None, *, abar_key=None, betas_key=None,
                     noise_schedule=None, diffusion_steps=None, scheduler_config=None,
                     beta_start=None, beta_end=None, default: dict | None = None,
                     adm: bool = False) -> tuple[Schedule, str]:
    """The training schedule from exactly one source, and a word saying which source it was.

    Sources: a tensor of abar (``abar_key``) or betas (``betas_key``) in the checkpoint, a diffusers
    scheduler config (dict or path; diffusers' meaning: its linear does not scale with T), a named
    schedule (``noise_schedule``, ``diffusion_steps``; with ``adm`` in guided-diffusion's meaning,
    :func:`biaskit.schedules.adm_schedule`), else ``default`` (a diffusers-style dict) or DDPM's
    linear T = 1000. ``beta_start`` / ``beta_end`` set the bounds of a named ``linear`` (betas
    linear in beta), ``scaled_linear`` (linear in sqrt(beta)) or ``sigmoid`` schedule at any T
    (for ADM too: given bounds are not rescaled by 1000 / T).
    """
    bounded = beta_start is not None or beta_end is not None
    if bounded and (abar_key or betas_key or scheduler_config):
        raise ValueError("--beta-start / --beta-end set a named schedule's bounds: drop "
                         "--abar-key, --betas-key and --scheduler-config, or the bounds")
    given = [n for n, v in [("abar_key", abar_key), ("betas_key", betas_key),
                            ("scheduler_config", scheduler_config),
                            ("noise_schedule", noise_schedule)] if v is not None]
    if len(given) > 1:
        raise ValueError(f"give one schedule source, not {' and '.join(given)}")
    if abar_key is not None:
        return from_abar(_vector(state_dict or {}, abar_key, "abar"), name=f"abar:{abar_key}"), \
            f"checkpoint tensor {abar_key!r} (abar)"
    if betas_key is not None:
        return from_betas(_vector(state_dict or {}, betas_key, "betas"), name=f"betas:{betas_key}"), \
            f"checkpoint tensor {betas_key!r} (betas)"
    if scheduler_config is not None:
        return from_diffusers_config(scheduler_config), f"scheduler config {scheduler_config}"
    if noise_schedule is not None or diffusion_steps is not None or bounded:
        name, T = noise_schedule or "linear", 1000 if diffusion_steps is None else int(diffusion_steps)
        bounds = _beta_bounds(name, beta_start, beta_end)
        if bounds:
            text = ", ".join(f"{k} {v:g}" for k, v in bounds.items())
            return get_schedule(name, T, **bounds), f"{name} ({text}), T={T}"
        if adm:
            meant = ADM_SCHEDULES.get(name, name)
            return adm_schedule(name, T), f"guided-diffusion {name} ({meant}), T={T}"
        return get_schedule(name, T), f"{name}, T={T}"
    return from_diffusers_config(default or DEFAULT_SCHEDULER), "default (DDPM linear, T=1000)"


def discrete_process(schedule: Schedule, trained_timesteps=None, time_input=None) -> tuple[DiscreteVP, dict]:
    """The process of a network on a discrete ``schedule`` (cut to ``trained_timesteps``, LO:HI):
    its :class:`~biaskit.processes.DiscreteVP`, and the source extras that record the cut.
    ``time_input`` (None: index) must be a discrete time input (or a callable)."""
    extras = {}
    if trained_timesteps is not None:
        schedule = respace(schedule, parse_timestep_range(trained_timesteps, schedule.T))
        extras["trained_timesteps"] = [int(schedule.timesteps[0]), int(schedule.timesteps[-1])]
    time_input = time_input or "index"
    if not callable(time_input) and time_input not in TIME_INPUTS:
        raise ValueError(f"unknown time input {time_input!r}; valid: {', '.join(TIME_INPUTS)}")
    return DiscreteVP(schedule), extras


def process_of(o, state_dict: dict | None = None, *, given=None,
               unscheduled: Callable[[], None]) -> tuple[Process, dict]:
    """The process a network was trained under, and the source extras that say where it came
    from: ``o.process`` (:func:`~biaskit.loaders.process_options.named_process`), else the
    discrete schedule of ``given`` (a schedule-like object: a network in memory's schedule= /
    scheduler=) or of the schedule options of ``o`` (:data:`~.process_options.SCHEDULE_OPTIONS`; abar_key /
    betas_key name tensors of ``state_dict``), cut to ``o.trained_timesteps``
    (:func:`discrete_process`). ``unscheduled()`` is called when no schedule source is given:
    the loader's own error, or its warning before :func:`resolve_schedule`'s DDPM linear default."""
    if o.process is not None:
        if given is not None:
            raise ValueError(f"process={o.process!r} replaces the discrete schedule: drop schedule= / "
                             "scheduler=")
        return named_process(o)
    check_no_process_options(o)
    options = [k for k in SCHEDULE_OPTIONS if getattr(o, k, None) is not None]
    if given is not None:
        if options:
            raise ValueError(f"give one schedule source, not schedule/scheduler and {', '.join(options)}")
        schedule, where = as_schedule(given), f"given {type(given).__name__}"
    else:
        if not options:
            unscheduled()
        schedule, where = resolve_schedule(state_dict, **{k: getattr(o, k, None) for k in SCHEDULE_OPTIONS})
    process, extras = discrete_process(schedule, o.trained_timesteps, o.time_input)
    return process, {"schedule_source": where, **extras}


def model_under(process: Process, net, target, *, time_input, time_scale, data_range, channels,
                source: Source, target_sign=None, sigma_data: float = 0.5, any_size: bool = False,
                freeze: bool = True, conditioning: Conditioning | None = None) -> Denoiser:
    """The denoiser of ``net`` under ``process`` (:func:`~biaskit.formulations.denoiser_under`:
    a Denoiser on a DiscreteVP's schedule, a ProcessDenoiser under any other process);
    ``target`` None: the process's default; ``target_sign``, ``sigma_data``: a process
    network's (:class:`~biaskit.formulations.ProcessDenoiser`). ``freeze``: eval mode and no
    gradients (a loaded checkpoint; a network in memory keeps its state)."""
    if freeze:
        net.eval().requires_grad_(False)
    return denoiser_under(process, net, target, time_input=time_input, time_scale=time_scale,
                          target_sign=target_sign, sigma_data=sigma_data,
                          data_range=parse_range(data_range), channels=channels,
                          name=source.name or "model", source=source,
                          any_size=any_size, conditioning=conditioning)


def make_denoiser(net, schedule, parameterization, *, time_input, time_scale, data_range, channels,
                  trained_timesteps, source: Source, any_size: bool = False, freeze: bool = True,
                  conditioning: Conditioning | None = None) -> Denoiser:
    """The Denoiser of ``net`` on ``schedule`` (cut to ``trained_timesteps``):
    :func:`model_under` its :func:`discrete_process`."""
    process, extras = discrete_process(schedule, trained_timesteps, time_input)
    return model_under(process, net, parameterization, time_input=time_input, time_scale=time_scale,
                       data_range=data_range, channels=channels,
                       source=source.with_extras(**extras) if extras else source,
                       any_size=any_size, freeze=freeze, conditioning=conditioning)


def file_source(path: Path, fmt: str, **fields) -> Source:
    """The Source of a third-party file or folder: its name, path and (for a file) sha256."""
    fields.setdefault("sha256", safeload.file_sha256(path) if path.is_file() else None)
    return Source(fmt, path=str(path), name=path.stem if path.is_file() else path.name, **fields)


def image_shape(size, channels) -> tuple[int, int, int] | None:
    """(C, H, W) from a config's image size (an int or [H, W]) and channel count; None unless both."""
    if not size or not channels:
        return None
    h, w = (size, size) if isinstance(size, int) else size
    return int(channels), int(h), int(w)

