"""The one table of loader options: each option's name, type, default, help and the formats it
applies to. It generates the command-line flags (:func:`add_loader_arguments`), reads them back
(:func:`loader_kwargs_from_args`) and checks keyword arguments against a format
(:func:`check_options`, :func:`inapplicable`).

Formats (:mod:`biaskit.loaders.formats`): ``oracle``, ``run`` (a biaskit run directory),
``diffusers``, ``diffusers-unet``, ``adm``, ``plugin``. A flag ``--a-b`` also answers to
guided-diffusion's spelling ``--a_b``. Options with ``cli=False`` are Python keywords only.
"""

from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

from .. import checks
from ..denoiser import TIME_INPUTS
from ..formulations import PROCESS_TIME_INPUTS, TARGETS
from ..processes import PROCESSES
from .process_options import keyword_options, spelled

__all__ = ["Option", "OPTIONS", "IGNORED_FLAGS", "options_for", "check_options", "inapplicable",
           "add_loader_arguments", "loader_kwargs_from_args", "flag", "parse_bool"]


def parse_bool(text) -> bool:
    """true/false spellings of a flag value (guided-diffusion writes ``--learn_sigma True``)."""
    if isinstance(text, bool):
        return text
    low = str(text).lower()
    if low in ("1", "true", "yes", "y", "on"):
        return True
    if low in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


@dataclass(frozen=True)
class Option:
    """One loader option. ``formats``: the loaders that take it; ``kind``: ``value`` (``--x V``),
    ``bool`` (``--x [BOOL]``), ``switch`` (``--x``, store_true), ``ignored`` (a pasted
    guided-diffusion flag that does not change the network's outputs; ``help`` says why);
    ``check``: a :mod:`biaskit.checks` function ``(what, value)`` giving its valid range."""

    name: str
    formats: frozenset
    help: str = ""
    type: Callable | None = None
    default: Any = None
    metavar: str | None = None
    choices: tuple | None = None
    kind: str = "value"
    cli: bool = True
    section: str = "third-party"  # where the flag is listed: "model" (top) or "third-party"
    check: Callable | None = None

    @property
    def dest(self) -> str:
        return IGNORED_DEST + self.name if self.kind == "ignored" else self.name


IGNORED_DEST = "ignored_flag_"
_THIRD = frozenset({"diffusers", "diffusers-unet", "adm", "plugin"})
_DIFFUSERS = frozenset({"diffusers", "diffusers-unet"})
_ADM, _PLUGIN, _RUN, _ORACLE = (frozenset({f}) for f in ("adm", "plugin", "run", "oracle"))
_MODULE = frozenset({"module"})  # a network in memory: biaskit.load(net, ...)


def _o(name, formats, help="", **kw) -> Option:
    return Option(name, frozenset(formats), help, **kw)


def parse_scales(text):
    """A guidance scale W, or a comma list of them (a tuple; compared on the same draws by the
    latent-pipeline probe)."""
    if not isinstance(text, str):
        return tuple(float(v) for v in text) if isinstance(text, (list, tuple)) else float(text)
    values = [float(v) for v in text.split(",")]
    return values[0] if len(values) == 1 else tuple(values)


def _finite_scales(what, value):
    for v in value if isinstance(value, tuple) else (value,):
        checks.finite(what, v)
    return value


def _at_least_1(what, value) -> int:
    return checks.integer(what, value, lo=1)


def _adm_bool(name) -> Option:
    return _o(name, _ADM, f"ADM {name} (inferred from the weights unless given)", type=parse_bool,
              kind="bool", metavar="BOOL")


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

