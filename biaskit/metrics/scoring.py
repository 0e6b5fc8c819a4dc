"""One table: every metric of several sample sets against a reference, and the data-vs-data
noise floor."""

from __future__ import annotations


import pandas as pd

from .. import results  # noqa: F401 - registers df.biaskit.to_long() on the tables made here
from .estimate import N_BOOT, Estimate
from .gmm import gmm_metrics
from .inception import Inception, fid, kid
from .pixel import mmd, sliced_wasserstein


METRICS = ("swd", "mmd", "fid", "kid", "gmm")
BASELINE = "data vs data"


def _score(x, reference, metric: str, *, data_range, mixture, inception, n_boot, seed, ci) -> list[Estimate]:
    if metric == "swd":
        return [sliced_wasserstein(x, reference, seed=seed, n_boot=n_boot, ci=ci)]
    if metric == "mmd":
        return [mmd(x, reference, seed=seed, n_boot=n_boot, ci=ci)]
    if metric == "fid":
        return [fid(x, reference, data_range, inception, n_boot, seed, ci)]
    if metric == "kid":
        return [kid(x, reference, data_range, inception, n_boot=n_boot, seed=seed, ci=ci)]
    return gmm_metrics(x, mixture, n_boot=n_boot, seed=seed, ci=ci)


def _check_metrics(metrics, mixture):
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; valid: {', '.join(METRICS)}")
    if "gmm" in metrics and mixture is None:
        raise ValueError("metric 'gmm' needs the true mixture (Dataset.mixture)")


def data_vs_data(held_out, reference, metrics=("swd", "mmd"), n: int | None = None, *,
                 data_range=(-1.0, 1.0), mixture=None, inception: Inception | None = None,
                 n_boot: int = N_BOOT, seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """The noise floor of every metric: the first ``n`` (default len(reference)) rows of
    ``held_out`` scored against ``reference`` as if they were samples, with their intervals, one
    row per metric with set "data vs data". ``held_out`` must be disjoint from ``reference`` and
    from the same law (e.g. another slice of the test split); n should be the size of the
    sample sets it is compared with, since every metric's floor depends on the set sizes."""
    _check_metrics(metrics, mixture)
    n = len(reference) if n is None else int(n)
    if len(held_out) < n:
        raise ValueError(f"the data-vs-data baseline needs {n} held-out rows besides the reference, "
                         f"got {len(held_out)}")
    if ("fid" in metrics or "kid" in metrics) and inception is None:
        inception = Inception()
    x = held_out[:n]
    rows = []
    for m in metrics:
        rows += [e.row(set=BASELINE, n=n) for e in _score(x, reference, m, data_range=data_range,
                                                          mixture=mixture, inception=inception,
                                                          n_boot=n_boot, seed=seed, ci=ci)]
    return pd.DataFrame(rows)


def _data_range(data_range, reference, model, metrics):
    """The samples' (lo, hi): given, else the Dataset's, else the model's; needed by FID/KID only."""
    for source in (data_range, getattr(reference, "data_range", None), getattr(model, "data_range", None)):
        if source is not None:
            return tuple(float(v) for v in source)
    if "fid" in metrics or "kid" in metrics:
        raise ValueError("data_range is unknown and FID/KID need it (Inception reads images mapped "
                         "from it to [0, 255]): pass data_range=(lo, hi), a Dataset as reference, "
                         "or model=")
    return None


def evaluate(sets: dict, reference, metrics=("swd", "mmd"), *, data_range=None, model=None,
             mixture=None, inception: Inception | None = None, n_boot: int = N_BOOT, seed: int = 0,
             ci: float = 0.95, baseline=None) -> pd.DataFrame:
    """Score each named set of samples against ``reference``; one row per (set, metric) with
    value, lo, hi, method (``biaskit.to_long`` gives the long view every result shares).

    ``reference``: held-out samples (N, ...) or a :class:`biaskit.data.Dataset` (its test split,
    and its data_range and mixture). ``gmm`` needs ``mixture`` and ignores ``reference``.
    ``data_range``: (lo, hi) of the samples. It matters only for FID and KID, which map images
    from it to Inception's [0, 255]; SWD, MMD and the GMM metrics read values as they are.
    Default: the Dataset's range, else ``model.data_range`` (a Denoiser); unknown with FID/KID
    asked is a ValueError, never a guess.
    ``baseline``: more held-out data, disjoint from ``reference``: adds the rows of
    :func:`data_vs_data` (set "data vs data") for each distinct size of the sets."""
    data_range = _data_range(data_range, reference, model, metrics)
    if mixture is None:
        mixture = getattr(reference, "mixture", None) if "gmm" in metrics else None
    if hasattr(reference, "test"):
        reference = reference.test
    _check_metrics(metrics, mixture)
    if ("fid" in metrics or "kid" in metrics) and inception is None:
        inception = Inception()
    kw = dict(data_range=data_range, mixture=mixture, inception=inception, n_boot=n_boot, seed=seed, ci=ci)
    rows = []
    for name, x in sets.items():
        for m in metrics:
            rows += [e.row(set=name, n=len(x)) for e in _score(x, reference, m, **kw)]
    out = pd.DataFrame(rows)
    if baseline is not None:
        sizes = sorted({len(x) for x in sets.values()})
        out = pd.concat([out] + [data_vs_data(baseline, reference, metrics, n, **kw) for n in sizes],
                        ignore_index=True)
    out.attrs["metadata"] = {"metrics": list(metrics), "data_range": data_range, "seed": int(seed),
                             "n_boot": int(n_boot), "ci": float(ci), "reference_n": len(reference)}
    return out
