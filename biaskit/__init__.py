"""biaskit: per-timestep estimation bias of diffusion models, against analytic ground truth."""

from . import parameterization, schedules, weighting
from .denoiser import Denoiser, Prediction
from .schedules import Schedule, get_schedule
from .weighting import get_weighting

__version__ = "0.1.0"
__all__ = ["Denoiser", "Prediction", "Schedule", "get_schedule", "get_weighting", "parameterization",
           "schedules", "weighting", "load", "probe", "compare", "data", "oracle", "plots"]


def __getattr__(name):
    # heavy pieces are imported on first use so that `import biaskit` stays fast
    import importlib
    lazy = {"load": ("loaders", "load"), "probe": ("probe", None), "compare": ("probe", "compare"),
            "data": ("data", None), "oracle": ("oracle", None), "plots": ("plots", None)}
    if name in lazy:
        mod, attr = lazy[name]
        m = importlib.import_module(f".{mod}", __name__)
        return m if attr is None else getattr(m, attr)
    raise AttributeError(f"module 'biaskit' has no attribute {name!r}")
