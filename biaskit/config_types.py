"""Typed construction of the config dataclasses (:mod:`biaskit.config`) from plain dicts and
``--set`` strings: each value coerced to its field's type or a ValueError naming the dotted key."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing

import yaml

__all__ = ["coerce", "build"]


def type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(tp, value, key: str, from_text: bool = False):
    """``value`` as type ``tp`` or ValueError naming ``key``; ``from_text`` parses a --set string."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (from_text and str(value).lower() in ("none", "null")):
            if type(None) in args:
                return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(a, value, key, from_text)
            except ValueError:
                pass
        raise ValueError(f"{key}: expected {type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping of {sorted(f.name for f in dataclasses.fields(tp))}, "
                             f"got {value!r}")
        return build(tp, value, key + ".")
    if from_text and tp is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"{key}: cannot parse {value!r} as {type_name(tp)}") from None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if from_text:
            return str(value)
    elif origin is list:
        (item,) = typing.get_args(tp) or (typing.Any,)
        if isinstance(value, (list, tuple)):
            return [v if item is typing.Any else coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    elif tp is dict or origin is dict:
        if isinstance(value, dict):
            return copy.deepcopy(value)
    raise ValueError(f"{key}: expected {type_name(tp)}, got {value!r} ({type(value).__name__})")


def build(cls, d: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in d if k not in names]
    if unknown:
        raise ValueError(f"unknown config key {prefix}{unknown[0]}; valid keys"
                         f"{' in ' + prefix[:-1] if prefix else ''}: {', '.join(names)}")
    kwargs = {k: coerce(hints[k], v, prefix + k) for k, v in d.items()}
    return cls(**kwargs)
