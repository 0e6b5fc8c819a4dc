"""Model registry: name -> "module:Class". Builders are imported on first use.

Every registered class is an ``nn.Module`` called as ``net(x, time_in, **kwargs)`` and built as
``Class(**config)``; its config must be JSON-able so a checkpoint can rebuild it.
"""

from __future__ import annotations

import importlib

MODELS = {
    "mlp": "biaskit.models.mlp:MLP",
    "unet": "biaskit.models.unet:UNet",
    "adm": "biaskit.models.adm:ADMUNet",
}


def get_model_class(name: str):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(name: str, **config):
    return get_model_class(name)(**config)
