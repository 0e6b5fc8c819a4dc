"""The loader options that name a model's continuous process: ``process=`` (``--process``: a
name of :data:`biaskit.processes.PROCESSES`, or from Python a :class:`~biaskit.processes.Process`
object) and the flags that set its parameters (``--flow-shift``, ``--sigma-min``, ...): one per
keyword of a named process's constructor (:func:`keyword_options`, as its config keys are
:meth:`~biaskit.processes.Process.keys`), so a new keyword is a new flag with no edit here.

A loader resolves *which* process a network was trained under once, here (:func:`named_process`)
or from its schedule options (:func:`~biaskit.loaders.build.discrete_process`: a
:class:`~biaskit.processes.DiscreteVP`; the one choice between the two:
:func:`~biaskit.loaders.build.process_of`), then builds its denoiser with one call,
:func:`~biaskit.loaders.build.model_under`, which the process's class decides.
"""

from __future__ import annotations

from typing import Callable

from ..processes import PROCESSES, Process, get_process

__all__ = ["SCHEDULE_OPTIONS", "SCHEDULE_SOURCES", "RENAMED", "keyword_options", "PROCESS_OPTIONS",
           "process_kwargs", "named_process", "check_no_process_options", "spelled"]


def spelled(name: str) -> str:
    """The command-line spelling of a loader option: flow_shift -> --flow-shift
    (:func:`~biaskit.loaders.options.flag` keeps a pasted guided-diffusion flag's own)."""
    return "--" + name.replace("_", "-")

# the loader options that name a discrete schedule's source or its bounds (a format takes some)
SCHEDULE_OPTIONS = ("noise_schedule", "diffusion_steps", "abar_key", "betas_key", "scheduler_config",
                    "beta_start", "beta_end")
# the options that set a discrete schedule (its source, and the steps kept of it), which a named
# process replaces
SCHEDULE_SOURCES = SCHEDULE_OPTIONS + ("trained_timesteps",)
# the loader options named otherwise than the process keyword they set, with their value's
# conversion (a command line reads --flow-shift, --flow-time forward|reversed, --cosine-s)
RENAMED: dict[str, tuple[str, Callable]] = {
    "flow_shift": ("shift", float), "flow_time": ("reverse", lambda v: v == "reversed"),
    "cosine_s": ("s", float)}


def keyword_options(processes: dict[str, type[Process]] = PROCESSES) -> dict[str, tuple[str, Callable]]:
    """loader option -> (process keyword, conversion) for every constructor keyword of
    ``processes`` (:meth:`~biaskit.processes.Process.key_types`): :data:`RENAMED`'s, every
    other keyword under its own name, converted by its annotated type."""
    out = dict(RENAMED)
    renamed = {key for key, _ in RENAMED.values()}
    for cls in processes.values():
        for key, kind in cls.key_types().items():
            if key not in renamed:
                out.setdefault(key, (key, kind))
    return out


# loader option -> (process keyword, conversion): the options that set a process's parameters
# (target_sign sets how its network's output is read, not the process)
PROCESS_OPTIONS = {**keyword_options(), "target_sign": (None, int)}


def _given(o, keyed: bool = True, table: dict = PROCESS_OPTIONS) -> list[str]:
    """The process options of ``o`` that are set (``keyed``: only those that set a keyword)."""
    return [k for k, (key, _) in table.items()
            if getattr(o, k, None) is not None and (key is not None or not keyed)]


def process_kwargs(o, processes: dict[str, type[Process]] = PROCESSES) -> dict:
    """The keywords of process ``o.process`` (a name of ``processes``) from the loader options
    that set them; a ValueError naming the flags that do not apply to it and those that do."""
    table = PROCESS_OPTIONS if processes is PROCESSES else keyword_options(processes)
    keys = processes[o.process].keys()
    given = _given(o, table=table)
    bad = [k for k in given if table[k][0] not in keys]
    if bad:
        valid = [spelled(k) for k, (key, _) in table.items() if key in keys]
        raise ValueError(f"{', '.join(spelled(k) for k in bad)} do(es) not apply to --process "
                         f"{o.process}; it takes {', '.join(valid) or 'none of these'}")
    return {table[k][0]: table[k][1](getattr(o, k)) for k in given}


def named_process(o) -> tuple[Process, dict]:
    """The process of loader options ``o`` whose ``process`` is set, and the source extras that
    record it: a name (its parameters from the flags, :func:`process_kwargs`) or a Process
    object (used as is: its parameters are its own). A ValueError when a schedule option is
    also given, or the name is unknown."""
    clash = [k for k in SCHEDULE_SOURCES if getattr(o, k, None) is not None]
    if clash:
        raise ValueError(f"process={o.process!r} replaces the discrete schedule: drop "
                         f"{', '.join(clash)}")
    if isinstance(o.process, Process):
        given = _given(o)
        if given:
            raise ValueError(f"{', '.join(spelled(k) for k in given)} set(s) a named process's "
                             f"parameters; process={o.process!r} is an object with its own")
        return o.process, {"process": o.process.describe()}
    if o.process not in PROCESSES:
        raise ValueError(f"process={o.process!r} is not a process name ({', '.join(sorted(PROCESSES))}) "
                         "nor a biaskit.processes.Process object")
    return get_process(o.process, **process_kwargs(o)), {"process": o.process}


def check_no_process_options(o) -> None:
    """A ValueError naming the process flags given to a network on a discrete schedule."""
    given = _given(o, keyed=False)
    if given:
        raise ValueError(f"{', '.join(spelled(k) for k in given)} need(s) --process (the continuous "
                         "process the network was trained under)")
