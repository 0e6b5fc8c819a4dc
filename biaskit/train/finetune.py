"""Fine-tuning a loaded model (``init.path``, ``biaskit train --init``): the model is read by
:func:`biaskit.load` with the loader options of ``init.options``, and the trainer continues its own
network on its own schedule (only the timesteps it was trained on) and time input, EMA started
from its weights; a run records ``init`` in its biaskit.json, and
:func:`biaskit.checkpoint.load_run` rebuilds the network through the same loader."""

from __future__ import annotations

from pathlib import Path

from .. import parameterization as P
from ..config import TrainConfig
from ..denoiser import Denoiser
from ..processes import DiscreteVP


def load_init(cfg: TrainConfig) -> Denoiser:
    """The model fine-tuning starts from (init.path, init.options), on the CPU, in train mode."""
    from ..loaders import load
    try:
        loaded = load(cfg.init.path, **cfg.init.options)
    except TypeError as e:  # an option that is not a loader keyword
        raise ValueError(f"init.options: {e}") from None
    if type(loaded) is not Denoiser:
        raise ValueError(f"init.path: {cfg.init.path} loads as a {type(loaded).__name__}; fine-tuning "
                         "takes a trained network on a discrete VP schedule (not an oracle or a "
                         "continuous-process model)")
    if not any(p.is_floating_point() for p in loaded.net.parameters()):
        raise ValueError(f"init.path: {cfg.init.path} has no trainable parameters (an oracle?)")
    return loaded


def check_init(cfg: TrainConfig, loaded: Denoiser, data) -> None:
    """Refuse what the loaded model cannot be fine-tuned with: another target, a continuous
    process, data of another shape or range."""
    if cfg.model.config:
        raise ValueError(f"model.config: fine-tuning trains the loaded network as it is; drop "
                         f"{', '.join(sorted(cfg.model.config))} (init.path={cfg.init.path})")
    if cfg.process.name != DiscreteVP.key:
        raise ValueError(f"process.name: fine-tuning continues the loaded model's discrete schedule; "
                         f"drop process.name={cfg.process.name!r}")
    if P.canonical(cfg.loss.target) != loaded.parameterization:
        raise ValueError(f"loss.target: the loaded model predicts {loaded.parameterization!r}, the "
                         f"config trains {cfg.loss.target!r}; set loss.target={loaded.parameterization}")
    loaded.check_shape(data.shape)
    if tuple(data.data_range) != tuple(loaded.data_range):
        raise ValueError(f"data.options.data_range: the data lie in {list(data.data_range)}, the loaded "
                         f"model in {list(loaded.data_range)} (its --data-range); they must agree")


_PATH_OPTIONS = ("weights", "scheduler_config")


def _absolute(text: str) -> str:
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


def recorded_init(cfg: TrainConfig) -> dict:
    """init.path and its loader options as the run records them (biaskit.json ``init``), with the
    files they name made absolute, so the run loads back from any working directory."""
    options = dict(cfg.init.options)
    for key in _PATH_OPTIONS:
        if isinstance(options.get(key), str):
            options[key] = _absolute(options[key])
    spec = options.get("model_spec")
    if isinstance(spec, str) and ":" in spec:  # FILE.py:FACTORY (a module:factory is left alone)
        file, _, factory = spec.rpartition(":")
        options["model_spec"] = f"{_absolute(file)}:{factory}"
    return {"path": _absolute(cfg.init.path), "options": options}
