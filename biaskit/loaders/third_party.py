"""The loaders of files other projects wrote (a plugin network, an ADM state dict, a diffusers
folder), by format; :func:`biaskit.load` adds oracles and biaskit runs on top, and a fine-tuned
run (:func:`biaskit.checkpoint.load_run`) rebuilds the network it started from through here."""

from __future__ import annotations

from .formats import plugin_spec


def load_third_party(spec, fmt: str, *, model_spec=None, weights=None, **options):
    """The Denoiser of a ``plugin``, ``adm`` or diffusers-format ``spec`` (``fmt`` as
    :func:`~biaskit.loaders.formats.detect_format` tells it), with the loader ``options``."""
    if fmt == "plugin":
        from .plugin import load_plugin
        model_spec, path = plugin_spec(spec, model_spec, weights)
        return load_plugin(path, model_spec, **options)
    if fmt == "adm":
        from .adm import load_adm
        return load_adm(spec, **options)
    from .diffusers import load_diffusers
    return load_diffusers(spec, **options)