# the process flags written by hand (names read on a command line, value choices, checks);
# every other process keyword gets its flag from the constructors (process_keyword_flags)
_PROCESS_FLAGS: tuple[Option, ...] = (
    _o("flow_shift", _PLUGIN | _MODULE, "with --process flow: SD3's time shift (default 1)", type=float,
       check=checks.positive),
    _o("flow_time", _PLUGIN | _MODULE, "with --process flow: forward (x_t = (1 - t) x0 + t eps, t = 1 "
       "noise; default) or reversed (x_t = t x0 + (1 - t) eps, t = 0 noise, Lipman-style; the "
       "net is fed that t)", choices=("forward", "reversed")),
    _o("target_sign", _PLUGIN | _MODULE, "with --process: -1 for a network that outputs its target "
       "negated (a flow net predicting x0 - eps); default 1", type=int, choices=(1, -1)),
    _o("sigma_min", _PLUGIN | _MODULE, "with --process ve / edm / vesde: the smallest sigma (defaults "
       "0.002, 0.002, 0.01)", type=float, check=checks.positive),
    _o("sigma_max", _PLUGIN | _MODULE, "with --process ve / edm / vesde: the largest sigma (defaults 80, "
       "80, 50)", type=float, check=checks.positive),
    _o("cosine_s", _PLUGIN | _MODULE, "with --process vp_cosine: iDDPM's offset s of cos^2((t + s) / "
       "(1 + s) pi / 2) (default 0, VDM's form; iDDPM used 0.008)", type=float,
       check=checks.non_negative),
    _o("sigma_base", _PLUGIN | _MODULE, "with --process vesde_tutorial: the tutorial's sigma b of "
       "dx = b^t dw (default 25: sigma(1) = 9.85)", type=float, check=checks.positive),
)


def _bool_value(what, value) -> bool:
    try:
        return parse_bool(value)
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"{what}: {e}") from None


def process_keyword_flags(processes=PROCESSES, written=_PROCESS_FLAGS) -> tuple[Option, ...]:
    """An option ``--KEY`` for each constructor keyword of ``processes``
    (:func:`~biaskit.loaders.process_options.keyword_options`) without one in ``written``: its
    help names the processes that take it and their defaults (a keyword's type from its
    annotation: a float, or a true/false for a bool)."""
    have = {o.name for o in written}
    flags = []
    for name, (key, kind) in keyword_options(processes).items():
        if name in have:
            continue
        takers = {k: inspect.signature(c.__init__).parameters[key].default
                  for k, c in processes.items() if key in c.keys()}
        defaults = [f"{v:g}" if isinstance(v, float) else "none" if v is inspect.Parameter.empty
                    else str(v) for v in takers.values()]
        said = f"default {defaults[0]}" if len(set(defaults)) == 1 else f"defaults {', '.join(defaults)}"
        text = f"with --process {' / '.join(takers)}: the process's {key} ({said})"
        flags.append(_o(name, _PLUGIN | _MODULE, text, type=parse_bool, kind="bool", metavar="BOOL",
                        check=_bool_value) if kind is bool else
                     _o(name, _PLUGIN | _MODULE, text, type=kind))
    return tuple(flags)


