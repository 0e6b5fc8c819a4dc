"""Any other network: ``model_spec="module_or_file.py:factory"`` names user code (which the user
trusts: it is theirs) returning an ``nn.Module`` called as ``net(x, time_in)``; the weights file
is read safely and the process (``--process``) or schedule, parameterization, time input and data range are
stated by the user."""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from pathlib import Path

from torch import nn

from .. import safeload
from ..denoiser import Denoiser
from ..source import Source
from .build import conditioning_of, file_source, model_under, process_of
from .options import check_options
from .weights import prefix_for, read_weights

__all__ = ["resolve_factory", "load_plugin"]


def resolve_factory(model_spec: str):
    """``"path/to/file.py:name"`` or ``"package.module:name"`` -> the callable ``name``.

    This imports (runs) the user's own module: it is code the user chose, unlike a checkpoint.
    """
    target, sep, attr = str(model_spec).rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"model spec must be MODULE_OR_FILE.py:FACTORY, got {model_spec!r}")
    file = Path(target).expanduser()
    if target.endswith(".py") or file.is_file():
        if not file.is_file():
            raise FileNotFoundError(f"model spec file not found: {file}")
        spec = importlib.util.spec_from_file_location(f"biaskit_plugin_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        try:  # the user's own code: any error it raises is theirs, said in one line
            spec.loader.exec_module(module)
        except Exception as e:
            raise ValueError(f"model spec {model_spec!r}: importing {file} raised "
                             f"{type(e).__name__}: {_first_line(e)}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise ValueError(f"model spec {model_spec!r}: cannot import {target!r} ({e})") from None
    if not hasattr(module, attr):
        names = sorted(n for n in vars(module) if callable(getattr(module, n)) and not n.startswith("_"))
        raise ValueError(f"model spec {model_spec!r}: {target} has no {attr!r}; callables there: "
                         f"{', '.join(names)}")
    return getattr(module, attr)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def _call_factory(factory, model_spec: str, kwargs: dict):
    """``factory(**kwargs)``; a factory that needs other arguments, or raises, is one line."""
    import inspect
    if not callable(factory):
        raise ValueError(f"model spec {model_spec!r} names a {type(factory).__name__}, not a factory")
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as e:
        raise ValueError(f"model spec {model_spec!r}: the factory cannot be called with "
                         f"{kwargs or 'no arguments'} ({e}); give its parameters defaults (from "
                         "Python: biaskit.load(..., factory_kwargs={...}))") from None
    except ValueError:  # no signature (a builtin): just call it
        pass
    try:
        return factory(**kwargs)
    except Exception as e:
        raise ValueError(f"model spec {model_spec!r}: the factory raised {type(e).__name__}: "
                         f"{_first_line(e)}") from None


def _suggest_prefix(net: nn.Module, sd: dict, path: Path) -> None:
    """A missing or partial --state-dict-prefix: name the prefix the file's keys carry."""
    expected = list(net.state_dict())
    if not expected or all(k in sd for k in expected):
        return
    p = prefix_for(expected, sd)
    if p:
        raise ValueError(f"the keys of {path.name} carry the prefix {p!r} before the network's own "
                         f"names ({p}{expected[0]} for {expected[0]}): pass --state-dict-prefix "
                         f"{p} (added to any prefix already given)")


def load_plugin(weights, model_spec, **options) -> Denoiser:
    """A user-supplied network (``model_spec`` factory) with weights read safely from ``weights``.

    ``options``: those of :data:`biaskit.loaders.options.OPTIONS` for ``plugin``. The schedule
    comes from one of abar_key / betas_key (tensors in the checkpoint), scheduler_config,
    noise_schedule (+ diffusion_steps); without any, DDPM linear T=1000 with a warning.
    ``weights=None`` keeps the factory's own parameters.
    """
    o = check_options(options, "plugin")
    factory = resolve_factory(model_spec)
    net = _call_factory(factory, model_spec, o.factory_kwargs or {})
    if not isinstance(net, nn.Module):
        raise ValueError(f"model spec {model_spec!r} returned a {type(net).__name__}, not a torch "
                         "nn.Module")
    full = {}
    source = Source("plugin", name=Path(str(model_spec).rpartition(":")[0]).stem,
                    extras={"model_spec": str(model_spec)})
    if weights is not None:
        path = Path(weights).expanduser()
        full, sd, note = read_weights(path, state_dict_key=o.state_dict_key,
                                      state_dict_prefix=o.state_dict_prefix,
                                      rename_keys=o.rename_keys, map_location=o.map_location)
        _suggest_prefix(net, sd, path)
        safeload.load_into(net, sd, strict=o.strict, what=f"weights in {path.name}")
        source = file_source(path, "plugin", extras={**source.extras, **note})
    conditioning = conditioning_of(o, None, "y", str(model_spec))
    process, extras = process_of(o, full, unscheduled=_assume_ddpm)
    return model_under(process, net.to(o.device), o.parameterization, time_input=o.time_input,
                       time_scale=o.time_scale, target_sign=o.target_sign, data_range=o.data_range,
                       channels=o.channels, source=source.with_extras(**extras),
                       conditioning=conditioning)


def _assume_ddpm() -> None:
    """A plugin without a schedule or process: warn that DDPM linear, T=1000 is assumed."""
    # the frames up to the caller of biaskit.load: here, process_of, load_plugin, load_third_party, load
    warnings.warn("no schedule given for the plugin model; assuming DDPM linear, T=1000 (pass "
                  "--noise-schedule/--diffusion-steps, --abar-key, --betas-key or "
                  "--scheduler-config)", stacklevel=6)
