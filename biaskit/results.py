"""Probe results on disk: ``per_timestep.csv`` (the tidy frame) and ``metadata.json``.

The CSV keeps full float precision and :func:`load_results` restores the column dtypes, so a
saved frame loads back equal to the one that was saved.
"""

from __future__ import annotations

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