OPTIONS: tuple[Option, ...] = (
    # oracles and biaskit runs
    _o("schedule", _ORACLE | _MODULE, "schedule of an oracle model (trained models carry their own; "
       "default linear); in Python, of a network in memory: a Schedule, a name or a diffusers "
       "scheduler", section="model"),
    _o("step", _RUN, "checkpoint step of a biaskit run (default latest)", type=int, section="model",
       check=lambda what, v: checks.integer(what, v, lo=0)),
    _o("online_weights", _RUN, "use a biaskit run's online weights instead of its EMA weights",
       kind="switch", section="model"),
    _o("ema", _RUN, "EMA weights of a biaskit run (False: the online weights)", default=True, cli=False),
    # third-party checkpoints
    _o("model_spec", _PLUGIN, "user network: a factory returning an nn.Module called as "
       "net(x, time_in)", metavar="FILE.py:FACTORY"),
    _o("weights", _PLUGIN, "state dict for --model-spec (.safetensors/.pt/...)", metavar="PATH"),
    _o("parameterization", _THIRD | _MODULE, "what the network predicts: eps, x0, v, flow (diffusers: "
       f"epsilon, sample, v_prediction); with --process also edm and score (-eps / sigma) "
       f"({', '.join(TARGETS)})"),
    _o("process", _PLUGIN | _MODULE, "the continuous noise process the network was trained under, instead "
       "of a discrete VP schedule: edm / ve (sigma 0.002..80), flow (x_t = (1 - t) x0 + t eps), "
       "vp_cosine, vp_linear_logsnr, vesde (score_sde: sigma(t) = sigma_min (sigma_max / "
       "sigma_min)^t, 0.01..50), vesde_tutorial (sigma(t)^2 = (b^(2t) - 1) / (2 ln b), b = "
       "--sigma-base); it is probed and sampled as a VP model at equal logsnr (default "
       "parameterization, each process's own: "
       f"{', '.join(f'{c.default_target} for {k}' for k, c in PROCESSES.items())})",
       choices=tuple(sorted(PROCESSES))),
    *_PROCESS_FLAGS, *process_keyword_flags(),
    _o("noise_schedule", _THIRD | _MODULE, "named schedule: linear, cosine, scaled_linear, sigmoid"),
    _o("diffusion_steps", _THIRD | _MODULE, "training steps T (default 1000)", type=int,
       check=lambda what, v: checks.integer(what, v, lo=1)),
    _o("beta_start", _THIRD, "first beta of a linear, scaled_linear or sigmoid --noise-schedule "
       "(default 1e-4; scaled_linear 0.00085), at any T", type=float, check=checks.positive),
    _o("beta_end", _THIRD, "last beta of that schedule (default 0.02; scaled_linear 0.012)",
       type=float, check=checks.positive),
    _o("predict_xstart", _ADM, "ADM: the network predicts x0", type=parse_bool, kind="bool"),
    _o("rescale_timesteps", _ADM, "ADM (improved-diffusion): the network was fed t * 1000 / T",
       type=parse_bool, kind="bool"),
    _o("predict_v", _ADM, "ADM (Debias fork): the network predicts v = alpha eps - sigma x0",
       type=parse_bool, kind="bool"),
    _o("timestep_respacing", _ADM, "ADM: probe / sample guided-diffusion's respaced model, e.g. "
       "250, ddim50, 10,15,20", metavar="SPEC"),
    _o("abar_key", _ADM | _PLUGIN, "read abar_t from this checkpoint tensor", metavar="KEY"),
    _o("betas_key", _ADM | _PLUGIN, "read beta_t from this checkpoint tensor", metavar="KEY"),
    _o("scheduler_config", _THIRD | _MODULE, "diffusers scheduler_config.json (or folder)", metavar="PATH"),
    _o("time_input", _THIRD | _MODULE, "how t reaches the network: index (integer timestep), scaled "
       "(timestep * --time-scale), sigma, logsnr, alpha_sigma; with --process: sigma, c_noise "
       "(ln(sigma) / 4), t (the process time * --time-scale), logsnr",
       choices=tuple(dict.fromkeys(TIME_INPUTS + PROCESS_TIME_INPUTS))),
    _o("time_scale", _THIRD | _MODULE, "factor for --time-input scaled (e.g. 0.001 for t/1000) or, with "
       "--process, for t (e.g. 1000 for a flow net fed t in [0, 1000])", type=float,
       check=checks.nonzero),
    _o("data_range", _THIRD | _MODULE, "range of clean data, default -1,1; write --data-range=-0.5,0.5 for "
       "negative LO", metavar="LO,HI"),
    _o("state_dict_prefix", _ADM | _PLUGIN, "keep keys starting with this and strip it (e.g. gt., "
       "module. or ema.)", metavar="PREFIX"),
    _o("rename_keys", _ADM | _PLUGIN, "rename state-dict keys after any --state-dict-prefix: "
       "each OLD=NEW replaces the text OLD in every key (e.g. attn.to_q=attn.q,net.=); a rule "
       "that matches no key is an error", metavar="OLD=NEW[,OLD=NEW]"),
    _o("state_dict_key", _ADM | _PLUGIN, "which state dict of a file holding several (e.g. ema or "
       "model); default: the EMA one", metavar="KEY"),
    _o("trained_timesteps", _THIRD | _MODULE, "only these timesteps (inclusive) are probed, e.g. the range "
       "the model was trained on", metavar="LO:HI"),
    _o("class_label", _THIRD | _MODULE | _RUN, "one class fed to a class-conditional model for every sample "
       "(default: each sample's own label from a labelled --data: digits, mnist, an image folder "
       "with one subfolder per class)", type=int, check=lambda what, v: checks.integer(what, v, lo=0)),
    _o("guidance_scale", _THIRD | _RUN, "classifier-free guidance of a class-conditional model: out = "
       "out(null) + w (out(label) - out(null)); 1 is the conditional model, 0 the unconditional "
       "one (needs --null-label unless 1); a latent pipeline's probe takes a comma list, "
       "compared on the same draws (e.g. 0,1,7.5; its default 1, sample's 7.5)", type=parse_scales,
       metavar="W", check=_finite_scales),
    _o("null_label", _THIRD, "the label of a class-conditional model's unconditional output "
       "(e.g. the extra class a classifier-free-guidance net was trained with)", type=int,
       check=lambda what, v: checks.integer(what, v, lo=0)),
    _o("label_keyword", _PLUGIN, "the plugin network is class-conditional, called as "
       "net(x, time_in, NAME=labels) (implied as y by --class-label, --guidance-scale, "
       "--null-label)", metavar="NAME"),
    _o("channels", _PLUGIN | _MODULE, "data channels C of a plugin model", type=int, cli=False),
    # ADM architecture (guided-diffusion's flag names and units; see models.adm.flags_to_config)
    _o("num_channels", _ADM, "ADM base width (overrides the inferred one)", type=int, check=_at_least_1),
    _o("num_res_blocks", _ADM, "ADM res blocks per level", type=int, check=_at_least_1),
    _o("channel_mult", _ADM, "ADM channel multipliers, e.g. 1,2,2,2"),
    _o("attention_resolutions", _ADM, "ADM attention at these image resolutions, e.g. 32,16,8 "
       "(needs --image-size)"),
    _o("num_heads", _ADM, "ADM attention heads (not stored in the weights)", type=int, check=_at_least_1),
    _o("num_head_channels", _ADM, "ADM channels per attention head, e.g. 64 for the released "
       "guided-diffusion models", type=int),
    _o("num_heads_upsample", _ADM, "ADM heads in the decoder (deprecated flag)", type=int),
    _o("image_size", _ADM, "image size the model was trained at", type=int, check=_at_least_1),
    *(_adm_bool(n) for n in ("learn_sigma", "class_cond", "use_scale_shift_norm", "resblock_updown",
                             "use_new_attention_order")),
    *(_o(n, _ADM, why, kind="ignored") for n, why in IGNORED_FLAGS.items()),
    # Python only
    _o("variant", _DIFFUSERS, "diffusers weights variant (e.g. fp16)", cli=False),
    _o("strict", _PLUGIN, "every key of the state dict must match the network", default=True,
       cli=False),
    _o("factory_kwargs", _PLUGIN, "keyword arguments for the plugin factory", cli=False),
    _o("map_location", _THIRD, "where torch reads the weights to", default="cpu", cli=False),
    _o("device", _THIRD | _RUN | _MODULE, "device of the network", cli=False),
    _o("scheduler", _MODULE, "a diffusers scheduler object (or its config dict) the network in "
       "memory was trained with", cli=False),
    _o("name", _MODULE, "the name of a network in memory (probe rows, legends)", cli=False),
    _o("shape", _MODULE, "per-sample shape (C, H, W) or (D,) of a network in memory", cli=False),
)
BY_NAME = {o.name: o for o in OPTIONS}
if len(BY_NAME) != len(OPTIONS):  # a process keyword named as another option
    raise RuntimeError("loader options named twice: " + ", ".join(
        sorted({o.name for o in OPTIONS if sum(p.name == o.name for p in OPTIONS) > 1})))


