"""The figure study, defined once per study profile: ``smoke`` (the test suite: about 1.5 minutes),
``quick`` (every figure on 2 CPU cores within 15 minutes: 13:03 measured in a fresh clone with an empty cache), ``full`` (GPU sized: 32 px and
up, long training, FID on 10k samples) and ``gpu-smoke`` (the full profile's code path, short).

``gpu-smoke`` trains the full profile's models (the presets' ``full`` sizes: architectures,
bf16, learning rates) for a few dozen steps, and runs every notebook on them with the analyses
of ``full`` at small counts: on a GPU that is bf16 training, channels_last bf16 probes, FID and
KID on the bundled Inception, and with ``torchrun ... --train-only`` DDP training, in about 2-3
minutes on one GPU::

    torchrun --nproc_per_node 1 -m biaskit.cli figures --profile gpu-smoke --train-only --device cuda
    biaskit figures --profile gpu-smoke --device cuda --out runs/gpu-smoke

``PROFILES[profile]["training"]`` says how every model of the study is trained (which preset
size, steps, batch size, per-dataset overrides); :func:`run_config` turns it into the
:class:`~biaskit.config.TrainConfig` of one (dataset, variant), and :func:`train_runs` trains
them through the cache. The notebooks, ``biaskit figures --train-only`` and the cache all go
through these two functions, so they cannot disagree.

``PROFILES[profile]["common"]`` holds the analysis parameters of every notebook and
``PROFILES[profile][notebook]`` those of one; a notebook only receives the names its
``parameters`` cell declares.

A *study profile* (this module) is not a *preset size* (``quick``/``full`` sizes of one
training preset in ``biaskit/presets/*.yaml``): a study profile picks a preset size for its runs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

WEIGHTINGS = ["constant", "debias", "min_snr", "p2"]
# notebook 05: eps-VP, v-VP, EDM and flow matching, each usual and with eps-VP debias's W(lam)
FORMULATIONS = ["constant", "debias", "v", "v-debias", "edm", "edm-debias", "flow", "flow-debias"]
DATASETS = ("gmm", "digits", "patches")

_TINY = {"log_every": 10, "ema.start": 0, "ema.decay": 0.5}
_TINY_UNET = {"model.config.channels": 8, "model.config.channel_mult": [1],
              "model.config.mid_attention": False, **_TINY}


def _training(preset_size: str, steps, batch_size, ckpt_every: int, only=None, seeds=None,
              **datasets) -> dict:
    """The study's training settings: ``preset_size`` picks the presets' ``quick`` or ``full``
    sizes, then ``steps``/``batch_size`` (None keeps the preset's) and per-dataset overrides
    {dotted config key: value} apply to every variant of that dataset. ``keep_checkpoints=0``
    keeps every checkpoint (for the quality-against-training-iterations curve). ``only``:
    {dataset: variants} where the profile trains fewer than every variant asked for.
    ``seeds``: {dataset: {variant: S}} or {dataset: S} (every variant) or an int S (every
    dataset): how many training seeds (seed, seed + 1, ..) the claims about weightings rest on
    (:func:`dataset_seeds`); 1 where not named."""
    common = {"ckpt_every": ckpt_every, "keep_checkpoints": 0}
    return {"preset_size": preset_size, "steps": steps, "batch_size": batch_size,
            "datasets": {f: {**common, **datasets.get(f, {})} for f in DATASETS},
            "only": dict(only or {}), "seeds": seeds if seeds is not None else {}}


def dataset_variants(profile: str, dataset: str, variants) -> list[str]:
    """The variants of ``variants`` that study ``profile`` trains for ``dataset`` (in order)."""
    only = _check_profile(profile)["training"].get("only", {}).get(dataset)
    return [w for w in variants if only is None or w in only]


def dataset_seeds(profile: str, dataset: str, variant: str, seed: int = 0) -> list[int]:
    """The training seeds seed, seed + 1, .. of (``dataset``, ``variant``) in study ``profile``
    (``training["seeds"]``: an int for every dataset, {dataset: int}, or {dataset: {variant: int}})."""
    seeds = _check_profile(profile)["training"].get("seeds", {})
    if isinstance(seeds, dict):
        seeds = seeds.get(dataset, 1)
    if isinstance(seeds, dict):
        seeds = seeds.get(variant, 1)
    return [int(seed) + j for j in range(int(seeds))]


PROFILES: dict[str, dict[str, dict]] = {
    "smoke": {
        "runner": {"threads": 1},
        "training": _training("quick", 30, 32, 15, seeds={"gmm": {"constant": 3, "debias": 3}},
                              gmm={"model.config.hidden": 32, "model.config.blocks": 1, **_TINY,
                                   "data.n_train": 2000, "data.n_test": 256},
                              digits={**_TINY_UNET, "data.n_train": 512, "data.n_test": 128},
                              patches={**_TINY_UNET, "data.n_train": 512, "data.n_test": 128}),
        "common": {"seed": 0, "weightings": ["constant", "debias"], "n_probe": 64,
                   "num_timesteps": 8, "n_samples": 16, "progress": False},
        "00_weighting_atlas": {"T": 100, "schedules": ["linear", "cosine", "linear_zsnr"]},
        "01_existence": {"datasets": ["gmm", "digits"], "replicates": True},
        "02_impact": {"dataset": "digits", "steps_list": [2, 5], "samplers": ["ddim", "dpm_solver++"], "fid": True,
                      "fid_steps": [5], "fid_n": 10, "fid_weightings": ["constant"]},
        "03_reasons": {"dataset": "digits", "sample_steps": 5, "switch_points": [0, 2, 5]},
        "04_probe_checkpoint": {"dataset": "digits", "model": "auto"},
        "05_formulations": {"dataset": "gmm", "variants": ["constant", "v-debias", "edm", "flow-debias"],
                            "steps_list": [2, 5], "samplers": ["ddim"], "n_boot": 5,
                            "clip_views": [False]},
        "06_sampling_bias": {"dataset": "gmm", "sample_steps": 5, "eps_scales": [0.99, 1.0, 1.02],
                             "n_boot": 5, "image_datasets": ["digits"]},
    },
    "quick": {
        "runner": {"threads": 1, "jobs": 2},
        # patches: the presets' 32-channel UNet, 2400 steps at lr 1e-3 with a cosine decay
        # (3000 steps measured 19:02 for the whole profile; 1200 steps of a 16-channel UNet gave
        # pixel noise), constant and debias only (~4.5 min each on one core); digits keeps short
        # runs (900 steps) of all four variants; the mixture (sampled in 05) 2400 steps of batch 256
        # seeds: the headline claim (debias vs constant x0 error at high noise) on the mixture
        # rests on 3 training seeds per variant (+4 runs of ~25 s on one core); digits (~55 s a
        # run) and patches keep one seed, which their verdicts say
        "training": _training("quick", 2400, 64, 600, only={"patches": ["constant", "debias"]},
                              seeds={"gmm": {"constant": 3, "debias": 3}},
                              gmm={"steps": 2400, "batch_size": 256, "ckpt_every": 600},
                              digits={"model.config.channels": 16, "steps": 900, "ckpt_every": 300,
                                      "optim.lr": 1e-3, "optim.lr_schedule": "cosine"},
                              patches={"optim.lr": 1e-3, "optim.lr_schedule": "cosine"}),
        "common": {"seed": 0, "weightings": WEIGHTINGS, "n_probe": 512, "num_timesteps": 20,
                   "n_samples": 256, "progress": False},
        "00_weighting_atlas": {"T": 1000},
        "01_existence": {"datasets": ["gmm", "digits", "patches"], "replicates": True},
        # every (sampler, steps, protocol) cell costs ~20-40 s of sampling and bootstrapped SWD/MMD
        # on 2 cores: two samplers at four step counts keep 02 within the quick budget
        "02_impact": {"dataset": "patches", "weightings": ["constant", "debias"],
                      "steps_list": [2, 5, 10, 50],
                      "samplers": ["ddim", "dpm_solver++"], "fid": True,
                      "fid_steps": [10], "fid_n": 64, "fid_weightings": ["constant", "debias"],
                      "n_boot": 100},
        "03_reasons": {"dataset": "patches", "weightings": ["constant", "debias"], "sample_steps": 20,
                       "switch_points": [0, 2, 5, 10, 15, 20]},
        "04_probe_checkpoint": {"dataset": "digits", "model": "auto"},
        # the gmm runs of 01 and six more (about 20 s each at 2400 steps of batch 256 on one core;
        # 1200 steps of batch 64 sampled one blob instead of the 8 modes); 2-D, K = 8
        "05_formulations": {"dataset": "gmm", "variants": FORMULATIONS, "high_noise_logsnr": -3.0,
                            "steps_list": [2, 5, 10, 50], "samplers": ["ddim", "dpm_solver++"],
                            "own_samplers": True, "quality_metrics": ["swd", "mmd"], "n_boot": 20,
                            "clip_views": [False, True], "scatter_lim": [-1.5, 1.5]},
        # the gmm runs of 01 (constant, debias) and three more of about 20 s each (input
        # perturbation, scaled_linear eps, its zero-terminal-SNR v model)
        # digits: the eps-norm exposure statistic, epsilon scaling and its samples on 01's runs (no
        # extra training); the terminal-SNR runs stay on the mixture (two patches runs would add
        # ~8 CPU minutes, beyond the budget: the full profile runs them on patches)
        "06_sampling_bias": {"dataset": "gmm", "weightings": ["constant", "debias"], "n_samples": 1024,
                             "sample_steps": 20, "eps_scales": [0.98, 0.99, 1.0, 1.005, 1.01, 1.02, 1.04],
                             "n_boot": 20, "image_datasets": ["digits"]},
    },
    "full": {
        "runner": {"jobs": 1},
        # sizes, steps and batch sizes are the presets' "full" size (biaskit/presets/*.yaml):
        # patches at 32 px, 100k-200k steps, bf16
        "training": _training("full", None, None, 10_000, seeds=3),
        "common": {"seed": 0, "weightings": WEIGHTINGS, "n_probe": 4096, "num_timesteps": 50,
                   "n_samples": 10_000, "progress": True},
        "00_weighting_atlas": {"T": 1000},
        "01_existence": {"datasets": ["gmm", "digits", "patches"], "replicates": True},
        "02_impact": {"dataset": "patches",
                      "steps_list": [2, 3, 4, 5, 10, 20, 50, 100, 250, 500, 1000],
                      "samplers": ["ddpm", "ddim", "dpm_solver++", "unipc"], "fid": True,
                      "fid_steps": [5, 10, 20, 50, 100, 1000], "fid_n": 10_000,
                      "fid_weightings": WEIGHTINGS, "n_boot": 400},
        "03_reasons": {"dataset": "patches", "sample_steps": 50,
                       "switch_points": [0, 5, 10, 20, 30, 40, 50]},
        "04_probe_checkpoint": {"dataset": "digits", "model": "auto"},
        "05_formulations": {"dataset": "gmm", "variants": FORMULATIONS, "high_noise_logsnr": -3.0,
                            "steps_list": [2, 3, 5, 10, 20, 50, 100, 1000],
                            "samplers": ["ddim", "dpm_solver++", "unipc"], "own_samplers": True,
                            "quality_metrics": ["swd", "mmd", "gmm"], "n_boot": 200,
                            "clip_views": [False, True], "scatter_lim": [-1.5, 1.5]},
        "06_sampling_bias": {"dataset": "gmm", "weightings": WEIGHTINGS, "sample_steps": 50,
                             "eps_scales": [0.98, 0.99, 1.0, 1.002, 1.005, 1.01, 1.02, 1.04], "n_boot": 200,
                             "image_datasets": ["digits", "patches"], "terminal_snr_dataset": "patches"},
    },
}


# the full profile's runs, a few dozen steps each (probing during training, as full does every
# 10k steps, at step 30); small data sets where the full one is large
PROFILES["gpu-smoke"] = {
    "runner": {"jobs": 1},
    "training": _training("full", 60, 64, 30, seeds={"gmm": {"constant": 2, "debias": 2}},
                          **{f: {"log_every": 10, "ema.start": 0, "ema.decay": 0.9,
                                 "optim.warmup_steps": 10, "probe_every": 30} for f in DATASETS}),
    "common": {"seed": 0, "weightings": ["constant", "debias"], "n_probe": 256,
               "num_timesteps": 8, "n_samples": 256, "progress": False},
    "00_weighting_atlas": {"T": 1000},
    "01_existence": {"datasets": ["gmm", "digits", "patches"], "replicates": True},
    "02_impact": {"dataset": "patches", "steps_list": [2, 5, 20],
                  "samplers": ["ddpm", "ddim", "dpm_solver++", "unipc"], "fid": True,
                  "fid_steps": [20], "fid_n": 256, "fid_weightings": ["constant", "debias"], "n_boot": 100},
    "03_reasons": {"dataset": "patches", "sample_steps": 10, "switch_points": [0, 5, 10]},
    "04_probe_checkpoint": {"dataset": "digits", "model": "auto"},
    "05_formulations": {"dataset": "gmm", "variants": FORMULATIONS, "high_noise_logsnr": -3.0,
                        "steps_list": [2, 5, 20], "samplers": ["ddim", "dpm_solver++", "unipc"],
                        "own_samplers": True, "quality_metrics": ["swd", "mmd", "gmm"], "n_boot": 20,
                        "clip_views": [False, True], "scatter_lim": [-1.5, 1.5]},
    # the full profile's datasets (terminal SNR on the patches) at tiny sizes
    "06_sampling_bias": {"dataset": "gmm", "sample_steps": 10, "eps_scales": [0.99, 1.0, 1.02],
                         "n_boot": 20, "image_datasets": ["digits", "patches"],
                         "terminal_snr_dataset": "patches"},
}
PROFILES["gpu-smoke"]["training"]["datasets"]["gmm"].update({"data.n_train": 20_000})


# profile keys renamed: former name -> name, a profile entry under the former name is read as the
# new one (05's ``native_samplers``: the process's own sampler, not sampling.native's ddpm/ddim)
RENAMED_KEYS = {"native_samplers": "own_samplers"}


def renamed(params: dict) -> dict:
    """``params`` with each former key of :data:`RENAMED_KEYS` under its new name (a new key
    given as well wins)."""
    return {**{RENAMED_KEYS[k]: v for k, v in params.items() if k in RENAMED_KEYS},
            **{k: v for k, v in params.items() if k not in RENAMED_KEYS}}


def parameters(profile: str, notebook: str) -> dict:
    """The profile's common values updated with the notebook's own (a fresh copy), former key
    names read as the new ones (:data:`RENAMED_KEYS`)."""
    p = _check_profile(profile)
    return copy.deepcopy({**renamed(p["common"]), **renamed(p.get(notebook, {}))})


def runner_settings(profile: str) -> dict:
    """Settings of the runner itself (not notebook parameters), e.g. ``threads`` per kernel."""
    return dict(PROFILES.get(profile, {}).get("runner", {}))


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other values pass through."""
    from ..denoiser import resolve_device as resolve
    return device if device != "auto" else resolve(device).type


def _check_profile(profile: str) -> dict:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    return PROFILES[profile]


def run_config(profile: str, dataset: str, variant: str, seed: int = 0):
    """The :class:`~biaskit.config.TrainConfig` with which study ``profile`` trains preset
    ``dataset-variant``: the preset at the profile's preset size, then its steps, batch size
    and the dataset's overrides."""
    from ..config import apply_overrides, get_preset
    training = _check_profile(profile)["training"]
    if dataset not in training["datasets"]:
        raise ValueError(f"profile {profile!r} trains no {dataset!r} models; datasets: "
                         f"{', '.join(training['datasets'])}")
    settings = {"steps": training["steps"], "batch_size": training["batch_size"], "seed": seed}
    items = [f"{k}={v}" for k, v in settings.items() if v is not None]
    items += [f"{k}={v if isinstance(v, str) else json.dumps(v)}"
              for k, v in training["datasets"][dataset].items()]
    variant, extra = EXTRA_RUNS.get(variant, (variant, []))  # 06's fixes: a preset plus overrides
    return apply_overrides(get_preset(f"{dataset}-{variant}", training["preset_size"]), items + list(extra))


def train_runs(cache, profile: str, dataset: str, variants, *, seed: int = 0,
               device: str = "auto", progress: bool = False) -> dict[str, Path]:
    """{variant: run folder} of study ``profile``'s ``dataset`` models (those of ``variants``
    the profile trains for that dataset, :func:`dataset_variants`), each trained only on a
    cache miss (the cache keys on what determines the weights, not on ``device``)."""
    out = {}
    for w in dataset_variants(profile, dataset, variants):
        cfg = run_config(profile, dataset, w, seed)
        cfg.device = device
        out[w] = cache.run(cfg, label=f"{dataset}-{w}".replace(" ", "_").replace(",", ""), progress=progress)
    return out


def train_seeds(cache, profile: str, dataset: str, variants, *, seed: int = 0,
                device: str = "auto", progress: bool = False) -> dict[int, dict[str, Path]]:
    """{seed: {variant: run folder}} of every training seed of :func:`dataset_seeds` (seed
    first): the runs on which claims about variants are replicated. A variant appears under
    a seed only when the profile trains it with that seed."""
    out: dict[int, dict[str, Path]] = {}
    for w in dataset_variants(profile, dataset, variants):
        for s in dataset_seeds(profile, dataset, w, seed):
            out.setdefault(s, {}).update(train_runs(cache, profile, dataset, [w], seed=s, device=device,
                                                    progress=progress))
    return out


def planned_runs(profile: str, notebooks=None) -> list[tuple[str, str, int]]:
    """(dataset, variant, seed) of every run the profile's notebooks (or those named) train: the
    preset variants of a notebook's ``variants`` parameter (05), else of its ``weightings``, at
    every seed of :func:`dataset_seeds` for a notebook whose parameters say ``replicates``."""
    p = _check_profile(profile)
    plan = {}
    for name in p:
        if name in ("common", "runner", "training") or (notebooks is not None and name not in notebooks):
            continue
        params = parameters(profile, name)
        datasets = params.get("datasets") or ([params["dataset"]] if "dataset" in params else [])
        datasets = list(dict.fromkeys(datasets + list(params.get("image_datasets", []))))
        for dataset in datasets:
            for w in dataset_variants(profile, dataset, params.get("variants", params.get("weightings", []))):
                seeds = dataset_seeds(profile, dataset, w, params.get("seed", 0)) \
                    if params.get("replicates") else [params.get("seed", 0)]
                for s in seeds:
                    plan[(dataset, w, s)] = None
        for dataset, extra in notebook_extra_runs(name, params):  # a notebook's own runs (not a preset's)
            plan[(dataset, extra, params.get("seed", 0))] = None
    return list(plan)


def notebook_extra_runs(notebook: str, params: dict) -> list[tuple[str, str]]:
    """(dataset, extra run) pairs notebook ``notebook`` trains with ``params``: each parameter of
    :data:`NOTEBOOK_EXTRA_RUNS` names the dataset (default: the notebook's ``dataset``)."""
    out = []
    for param, names in NOTEBOOK_EXTRA_RUNS.get(notebook, {}).items():
        dataset = params.get(param) or params.get("dataset")
        out += [(dataset, n) for n in names if dataset is not None and (dataset, n) not in out]
    return out


# the runs of the fixes: a variant's preset plus these overrides (run_config reads them)
EXTRA_RUNS = {
    # Ning et al. 2023: gamma = 0.1
    "constant+ip": ("constant", ["loss.input_perturbation=0.1"]),
    "constant, scaled_linear": ("constant", ["schedule.name=scaled_linear"]),
    # the v target with constant weighting of the v-MSE (gmm's preset v), for any dataset
    "v, scaled_linear zero SNR": ("constant", ["loss.target=v", "loss.weighting=v_constant",
                                               "schedule.name=scaled_linear", "schedule.zero_terminal_snr=true"]),
}
TERMINAL_SNR_RUNS = ("constant, scaled_linear", "v, scaled_linear zero SNR")
# notebook -> {parameter naming a dataset: the extra runs (EXTRA_RUNS) trained on it}, as planned
NOTEBOOK_EXTRA_RUNS = {"06_sampling_bias": {"dataset": ("constant+ip",),
                                            "terminal_snr_dataset": TERMINAL_SNR_RUNS}}
