"""Shared pieces of the commands: model-loading flags, list-valued flags, output checks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .. import thirdparty


def add_model_arguments(p):
    """--device, --schedule (oracles), --step / --online-weights (biaskit runs), --any-size and
    the third-party loader flags."""
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--schedule", default=None,
                   help="schedule of an oracle model (trained models carry their own; default linear)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step of a biaskit run (default latest)")
    p.add_argument("--online-weights", action="store_true",
                   help="use a biaskit run's online weights instead of its EMA weights")
    p.add_argument("--any-size", action="store_true",
                   help="run an image model at another height/width than it was trained at "
                        "(default: a size mismatch is an error)")
    thirdparty.add_loader_arguments(p.add_argument_group("third-party checkpoints"))


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _is_run(model: str) -> bool:
    path = Path(model)
    return path.is_dir() and (path / "biaskit.json").is_file()


def check_model_flags(args):
    """ValueError naming a flag given for a model it does not apply to: loader flags for a
    biaskit run or an oracle (they record their own settings), run flags for other models,
    --schedule for non-oracles."""
    oracle, run = args.model.startswith("oracle:"), _is_run(args.model)
    kind = "an oracle" if oracle else "a biaskit run" if run else "a third-party checkpoint"
    given = list(thirdparty.loader_kwargs_from_args(args)) if (oracle or run) else []
    given += [d for d in ("step", "online_weights") if not run and getattr(args, d)]
    given += ["schedule"] if not oracle and args.schedule is not None else []
    if given:
        raise ValueError(f"{_flag(given[0])} does not apply to {kind} ({args.model}); "
                         f"{'it records its own settings' if (oracle or run) else 'drop it'}")


def load_model(args, device, **oracle_kwargs):
    """The denoiser ``args.model`` names, on ``device``; ``oracle_kwargs`` go to an oracle's loader."""
    from ..loading import load
    check_model_flags(args)
    if args.model.startswith("oracle:"):
        from ..schedules import get_schedule
        model = load(args.model, schedule=get_schedule(args.schedule or "linear"), **oracle_kwargs)
    else:
        model = load(args.model, **loader_kwargs(args, device))
    model.any_size = bool(getattr(args, "any_size", False))
    return model.to(device)


def loader_kwargs(args, device) -> dict:
    """Keyword options for :func:`biaskit.load` of a non-oracle ``args.model``; the list-valued
    loader flags are read by :func:`parse_list` (errors name the flag and the bad item)."""
    if _is_run(args.model):
        return {"ema": not args.online_weights, "step": args.step, "device": device}
    kwargs = thirdparty.loader_kwargs_from_args(args)
    for dest, item, sep, form in (("data_range", float, ",", "LO,HI with LO < HI"),
                                  ("trained_timesteps", int, ":", "LO:HI with LO <= HI")):
        if isinstance(kwargs.get(dest), str):
            values = parse_list(_flag(dest), kwargs[dest], item, sep)
            lo_hi_ok = len(values) == 2 and (values[0] < values[1] if item is float else values[0] <= values[1])
            if not lo_hi_ok:
                raise ValueError(f"{_flag(dest)} expects {form}, got {kwargs[dest]!r}")
            kwargs[dest] = tuple(values)
    return kwargs


def parse_list(flag: str, text, item=int, sep: str = ",") -> list:
    """A list given to ``flag`` (``--timesteps 0,250,999``; ``sep`` between items) as a list of
    ``item``; ValueError naming the flag and the first bad item."""
    items = [s.strip() for s in str(text).split(sep)]
    if not any(items):
        raise ValueError(f"{flag} is empty")
    out = []
    for s in items:
        if not s:
            continue
        try:
            out.append(item(s))
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(item, item.__name__)
            raise ValueError(f"{flag}: {s!r} is not {kind} (in {text!r})") from None
    return out


def check_out(path, flag: str = "--out") -> Path:
    """``path`` as a folder we can write, checked before any work: ValueError when it is an
    existing file or cannot be created or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is an existing file, not a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {path}: {existing} is a file, so the folder cannot be created")
    try:  # a real write: access() says yes to root on read-only mounts
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".biaskit-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot write in {existing} ({e.strerror})") from None
    return path
