"""diffusers folders -> Denoiser: a pipeline (``model_index.json``, ``unet/``, ``scheduler/``) or a
bare ``UNet2DModel`` folder (``config.json`` + weights).

The UNet is built from its ``config.json`` with ``UNet2DModel.from_config`` and the weights are
read by :mod:`biaskit.safeload` (never ``from_pretrained``, no remote code). Parameterization from
the scheduler's ``prediction_type``; schedule from its beta settings. A bare UNet's schedule comes
from ``scheduler_config`` or defaults to DDPM's linear 1e-4..0.02, T = 1000, epsilon. A flow-matching
or EDM scheduler makes the model a ProcessDenoiser of that process (:mod:`.process_folders`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from torch import nn

from .. import safeload
from ..schedules import check_scheduler_config
from ..denoiser import Denoiser
from .build import (DEFAULT_SCHEDULER, conditioning_of, file_source, image_shape, make_denoiser,
                    read_json, resolve_schedule)
from .options import check_options
from .process_folders import EDM_SCHEDULERS, FLOW_SCHEDULERS, is_process_scheduler_config, process_denoiser

__all__ = ["DiffusersUNet", "load_diffusers", "folder_format"]

_NON_VP_SCHEDULERS = ("ScoreSdeVeScheduler", "KarrasVeScheduler", "CMStochasticIterativeScheduler",
                      "FlowMatchLCMScheduler", "CosineDPMSolverMultistepScheduler")
# diffusers schedulers over a discrete VP (DDPM-family) schedule: their beta settings are read
VP_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "DDPMParallelScheduler",
                 "DDIMParallelScheduler", "DDIMInverseScheduler", "DPMSolverMultistepScheduler",
                 "DPMSolverSinglestepScheduler", "DPMSolverMultistepInverseScheduler",
                 "DPMSolverSDEScheduler", "DEISMultistepScheduler", "UniPCMultistepScheduler",
                 "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
                 "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "LMSDiscreteScheduler",
                 "SASolverScheduler", "LCMScheduler", "TCDScheduler")
_WEIGHTS = ("diffusion_pytorch_model{v}.safetensors", "diffusion_pytorch_model{v}.bin")


class DiffusersUNet(nn.Module):
    """A diffusers ``UNet2DModel`` called as ``net(x, t) -> tensor`` (its ``.sample``)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, class_labels=None):
        return self.unet(x, t, class_labels=class_labels).sample


def folder_format(path: Path) -> str:
    """``diffusers`` (a pipeline) or ``diffusers-unet`` (a bare UNet2DModel) for a folder;
    ValueError for any other folder."""
    if (path / "model_index.json").is_file():
        return "diffusers"
    config = path / "config.json"
    if config.is_file():
        cls = read_json(config).get("_class_name")
        if cls == "UNet2DModel":
            return "diffusers-unet"
        raise ValueError(f"{config} describes a {cls!r}; biaskit loads diffusers UNet2DModel "
                         "folders (unconditional pixel-space models) only")
    raise ValueError(f"{path} is a folder without model_index.json (diffusers pipeline), "
                     "config.json (diffusers UNet2DModel) or biaskit.json (biaskit run)")


def _state_dict(folder: Path, variant=None, map_location="cpu") -> tuple[dict, list[Path]]:
    v = f".{variant}" if variant else ""
    for pattern in _WEIGHTS:
        name = pattern.format(v=v)
        if (folder / name).is_file():
            return safeload.read_state_dict(folder / name, map_location), [folder / name]
        index = folder / f"{name}.index.json"
        if index.is_file():  # sharded: {"weight_map": {key: shard file}}
            shards = sorted(set(read_json(index).get("weight_map", {}).values()))
            sd = {}
            for shard in shards:
                sd.update(safeload.read_state_dict(folder / shard, map_location))
            return sd, [folder / s for s in shards]
    found = sorted(p.name for p in folder.iterdir())
    raise FileNotFoundError(f"no diffusers weights in {folder}: expected "
                            f"{' or '.join(p.format(v=v) for p in _WEIGHTS)} "
                            f"(or a sharded .index.json); found {found}")


def _unet_dir(path: Path, fmt: str) -> Path:
    if fmt != "diffusers":
        return path
    index = read_json(path / "model_index.json")
    if "unet" not in index or not (path / "unet" / "config.json").is_file():
        parts = sorted(k for k in index if not k.startswith("_"))
        raise ValueError(f"{path} is a diffusers pipeline without a unet/ folder (components: "
                         f"{', '.join(parts)}); biaskit loads UNet2DModel pipelines")
    return path / "unet"


