"""Read checkpoints without running code from them, and load them into modules with errors by name.

Safety rules (a checkpoint from the internet is untrusted input):
- ``.safetensors`` is read with :mod:`safetensors` (plain tensors, no code at all).
- ``.pt/.pth/.bin/.ckpt`` go only through ``torch.load(weights_only=True, map_location=...)``:
  tensors, numbers, strings and containers load; a pickle that needs any other Python object
  (and could therefore run code while being read) is refused before anything in it runs.
- Missing files, truncated files, missing / unexpected keys and shape mismatches raise
  ``FileNotFoundError`` / ``ValueError`` naming the file, key and shapes (no deep torch traceback).
"""

from __future__ import annotations

import hashlib
import pickle
import re
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch import nn

__all__ = ["SAFETENSORS_SUFFIXES", "PICKLE_SUFFIXES", "read_state_dict", "read_checkpoint",
           "unwrap_state_dict", "strip_prefix", "load_into", "check_state_dict", "file_sha256",
           "key_summary"]

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# containers training scripts wrap a state dict in (Lightning, EMA trainers, DDP savers)
_WRAPPERS = ("state_dict", "model_state_dict", "model", "ema", "model_ema", "ema_model", "net",
             "params", "module")

_CONVERT_HINT = (
    "If you trust the file, convert it to safetensors in a trusted, sandboxed environment: load it "
    "there with torch's full unpickler (weights_only=False, map_location='cpu'), keep the tensors of "
    "its state dict and write them with safetensors.torch.save_file(..., 'OUT.safetensors'); "
    "then pass OUT.safetensors instead.")


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _existing_file(path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    return path


def _read_safetensors(path: Path, map_location) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    device = str(map_location) if map_location is not None else "cpu"
    try:
        return load_file(str(path), device=device)
    except SafetensorError as e:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") \
            from None


def _refusal(path: Path, err: Exception) -> ValueError:
    detail = re.search(r"Unsupported (global: GLOBAL [\w.]+|operand \d+)", str(err))
    why = f" (it asks for {detail.group(0)})" if detail else ""
    return ValueError(
        f"refusing to load {path}: it is a pickle that needs Python objects other than tensors"
        f"{why}; unpickling those can run arbitrary code, so biaskit only reads pickles with "
        f"torch.load(weights_only=True) and nothing in this file was executed.\n{_CONVERT_HINT}")


def _read_pickle(path: Path, map_location) -> object:
    try:
        with warnings.catch_warnings():  # torch's note on raw pickles; the refusal below says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, weights_only=True, map_location=map_location)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            raise _refusal(path, e) from None
        raise ValueError(f"{path} could not be unpickled (truncated or corrupt?): {e}") from None
    except PermissionError:
        raise
    except (EOFError, RuntimeError, OSError) as e:
        # torch reports truncation as RuntimeError or OSError (zip) or EOFError (legacy / empty)
        msg = str(e).splitlines()[0] if str(e) else "unexpected end of file"
        raise ValueError(f"{path} is truncated or corrupt: {msg}") from None


def read_checkpoint(path, map_location="cpu") -> object:
    """The raw object stored in a checkpoint file, read safely (see the module docstring)."""
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path, map_location)
    if suffix in PICKLE_SUFFIXES:
        return _read_pickle(path, map_location)
    raise ValueError(f"unsupported checkpoint file type {path.suffix!r} ({path}); supported: "
                     f"{', '.join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)}")


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and any(torch.is_tensor(v) for v in obj.values())


def unwrap_state_dict(obj, path="checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of a state dict, looking inside the usual wrappers (``state_dict``, ``ema``, ...).

    Non-tensor entries (epoch counters, config strings) are dropped.
    """
    if isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
        for key in _WRAPPERS:
            if _is_tensor_dict(obj.get(key)):
                obj = obj[key]
                break
    if not _is_tensor_dict(obj):
        found = (f"a dict with keys {sorted(map(str, obj))[:10]}" if isinstance(obj, dict)
                 else f"a {type(obj).__name__}")
        raise ValueError(f"{path} holds {found}, not a state dict of tensors; expected a mapping "
                         f"name -> tensor, possibly under one of {', '.join(_WRAPPERS)}")
    return {str(k): v for k, v in obj.items() if torch.is_tensor(v)}


def read_state_dict(path, map_location="cpu") -> dict[str, torch.Tensor]:
    """name -> tensor from a ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` file.

    Tensors saved on a GPU land on ``map_location`` (CPU by default).
    """
    return unwrap_state_dict(read_checkpoint(path, map_location), path)


def key_summary(state_dict: dict, depth: int = 1, limit: int = 12) -> str:
    """'prefix.* (count), ...' of a state dict's keys, for error messages."""
    heads = Counter(".".join(k.split(".")[:depth]) for k in state_dict)
    leaves = {k for k in state_dict if k.count(".") < depth}
    parts = [h if h in leaves else f"{h}.* ({n})" for h, n in heads.most_common(limit)]
    more = f", ... ({len(heads) - limit} more)" if len(heads) > limit else ""
    return ", ".join(parts) + more


def strip_prefix(state_dict: dict, prefix: str | None) -> dict[str, torch.Tensor]:
    """Keep the keys that start with ``prefix`` and remove it (e.g. ``"gt."``, ``"module."``)."""
    if not prefix:
        return dict(state_dict)
    out = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(f"no key starts with the prefix {prefix!r}; keys found: "
                         f"{key_summary(state_dict)}")
    return out


def _listing(names, limit: int = 8) -> str:
    names = sorted(names, key=_natural)
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _natural(key: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


def check_state_dict(module: nn.Module, state_dict: dict, *, strict: bool = True,
                     what: str = "checkpoint") -> None:
    """Raise ValueError naming every missing key, unexpected key and shape mismatch.

    With ``strict=False`` only shape mismatches of shared keys are errors.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k}: {what} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): " + "; ".join(shapes[:8])
                        + (f" ... and {len(shapes) - 8} more" if len(shapes) > 8 else ""))
    if strict and missing:
        problems.append(f"{len(missing)} key(s) missing from the {what}: {_listing(missing)}")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) in the {what}: {_listing(unexpected)}")
    if problems:
        hint = (" (the weights do not match the network built for them: check the model "
                "spec / architecture flags and --state-dict-prefix)")
        raise ValueError(f"cannot load the {what} into {type(module).__name__}: "
                         + "; ".join(problems) + hint)


def load_into(module: nn.Module, state_dict: dict, *, strict: bool = True,
              what: str = "checkpoint") -> nn.Module:
    """Copy ``state_dict`` into ``module`` after :func:`check_state_dict`; returns the module."""
    check_state_dict(module, state_dict, strict=strict, what=what)
    try:
        module.load_state_dict(state_dict, strict=strict)
    except RuntimeError as e:  # e.g. dtype that cannot be copied
        raise ValueError(f"cannot load the {what} into {type(module).__name__}: "
                         f"{str(e).splitlines()[0]}") from None
    return module
