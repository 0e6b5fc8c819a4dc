"""guided-diffusion / improved-diffusion / Debias-fork ``.pt`` state dicts (keys ``input_blocks.*``)
-> Denoiser.

The architecture is read off the keys (:func:`biaskit.models.adm.infer_adm_config`) and can be
overridden with guided-diffusion's flag names; the schedule and target come from
``noise_schedule``, ``diffusion_steps``, ``predict_xstart`` (defaults linear, 1000, eps).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .. import parameterization as P
from .. import safeload
from ..denoiser import Denoiser
from ..schedules import Schedule, respace
from .build import conditioning_of, file_source, image_shape, make_denoiser, resolve_schedule
from .options import IGNORED_FLAGS, check_options
from .weights import read_weights

__all__ = ["load_adm", "looks_adm"]


def looks_adm(keys) -> bool:
    return "input_blocks.0.0.weight" in keys and "time_embed.0.weight" in keys


def _unknown_message(path: Path, sd: dict) -> str:
    nested = sorted({k.split("input_blocks.0.0.weight")[0] for k in sd
                     if k.endswith("input_blocks.0.0.weight") and k != "input_blocks.0.0.weight"})
    hint = (f" The ADM keys sit under the prefix {nested[0]!r}: pass --state-dict-prefix "
            f"{nested[0]}." if nested else "")
    return (f"cannot tell what network {path.name} is for: its keys ({safeload.key_summary(sd)}) "
            f"are not an ADM / guided-diffusion UNet's (input_blocks.*, time_embed.*).{hint} "
            "Options: give the network with --model-spec FILE.py:FACTORY (plus --parameterization, "
            "a schedule, --time-input and --data-range), or use a diffusers folder.")


def _note_ignored(path: Path, ignored: dict) -> None:
    if ignored:
        items = ", ".join(f"{k}={v} ({IGNORED_FLAGS[k]})" for k, v in ignored.items())
        warnings.warn(f"{path.name}: flags ignored, they do not change the network's outputs: {items}",
                      stacklevel=4)


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


def _warn_heads(path: Path, flags: dict, config: dict) -> None:
    heads_given = flags.get("num_heads") is not None or flags.get("num_head_channels") not in (None, -1)
    if not heads_given:  # the middle block always has attention, so the head count always matters
        warnings.warn(f"{path.name}: the number of attention heads is not stored in an ADM state "
                      f"dict; assuming num_heads={config['num_heads']}. Released guided-diffusion "
                      "models use --num-head-channels 64; improved-diffusion's use --num-heads 4. "
                      "Pass the flag the model was trained with (probe with data checks it).",
                      stacklevel=4)


def load_adm(path, **options) -> Denoiser:
    """A guided-diffusion / improved-diffusion / Debias-fork state dict as a Denoiser.

    ``options``: those of :data:`biaskit.loaders.options.OPTIONS` for ``adm``. The architecture
    flags are guided-diffusion's script flags (``num_channels``, ``num_head_channels``,
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
    from ..models.adm import (GUIDED_DIFFUSION_FLAGS, NOT_IN_STATE_DICT, ADMUNet, flags_to_config,
                              infer_adm_config)
    o = check_options(options, "adm")
    path = Path(path).expanduser()
    ignored = {k: v for k, v in options.items() if k in IGNORED_FLAGS and v is not None}  # as given
    flags = {k: getattr(o, k) for k in GUIDED_DIFFUSION_FLAGS
             if k not in IGNORED_FLAGS and getattr(o, k) is not None}
    full, sd, note = read_weights(path, state_dict_key=o.state_dict_key,
                                  state_dict_prefix=o.state_dict_prefix, rename_keys=o.rename_keys,
                                  map_location=o.map_location)
    if not looks_adm(sd):
        raise ValueError(_unknown_message(path, sd))
    inferred = infer_adm_config(sd)
    config = flags_to_config(inferred, flags)
    _note_ignored(path, ignored)
    _warn_heads(path, flags, config)
    net = safeload.load_into(ADMUNet(**config), sd, what=f"state dict in {path.name}")
    conditioning = conditioning_of(o, config["num_classes"] is not None, "y", path.name)
    schedule, source = resolve_schedule(full, abar_key=o.abar_key, betas_key=o.betas_key,
                                        noise_schedule=o.noise_schedule,
                                        beta_start=o.beta_start, beta_end=o.beta_end,
                                        diffusion_steps=o.diffusion_steps,
                                        scheduler_config=o.scheduler_config, adm=True)
    respaced = o.timestep_respacing not in (None, "")
    if respaced:
        if o.trained_timesteps is not None:
            raise ValueError("give timestep_respacing or trained_timesteps, not both")
        schedule = respace(schedule, o.timestep_respacing)
    time_input, time_scale = _adm_time(o.time_input, o.time_scale, o.rescale_timesteps, schedule)
    extras = dict(note, config=config, inferred_config=inferred, schedule_source=source,
                  assumed=[k for k in NOT_IN_STATE_DICT if flags.get(k) is None],
                  given={k: flags[k] for k in NOT_IN_STATE_DICT if flags.get(k) is not None},
                  rescale_timesteps=bool(o.rescale_timesteps), ignored_flags=ignored)
    if respaced:
        extras["timestep_respacing"] = str(o.timestep_respacing)
    kind = _adm_parameterization(o.parameterization, o.predict_xstart, o.predict_v)
    # a fully convolutional UNet: image_size is nominal, other sizes run (any_size)
    return make_denoiser(net.to(o.device), schedule, kind, time_input=time_input,
                         time_scale=time_scale, data_range=o.data_range, channels=config["in_channels"],
                         trained_timesteps=o.trained_timesteps, any_size=True,
                         conditioning=conditioning, source=file_source(path, "adm", extras=extras, shape=image_shape(
                             config.get("image_size"), config["in_channels"])))