def options_for(fmt: str) -> list[Option]:
    """The options a format's loader takes, in table order."""
    return [o for o in OPTIONS if fmt in o.formats]


def inapplicable(names, fmt: str) -> list[str]:
    """The names among ``names`` that are not options of format ``fmt`` (in the given order)."""
    return [n for n in names if n not in BY_NAME or fmt not in BY_NAME[n].formats]


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def check_options(kwargs: dict, fmt: str) -> SimpleNamespace:
    """Every option of ``fmt`` as an attribute, the given ones (not None) over the table's
    defaults; ValueError naming the given ones that do not apply to a ``fmt`` model."""
    given = [k for k, v in kwargs.items() if v is not None]
    bad = sorted(inapplicable(given, fmt))
    if bad:
        valid = [o.name for o in options_for(fmt) if o.kind != "ignored"
                 and o.name not in ("weights", "model_spec")]
        raise ValueError(f"option(s) {', '.join(bad)} do not apply to {_article(fmt)} model; "
                         f"valid: {', '.join(valid)}")
    values = {o.name: o.default for o in options_for(fmt)}
    for k in given:
        check = BY_NAME[k].check
        values[k] = kwargs[k] if check is None else check(flag(k), kwargs[k])
    return SimpleNamespace(**values)


def flag(name: str) -> str:
    """The command-line spelling of an option: data_range -> --data-range (a pasted
    guided-diffusion flag keeps its own: --use_fp16)."""
    o = BY_NAME.get(name)
    return "--" + name if o is not None and o.kind == "ignored" else spelled(name)