def _scheduler_config(path: Path, fmt: str, o) -> dict:
    """The scheduler settings: the given config (dict, file or folder), the pipeline's own, or
    DDPM's default (with a warning when nothing says how the model was trained)."""
    named = any(v is not None for v in (o.noise_schedule, o.diffusion_steps,
                                        o.beta_start, o.beta_end))
    source = o.scheduler_config
    if source is None and fmt == "diffusers" and not named:
        source = path / "scheduler" / "scheduler_config.json"
    if source is None:
        if not named:
            warnings.warn(f"{path}: no scheduler config; assuming DDPM's linear schedule (1e-4..0.02, "
                          "T=1000) and epsilon prediction. Pass scheduler_config= / --scheduler-config "
                          "if the model was trained otherwise.", stacklevel=4)
        return dict(DEFAULT_SCHEDULER)
    if isinstance(source, (str, Path)):
        source = Path(source)
        cfg = read_json(source / "scheduler_config.json" if source.is_dir() else source)
    else:
        cfg = dict(source)
    where = f"scheduler config {source}" if isinstance(source, Path) else "scheduler config"
    check_scheduler_config(cfg, where)
    cls = cfg.get("_class_name")
    if cls is not None and cls not in VP_SCHEDULERS + FLOW_SCHEDULERS + EDM_SCHEDULERS:
        # an unknown class is refused, not read as DDPM: its keys may mean another process
        what = "is not supported" if cls in _NON_VP_SCHEDULERS else "is not a scheduler biaskit knows"
        raise ValueError(f"{where}: scheduler {cls} {what}; biaskit loads VP (DDPM-family) "
                         f"schedulers ({', '.join(VP_SCHEDULERS[:3])}, ...), flow matching "
                         f"({', '.join(FLOW_SCHEDULERS)}) and EDM ({', '.join(EDM_SCHEDULERS)})")
    return cfg


def load_diffusers(path, **options) -> Denoiser:
    """A diffusers pipeline folder or bare UNet2DModel folder as a Denoiser (weights read safely);
    ``options``: those of :data:`biaskit.loaders.options.OPTIONS` for this format."""
    from diffusers import UNet2DModel
    path = Path(path).expanduser()
    fmt = folder_format(path)
    o = check_options(options, fmt)
    unet_dir = _unet_dir(path, fmt)
    config = read_json(unet_dir / "config.json")
    if config.get("_class_name") != "UNet2DModel":
        raise ValueError(f"{unet_dir} holds a {config.get('_class_name')!r}; only UNet2DModel "
                         "(unconditional pixel-space UNets) is supported")
    sched_cfg = _scheduler_config(path, fmt, o)
    named = any(v is not None for v in (o.noise_schedule, o.diffusion_steps,
                                        o.beta_start, o.beta_end))
    process_cfg = not named and is_process_scheduler_config(sched_cfg)  # flow / EDM: no VP schedule
    if process_cfg:
        source = f"scheduler config {sched_cfg['_class_name']}"
    else:
        schedule, source = resolve_schedule(scheduler_config=None if named else sched_cfg,
                                            noise_schedule=o.noise_schedule,
                                            beta_start=o.beta_start, beta_end=o.beta_end,
                                            diffusion_steps=o.diffusion_steps)
    if config.get("time_embedding_type", "positional") == "fourier" and o.time_input is None:
        raise ValueError(f"{unet_dir} uses Fourier (continuous-sigma) time features, as score-SDE "
                         "models do; state how it takes time with time_input= / --time-input")
    unet = UNet2DModel.from_config(config)
    sd, files = _state_dict(unet_dir, o.variant, o.map_location)
    if hasattr(unet, "_convert_deprecated_attention_blocks"):  # query/key/value -> to_q/to_k/to_v
        sd = unet._convert_deprecated_attention_blocks(sd)
    safeload.load_into(unet, sd, what=f"weights in {files[0].name}")
    net = DiffusersUNet(unet)
    conditioning = conditioning_of(o, bool(config.get("num_class_embeds") or
                                           config.get("class_embed_type")), "class_labels", str(unet_dir))
    kind = o.parameterization or sched_cfg.get("prediction_type", "epsilon")
    channels = config.get("in_channels", 3)
    provenance = file_source(path, fmt, shape=image_shape(config.get("sample_size"), channels),
                             sha256={str(f.relative_to(path)): safeload.file_sha256(f) for f in files},
                             extras=dict(config={k: v for k, v in config.items() if not k.startswith("_")},
                                         scheduler=sched_cfg.get("_class_name", "default"),
                                         schedule_source=source))
    if process_cfg:
        return process_denoiser(net.to(o.device), sched_cfg, o, provenance, channels, conditioning)
    # a fully convolutional UNet: sample_size is nominal, other sizes run (any_size)
    return make_denoiser(net.to(o.device), schedule, kind, time_input=o.time_input,
                         time_scale=o.time_scale, data_range=o.data_range, channels=channels,
                         trained_timesteps=o.trained_timesteps, source=provenance, any_size=True,
                         conditioning=conditioning)
