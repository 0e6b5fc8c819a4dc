"""``biaskit.load(spec)``: any model spec -> :class:`biaskit.Denoiser`, through one dispatcher.

:func:`detect_format` tells the format (:mod:`biaskit.loaders.formats`); the keyword options are
checked against the one table of loader options (:mod:`biaskit.loaders.options`), which also
makes the command-line flags; each format has its own small module (``diffusers``, ``adm``,
``plugin``; oracles in :mod:`biaskit.oracle`, biaskit runs in :mod:`biaskit.checkpoint`).
Timesteps fed to a network are integer indices by default (``time_input="index"``); a network
trained on t / T takes ``time_input="scaled", time_scale=1/T``.
"""

from __future__ import annotations

from .formats import FORMATS, detect_format, plugin_spec
from .third_party import load_third_party
from .options import OPTIONS, add_loader_arguments, check_options, loader_kwargs_from_args

__all__ = ["load", "detect_format", "FORMATS", "OPTIONS", "add_loader_arguments",
           "loader_kwargs_from_args", "check_options"]


def load(spec, *, model_spec=None, weights=None, **options):
    """The denoiser ``spec`` names (a Denoiser is returned as is); ``options`` go to the format's
    loader: an oracle's are dataset options (see :func:`biaskit.oracle.from_spec`), every other
    format's are checked against :data:`OPTIONS` (one that does not apply is a ValueError).

    ``spec``: a path or model spec string, a Denoiser, or a network in memory (an ``nn.Module``
    such as a diffusers ``UNet2DModel``, or a callable ``net(x, t)``) with ``schedule=`` /
    ``scheduler=`` (a diffusers scheduler object or config) or ``process=``
    (:mod:`biaskit.loaders.memory`); None with ``model_spec=``: a plugin without a weights
    file. Any other type is a TypeError.
    """
    import os

    from ..denoiser import Denoiser
    if isinstance(spec, Denoiser):
        return spec
    if not isinstance(spec, (str, os.PathLike)) and not (spec is None and model_spec is not None):
        if callable(spec) and model_spec is None and weights is None:
            from .memory import load_module
            return load_module(spec, **options)
        raise TypeError(f"biaskit.load expects a path or model spec string, a Denoiser, or a network "
                        f"in memory (torch nn.Module or callable), got {type(spec).__name__}")
    fmt = detect_format(spec, model_spec, weights)
    if fmt == "oracle":
        from ..oracle import from_spec
        return from_spec(str(spec), **options)
    if fmt == "run":
        from ..checkpoint import load_run
        o = check_options(options, "run")
        den = load_run(spec, ema=bool(o.ema) and not o.online_weights, step=o.step, device=o.device)
        return _run_conditioning(den, o, spec)
    return load_third_party(spec, fmt, model_spec=model_spec, weights=weights, **options)


def _run_conditioning(den, o, spec):
    """A conditional run read with one class for all (class_label) or classifier-free guidance
    (guidance_scale; its null label is the run's num_classes)."""
    from dataclasses import replace

    from .build import checked_conditioning
    given = checked_conditioning(o, den.conditioning is not None, str(spec),
                                 " (its model has no num_classes)")
    if not given:
        return den
    den.conditioning = replace(den.conditioning, **{k: getattr(o, k) for k in given})
    return den
