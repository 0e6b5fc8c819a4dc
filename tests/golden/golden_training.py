"""Golden artefact 1: every preset's first losses (and process x target runs)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from golden_base import COMMON, TINY, deterministic, tensor_digest

# process runs beyond the presets: every continuous process with every target it trains
PROCESS_RUNS = {f"gmm-constant@{proc}-{target}": ("gmm-constant", [f"process.name={proc}", f"loss.target={target}"])
                for proc in ("flow", "edm", "ve", "vp_cosine", "vp_linear_logsnr")
                for target in ("eps", "x0", "v", "flow", "edm")}
# discrete runs with each discrete target and the other time-sampling laws / options
DISCRETE_RUNS = {
    **{f"gmm-debias@discrete-{t}": ("gmm-debias", [f"loss.target={t}"]) for t in ("x0", "v", "flow")},
    "gmm-constant@lognormal": ("gmm-constant", ["loss.t_sampling=lognormal:0:2"]),
    "gmm-debias@normalize-mean": ("gmm-debias", ["loss.normalize=mean"]),
    "gmm-min_snr@cosine": ("gmm-min_snr", ["schedule.name=cosine"]),
    "gmm-constant@perturb": ("gmm-constant", ["loss.input_perturbation=0.1"]),
    "gmm-flow@density-logit": ("gmm-flow", ["loss.density=logit_normal:0:1"]),
    "gmm-debias@ve-x0": ("gmm-debias", ["process.name=ve", "loss.target=x0", "loss.density=vp_linear"]),
    "gmm-min_snr@vp_cosine-v": ("gmm-min_snr", ["process.name=vp_cosine", "loss.target=v"]),
}


def train_first_steps(preset: str, overrides: list[str], out: Path, size: str = "quick"
                      ) -> tuple[np.ndarray, torch.Tensor]:
    """(losses of the first STEPS optimiser steps (float32), the model's first parameter after them)
    of ``preset`` (its ``size``) with ``overrides`` (``--set`` strings). The one place that
    touches the trainer's internals (``Trainer``, ``.net``)."""
    from biaskit.config import apply_overrides, get_preset
    from biaskit.train import Trainer
    family = preset.split("-")[0]
    config = apply_overrides(get_preset(preset, size), TINY[family] + COMMON + overrides + [f"out={out}"])
    deterministic()
    trainer = Trainer(config)
    losses = [state.loss.detach().float().item() for state in trainer.run(progress=False)]
    return np.asarray(losses, dtype=np.float32), next(iter(trainer.net.parameters())).detach().clone()


# the full sizes (their optimiser, schedule, precision settings) with the same tiny overrides; celebahq's
# full size reads a user's image folder
FULL_DATA = {"digits": [], "patches": ["data.options.size=8", "model.config.attention_levels=[]"],
             "gmm": ["data.options.dim=2"]}


def training_runs() -> dict[str, tuple[str, list[str], str]]:
    """{run name: (preset, extra --set overrides, size)}: every preset variant (quick size), the
    extra runs, then at the full size (``name@full``) every gmm variant and digits/patches-constant
    (their other variants differ from constant only by the weighting, covered at the quick size)."""
    from biaskit.config import preset_names
    runs = {name: (name, [], "quick") for name in preset_names()}
    runs.update({k: (p, o, "quick") for k, (p, o) in {**DISCRETE_RUNS, **PROCESS_RUNS}.items()})
    full = {f"{n}@full": (n, FULL_DATA[n.split("-")[0]] + (["model.config.attention_levels=[]"]
                                                          if n.startswith("digits") else []), "full")
            for n in preset_names() if n.startswith("gmm-") or n in ("digits-constant", "patches-constant")}
    return {**runs, **full}


def train_losses_cases() -> dict:
    """Per run: ``loss`` (STEPS,) float32 and ``param0`` the first parameter tensor's sha256."""
    def case(preset, overrides, size):
        def thunk():
            with tempfile.TemporaryDirectory() as tmp:
                losses, p0 = train_first_steps(preset, overrides, Path(tmp) / "run", size)
            return {"loss": losses, "param0": np.array(tensor_digest(p0))}
        return thunk
    return {name: case(*spec) for name, spec in training_runs().items()}

