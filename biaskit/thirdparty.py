"""Third-party checkpoints -> :class:`biaskit.Denoiser`, without running code from the checkpoint.

Formats, detected from the path (:func:`detect_format`):

- ``diffusers``: a pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``). The UNet is
  built from its ``config.json`` with ``UNet2DModel.from_config`` and the weights are read by
  :mod:`biaskit.safeload` (never ``from_pretrained``, no remote code). Parameterization from the
  scheduler's ``prediction_type``; schedule from its beta settings.
- ``diffusers-unet``: a bare ``UNet2DModel`` folder (``config.json`` + weights); the schedule
  comes from ``scheduler_config`` or defaults to DDPM's linear 1e-4..0.02, T = 1000, epsilon.
- ``adm``: a guided-diffusion / improved-diffusion ``.pt`` state dict (keys ``input_blocks.*``).
  The architecture is read off the keys (:func:`biaskit.models.adm.infer_adm_config`) and can be
  overridden with guided-diffusion's flag names; the schedule and target come from
  ``noise_schedule``, ``diffusion_steps``, ``predict_xstart`` (defaults linear, 1000, eps).
- ``plugin``: any other network. ``model_spec="module_or_file.py:factory"`` names user code (which
  the user trusts: it is theirs) returning an ``nn.Module`` called as ``net(x, time_in)``; the
  weights file is read safely and the schedule, parameterization, time input and data range are
  stated by the user.

Timesteps fed to the network are integer indices by default (``time_input="index"``); a network
trained on t / T takes ``time_input="scaled", time_scale=1/T``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from . import safeload
from . import parameterization as P
from .denoiser import TIME_INPUTS, Denoiser
from .schedules import (ADM_SCHEDULES, Schedule, adm_schedule, from_abar, from_betas,
                        from_diffusers_config, get_schedule, respace)

__all__ = ["FORMATS", "detect_format", "load_thirdparty", "load_diffusers", "load_adm",
           "load_plugin", "resolve_factory", "add_loader_arguments", "loader_kwargs_from_args",
           "DiffusersUNet", "WithClassLabel", "read_weights", "state_dict_candidates",
           "shared_prefix", "prefix_for", "IGNORED_FLAGS"]

FORMATS = ("diffusers", "diffusers-unet", "adm", "plugin")
WEIGHT_SUFFIXES = safeload.SAFETENSORS_SUFFIXES + safeload.PICKLE_SUFFIXES
# DDPM (Ho et al. 2020): what a bare diffusers UNet is assumed to be trained with
DEFAULT_SCHEDULER = {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                     "num_train_timesteps": 1000, "prediction_type": "epsilon"}
_NON_VP_SCHEDULERS = ("ScoreSdeVeScheduler", "KarrasVeScheduler", "FlowMatchEulerDiscreteScheduler",
                      "FlowMatchHeunDiscreteScheduler", "CMStochasticIterativeScheduler")


class WithClassLabel(nn.Module):
    """A class-conditional network with one fixed label for every sample, called as net(x, t)."""

    def __init__(self, net: nn.Module, label: int, keyword: str = "y"):
        super().__init__()
        self.net, self.keyword = net, keyword
        self.register_buffer("label", torch.tensor([int(label)]), persistent=False)

    def forward(self, x, t):
        return self.net(x, t, **{self.keyword: self.label.expand(x.shape[0])})


class DiffusersUNet(nn.Module):
    """A diffusers ``UNet2DModel`` called as ``net(x, t) -> tensor`` (its ``.sample``)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, class_labels=None):
        return self.unet(x, t, class_labels=class_labels).sample


# ---------------------------------------------------------------------------------------------
# detection

def _looks_adm(keys) -> bool:
    return "input_blocks.0.0.weight" in keys and "time_embed.0.weight" in keys


def detect_format(path, model_spec=None) -> str:
    """One of :data:`FORMATS` for a folder or weights file (``plugin`` whenever model_spec is set)."""
    path = Path(path).expanduser()
    if model_spec:
        return "plugin"
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path} (expected a diffusers folder, a "
                                f"checkpoint file {'/'.join(WEIGHT_SUFFIXES)}, or a built-in spec)")
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return "diffusers"
        config = path / "config.json"
        if config.is_file():
            cls = _read_json(config).get("_class_name")
            if cls == "UNet2DModel":
                return "diffusers-unet"
            raise ValueError(f"{config} describes a {cls!r}; biaskit loads diffusers UNet2DModel "
                             "folders (unconditional pixel-space models) only")
        raise ValueError(f"{path} is a folder without model_index.json (diffusers pipeline), "
                         "config.json (diffusers UNet2DModel) or biaskit.json (biaskit run)")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ValueError(f"{path}: unknown model file type {path.suffix!r}; supported: "
                         f"{', '.join(WEIGHT_SUFFIXES)}, diffusers folders, biaskit run folders")
    return "adm" if _looks_adm(safeload.read_state_dict(path)) else "unknown"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


