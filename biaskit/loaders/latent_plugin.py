"""Latent models outside diffusers: a plugin denoiser (``model_spec``, as
:func:`biaskit.loaders.plugin.load_plugin`) on the latents of the user's own encoder and decoder,
each given as a model spec ``file.py:factory`` (weights optional, read safely).

The latent of a sample x (an image (C, H, W) or a point (D,)) is

    z = scale * (E(x) - shift),        decode(z) = D(z / scale + shift),

with E(x) the encoder's output (its mean where it returns a distribution: an object with
``latent_dist.mean`` or ``mean``, or the first item of a tuple). ``shift`` and ``scale`` are
given (``latent_shift`` / ``latent_scale``: numbers, or one per latent channel), or computed from
the encoded training data (many small latent models store neither):

- ``"global"``: shift = the mean of every element of E(x) over the training data, scale =
  1 / their standard deviation (population, 1/N), so the latents have mean 0 and variance 1;
- ``"channel"``: the same per latent channel (dimension 1).

:class:`PluginLatent` has the ``encode`` / ``decode`` / ``denoiser`` of a
:class:`~biaskit.loaders.latent.LatentPipeline`, so :func:`biaskit.latent.pixel_bias` reads the
decoded bias of either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import safeload
from .plugin import _call_factory, load_plugin, resolve_factory

__all__ = ["PluginLatent", "NORMALISATIONS", "latent_normalisation", "load_latent_plugin"]

NORMALISATIONS = ("given", "global", "channel")


def _mean_of(out) -> torch.Tensor:
    """The encoder's latent: a tensor, a distribution's mean, or a tuple's first item."""
    if torch.is_tensor(out):
        return out
    dist = getattr(out, "latent_dist", None)
    if dist is not None:
        return dist.mean
    if torch.is_tensor(getattr(out, "mean", None)):
        return out.mean
    if isinstance(out, (tuple, list)) and out and torch.is_tensor(out[0]):
        return out[0]
    raise ValueError(f"the encoder returned a {type(out).__name__}; expected a tensor, a "
                     "distribution with .mean (or .latent_dist.mean) or a tuple of tensors")


def _shaped(v, ndim: int) -> torch.Tensor:
    """A number -> a scalar tensor; one value per channel -> (1, c, 1, ...) for ``ndim`` dims."""
    v = torch.as_tensor(v, dtype=torch.float32).flatten()
    return v.reshape(()) if v.numel() == 1 else v.reshape(1, -1, *[1] * (ndim - 2))


def latent_normalisation(z: torch.Tensor, how: str = "global") -> tuple[torch.Tensor, torch.Tensor]:
    """(shift, scale) from raw encoded training latents ``z`` (N, c, ...) (module docstring)."""
    z = z.double()
    if how == "global":
        shift, std = z.mean(), z.std(correction=0)
    elif how == "channel":
        dims = [d for d in range(z.ndim) if d != 1]
        shift, std = z.mean(dim=dims), z.std(dim=dims, correction=0)
    else:
        raise ValueError(f"latent normalisation {how!r}: computed ones are global or channel")
    if not bool((std > 0).all()):
        raise ValueError(f"latent normalisation {how!r}: the encoded data have zero spread")
    return _shaped(shift.float(), z.ndim), _shaped((1 / std).float(), z.ndim)