def _add(group, o: Option) -> None:
    # guided-diffusion's spelling --a_b as an alias of --a-b, for the third-party flags
    names = [flag(o.name)] + (["--" + o.name] if "_" in o.name and o.section == "third-party" else [])
    if o.kind == "ignored":  # pasted guided-diffusion flags: accepted, named as ignored
        group.add_argument("--" + o.name, dest=o.dest, nargs="?", const="True", default=None,
                           help=argparse.SUPPRESS)
    elif o.kind == "switch":
        group.add_argument(*names, dest=o.dest, action="store_true", default=None, help=o.help)
    else:
        kw = dict(type=o.type, metavar=o.metavar, choices=o.choices, help=o.help)
        if o.kind == "bool":
            kw.update(nargs="?", const=True)
        group.add_argument(*names, dest=o.dest, default=None,
                           **{k: v for k, v in kw.items() if v is not None})


def add_loader_arguments(parser, section: str = "third-party", exclude=()) -> None:
    """The command-line flags of every option listed under ``section`` (all default to None =
    infer / default), but those named in ``exclude``. ``parser``: an ArgumentParser (a group is
    made for the third-party section) or an argument group to add them to."""
    g = parser
    if section == "third-party" and isinstance(parser, argparse.ArgumentParser):
        g = parser.add_argument_group(
            "third-party checkpoints", "diffusers folders, guided-diffusion .pt files, or any "
            "network via --model-spec; guided-diffusion flag spellings (--num_channels ...) work too")
    for o in OPTIONS:
        if o.cli and o.section == section and o.name not in exclude:
            _add(g, o)


def loader_kwargs_from_args(args: argparse.Namespace, section: str = "third-party") -> dict:
    """{option: value} of the flags of ``section`` that the user actually gave."""
    return {o.name: getattr(args, o.dest) for o in OPTIONS
            if o.cli and o.section == section and getattr(args, o.dest, None) is not None}
