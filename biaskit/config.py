"""Training configuration: one validated dataclass, loadable from YAML/JSON, presets, ``--set`` overrides.

Unknown keys and ill-typed values raise ``ValueError`` naming the dotted key (``loss.target``).
Presets live in ``biaskit/presets/<family>.yaml``: a ``base`` config, ``sizes`` (``quick`` trains
on 2 CPU cores in minutes, ``full`` is GPU-sized) and ``variants`` (one per loss weighting);
preset ``<family>-<variant>`` is base, then the size, then the variant, merged in that order.
(A preset's *size* is not a study *profile*, :mod:`biaskit.study.profiles`, which picks one per study.)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import checks
from .config_types import build as _build
from .config_types import coerce as _coerce
from .densities import get_density
from .processes import PROCESSES, DiscreteVP, process_from_config
from .weighting import get_weighting

__all__ = ["TrainConfig", "InitConfig", "ScheduleConfig", "ProcessConfig", "DataConfig", "ModelConfig",
           "LossConfig", "OptimConfig",
           "EMAConfig", "load_config", "apply_overrides", "get_preset", "preset_names", "to_dict"]

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class ScheduleConfig:
    name: str = "linear"
    T: int = 1000
    zero_terminal_snr: bool = False


# the defaults configs were saved with before the keys were read from the process classes;
# every other key defaults to None, the process's own default
_SAVED_PROCESS_DEFAULTS = {"shift": 1.0, "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0,
                           "logsnr_min": -15.0, "logsnr_max": 15.0}


def _process_fields() -> list:
    """``name``, then every key of every named process (:meth:`Process.keys`, typed by its
    constructor), then ``sigma_data``."""
    kinds: dict[str, type] = {}
    for cls in PROCESSES.values():
        for k, tp in cls.key_types().items():
            kinds.setdefault(k, tp)
    keys = [(k, tp if k in _SAVED_PROCESS_DEFAULTS else tp | None,
             field(default=_SAVED_PROCESS_DEFAULTS.get(k))) for k, tp in kinds.items()]
    return [("name", str, field(default=DiscreteVP.key)), *keys, ("sigma_data", float, field(default=0.5))]


ProcessConfig = dataclasses.make_dataclass("ProcessConfig", _process_fields())
ProcessConfig.__module__ = __name__
ProcessConfig.__doc__ = """The noise process x_t = alpha(t) x0 + sigma(t) eps (:mod:`biaskit.processes`).

    ``discrete`` (default): :class:`~biaskit.processes.DiscreteVP` of the ``schedule`` config,
    integer steps. Continuous time: a name of :data:`biaskit.processes.PROCESSES` (``flow``,
    ``edm`` / ``ve``, ``vp_cosine``, ``vp_linear_logsnr``, ``vesde``, ``vesde_tutorial``); the
    keys are those of the process classes' constructors, each name reading only its own (None:
    the process's default). ``sigma_data`` is EDM's, used by the ``edm`` target's preconditioning.
    """


@dataclass
class DataConfig:
    """A built-in dataset name (``gaussian``, ``gmm``, ``digits``, ``patches`` ...) or an image folder."""
    name: str = "gaussian"
    n_train: int | None = None    # None: the dataset's default size
    n_test: int | None = None
    options: dict = field(default_factory=dict)


@dataclass
class ModelConfig:
    """A registry name (:mod:`biaskit.models`) and its JSON-able constructor config.

    time_input: a discrete run's :data:`biaskit.denoiser.TIME_INPUTS`; a continuous process run's
    :data:`biaskit.formulations.PROCESS_TIME_INPUTS` (``index``, the default, then means the
    process's default: ``c_noise`` for the edm target, ``sigma`` under VE, else ``t``).
    time_scale: a process run's multiplier of ``t`` (None: 1000 when t lies in [0, 1], else 1)."""
    name: str = "mlp"
    config: dict = field(default_factory=dict)
    time_input: str = "index"
    time_scale: float | None = None


@dataclass
class LossConfig:
    """target: eps, x0, v or flow (and edm, EDM's preconditioned F, under a continuous process);
    weighting: a spec string of :func:`biaskit.weighting.get_weighting`
    (``debias``, ``min_snr:5``, ``p2:k=1:gamma=0.5``), applied in the target's space;
    snr_min: clamp snr from below (eps-space weights at zero terminal snr); normalize: none, mean, max
    (of the x0-space weight under p(t), one constant for every target);
    density: the training-time density over logsnr of any run
    (:func:`biaskit.densities.get_density`: ``uniform`` in the process's own t, uniform steps
    on a discrete schedule; ``lognormal:MEAN:STD`` (a normal density over logsnr),
    ``lognormal_sigma:-1.2:1.2``, ``logit_normal:0:1``, ...); t_sampling: its older name, an
    alias (read by :meth:`time_density`; give one of the two);
    uncertainty: EDM2's learned log-variance u(lam), loss w mse / exp(u) + u
    (:mod:`biaskit.train.uncertainty`; continuous processes);
    input_perturbation: gamma of Ning et al. 2023, the network is fed x_t + gamma sigma_t xi
    (xi ~ N(0, I)) while the target stays that of x_t; 0 (default) is the usual training,
    bit for bit (discrete runs);
    label_dropout: a class-conditional run's (model.config.num_classes > 0) probability of
    feeding the null class instead of a sample's label (classifier-free guidance;
    :mod:`biaskit.train.conditional`)."""
    target: str = "eps"
    weighting: str = "constant"
    snr_min: float | None = None
    normalize: str = "none"
    t_sampling: str = "uniform"
    density: str = "uniform"
    uncertainty: bool = False
    input_perturbation: float = 0.0
    label_dropout: float = 0.0

    def parsed_weighting(self):
        """``weighting`` as a :class:`~biaskit.weighting.Weighting`, parsed once per spec string."""
        cached = self.__dict__.get("_parsed")
        if cached is None or cached[0] != self.weighting:
            cached = self.__dict__["_parsed"] = (self.weighting, get_weighting(self.weighting))
        return cached[1]

    def time_density(self) -> str:
        """The training-time density: ``density``, or ``t_sampling`` (its alias) when only that is set."""
        if self.t_sampling != "uniform" and self.density not in ("uniform", self.t_sampling):
            raise ValueError(f"loss.t_sampling: {self.t_sampling!r} is an alias of loss.density, "
                             f"which is {self.density!r}: give one of the two")
        return self.t_sampling if self.density == "uniform" else self.density


@dataclass
class OptimConfig:
    """AdamW, linear warm-up then a constant or cosine learning rate (to min_lr_ratio * lr)."""
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    eps: float = 1e-8
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0


@dataclass
class EMAConfig:
    """EMA of the weights; before ``start`` the EMA copies the online weights."""
    decay: float = 0.999
    start: int = 0


@dataclass
class InitConfig:
    """Fine-tuning: ``path`` names a model :func:`biaskit.load` reads (a diffusers folder, an ADM
    file, a plugin's weights, a biaskit run) with the loader ``options`` (e.g. ``model_spec``,
    ``time_input``); training continues that network, on its schedule and time input, from its
    weights (EMA too). None trains ``model`` from scratch."""
    path: str | None = None
    options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    init: InitConfig = field(default_factory=InitConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    batch_size: int = 256          # global: split over DDP ranks
    steps: int = 1000
    seed: int = 0
    device: str = "auto"           # auto = cuda when present, else cpu
    precision: str = "fp32"        # fp32 or bf16 (autocast)
    threads: int = 0               # CPU threads of this process (torch.set_num_threads); 0 = torch's
    log_every: int = 50
    ckpt_every: int = 1000
    keep_checkpoints: int = 3      # 0 keeps all
    probe_every: int = 0           # 0 = never
    probe_n: int = 512
    out: str = "runs/run"

    def __post_init__(self):
        choices = {"precision": ("fp32", "bf16"), "loss.normalize": ("none", "mean", "max"),
                   "optim.lr_schedule": ("constant", "cosine")}
        values = {"precision": self.precision, "loss.normalize": self.loss.normalize,
                  "optim.lr_schedule": self.optim.lr_schedule}
        for key, valid in choices.items():
            if values[key] not in valid:
                raise ValueError(f"{key}: {values[key]!r} is not one of {', '.join(valid)}")
        for key in ("batch_size", "steps", "log_every", "ckpt_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be >= 1, got {getattr(self, key)}")
        if not 0 <= self.loss.input_perturbation < float("inf"):
            raise ValueError(f"loss.input_perturbation: must be >= 0 (Ning et al. use 0.1), "
                             f"got {self.loss.input_perturbation}")
        if self.loss.input_perturbation and self.process.name != DiscreteVP.key:
            raise ValueError("loss.input_perturbation: only discrete-schedule runs take it, this run "
                             f"has process.name = {self.process.name!r}")
        if not 0 <= self.ema.decay < 1:
            raise ValueError(f"ema.decay: must lie in [0, 1), got {self.ema.decay}")
        o = self.optim
        for key, check, value in (
                ("optim.lr", checks.non_negative, o.lr),  # 0: a fine-tuning run that changes nothing
                ("optim.eps", checks.positive, o.eps),
                ("optim.weight_decay", checks.non_negative, o.weight_decay),
                ("optim.min_lr_ratio", lambda k, v: checks.in_interval(k, v, 0, 1, closed="[]"), o.min_lr_ratio),
                ("optim.warmup_steps", lambda k, v: checks.integer(k, v, lo=0), o.warmup_steps),
                ("optim.grad_clip", checks.non_negative, o.grad_clip),
                *((f"optim.betas[{i}]", lambda k, v: checks.in_interval(k, v, 0, 1), b)
                  for i, b in enumerate(o.betas)),
                ("loss.snr_min", checks.positive, self.loss.snr_min),
                ("model.time_scale", checks.nonzero, self.model.time_scale),
                ("process.sigma_data", checks.positive, self.process.sigma_data)):
            if value is not None:
                check(key, value)
        if len(o.betas) != 2:
            raise ValueError(f"optim.betas: expected two numbers [beta1, beta2], got {o.betas}")
        _check_objective(self)


def _check_objective(cfg: TrainConfig) -> None:
    """ValueError naming the key for a process name, density, target, weighting or time input
    that the config's process cannot train (:meth:`~biaskit.processes.Process.check_objective`)."""
    name, loss = cfg.process.name, cfg.loss
    cls = DiscreteVP if name == DiscreteVP.key else PROCESSES.get(name)
    if cls is None:
        raise ValueError(f"process.name: {name!r} is not one of discrete, {', '.join(PROCESSES)}")
    density = loss.time_density()
    checks.keyed("loss.density", lambda: get_density(density))
    cls.check_objective(loss, checks.keyed("loss.weighting", loss.parsed_weighting), cfg.model.time_input)
    if cls is not DiscreteVP:
        checks.keyed("process", lambda: process_from_config(to_dict(cfg.process)))


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def load_config(source) -> TrainConfig:
    """A :class:`TrainConfig` from a dict, a TrainConfig, a YAML/JSON file path, or a preset
    name (``"gmm-debias"``, its quick size; :func:`get_preset` for another size)."""
    if isinstance(source, TrainConfig):
        return copy.deepcopy(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            if isinstance(source, str) and source in preset_names():
                return get_preset(source)
            raise FileNotFoundError(f"config file not found: {path}; for a preset use its name "
                                    f"({', '.join(preset_names()[:3])}, ...) or "
                                    "biaskit.config.get_preset(name, size)")
        try:
            source = (json.loads(path.read_text()) if path.suffix == ".json"
                      else yaml.safe_load(path.read_text()))
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise ValueError(f"config file {path} cannot be parsed: {e}") from None
        if not source:  # an empty file would silently train the defaults
            raise ValueError(f"config file {path} is empty; give at least one key (see "
                             "biaskit train --print-config for all of them)")
    if not isinstance(source, dict):
        raise ValueError(f"a config must be a mapping, got {type(source).__name__}")
    if PRESET_KEYS & set(source):
        _check_preset(source, "this config")
        raise ValueError("this config is a preset family (base / sizes / variants), not one "
                         f"config: put it in {PRESET_DIR} and name a preset (--preset FAMILY-VARIANT)")
    return _build(TrainConfig, source)


def apply_overrides(config: TrainConfig, overrides) -> TrainConfig:
    """Apply ``["optim.lr=1e-4", "loss.weighting=min_snr:5", ...]``, coercing by field type.

    A key inside a dict field (``model.config.channels=64``) is parsed as YAML.
    """
    d = to_dict(config)
    for item in overrides or []:
        key, sep, text = str(item).partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key.sub=value")
        node, cls = d, TrainConfig
        parts = key.strip().split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if cls is None:  # inside a free-form dict
                if last:
                    node[part] = yaml.safe_load(text)
                else:
                    node = node.setdefault(part, {})
                continue
            hints = typing.get_type_hints(cls)
            if part not in hints:
                raise ValueError(f"unknown config key {'.'.join(parts[:i + 1])}; valid keys: "
                                 f"{', '.join(hints)}")
            tp = hints[part]
            if last:
                node[part] = _coerce(tp, text, key, from_text=True)
                if dataclasses.is_dataclass(node[part]):
                    node[part] = to_dict(node[part])
            elif dataclasses.is_dataclass(tp):
                node, cls = node[part], tp
            elif tp is dict or typing.get_origin(tp) is dict:
                node, cls = node[part], None
            else:
                raise ValueError(f"config key {'.'.join(parts[:i + 1])} has no sub-keys")
    return _build(TrainConfig, d)


# --- presets ------------------------------------------------------------------------------------
def _merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in (b or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


PRESET_KEYS = {"base", "sizes", "variants", "profiles"}


def _check_preset(spec: dict, where) -> dict:
    """``spec`` itself; ValueError for a preset written before ``profiles:`` was renamed ``sizes:``."""
    if isinstance(spec, dict) and "profiles" in spec:
        raise ValueError(f"{where}: the preset key 'profiles:' is now 'sizes:' (a preset's quick / "
                         "full sizes; study profiles are biaskit.study.profiles'): rename it")
    return spec


def _families() -> dict:
    return {p.stem: _check_preset(yaml.safe_load(p.read_text()), p)
            for p in sorted(PRESET_DIR.glob("*.yaml"))}


def preset_names() -> list[str]:
    return [f"{fam}-{v}" for fam, spec in _families().items() for v in spec.get("variants", {})]


def get_preset(name: str, size: str = "quick") -> TrainConfig:
    """Preset ``family-variant`` (e.g. ``digits-debias``) at a size (``quick`` or ``full``)."""
    fam, _, variant = name.partition("-")
    spec = _families().get(fam)
    if spec is None or variant not in spec.get("variants", {}):
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(preset_names())}")
    sizes = spec.get("sizes", {})
    if size not in sizes:
        raise ValueError(f"unknown size {size!r} for preset {name!r}; valid: {', '.join(sizes)}")
    d = _merge(_merge(spec.get("base", {}), sizes[size]), spec["variants"][variant])
    d.setdefault("out", f"runs/{name}-{size}")
    return load_config(d)
