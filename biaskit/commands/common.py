"""Model-loading flags and their reading, shared by the commands that take a MODEL argument."""

from __future__ import annotations

import json
import sys
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


def add_data_arguments(p, required: bool, what: str):
    """--data, --data-option, --data-seed: the held-out data (``what`` the command does with it)."""
    p.add_argument("--data", required=required, default=None,
                   help=f"built-in dataset name (its held-out split is {what}) or a folder of images "
                   f"(all of it is {what}, at the model's image size unless --data-option size=N)")
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
    shape = model_shape(model)
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
