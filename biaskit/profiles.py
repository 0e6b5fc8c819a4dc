"""Parameter sets for the notebooks: ``smoke`` (the test suite: seconds), ``quick`` (every figure
on 2 CPU cores in about 15 minutes) and ``full`` (GPU sized: 32 px and up, long training,
FID on 10k samples).

``PROFILES[profile]["common"]`` applies to every notebook, ``PROFILES[profile][notebook]`` to
one; a notebook only receives the names its ``parameters`` cell declares.
"""

from __future__ import annotations

import copy

WEIGHTINGS = ["constant", "debias", "min_snr", "p2"]


def _overrides(ckpt_every: int, gmm=None, unet=None, patches=None) -> dict:
    """Training-config overrides per dataset family, {dotted key: value}; every notebook gets the
    same ones so that they share cached runs. ``keep_checkpoints=0`` keeps every checkpoint
    (for the quality-against-training-iterations curve)."""
    common = {"ckpt_every": ckpt_every, "keep_checkpoints": 0}
    return {"gmm": {**common, **(gmm or {})}, "digits": {**common, **(unet or {})},
            "patches": {**common, **(unet or {}), **(patches or {})}}


_TINY = {"log_every": 10, "ema.start": 0, "ema.decay": 0.5}
_TINY_UNET = {"model.config.channels": 8, "model.config.channel_mult": [1],
              "model.config.mid_attention": False, **_TINY}


PROFILES: dict[str, dict[str, dict]] = {
    "smoke": {
        "runner": {"threads": 1},
        "common": {"seed": 0, "weightings": ["constant", "debias"],
                   "preset_profile": "quick",
                   "train_steps": 30, "batch_size": 32, "n_probe": 64, "num_timesteps": 8,
                   "n_samples": 16, "progress": False,
                   "train_overrides": _overrides(
                       15, gmm={"model.config.hidden": 32, "model.config.blocks": 1, **_TINY,
                                "data.n_train": 2000, "data.n_test": 256},
                       unet={**_TINY_UNET, "data.n_train": 512, "data.n_test": 128})},
        "00_weighting_atlas": {"T": 100, "schedules": ["linear", "cosine", "linear_zsnr"]},
        "01_existence": {"datasets": ["gmm", "digits"]},
        "02_impact": {"dataset": "digits", "steps_list": [2, 5], "samplers": ["ddim", "dpm_solver++"], "fid": True,
                      "fid_steps": [5], "fid_n": 10, "fid_weightings": ["constant"]},
        "03_reasons": {"dataset": "digits", "sample_steps": 5, "switch_points": [0, 2, 5]},
        "04_probe_checkpoint": {"dataset": "digits", "model": "auto"},
    },
    "quick": {
        "runner": {"threads": 1, "jobs": 2},
        "common": {"seed": 0, "weightings": WEIGHTINGS, "train_steps": 1200,
                   "preset_profile": "quick",
                   "batch_size": 64, "n_probe": 512, "num_timesteps": 20, "n_samples": 256,
                   "progress": False,
                   "train_overrides": _overrides(300, unet={"model.config.channels": 16})},
        "00_weighting_atlas": {"T": 1000},
        "01_existence": {"datasets": ["gmm", "digits", "patches"]},
        "02_impact": {"dataset": "patches", "steps_list": [2, 3, 5, 10, 20, 50],
                      "samplers": ["ddpm", "ddim", "dpm_solver++", "unipc"], "fid": True,
                      "fid_steps": [10], "fid_n": 128, "fid_weightings": ["constant", "debias"]},
        "03_reasons": {"dataset": "patches", "sample_steps": 20,
                       "switch_points": [0, 2, 5, 10, 15, 20]},
        "04_probe_checkpoint": {"dataset": "digits", "model": "auto"},
    },
    "full": {
        "runner": {"jobs": 1},
        # sizes, steps and batch sizes are the presets' "full" profile (biaskit/presets/*.yaml):
        # patches at 32 px, 100k-200k steps, bf16
        "common": {"seed": 0, "weightings": WEIGHTINGS, "train_steps": None,
                   "batch_size": None, "preset_profile": "full", "n_probe": 4096,
                   "num_timesteps": 50, "n_samples": 10_000, "progress": True,
                   "train_overrides": _overrides(10_000)},
        "00_weighting_atlas": {"T": 1000},
        "01_existence": {"datasets": ["gmm", "digits", "patches"]},
        "02_impact": {"dataset": "patches",
                      "steps_list": [2, 3, 4, 5, 10, 20, 50, 100, 250, 500, 1000],
                      "samplers": ["ddpm", "ddim", "dpm_solver++", "unipc"], "fid": True,
                      "fid_steps": [5, 10, 20, 50, 100, 1000], "fid_n": 10_000,
                      "fid_weightings": WEIGHTINGS},
        "03_reasons": {"dataset": "patches", "sample_steps": 50,
                       "switch_points": [0, 5, 10, 20, 30, 40, 50]},
        "04_probe_checkpoint": {"dataset": "digits", "model": "auto"},
    },
}


def parameters(profile: str, notebook: str) -> dict:
    """The profile's common values updated with the notebook's own (a fresh copy)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    p = PROFILES[profile]
    return copy.deepcopy({**p["common"], **p.get(notebook, {})})


def runner_settings(profile: str) -> dict:
    """Settings of the runner itself (not notebook parameters), e.g. ``threads`` per kernel."""
    return dict(PROFILES.get(profile, {}).get("runner", {}))


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other values pass through."""
    from .denoiser import resolve_device as resolve
    return device if device != "auto" else resolve(device).type