# ---------------------------------------------------------------------------------------------
# shared options: schedule, time input, range

def _parse_range(data_range) -> tuple[float, float]:
    if data_range is None:
        return (-1.0, 1.0)
    if isinstance(data_range, str):
        parts = data_range.replace(":", ",").strip("[]() ").split(",")
        try:
            data_range = [float(p) for p in parts]
        except ValueError:
            data_range = []
    lo_hi = tuple(float(v) for v in data_range)
    if len(lo_hi) != 2 or not lo_hi[0] < lo_hi[1]:
        raise ValueError(f"data range must be two numbers LO,HI with LO < HI, got {data_range!r}")
    return lo_hi


def _parse_timestep_range(spec, T: int) -> list[int]:
    if isinstance(spec, str):
        lo, sep, hi = spec.partition(":")
        try:
            lo, hi = int(lo), int(hi)
        except ValueError:
            raise ValueError(f"trained timesteps must be LO:HI (inclusive integers), got {spec!r}") \
                from None
    else:
        lo, hi = (int(v) for v in spec)
    if not 0 <= lo <= hi < T:
        raise ValueError(f"trained timesteps {lo}:{hi} must satisfy 0 <= LO <= HI < {T}")
    return list(range(lo, hi + 1))


def _vector(sd: dict, key: str, what: str) -> torch.Tensor:
    if key not in sd:
        vectors = [k for k, v in sd.items() if v.ndim == 1 and v.numel() > 10]
        raise ValueError(f"{what} key {key!r} is not in the checkpoint; 1-D tensors found: "
                         f"{', '.join(vectors) or 'none'}")
    return sd[key].detach().double().cpu()


def resolve_schedule(state_dict: dict | None = None, *, abar_key=None, betas_key=None,
                     noise_schedule=None, diffusion_steps=None, scheduler_config=None,
                     default: dict | None = None, adm: bool = False) -> tuple[Schedule, str]:
    """The training schedule from exactly one source, and a word saying which source it was.

    Sources: a tensor of abar (``abar_key``) or betas (``betas_key``) in the checkpoint, a diffusers
    scheduler config (dict or path; diffusers' meaning: its linear does not scale with T), a named
    schedule (``noise_schedule``, ``diffusion_steps``; with ``adm`` in guided-diffusion's meaning,
    :func:`biaskit.schedules.adm_schedule`), else ``default`` (a diffusers-style dict) or DDPM's
    linear T = 1000.
    """
    given = [n for n, v in [("abar_key", abar_key), ("betas_key", betas_key),
                            ("scheduler_config", scheduler_config),
                            ("noise_schedule", noise_schedule)] if v is not None]
    if len(given) > 1:
        raise ValueError(f"give one schedule source, not {' and '.join(given)}")
    if abar_key is not None:
        return from_abar(_vector(state_dict or {}, abar_key, "abar"), name=f"abar:{abar_key}"), \
            f"checkpoint tensor {abar_key!r} (abar)"
    if betas_key is not None:
        return from_betas(_vector(state_dict or {}, betas_key, "betas"), name=f"betas:{betas_key}"), \
            f"checkpoint tensor {betas_key!r} (betas)"
    if scheduler_config is not None:
        return from_diffusers_config(scheduler_config), f"scheduler config {scheduler_config}"
    if noise_schedule is not None or diffusion_steps is not None:
        name, T = noise_schedule or "linear", 1000 if diffusion_steps is None else int(diffusion_steps)
        if adm:
            meant = ADM_SCHEDULES.get(name, name)
            return adm_schedule(name, T), f"guided-diffusion {name} ({meant}), T={T}"
        return get_schedule(name, T), f"{name}, T={T}"
    return from_diffusers_config(default or DEFAULT_SCHEDULER), "default (DDPM linear, T=1000)"


