"""biaskit: per-timestep estimation bias of diffusion models, against analytic ground truth.

``import biaskit`` loads only the light core (schedules, parameterization, weighting, Denoiser);
every other module named in the README (``biaskit.sampling``, ``.metrics``, ``.train``,
``.config``, ``.processes``, ``.plots``, ...) is imported on first attribute access.
``biaskit.probe(denoiser, data)`` probes (the module is callable; ``biaskit.probe.statistics`` and
the other submodules import as before), ``biaskit.load`` reads a model from a path or from memory.
"""

import importlib
import importlib.util

from . import parameterization, schedules, weighting
from .denoiser import Denoiser, Prediction
from .schedules import Schedule, get_schedule
from .weighting import get_weighting

__version__ = "0.1.0"

# name -> (module, attribute or None for the module itself), imported on first use
_LAZY = {"load": ("loaders", "load"), "compare": ("probe", "compare"),
         "ProbeOptions": ("probe", "ProbeOptions"), "Monitor": ("monitor", "Monitor"),
         "ProcessDenoiser": ("formulations", "ProcessDenoiser"), "to_long": ("results", "to_long")}

__all__ = ["Denoiser", "Prediction", "Schedule", "get_schedule", "get_weighting", "parameterization",
           "schedules", "weighting", "probe", "data", "oracle", "plots", "sampling", "metrics",
           "train", "config", "processes", "formulations", "loaders", *_LAZY]


def __getattr__(name):
    # heavy pieces are imported on first use so that `import biaskit` stays fast
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{mod}", __name__), attr)
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'biaskit' has no attribute {name!r}")


def __dir__():
    import pkgutil
    return sorted(set(globals()) | set(__all__) | {m.name for m in pkgutil.iter_modules(__path__)})
