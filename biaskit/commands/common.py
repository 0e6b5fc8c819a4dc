"""Model-loading flags and their reading, shared by the commands that take a MODEL argument."""

from __future__ import annotations

from pathlib import Path

from .. import thirdparty


def add_model_arguments(p):
    """--device, --schedule (oracles), --step / --online-weights (biaskit runs) and the
    third-party loader flags."""
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--schedule", default="linear",
                   help="schedule of an oracle model (trained models carry their own; default linear)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step of a biaskit run (default latest)")
    p.add_argument("--online-weights", action="store_true",
                   help="use a biaskit run's online weights instead of its EMA weights")
    thirdparty.add_loader_arguments(p.add_argument_group("third-party checkpoints"))


def load_model(args, device, **oracle_kwargs):
    """The denoiser ``args.model`` names, on ``device``; ``oracle_kwargs`` go to an oracle's loader."""
    from ..loading import load
    if args.model.startswith("oracle:"):
        from ..schedules import get_schedule
        return load(args.model, schedule=get_schedule(args.schedule), **oracle_kwargs).to(device)
    return load(args.model, **loader_kwargs(args, device)).to(device)


def loader_kwargs(args, device) -> dict:
    """Keyword options for :func:`biaskit.load` of a non-oracle ``args.model``."""
    path = Path(args.model)
    if path.is_dir() and (path / "biaskit.json").is_file():
        return {"ema": not args.online_weights, "step": args.step, "device": device}
    return thirdparty.loader_kwargs_from_args(args)


def model_shape(model) -> tuple[int, ...] | None:
    """The per-sample shape the model was trained on, where it says so: a biaskit run's recorded
    data shape, an oracle's shape, a diffusers UNet's ``sample_size`` or an ADM ``image_size``
    (with their ``in_channels``); None when nothing tells."""
    info = model.info
    for key in ("shape", "sample_shape", "data_shape"):
        if info.get(key):
            return tuple(int(s) for s in info[key])
    shape = getattr(model.net, "shape", None)  # oracles know their data shape
    if shape:
        return tuple(int(s) for s in shape)
    spec = info.get("dataset")
    if isinstance(spec, dict) and spec.get("shape"):
        return tuple(int(s) for s in spec["shape"])
    if info.get("run_dir"):
        from ..checkpoint import read_run_info
        shape = read_run_info(info["run_dir"]).get("shape")
        return tuple(int(s) for s in shape) if shape else None
    config = info.get("config") or {}
    size = config.get("sample_size") or config.get("image_size")  # diffusers / ADM
    channels = config.get("in_channels") or model.channels
    if size and channels:
        h, w = (size, size) if isinstance(size, int) else size
        return int(channels), int(h), int(w)
    return None