@dataclass
class PluginLatent:
    """A plugin latent model: ``denoiser`` on normalised latents, ``encoder`` / ``decoder``
    modules, ``shift`` / ``scale`` (module docstring) and how they were set (``normalisation``)."""

    denoiser: nn.Module
    encoder: nn.Module
    decoder: nn.Module
    shift: torch.Tensor
    scale: torch.Tensor
    normalisation: str

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @torch.no_grad()
    def encode_raw(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """E(x) for samples (N, ...), before normalisation, on the CPU."""
        return torch.cat([_mean_of(self.encoder(x[i:i + batch_size].to(self.device))).float().cpu()
                          for i in range(0, x.shape[0], batch_size)])

    def encode(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """z = scale (E(x) - shift), (N, c, ...)."""
        return (self.encode_raw(x, batch_size) - self.shift) * self.scale

    @torch.no_grad()
    def decode(self, z: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """D(z / scale + shift), in the data's space."""
        shift, scale = self.shift.to(self.device), self.scale.to(self.device)
        return torch.cat([self.decoder(z[i:i + batch_size].to(self.device) / scale + shift).float()
                          for i in range(0, z.shape[0], batch_size)]).to(z.device)

    def describe(self) -> dict:
        """JSON-able latent settings (for metadata files)."""
        return {"latent": "scale * (E(x) - shift), E's mean where it gives a distribution",
                "normalisation": self.normalisation, "shift": self.shift.tolist(),
                "scale": self.scale.tolist()}


def _module(spec: str, weights, kwargs: dict | None, what: str) -> nn.Module:
    net = _call_factory(resolve_factory(spec), spec, kwargs or {})
    if not isinstance(net, nn.Module):
        raise ValueError(f"{what} spec {spec!r} returned a {type(net).__name__}, not a torch nn.Module")
    if weights is not None:
        path = Path(weights).expanduser()
        safeload.load_into(net, safeload.read_state_dict(path), what=f"{what} weights in {path.name}")
    return net.eval().requires_grad_(False)


def load_latent_plugin(model_spec: str, weights=None, *, encoder_spec: str, decoder_spec: str,
                       encoder_weights=None, decoder_weights=None, normalisation: str = "global",
                       fit_data: torch.Tensor | None = None, latent_shift=None, latent_scale=None,
                       encoder_kwargs: dict | None = None, decoder_kwargs: dict | None = None,
                       **options) -> PluginLatent:
    """A :class:`PluginLatent`: the denoiser by :func:`~biaskit.loaders.plugin.load_plugin`
    (``options`` its loader options; ``data_range`` defaults to unbounded latents), encoder and
    decoder from their specs. ``normalisation="given"`` takes ``latent_shift`` (default 0) and
    ``latent_scale`` (default 1); ``"global"`` / ``"channel"`` compute them from ``fit_data``
    (the training data, encoded once)."""
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"latent normalisation {normalisation!r}; choose {', '.join(NORMALISATIONS)}")
    given = latent_shift is not None or latent_scale is not None
    if given and normalisation != "given":
        raise ValueError("--latent-shift / --latent-scale are the given normalisation: drop them "
                         f"or the computed one ({normalisation})")
    if normalisation != "given" and fit_data is None:
        raise ValueError(f"latent normalisation {normalisation!r} is computed from the encoded "
                         "training data: give the data, or --latent-shift / --latent-scale")
    options.setdefault("data_range", (-float("inf"), float("inf")))
    den = load_plugin(weights, model_spec, **options)
    enc = _module(encoder_spec, encoder_weights, encoder_kwargs, "encoder").to(den.device)
    dec = _module(decoder_spec, decoder_weights, decoder_kwargs, "decoder").to(den.device)
    one = torch.ones(())
    pl = PluginLatent(den, enc, dec, 0 * one, one, normalisation)
    if normalisation == "given":
        raw_ndim = 4
        if fit_data is not None:
            raw_ndim = pl.encode_raw(fit_data[:1]).ndim
        pl.shift = _shaped(0.0 if latent_shift is None else latent_shift, raw_ndim)
        pl.scale = _shaped(1.0 if latent_scale is None else latent_scale, raw_ndim)
        if not bool((pl.scale != 0).all()):
            raise ValueError("--latent-scale must be nonzero")
    else:
        pl.shift, pl.scale = latent_normalisation(pl.encode_raw(fit_data), normalisation)
        pl.normalisation = (f"{normalisation}: mean / std of {fit_data.shape[0]} encoded training "
                            "samples" + (" per channel" if normalisation == "channel" else ""))
    return pl
