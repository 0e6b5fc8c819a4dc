"""Where a :class:`biaskit.Denoiser` came from: one typed record, set by the loader that built it.

:class:`Source` holds the fields every format shares (format, path, sha256, step, per-sample shape,
the name the source gives the model) and, in ``extras``, what a format records besides (an ADM
network's config, a diffusers scheduler, a run's weighting ...). ``Source.info`` spells it as the
flat dict metadata files have always carried (``Denoiser.info`` / ``Denoiser.describe()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

__all__ = ["Source", "FORMATS", "THIRD_PARTY"]

THIRD_PARTY = ("diffusers", "diffusers-unet", "adm", "plugin")
# run: a biaskit run directory; module: a network handed to Denoiser(...) directly
FORMATS = ("run", "oracle", *THIRD_PARTY, "module")


def _shape(shape) -> tuple[int, ...] | None:
    if shape is None or isinstance(shape, (str, bytes)) or not len(shape):
        return None
    return tuple(int(s) for s in shape)


@dataclass(frozen=True)
class Source:
    """Provenance of a Denoiser.

    Args:
        format: one of :data:`FORMATS`.
        path: the run directory, checkpoint file or diffusers folder; None for oracles and modules.
        sha256: the weights file's hash ({relative file: hash} for a diffusers folder); None where
            nothing was hashed at load time (a run's step weights are hashed when metadata is
            written, :func:`biaskit.probe.api.model_identity`).
        step: a biaskit run's training step.
        shape: per-sample shape (C, H, W) or (D,) the model was trained on, when known (a run's
            data, an oracle's mixture, a diffusers ``sample_size`` / ADM ``image_size`` with their
            ``in_channels``).
        name: the name the file gives the model (third-party formats).
        extras: what the format records besides, as a read-only mapping.
    """

    format: str = "module"
    path: str | None = None
    sha256: str | Mapping | None = None
    step: int | None = None
    shape: tuple[int, ...] | None = None
    name: str | None = None
    extras: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"unknown source format {self.format!r}; valid: {', '.join(FORMATS)}")
        object.__setattr__(self, "shape", _shape(self.shape))
        object.__setattr__(self, "extras", MappingProxyType(dict(self.extras)))
        if isinstance(self.sha256, Mapping):
            object.__setattr__(self, "sha256", MappingProxyType(dict(self.sha256)))

    def _typed(self) -> dict:
        """The typed fields under the keys metadata files spell them with."""
        if self.format == "run":
            return {"run_dir": self.path, "step": self.step}
        if self.format == "oracle":
            return {"oracle": True}
        if self.format in THIRD_PARTY:
            typed = {"name": self.name, "format": self.format}
            if self.path is not None:
                sha = dict(self.sha256) if isinstance(self.sha256, Mapping) else self.sha256
                typed.update(path=self.path, sha256=sha)
            return typed
        return {}

    @property
    def info(self) -> dict:
        """The flat description (a new dict): typed fields first, then ``extras``."""
        return {**self._typed(), **self.extras}

    def with_extras(self, **extras) -> "Source":
        """A copy with ``extras`` added (or replaced)."""
        return replace(self, extras={**self.extras, **extras})

    @classmethod
    def from_info(cls, info: Mapping | None, shape=None) -> "Source":
        """The Source a flat description spells (``Denoiser(info=...)``); a description that does
        not read as one of the formats is a ``module`` source with the dict as its extras."""
        info = dict(info or {})
        shape = shape if shape is not None else info.get("shape") or info.get("sample_shape")
        fmt = ("run" if "run_dir" in info else "oracle" if info.get("oracle") is True else
               info.get("format") if info.get("format") in THIRD_PARTY else "module")
        src = cls(fmt, path=info.get("run_dir") if fmt == "run" else info.get("path"),
                  sha256=info.get("sha256"), step=info.get("step"), shape=shape,
                  name=info.get("name"))
        typed = src._typed()
        src = replace(src, extras={k: v for k, v in info.items() if k not in typed or typed[k] != v})
        if src.info.keys() != info.keys():  # typed keys the description lacks: keep it as given
            src = cls(path=info.get("path"), sha256=info.get("sha256"), step=info.get("step"),
                      shape=shape, name=info.get("name"), extras=info)
        return src
