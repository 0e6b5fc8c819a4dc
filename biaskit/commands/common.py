"""Shared pieces of the commands: model-loading flags, list-valued flags, output checks."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from ..loaders.formats import detect_format, is_run
from ..loaders.options import add_loader_arguments, flag, inapplicable, loader_kwargs_from_args


def add_model_arguments(p):
    """--device, --schedule (oracles), --step / --online-weights (biaskit runs), --any-size, the
    third-party loader flags (all from :data:`biaskit.loaders.options.OPTIONS`) and
    --settings-check."""
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    add_loader_arguments(p, section="model")
    p.add_argument("--any-size", action="store_true",
                   help="run an image model at another height/width than it was trained at "
                        "(default: a size mismatch is an error, except for diffusers and ADM UNets, "
                        "which are fully convolutional)")
    g = p.add_argument_group("third-party checkpoints")
    add_loader_arguments(g)
    g.add_argument("--settings-check", choices=("auto", "warn", "off"), default="auto",
                   help="third-party model with --data: compare the settings the weights cannot "
                        "tell (time input and scale, data range, parameterization; ADM heads and "
                        "attention order) on held-out samples; auto warns when another setting is "
                        "clearly better and stops when it is certain (default auto)")


def _given(args) -> dict:
    """{option: value} of every loader flag the user gave (both sections of the table)."""
    return {**loader_kwargs_from_args(args, "model"), **loader_kwargs_from_args(args)}


def check_model_flags(args) -> str:
    """The format of ``args.model``; ValueError naming the first flag given for a model it does not
    apply to (the table's formats): loader flags for a biaskit run or an oracle (they record their
    own settings), run flags for other models, --schedule for non-oracles, ADM flags elsewhere."""
    fmt = detect_format(args.model, getattr(args, "model_spec", None), getattr(args, "weights", None))
    bad = inapplicable(_given(args), fmt)
    if bad:
        own = fmt in ("oracle", "run")
        kind = {"oracle": "an oracle", "run": "a biaskit run"}.get(fmt, f"a third-party {fmt} checkpoint")
        raise ValueError(f"{flag(bad[0])} does not apply to {kind} ({args.model}); "
                         f"{'it records its own settings' if own else 'drop it'}")
    return fmt


def load_model(args, device, **oracle_kwargs):
    """The denoiser ``args.model`` names, on ``device``; ``oracle_kwargs`` go to an oracle's loader."""
    from ..loaders import load
    fmt = check_model_flags(args)
    kwargs = loader_kwargs(args, device)
    model = load(args.model, **kwargs, **(oracle_kwargs if fmt == "oracle" else {}))
    model.any_size = model.any_size or bool(getattr(args, "any_size", False))
    return model.to(device)


def loader_kwargs(args, device) -> dict:
    """Keyword options for :func:`biaskit.load` from the flags given (a biaskit run also gets
    ``device``); the list-valued loader flags are read by :func:`parse_list` (errors name the flag
    and the bad item)."""
    kwargs = _given(args)
    if is_run(args.model):
        kwargs["device"] = device
    for dest, item, sep, form in (("data_range", float, ",", "LO,HI with LO < HI"),
                                  ("trained_timesteps", int, ":", "LO:HI with LO <= HI")):
        if isinstance(kwargs.get(dest), str):
            values = parse_list(flag(dest), kwargs[dest], item, sep)
            lo_hi_ok = len(values) == 2 and (values[0] < values[1] if item is float else values[0] <= values[1])
            if not lo_hi_ok:
                raise ValueError(f"{flag(dest)} expects {form}, got {kwargs[dest]!r}")
            kwargs[dest] = tuple(values)
    return kwargs


def add_data_arguments(p, required: bool, what: str):
    """--data, --data-option, --data-seed: the held-out data (``what`` the command does with it)."""
    p.add_argument("--data", required=required, default=None,
                   help=f"built-in dataset name (its held-out split is {what}), a folder of images "
                   f"(all of it is {what}, at the model's image size unless --data-option size=N), "
                   f"or a file of N x D points or N x C x H x W images (.npy, .npz, .pt, "
                   f".safetensors, .csv; split into train and held-out halves by a permutation "
                   f"seeded with --data-seed; --data-option range=LO,HI gives the file's range)")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option (repeatable), e.g. dim=4, K=8, size=32, n_test=5000")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the dataset split (default 0)")


def data_options(items) -> dict:
    """``KEY=VALUE`` strings -> {key: JSON value, or the string when it is not JSON}."""
    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--data-option expects KEY=VALUE, got {item!r}")
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    return opts


def load_data(name: str, model, items=(), seed: int = 0):
    """The dataset ``name`` in the model's data range; a folder of images is the evaluation set
    (see :func:`folder_options`)."""
    from ..data import is_image_folder, load_dataset
    opts = data_options(items)
    if is_image_folder(name):
        opts = folder_options(name, model, opts)
    return load_dataset(name, seed=seed, data_range=model.data_range, **opts)


def folder_options(folder: str, model, opts: dict) -> dict:
    """A folder handed to a command is the evaluation set: every image is a test image (unless
    n_test / n_train say otherwise), read at the model's size and channels (unless size / mode
    say otherwise). Says so in one line."""
    from ..data import image_files
    opts = dict(opts)
    if "n_train" not in opts and "n_test" not in opts:
        opts.update(n_train=0, n_test=len(image_files(folder)))
    shape = model.shape
    said = []
    if shape is not None and len(shape) == 3:
        C, H, W = shape
        if "size" not in opts:
            if H != W:
                raise ValueError(f"the model takes {H}x{W} images; image folders are read square: "
                                 "pass --data-option size=N")
            opts["size"] = H
            said.append("size")
        if "mode" not in opts and C in (1, 3):
            opts["mode"] = "L" if C == 1 else "RGB"
            said.append("channels")
    size, mode = opts.get("size", 32), opts.get("mode", "RGB")
    source = f"the model's {' and '.join(said)}" if said else "given or default"
    count = f"all {opts['n_test']}" if opts.get("n_train") == 0 else f"{opts.get('n_test', 'a tenth of the')}"
    print(f"{folder}: {count} images are the evaluation set, read at {size}x{size} {mode} ({source})",
          file=sys.stderr)
    return opts


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
