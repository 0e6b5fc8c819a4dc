"""Weights files holding one or several state dicts: choosing one, stripping a key prefix, and
naming the prefix a file's keys carry when they do not match the network."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .. import safeload

__all__ = ["WEIGHT_SUFFIXES", "read_weights", "apply_renames", "parse_renames",
           "state_dict_candidates", "shared_prefix",
           "prefix_for"]

WEIGHT_SUFFIXES = safeload.SAFETENSORS_SUFFIXES + safeload.PICKLE_SUFFIXES

def _flatten(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of nested dicts under its dotted path ({'ema': {'w': t}} -> {'ema.w': t})."""
    out = {}
    for k, v in (obj.items() if isinstance(obj, dict) else ()):
        if torch.is_tensor(v):
            out[f"{prefix}{k}"] = v
        elif isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
    return out


def state_dict_candidates(obj) -> dict[str, dict]:
    """The state dicts a checkpoint object holds: {"": obj} for a plain state dict, else
    {key: sub-dict} for each entry that is itself a dict of tensors ({'model': ..., 'ema': ...})."""
    if isinstance(obj, dict) and any(torch.is_tensor(v) for v in obj.values()):
        return {"": obj}
    if not isinstance(obj, dict):
        return {}
    return {str(k): v for k, v in obj.items() if isinstance(v, dict) and _flatten(v)}


def shared_prefix(keys) -> str:
    """The longest dotted prefix every key starts with ('network.' for network.a, network.b.c)."""
    parts = [k.split(".")[:-1] for k in keys]
    common = []
    for level in zip(*parts) if parts else ():
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "".join(c + "." for c in common)


def _strip(sd: dict, prefix: str, path: Path) -> dict:
    out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not out:
        common = shared_prefix(sd)
        hint = (f"; the keys share the prefix {common!r}: try --state-dict-prefix {common}" if common
                else " (the keys share no prefix: leave --state-dict-prefix out)")
        raise ValueError(f"no key of {path.name} starts with the prefix {prefix!r}; keys found: "
                         f"{safeload.key_summary(sd)}{hint}")
    return out


def parse_renames(spec) -> list[tuple[str, str]]:
    """``"a.=b.,attn.to_q=attn.q"`` (or a dict / list of pairs) -> [(old, new), ...]; ValueError
    naming --rename-keys for a malformed rule (each needs a non-empty OLD)."""
    if isinstance(spec, dict):
        pairs = list(spec.items())
    elif isinstance(spec, str):
        pairs = []
        for rule in spec.split(","):
            old, sep, new = rule.strip().partition("=")
            if not sep or not old:
                raise ValueError(f"--rename-keys expects OLD=NEW[,OLD=NEW...] with OLD not empty, "
                                 f"got {rule!r} in {spec!r}")
            pairs.append((old, new))
    else:
        pairs = [tuple(p) for p in spec]
    return [(str(o), str(n)) for o, n in pairs]


def apply_renames(sd: dict, renames, path: Path) -> dict:
    """``sd`` with, for each rule (old, new) in order, the text ``old`` replaced by ``new`` in every
    key. A rule that matches no key, or renames that make two keys one, are a ValueError."""
    for old, new in parse_renames(renames):
        if not any(old in k for k in sd):
            raise ValueError(f"--rename-keys {old}={new}: no key of {path.name} contains {old!r}; "
                             f"keys found: {safeload.key_summary(sd)}")
        out = {}
        for k, v in sd.items():
            key = k.replace(old, new)
            if key in out:
                raise ValueError(f"--rename-keys {old}={new} makes two keys of {path.name} one: "
                                 f"{key!r}")
            out[key] = v
        sd = out
    return sd


def read_weights(path, *, state_dict_key=None, state_dict_prefix=None, rename_keys=None,
                 map_location="cpu") -> tuple[dict, dict, dict]:
    """(all tensors by dotted name, the chosen state dict, a note) from a weights file.

    A file holding several state dicts ({'model': ..., 'ema': ...}) needs ``state_dict_key``, or
    ``state_dict_prefix`` starting with one of the keys ('ema.'); without either the EMA one is
    taken when exactly one key names EMA (and the note says so), otherwise the keys are listed.
    Then the prefix is stripped and ``rename_keys`` applied (:func:`apply_renames`).
    """
    path = Path(path).expanduser()
    obj = safeload.read_checkpoint(path, map_location)
    full, found = _flatten(obj), state_dict_candidates(obj)
    if not found:
        safeload.unwrap_state_dict(obj, path)  # raises the not-a-state-dict error
    note = {}
    if state_dict_key is not None:
        if state_dict_key not in found:
            raise ValueError(f"--state-dict-key {state_dict_key!r} is not in {path.name}; it holds "
                             f"{_listing(found)}")
        key = state_dict_key
    elif state_dict_prefix or len(found) == 1:
        key = None if len(found) > 1 else next(iter(found))
    else:
        ema = [k for k in found if "ema" in k.lower()]
        if len(ema) != 1:
            raise ValueError(f"{path.name} holds several state dicts ({_listing(found)}); choose one "
                             "with --state-dict-key KEY (Python: state_dict_key=)")
        key = ema[0]
        note = {"state_dict_key": key, "state_dict_keys": list(found)}
        warnings.warn(f"{path.name} holds {_listing(found)}: using {key!r} (the EMA weights); pass "
                      f"--state-dict-key to choose another", stacklevel=3)
    sd = full if key is None else (_flatten(found[key]) if key else _flatten(obj))
    if state_dict_prefix:
        sd = _strip(sd, state_dict_prefix, path)
    if rename_keys:
        sd = apply_renames(sd, rename_keys, path)
        note = {**note, "rename_keys": [list(r) for r in parse_renames(rename_keys)]}
    return full, sd, note


def _listing(found: dict) -> str:
    return ", ".join(f"{k!r} ({len(_flatten(v))} tensors)" for k, v in found.items())


def prefix_for(expected, keys) -> str | None:
    """The prefix p with p + k in ``keys`` for every expected key k (None if there is none)."""
    expected, keys = list(expected), set(keys)
    if not expected:
        return None
    probe = expected[0]
    for k in keys:
        if k.endswith(probe):
            p = k[: len(k) - len(probe)]
            if p and all(p + e in keys for e in expected):
                return p
    return None

