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