def _denoiser(net, schedule, parameterization, *, time_input, time_scale, data_range, channels,
              trained_timesteps, info) -> Denoiser:
    if trained_timesteps is not None:
        schedule = respace(schedule, _parse_timestep_range(trained_timesteps, schedule.T))
        info["trained_timesteps"] = [int(schedule.timesteps[0]), int(schedule.timesteps[-1])]
    time_input = time_input or "index"
    if not callable(time_input) and time_input not in TIME_INPUTS:
        raise ValueError(f"unknown time input {time_input!r}; valid: {', '.join(TIME_INPUTS)}")
    net.eval().requires_grad_(False)
    return Denoiser(net, schedule, parameterization, time_input=time_input, time_scale=time_scale,
                    data_range=_parse_range(data_range), channels=channels,
                    name=info.get("name", "model"), info=info)


def _file_info(path: Path, fmt: str) -> dict:
    return {"name": path.stem if path.is_file() else path.name, "format": fmt,
            "path": str(path), "sha256": safeload.file_sha256(path) if path.is_file() else None}


# ---------------------------------------------------------------------------------------------
# weights files holding one or several state dicts

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


def read_weights(path, *, state_dict_key=None, state_dict_prefix=None, map_location="cpu"
                 ) -> tuple[dict, dict, dict]:
    """(all tensors by dotted name, the chosen state dict, a note) from a weights file.

    A file holding several state dicts ({'model': ..., 'ema': ...}) needs ``state_dict_key``, or
    ``state_dict_prefix`` starting with one of the keys ('ema.'); without either the EMA one is
    taken when exactly one key names EMA (and the note says so), otherwise the keys are listed.
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


# ---------------------------------------------------------------------------------------------
# diffusers

_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model{v}.safetensors", "diffusion_pytorch_model{v}.bin")


def _diffusers_state_dict(folder: Path, variant=None, map_location="cpu") -> tuple[dict, list[Path]]:
    v = f".{variant}" if variant else ""
    for pattern in _DIFFUSERS_WEIGHTS:
        name = pattern.format(v=v)
        if (folder / name).is_file():
            return safeload.read_state_dict(folder / name, map_location), [folder / name]
        index = folder / f"{name}.index.json"
        if index.is_file():  # sharded: {"weight_map": {key: shard file}}
            shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
            sd = {}
            for shard in shards:
                sd.update(safeload.read_state_dict(folder / shard, map_location))
            return sd, [folder / s for s in shards]
    found = sorted(p.name for p in folder.iterdir())
    raise FileNotFoundError(f"no diffusers weights in {folder}: expected "
                            f"{' or '.join(p.format(v=v) for p in _DIFFUSERS_WEIGHTS)} "
                            f"(or a sharded .index.json); found {found}")


def load_diffusers(path, *, scheduler_config=None, parameterization=None, noise_schedule=None,
                   diffusion_steps=None, time_input=None, time_scale=None, data_range=None,
                   class_label=None, trained_timesteps=None, variant=None, map_location="cpu",
                   device=None) -> Denoiser:
    """A diffusers pipeline folder or bare UNet2DModel folder as a Denoiser (weights read safely)."""
    from diffusers import UNet2DModel
    path = Path(path).expanduser()
    fmt = detect_format(path)
    unet_dir = path / "unet" if fmt == "diffusers" else path
    if fmt == "diffusers":
        index = _read_json(path / "model_index.json")
        if "unet" not in index or not (unet_dir / "config.json").is_file():
            parts = sorted(k for k in index if not k.startswith("_"))
            raise ValueError(f"{path} is a diffusers pipeline without a unet/ folder (components: "
                             f"{', '.join(parts)}); biaskit loads UNet2DModel pipelines")
        if scheduler_config is None and noise_schedule is None and diffusion_steps is None:
            scheduler_config = path / "scheduler" / "scheduler_config.json"
    elif fmt != "diffusers-unet":
        raise ValueError(f"{path} is not a diffusers folder")
    config = _read_json(unet_dir / "config.json")
    if config.get("_class_name") != "UNet2DModel":
        raise ValueError(f"{unet_dir} holds a {config.get('_class_name')!r}; only UNet2DModel "
                         "(unconditional pixel-space UNets) is supported")
    sched_cfg = dict(DEFAULT_SCHEDULER)
    if scheduler_config is not None:
        cfg_path = Path(scheduler_config)
        sched_cfg = _read_json(cfg_path / "scheduler_config.json" if cfg_path.is_dir() else cfg_path) \
            if isinstance(scheduler_config, (str, Path)) else dict(scheduler_config)
        if sched_cfg.get("_class_name") in _NON_VP_SCHEDULERS:
            raise ValueError(f"scheduler {sched_cfg['_class_name']} is not a variance-preserving "
                             "discrete-time scheduler; biaskit probes VP (DDPM-family) models")
    elif noise_schedule is None and diffusion_steps is None:
        warnings.warn(f"{path}: no scheduler config; assuming DDPM's linear schedule (1e-4..0.02, "
                      "T=1000) and epsilon prediction. Pass scheduler_config= / --scheduler-config "
                      "if the model was trained otherwise.", stacklevel=2)
    schedule, source = resolve_schedule(scheduler_config=sched_cfg if noise_schedule is None and
                                        diffusion_steps is None else None,
                                        noise_schedule=noise_schedule, diffusion_steps=diffusion_steps)
    if config.get("time_embedding_type", "positional") == "fourier" and time_input is None:
        raise ValueError(f"{unet_dir} uses Fourier (continuous-sigma) time features, as score-SDE "
                         "models do; state how it takes time with time_input= / --time-input")
    unet = UNet2DModel.from_config(config)
    sd, files = _diffusers_state_dict(unet_dir, variant, map_location)
    if hasattr(unet, "_convert_deprecated_attention_blocks"):  # query/key/value -> to_q/to_k/to_v
        sd = unet._convert_deprecated_attention_blocks(sd)
    safeload.load_into(unet, sd, what=f"weights in {files[0].name}")
    net = DiffusersUNet(unet)
    if config.get("num_class_embeds") or config.get("class_embed_type"):
        if class_label is None:
            raise ValueError(f"{unet_dir} is class-conditional; pass class_label= / --class-label K")
        net = WithClassLabel(net, class_label, keyword="class_labels")
    kind = parameterization or sched_cfg.get("prediction_type", "epsilon")
    info = _file_info(path, fmt)
    info.update(sha256={str(f.relative_to(path)): safeload.file_sha256(f) for f in files},
                config={k: v for k, v in config.items() if not k.startswith("_")},
                scheduler=sched_cfg.get("_class_name", "default"), schedule_source=source)
    return _denoiser(net.to(device), schedule, kind, time_input=time_input, time_scale=time_scale,
                     data_range=data_range, channels=config.get("in_channels", 3),
                     trained_timesteps=trained_timesteps, info=info)


# ---------------------------------------------------------------------------------------------
# guided-diffusion / ADM

# guided-diffusion / improved-diffusion / Debias-fork script flags that do not change what the
# network computes for a given (x_t, t): accepted as pasted, named as ignored
IGNORED_FLAGS = {
    "use_fp16": "evaluated in float32; --amp for bf16", "dropout": "off at inference",
    "use_checkpoint": "gradient checkpointing", "use_kl": "training loss",
    "rescale_learned_sigmas": "training loss", "schedule_sampler": "training",
    "lr": "training", "weight_decay": "training", "lr_anneal_steps": "training",
    "microbatch": "training", "ema_rate": "training", "log_interval": "training",
    "save_interval": "training", "resume_checkpoint": "training", "fp16_scale_growth": "training",
    "data_dir": "training data; give --data", "batch_size": "probe --batch-size",
    "num_samples": "sample --n", "use_ddim": "sample --sampler ddim",
    "clip_denoised": "sample --clip", "sigma_small": "sample --variance fixed_small",
    "model_path": "give the checkpoint as MODEL",
}


def _note_ignored(path: Path, ignored: dict) -> None:
    if ignored:
        items = ", ".join(f"{k}={v} ({IGNORED_FLAGS[k]})" for k, v in ignored.items())
        warnings.warn(f"{path.name}: flags ignored, they do not change the network's outputs: {items}",
                      stacklevel=3)


def _adm_parameterization(parameterization, predict_xstart, predict_v) -> str:
    """eps, or x0 (predict_xstart), or v (the Debias fork's predict_v: v = alpha eps - sigma x0)."""
    flagged = [k for k, on in (("x0", predict_xstart), ("v", predict_v)) if on]
    if len(flagged) > 1:
        raise ValueError("predict_xstart and predict_v are both on; a model predicts one target")
    kind = flagged[0] if flagged else "eps"
    if parameterization is not None and (flagged or predict_xstart is not None or predict_v is not None) \
            and P.canonical(parameterization) != kind:
        raise ValueError(f"parameterization {parameterization!r} contradicts the flags "
                         f"predict_xstart={predict_xstart}, predict_v={predict_v} ({kind})")
    return parameterization or kind


def _adm_time(time_input, time_scale, rescale_timesteps, schedule: Schedule):
    """guided-diffusion feeds the timestep t, or t * 1000 / T_train with rescale_timesteps."""
    if not rescale_timesteps:
        return time_input, time_scale
    if time_input not in (None, "scaled"):
        raise ValueError(f"rescale_timesteps feeds t * 1000 / T; it excludes time_input {time_input!r}")
    return "scaled", 1000.0 / schedule.num_train_timesteps


def load_adm(path, *, parameterization=None, predict_xstart=None, predict_v=None, noise_schedule=None,
             diffusion_steps=None, rescale_timesteps=None, timestep_respacing=None, abar_key=None,
             betas_key=None, scheduler_config=None,
             time_input=None, time_scale=None, data_range=None, class_label=None,
             state_dict_prefix=None, state_dict_key=None, trained_timesteps=None, map_location="cpu",
             device=None, **flags) -> Denoiser:
    """A guided-diffusion / improved-diffusion / Debias-fork state dict as a Denoiser.

    ``flags`` are guided-diffusion's script flags (``num_channels``, ``num_head_channels``,
    ``attention_resolutions`` with ``image_size``, ``channel_mult=""`` ...; see
    :func:`biaskit.models.adm.flags_to_config`); they override what the state dict shows, so
    ``biaskit.load(path, **model_and_diffusion_defaults())`` works. Flags in
    :data:`IGNORED_FLAGS` are accepted and named in one warning.
    ``noise_schedule`` / ``diffusion_steps`` mean what guided-diffusion's get_named_beta_schedule
    means (``linear`` scales DDPM's betas by 1000/T: :func:`biaskit.schedules.linear_adm`).
    ``rescale_timesteps``: the network was fed t * 1000 / T instead of t.
    ``timestep_respacing`` ("250", "ddim50", "10,15,20"): the respaced model of guided-diffusion's
    SpacedDiffusion (the kept steps, betas from abar; the network still sees the original t).
    ``predict_v``: the Debias fork's v target.
    """
    from .models.adm import NOT_IN_STATE_DICT, ADMUNet, flags_to_config, infer_adm_config
    path = Path(path).expanduser()
    ignored = {k: flags.pop(k) for k in list(flags) if k in IGNORED_FLAGS and flags[k] is not None}
    full, sd, note = read_weights(path, state_dict_key=state_dict_key,
                                  state_dict_prefix=state_dict_prefix, map_location=map_location)
    if not _looks_adm(sd):
        raise ValueError(_unknown_message(path, sd))
    inferred = infer_adm_config(sd)
    config = flags_to_config(inferred, flags)
    _note_ignored(path, ignored)
    heads_given = flags.get("num_heads") is not None or flags.get("num_head_channels") not in (None, -1)
    if not heads_given:  # the middle block always has attention, so the head count always matters
        warnings.warn(f"{path.name}: the number of attention heads is not stored in an ADM state "
                      f"dict; assuming num_heads={config['num_heads']}. Released guided-diffusion "
                      "models use --num-head-channels 64; improved-diffusion's use --num-heads 4. "
                      "Pass the flag the model was trained with (probe with data checks it).",
                      stacklevel=2)
    net = safeload.load_into(ADMUNet(**config), sd, what=f"state dict in {path.name}")
    if config["num_classes"] is not None:
        if class_label is None:
            raise ValueError(f"{path.name} is class-conditional ({config['num_classes']} classes); "
                             "pass class_label= / --class-label K to probe one class")
        net = WithClassLabel(net, class_label)
    schedule, source = resolve_schedule(full, abar_key=abar_key, betas_key=betas_key,
                                        noise_schedule=noise_schedule, diffusion_steps=diffusion_steps,
                                        scheduler_config=scheduler_config, adm=True)
    if timestep_respacing not in (None, ""):
        if trained_timesteps is not None:
            raise ValueError("give timestep_respacing or trained_timesteps, not both")
        schedule = respace(schedule, timestep_respacing)
    time_input, time_scale = _adm_time(time_input, time_scale, rescale_timesteps, schedule)
    info = _file_info(path, "adm")
    info.update(note, config=config, inferred_config=inferred, schedule_source=source,
                assumed=[k for k in NOT_IN_STATE_DICT if flags.get(k) is None],
                given={k: flags[k] for k in NOT_IN_STATE_DICT if flags.get(k) is not None},
                rescale_timesteps=bool(rescale_timesteps), ignored_flags=ignored)
    if timestep_respacing not in (None, ""):
        info["timestep_respacing"] = str(timestep_respacing)
    kind = _adm_parameterization(parameterization, predict_xstart, predict_v)
    return _denoiser(net.to(device), schedule, kind, time_input=time_input, time_scale=time_scale,
                     data_range=data_range, channels=config["in_channels"],
                     trained_timesteps=trained_timesteps, info=info)


# ---------------------------------------------------------------------------------------------
# plugins

def resolve_factory(model_spec: str):
    """``"path/to/file.py:name"`` or ``"package.module:name"`` -> the callable ``name``.

    This imports (runs) the user's own module: it is code the user chose, unlike a checkpoint.
    """
    target, sep, attr = str(model_spec).rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"model spec must be MODULE_OR_FILE.py:FACTORY, got {model_spec!r}")
    file = Path(target).expanduser()
    if target.endswith(".py") or file.is_file():
        if not file.is_file():
            raise FileNotFoundError(f"model spec file not found: {file}")
        spec = importlib.util.spec_from_file_location(f"biaskit_plugin_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise ValueError(f"model spec {model_spec!r}: cannot import {target!r} ({e})") from None
    if not hasattr(module, attr):
        names = sorted(n for n in vars(module) if callable(getattr(module, n)) and not n.startswith("_"))
        raise ValueError(f"model spec {model_spec!r}: {target} has no {attr!r}; callables there: "
                         f"{', '.join(names)}")
    return getattr(module, attr)


def load_plugin(weights, model_spec, *, parameterization=None, noise_schedule=None,
                diffusion_steps=None, abar_key=None, betas_key=None, scheduler_config=None,
                time_input=None, time_scale=None, data_range=None, channels=None,
                state_dict_prefix=None, state_dict_key=None, trained_timesteps=None, strict=True,
                map_location="cpu", device=None, factory_kwargs=None) -> Denoiser:
    """A user-supplied network (``model_spec`` factory) with weights read safely from ``weights``.

    The schedule comes from one of abar_key / betas_key (tensors in the checkpoint),
    scheduler_config, noise_schedule (+ diffusion_steps); without any, DDPM linear T=1000 with a
    warning. ``weights=None`` keeps the factory's own parameters.
    """
    factory = resolve_factory(model_spec)
    net = factory(**(factory_kwargs or {}))
    if not isinstance(net, nn.Module):
        raise ValueError(f"model spec {model_spec!r} returned a {type(net).__name__}, not a torch "
                         "nn.Module")
    full = {}
    info = {"name": Path(str(model_spec).rpartition(":")[0]).stem, "format": "plugin",
            "model_spec": str(model_spec)}
    if weights is not None:
        path = Path(weights).expanduser()
        full, sd, note = read_weights(path, state_dict_key=state_dict_key,
                                      state_dict_prefix=state_dict_prefix, map_location=map_location)
        _suggest_prefix(net, sd, path)
        safeload.load_into(net, sd, strict=strict, what=f"weights in {path.name}")
        info.update(_file_info(path, "plugin"), **note)
    if all(v is None for v in (noise_schedule, diffusion_steps, abar_key, betas_key, scheduler_config)):
        warnings.warn("no schedule given for the plugin model; assuming DDPM linear, T=1000 (pass "
                      "--noise-schedule/--diffusion-steps, --abar-key, --betas-key or "
                      "--scheduler-config)", stacklevel=2)
    schedule, source = resolve_schedule(full, abar_key=abar_key, betas_key=betas_key,
                                        noise_schedule=noise_schedule, diffusion_steps=diffusion_steps,
                                        scheduler_config=scheduler_config)
    info["schedule_source"] = source
    return _denoiser(net.to(device), schedule, parameterization or "eps", time_input=time_input,
                     time_scale=time_scale, data_range=data_range, channels=channels,
                     trained_timesteps=trained_timesteps, info=info)


def _suggest_prefix(net: nn.Module, sd: dict, path: Path) -> None:
    """A missing or partial --state-dict-prefix: name the prefix the file's keys carry."""
    expected = list(net.state_dict())
    if not expected or all(k in sd for k in expected):
        return
    p = prefix_for(expected, sd)
    if p:
        raise ValueError(f"the keys of {path.name} carry the prefix {p!r} before the network's own "
                         f"names ({p}{expected[0]} for {expected[0]}): pass --state-dict-prefix "
                         f"{p} (added to any prefix already given)")


# ---------------------------------------------------------------------------------------------
# dispatch

def _unknown_message(path: Path, sd: dict) -> str:
    nested = sorted({k.split("input_blocks.0.0.weight")[0] for k in sd
                     if k.endswith("input_blocks.0.0.weight") and k != "input_blocks.0.0.weight"})
    hint = (f" The ADM keys sit under the prefix {nested[0]!r}: pass --state-dict-prefix "
            f"{nested[0]}." if nested else "")
    return (f"cannot tell what network {path.name} is for: its keys ({safeload.key_summary(sd)}) "
            f"are not an ADM / guided-diffusion UNet's (input_blocks.*, time_embed.*).{hint} "
            "Options: give the network with --model-spec FILE.py:FACTORY (plus --parameterization, "
            "a schedule, --time-input and --data-range), or use a diffusers folder.")


_PLUGIN_SPEC_SUFFIX = ".py:"


def load_thirdparty(spec, *, model_spec=None, weights=None, **kwargs) -> Denoiser:
    """Any third-party model spec -> Denoiser (see the module docstring for the formats).

    ``spec`` is a diffusers folder, a weights file, or a plugin spec ``FILE.py:FACTORY`` (then
    ``weights`` names the state dict). Keyword options are those of :func:`load_diffusers`,
    :func:`load_adm` (including guided-diffusion flags) and :func:`load_plugin`.
    """
    text = str(spec)
    if model_spec is None and _PLUGIN_SPEC_SUFFIX in text and not Path(text).exists():
        model_spec, spec = text, weights  # the spec names the network; weights the file
    elif weights is not None:
        if model_spec is None:
            raise ValueError("weights= / --weights goes with model_spec= / --model-spec")
        if Path(text) != Path(weights):
            raise ValueError(f"two weights files given: {spec} and weights={weights}")
    if model_spec is not None:
        _check_kwargs(kwargs, load_plugin, "plugin")
        return load_plugin(spec, model_spec, **kwargs)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES:
        return load_adm(path, **kwargs)  # raises the unknown-network error for non-ADM keys
    fmt = detect_format(path)  # a diffusers folder; raises for missing and unknown paths
    _check_kwargs(kwargs, load_diffusers, fmt)
    return load_diffusers(path, **kwargs)


def _check_kwargs(kwargs: dict, fn, fmt: str) -> None:
    valid = [p for p in inspect.signature(fn).parameters if p not in ("path", "weights", "model_spec")]
    given = {k for k, v in kwargs.items() if v is not None}
    bad = sorted(given - set(valid))
    if bad:
        raise ValueError(f"option(s) {', '.join(bad)} do not apply to a {fmt} model; valid: "
                         f"{', '.join(valid)}")


# ---------------------------------------------------------------------------------------------
# a network that refuses its time input

# ---------------------------------------------------------------------------------------------
# command line

def _bool(text) -> bool:
    if isinstance(text, bool):
        return text
    low = str(text).lower()
    if low in ("1", "true", "yes", "y", "on"):
        return True
    if low in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _flag(group, name: str, **kw):
    """Add --a-b with the guided-diffusion spelling --a_b as an alias."""
    dashed = "--" + name.replace("_", "-")
    names = [dashed] if "_" not in name else [dashed, "--" + name]
    group.add_argument(*names, dest=name, default=None, **kw)


_ADM_FLAGS = {  # name: (argparse kwargs)
    "num_channels": dict(type=int, help="ADM base width (overrides the inferred one)"),
    "num_res_blocks": dict(type=int, help="ADM res blocks per level"),
    "channel_mult": dict(help="ADM channel multipliers, e.g. 1,2,2,2"),
    "attention_resolutions": dict(help="ADM attention at these image resolutions, e.g. 32,16,8 "
                                       "(needs --image-size)"),
    "num_heads": dict(type=int, help="ADM attention heads (not stored in the weights)"),
    "num_head_channels": dict(type=int, help="ADM channels per attention head, e.g. 64 for the "
                                             "released guided-diffusion models"),
    "num_heads_upsample": dict(type=int, help="ADM heads in the decoder (deprecated flag)"),
    "image_size": dict(type=int, help="image size the model was trained at"),
}
_ADM_BOOLS = ("learn_sigma", "class_cond", "use_scale_shift_norm", "resblock_updown",
              "use_new_attention_order")


def add_loader_arguments(parser) -> None:
    """Flags that describe a third-party checkpoint (all default to None = infer / default).

    ``parser``: an ArgumentParser (a group is made) or an argument group to add them to.
    """
    g = parser.add_argument_group(
        "third-party checkpoints", "diffusers folders, guided-diffusion .pt files, or any network "
        "via --model-spec; guided-diffusion flag spellings (--num_channels ...) work too") \
        if isinstance(parser, argparse.ArgumentParser) else parser  # or a group given by the caller
    _flag(g, "model_spec", metavar="FILE.py:FACTORY",
          help="user network: a factory returning an nn.Module called as net(x, time_in)")
    _flag(g, "weights", metavar="PATH", help="state dict for --model-spec (.safetensors/.pt/...)")
    _flag(g, "parameterization", help="what the network predicts: eps, x0, v, flow "
                                      "(diffusers: epsilon, sample, v_prediction)")
    _flag(g, "noise_schedule", help="named schedule: linear, cosine, scaled_linear, sigmoid")
    _flag(g, "diffusion_steps", type=int, help="training steps T (default 1000)")
    _flag(g, "predict_xstart", type=_bool, nargs="?", const=True,
          help="ADM: the network predicts x0")
    _flag(g, "rescale_timesteps", type=_bool, nargs="?", const=True,
          help="ADM (improved-diffusion): the network was fed t * 1000 / T")
    _flag(g, "predict_v", type=_bool, nargs="?", const=True,
          help="ADM (Debias fork): the network predicts v = alpha eps - sigma x0")
    _flag(g, "timestep_respacing", metavar="SPEC",
          help="ADM: probe / sample guided-diffusion's respaced model, e.g. 250, ddim50, 10,15,20")
    _flag(g, "abar_key", metavar="KEY", help="read abar_t from this checkpoint tensor")
    _flag(g, "betas_key", metavar="KEY", help="read beta_t from this checkpoint tensor")
    _flag(g, "scheduler_config", metavar="PATH", help="diffusers scheduler_config.json (or folder)")
    _flag(g, "time_input", choices=TIME_INPUTS,
          help="how t reaches the network: index (integer timestep), scaled (timestep * "
               "--time-scale), sigma, logsnr, alpha_sigma")
    _flag(g, "time_scale", type=float, help="factor for --time-input scaled (e.g. 0.001 for t/1000)")
    _flag(g, "data_range", metavar="LO,HI",
          help="range of clean data, default -1,1; write --data-range=-0.5,0.5 for negative LO")
    _flag(g, "state_dict_prefix", metavar="PREFIX", help="keep keys starting with this and strip "
                                                         "it (e.g. gt., module. or ema.)")
    _flag(g, "state_dict_key", metavar="KEY", help="which state dict of a file holding several "
                                                   "(e.g. ema or model); default: the EMA one")
    _flag(g, "trained_timesteps", metavar="LO:HI",
          help="only these timesteps (inclusive) are probed, e.g. the range the model was trained on")
    _flag(g, "class_label", type=int, help="class fed to a class-conditional model")
    for name, kw in _ADM_FLAGS.items():
        _flag(g, name, **kw)
    for name in _ADM_BOOLS:
        _flag(g, name, type=_bool, nargs="?", const=True, metavar="BOOL",
              help=f"ADM {name} (inferred from the weights unless given)")
    for name in IGNORED_FLAGS:  # pasted guided-diffusion flags: accepted, named as ignored
        g.add_argument("--" + name, dest=_IGNORED_DEST + name, nargs="?", const="True", default=None,
                       help=argparse.SUPPRESS)
    g.add_argument("--settings-check", choices=("auto", "warn", "off"), default="auto",
                   help="ADM with --data: compare the settings the weights cannot tell (time "
                        "scaling, heads, attention order) on held-out samples; auto warns when "
                        "another setting is clearly better and stops when it is certain")


_IGNORED_DEST = "ignored_flag_"
_LOADER_DESTS = ("model_spec", "weights", "parameterization", "noise_schedule", "diffusion_steps",
                 "predict_xstart", "predict_v", "rescale_timesteps", "timestep_respacing",
                 "abar_key", "betas_key", "scheduler_config", "time_input", "time_scale",
                 "data_range", "state_dict_prefix", "state_dict_key", "trained_timesteps",
                 "class_label", *_ADM_FLAGS, *_ADM_BOOLS)


def loader_kwargs_from_args(args: argparse.Namespace) -> dict:
    """The keyword arguments for :func:`biaskit.load` that the user actually gave."""
    given = {k: getattr(args, k) for k in _LOADER_DESTS if getattr(args, k, None) is not None}
    given.update({k: getattr(args, _IGNORED_DEST + k) for k in IGNORED_FLAGS
                  if getattr(args, _IGNORED_DEST + k, None) is not None})
    return given
