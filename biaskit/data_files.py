"""Points (N, D) or images (N, C, H, W) from a file given as ``--data FILE``: .npy / .npz (no
pickles), .pt / .pth (``torch.load`` with ``weights_only=True``), .safetensors, .csv. Split into a
train and a held-out half by a seeded permutation; the file's range is given (``range=LO,HI``,
mapped linearly) or its values are checked against the model's (:func:`check_file_range`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .splits import Raw as _Raw, sizes as _sizes, split as _split

__all__ = ["ARRAY_SUFFIXES", "is_array_file", "array_file", "check_file_range"]

ARRAY_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".safetensors", ".csv")


def is_array_file(name) -> bool:
    """Whether a dataset name is a file of points or images (.npy, .npz, .pt, .safetensors, .csv)."""
    return Path(str(name)).suffix.lower() in ARRAY_SUFFIXES


def _read_array(path: Path, key) -> np.ndarray:
    """The array a file holds: .npy / .npz (no pickles), .pt / .pth (torch.load with
    weights_only=True), .safetensors, .csv (numbers separated by commas, one header line allowed).
    A file holding several arrays needs ``key``."""
    from . import safeload
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path) as f:
            first = f.readline()
        try:
            [float(v) for v in first.split(",")]
            skip = 0
        except ValueError:
            skip = 1  # a header line
        try:
            x = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
        except ValueError as e:
            raise ValueError(f"{path.name}: not a CSV of numbers ({e})") from None
        return x
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{path.name}: not a plain numeric .npy array ({e})") from None
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            found = {k: z[k] for k in z.files}
    else:
        obj = safeload.read_checkpoint(path)
        found = {"": obj} if torch.is_tensor(obj) else \
            {str(k): v for k, v in obj.items() if torch.is_tensor(v)} if isinstance(obj, dict) else {}
        if not found:
            raise ValueError(f"{path.name} holds a {type(obj).__name__}, not a tensor or a dict of "
                             "tensors")
    if key is not None:
        if key not in found:
            raise ValueError(f"--data-option key={key}: {path.name} holds {', '.join(found)}")
        return np.asarray(found[key])
    if len(found) != 1:
        raise ValueError(f"{path.name} holds several arrays ({', '.join(found)}): choose one with "
                         "--data-option key=NAME")
    value = next(iter(found.values()))
    return value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)


def array_file(path, seed=0, n_train=None, n_test=None, key=None, range=None) -> _Raw:
    """Points (N, D) or images (N, C, H, W) from a file (see :func:`_read_array`), split by a
    seeded permutation: ``np.random.default_rng(seed).permutation(N)``, the first n_train
    (default N - N // 2) are the train half, the next n_test (default N // 2) the held-out half.

    ``range``: the interval the file's values are in ("0,255", "0,1", or a pair), mapped
    linearly to the requested data range; without it the values are taken as they are (already
    in the requested range) and checked by :func:`load_dataset`.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    x = _read_array(path, key)
    if x.ndim not in (2, 4) or x.shape[0] < 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{path.name}: expected N x D points or N x C x H x W images (N >= 2) of "
                         f"numbers, got an array of shape {tuple(x.shape)} and type {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{path.name}: {int((~np.isfinite(x)).sum())} values are NaN or inf")
    N = len(x)
    if n_test is None:
        n_test = N // 2 if n_train is None else N - int(n_train)
    n_train, n_test = _sizes(n_train, n_test, None, None, total=N, min_train=0)
    train, test = _split(x, seed, n_train, n_test)
    return _Raw(train, test, _file_range(range, path) if range is not None else None)


def _file_range(spec, path: Path) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in (spec.split(",") if isinstance(spec, str) else spec))
    except (TypeError, ValueError):
        lo = hi = None
    if lo is None or not hi > lo:
        raise ValueError(f"--data-option range=LO,HI for {path.name} needs two numbers with LO < "
                         f"HI, got {spec!r}")
    return lo, hi


def check_file_range(x: torch.Tensor, data_range, name: str) -> None:
    """Values of a file taken as they are: outside the requested range by more than 5% of its
    width is an error; filling less than 60% of it (e.g. [0, 1] data for a [-1, 1] model) a
    warning. Points (N, D) may have tails outside: only the warning for a far-off spread."""
    lo, hi = data_range
    w = hi - lo
    xmin, xmax = float(x.min()), float(x.max())
    if x.ndim == 4 and (xmin < lo - 0.05 * w or xmax > hi + 0.05 * w):
        raise ValueError(f"{name}: values span [{xmin:.4g}, {xmax:.4g}], outside the model's data "
                         f"range [{lo:g}, {hi:g}]: give the file's range with --data-option "
                         f"range=LO,HI (e.g. range=0,255) or check --data-range")
    if xmax - xmin < 0.6 * w or (x.ndim == 2 and (xmin < lo - w or xmax > hi + w)):
        warnings.warn(f"{name}: values span [{xmin:.4g}, {xmax:.4g}] for a model whose data range "
                      f"is [{lo:g}, {hi:g}]; if the file holds another range, give it with "
                      f"--data-option range=LO,HI (then mapped linearly to the model's)",
                      stacklevel=3)
