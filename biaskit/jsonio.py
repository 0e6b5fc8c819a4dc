"""Plain data to and from JSON, in one place: the canonical form that cache keys and dataset
specs are made of, and atomic JSON files."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

__all__ = ["canonical", "write_json"]


def canonical(config) -> Any:
    """A JSON-able copy of ``config``: dataclasses as dicts, tuples as lists, paths as strings."""
    if is_dataclass(config) and not isinstance(config, type):
        config = asdict(config)
    if isinstance(config, dict):
        return {str(k): canonical(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [canonical(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    if hasattr(config, "item") and callable(config.item):  # numpy / torch scalars
        return config.item()
    if config is None or isinstance(config, (str, int, float, bool)):
        return config
    raise TypeError(f"cannot key a cache entry on a {type(config).__name__}: {config!r}")


def write_json(path, obj: dict):
    """Write JSON atomically (:mod:`biaskit.atomic`: temporary file in the same folder, then rename)."""
    from .atomic import write_text
    write_text(path, json.dumps(obj, indent=1))
