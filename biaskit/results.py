"""Probe results on disk: ``per_timestep.csv`` (the tidy frame) and ``metadata.json``; the long
view of every result (:func:`to_long`, also ``df.biaskit.to_long()``).

The CSV keeps full float precision and :func:`load_results` restores the column dtypes, so a
saved frame loads back equal to the one that was saved.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .atomic import atomic_paths

TABLE, METADATA = "per_timestep.csv", "metadata.json"
_TEXT = ("model", "kind", "reference")


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer, np.bool_)):
        return v.item()
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else str(v)
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, torch.Tensor):
        return _jsonable(v.tolist())
    if isinstance(v, (Path, torch.device, torch.dtype)):
        return str(v)
    if v is None or isinstance(v, (str, int, bool)):
        return v
    return repr(v)


def save_results(df: pd.DataFrame, out_dir, metadata: dict | None = None) -> Path:
    """Write DIR/per_timestep.csv and DIR/metadata.json (``metadata`` defaults to
    ``df.attrs["metadata"]``). Returns DIR."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = df.attrs.get("metadata", {}) if metadata is None else metadata
    text = json.dumps(_jsonable(meta), indent=1)
    with atomic_paths(out / TABLE, out / METADATA) as (table, metadata):  # both or neither
        df.to_csv(table, index=False)
        metadata.write_text(text)
    return out


def load_results(out_dir) -> tuple[pd.DataFrame, dict]:
    """(frame, metadata) saved by :func:`save_results`; the frame also carries the metadata in
    ``df.attrs["metadata"]``."""
    out = Path(out_dir)
    if not (out / TABLE).is_file():
        raise FileNotFoundError(f"no {TABLE} in {out} (is it a probe output directory?)")
    df = pd.read_csv(out / TABLE, float_precision="round_trip",
                     dtype={c: str for c in _TEXT}, keep_default_na=False, na_values=["", "NaN", "nan"])
    for c in _TEXT:
        if c in df:
            df[c] = df[c].fillna("")
    meta = json.loads((out / METADATA).read_text()) if (out / METADATA).is_file() else {}
    df.attrs["metadata"] = meta
    return df, meta


# --- one long view of every result -------------------------------------------------------------
# the columns that say which row it is (everything else is a statistic, or its _lo / _hi)
KEYS = ("step", "kind", "reference_step", "model", "reference", "set", "weighting", "t",
        "schedule_index", "snr", "logsnr", "n", "sampler", "steps", "clip", "protocol", "training_step")


def to_long(df: pd.DataFrame) -> pd.DataFrame:
    """The long (tidy) view of a result: one row per (row of ``df``, statistic) with columns
    ``statistic, value, lo, hi`` after the key columns of ``df`` (model, t, snr, logsnr, n, ...).

    Probe, compare and monitor frames are wide (``stat``, ``stat_lo``, ``stat_hi``); metric
    tables (:func:`biaskit.metrics.evaluate`) already have one row per metric, whose ``metric``
    becomes ``statistic`` (their n_boot, ci and method columns stay keys). A statistic without an
    interval has lo = hi = NaN. ``attrs`` (the metadata) travel with the view.
    """
    if {"metric", "value", "lo", "hi"} <= set(df.columns):
        out = df.rename(columns={"metric": "statistic"})
        keys = [c for c in out.columns if c not in ("statistic", "value", "lo", "hi")]
        out = out[keys + ["statistic", "value", "lo", "hi"]].reset_index(drop=True)
    else:
        keys = [c for c in df.columns if c in KEYS]
        stats = [c for c in df.columns if c not in KEYS and not c.endswith(("_lo", "_hi"))]
        parts = []
        for s in stats:
            part = df[keys].assign(statistic=s, value=df[s].astype(float),
                                   lo=df[f"{s}_lo"].astype(float) if f"{s}_lo" in df else np.nan,
                                   hi=df[f"{s}_hi"].astype(float) if f"{s}_hi" in df else np.nan)
            parts.append(part)
        out = pd.concat(parts, ignore_index=True) if parts else df[keys].assign(statistic=[], value=[], lo=[], hi=[])
    out.attrs = copy.deepcopy(df.attrs)
    return out


def to_xarray(df: pd.DataFrame):
    """The long view as an ``xarray.Dataset`` (variables value, lo, hi over the key columns that
    vary and ``statistic``; the metadata as JSON in ``attrs``). Needs ``xarray`` installed."""
    try:
        import xarray as xr
    except ImportError:
        raise ImportError("to_xarray needs xarray (pip install xarray); to_long() gives the same "
                          "table as a pandas DataFrame") from None
    long = to_long(df)
    dims = [c for c in ("step", "kind", "model", "set", "t") if c in long] + ["statistic"]
    ds = xr.Dataset.from_dataframe(long.set_index(dims)[["value", "lo", "hi"]])
    ds.attrs = {k: json.dumps(_jsonable(v)) for k, v in long.attrs.items()}
    return ds


@pd.api.extensions.register_dataframe_accessor("biaskit")
class BiaskitAccessor:
    """``df.biaskit.to_long()`` / ``df.biaskit.to_xarray()`` on any biaskit result frame."""

    def __init__(self, df: pd.DataFrame):
        self._df = df

    def to_long(self) -> pd.DataFrame:
        return to_long(self._df)

    def to_xarray(self):
        return to_xarray(self._df)
