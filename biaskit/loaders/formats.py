"""Which loader a model spec needs: the one place where formats are told apart.

- ``oracle``: ``oracle:NAME`` (exact posterior mean, :mod:`biaskit.oracle`);
- ``run``: a biaskit run directory (holds ``biaskit.json``, :mod:`biaskit.checkpoint`);
- ``plugin``: any network named by ``model_spec`` (or a spec ``FILE.py:FACTORY``);
- ``diffusers`` / ``diffusers-unet``: a pipeline folder / a bare UNet2DModel folder;
- ``adm``: any other weights file (its keys are checked by the ADM loader, whose error names the
  other options when they are not an ADM UNet's).
"""

from __future__ import annotations

from pathlib import Path

from .diffusers import folder_format
from .weights import WEIGHT_SUFFIXES

__all__ = ["FORMATS", "ORACLE_PREFIX", "detect_format", "is_oracle", "is_run", "plugin_spec"]

FORMATS = ("oracle", "run", "diffusers", "diffusers-unet", "adm", "plugin")
ORACLE_PREFIX = "oracle:"
_PLUGIN_SPEC = ".py:"


def is_oracle(spec) -> bool:
    return str(spec).startswith(ORACLE_PREFIX)


def is_run(spec) -> bool:
    path = Path(str(spec))
    return path.is_dir() and (path / "biaskit.json").is_file()


def plugin_spec(spec, model_spec=None, weights=None) -> tuple[str | None, object]:
    """(model_spec, weights path) of a plugin model, or (None, spec) for any other: a spec
    ``FILE.py:FACTORY`` that is not a file names the network, and ``weights`` its state dict.
    ValueError for weights without a network, or two weights files."""
    text = str(spec)
    if model_spec is None and _PLUGIN_SPEC in text and not Path(text).exists():
        return text, weights
    if weights is not None:
        if model_spec is None:
            raise ValueError("weights= / --weights goes with model_spec= / --model-spec")
        if Path(text) != Path(weights):
            raise ValueError(f"two weights files given: {spec} and weights={weights}")
    return model_spec, spec


def detect_format(spec, model_spec=None, weights=None) -> str:
    """One of :data:`FORMATS` for a model spec (reads at most a folder's config.json)."""
    if is_oracle(spec):
        return "oracle"
    if is_run(spec):
        return "run"
    if plugin_spec(spec, model_spec, weights)[0] is not None:
        return "plugin"
    path = Path(str(spec)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path} (expected a diffusers folder, a "
                                f"checkpoint file {'/'.join(WEIGHT_SUFFIXES)}, or a built-in spec)")
    if path.is_dir():
        return folder_format(path)
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ValueError(f"{path}: unknown model file type {path.suffix!r}; supported: "
                         f"{', '.join(WEIGHT_SUFFIXES)}, diffusers folders, biaskit run folders")
    return "adm"
