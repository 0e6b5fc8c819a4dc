"""A network already in memory -> :class:`~biaskit.Denoiser`: ``biaskit.load(net, ...)``.

``net`` is any ``nn.Module`` (or callable) called as ``net(x_t, time_in)``, for instance a
diffusers ``UNet2DModel`` (its ``UNet2DOutput.sample`` is unwrapped by the Denoiser). What the
network cannot say is stated, never assumed: the schedule (``schedule=``: a Schedule or a name;
``scheduler=``: a diffusers scheduler object or config dict; or ``noise_schedule=`` /
``scheduler_config=``) or the continuous process (``process=``: a name or a
:class:`~biaskit.processes.Process` object, or a flow-matching / EDM diffusers scheduler); the
process's class decides the denoiser (:func:`~biaskit.loaders.build.model_under`). The
parameterization defaults to the scheduler's ``prediction_type``, else the process's default
(eps on a schedule). A diffusers model gives its per-sample shape (``in_channels``,
``sample_size``). The network is not frozen nor put in eval mode (the probe does that for its
own duration), so it can keep training.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..denoiser import Denoiser
from ..schedules import PROCESS_SCHEDULERS, scheduler_config
from ..source import Source
from .build import conditioning_of, image_shape, model_under, process_of
from .options import check_options

__all__ = ["load_module"]


def _diffusers_config(net) -> dict:
    """A diffusers model's config (``in_channels``, ``sample_size``, ...), {} for other networks."""
    config = getattr(net, "config", None)
    return dict(config) if isinstance(config, Mapping) and hasattr(net, "from_config") else {}


def _scheduler(o) -> tuple[dict | None, object]:
    """(config dict of a diffusers scheduler or None, the schedule-like object) from schedule= /
    scheduler=; both given is an error."""
    if o.schedule is not None and o.scheduler is not None:
        raise ValueError("give schedule= or scheduler=, not both")
    given = o.scheduler if o.scheduler is not None else o.schedule
    if given is None:
        return None, None
    cfg = scheduler_config(given)
    if o.scheduler is not None and cfg is None:
        raise TypeError(f"scheduler= expects a diffusers scheduler object or its config dict, got "
                        f"{type(given).__name__}")
    return cfg, given


def load_module(net, **options) -> Denoiser:
    """``net`` (an nn.Module or callable in memory) as a Denoiser; ``options``: those of
    :data:`~biaskit.loaders.options.OPTIONS` for ``module`` (schedule / scheduler / process,
    parameterization, time_input, data_range, name, shape, ...)."""
    if not callable(net) or isinstance(net, type):
        what = f"the class {net.__name__} (build an instance)" if isinstance(net, type) else type(net).__name__
        raise TypeError(f"expected a torch nn.Module or a callable net(x, t), got {what}")
    o = check_options(options, "module")
    config = _diffusers_config(net)
    cfg, given = _scheduler(o)
    channels = o.channels or config.get("in_channels")
    shape = o.shape or image_shape(config.get("sample_size"), config.get("in_channels"))
    # a class-conditional diffusers model gets class_label= for all, or each sample's own label
    labelled = bool(config.get("num_class_embeds") or config.get("class_embed_type"))
    conditioning = conditioning_of(o, True if labelled else (False if config else None),
                                   "class_labels" if config else "y", type(net).__name__)
    if config.get("time_embedding_type", "positional") == "fourier" and o.time_input is None:
        raise ValueError(f"the {type(net).__name__} uses Fourier (continuous-sigma) time features; "
                         "state how it takes time with time_input=")
    name = o.name or type(net).__name__
    source = Source("module", name=name, shape=shape,
                    extras={"class": type(net).__name__, **({"config": config} if config else {}),
                            **({"scheduler": cfg.get("_class_name", "config")} if cfg else {})})
    if o.device is not None:
        net = net.to(o.device)
    if cfg is not None and cfg.get("_class_name") in PROCESS_SCHEDULERS:
        from .process_folders import process_denoiser
        return process_denoiser(net, cfg, o, source, channels, conditioning, freeze=False)
    process, extras = process_of(o, given=given, unscheduled=_unscheduled(type(net).__name__))
    kind = o.parameterization or (cfg or {}).get("prediction_type")
    return model_under(process, net, kind, time_input=o.time_input, time_scale=o.time_scale,
                       target_sign=o.target_sign, data_range=o.data_range, channels=channels,
                       source=source.with_extras(**extras), any_size=bool(config), freeze=False,
                       conditioning=conditioning)


def _unscheduled(what: str):
    """A network in memory without a schedule or process: the error naming the ways to give one."""
    def refuse():
        raise ValueError(f"biaskit.load({what}) needs the schedule it was trained with: "
                         "schedule= (a Schedule or a name), scheduler= (a diffusers scheduler or its "
                         "config), noise_schedule= / scheduler_config=, or process=")
    return refuse
