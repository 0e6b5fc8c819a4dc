"""The candidate settings of the settings check (:mod:`biaskit.settings_check`): each axis (ADM
heads, time input, data range, target, a process model's convention) as {label: setting}, the
user's first; the flags a label stands for; and the context that reads a denoiser under one
setting and puts its own back."""

from __future__ import annotations

from contextlib import contextmanager
from itertools import product

import torch

__all__ = ["flags", "head_candidates", "time_candidates", "range_candidates", "target_candidates",
           "convention_candidates", "NO_CONVENTION", "applied", "distinct_times", "given_heads",
           "is_process", "attention_blocks", "DATA_RANGES"]

DATA_RANGES = ((-1.0, 1.0), (0.0, 1.0), (-0.5, 0.5))


def flags(label: str) -> str:
    """The command-line flags of a candidate's label: ``time_input=scaled time_scale=0.001`` ->
    ``--time-input scaled --time-scale 0.001``; a data range is written ``--data-range=LO,HI``."""
    out = []
    for part in label.split():
        key, _, value = part.partition("=")
        name = "--" + key.replace("_", "-")
        out.append(f"{name}={value}" if key == "data_range" else f"{name} {value}")
    return " ".join(out)


def _num(x: float) -> str:
    return f"{x:g}"


# ---------------------------------------------------------------------------------------------
# candidates: {label: setting}, the chosen one first

def attention_blocks(net) -> list:
    from .models.adm import AttentionBlock
    return [m for m in net.modules() if isinstance(m, AttentionBlock)]


def head_candidates(blocks, given: dict) -> dict[str, tuple]:
    """{label: (heads per block, new order)} of the head settings worth trying, the current first.

    Candidates: num_heads 1, 2, 4, 8 and num_head_channels 32, 64 (what released models use) where
    they divide every block's channels, each in both qkv orders unless every block has one head
    (the orders then agree); equal effective settings are tried once, under the first label.
    """
    width = [b.proj_out.out_channels for b in blocks]
    current = (tuple(b.num_heads for b in blocks), bool(blocks[0].new_order) if blocks else False)
    label = " ".join(f"{k}={v}" for k, v in given.items()) or "current"
    out = {label: current}
    heads = [(f"num_heads={k}", [k] * len(width)) for k in (1, 2, 4, 8) if all(c % k == 0 for c in width)]
    heads += [(f"num_head_channels={c}", [w // c for w in width]) for c in (32, 64)
              if all(w % c == 0 for w in width)]
    for (name, h), order in product(heads, (False, True)):
        setting = (tuple(h), order if max(h) > 1 else current[1])
        if setting not in out.values():
            out[f"{name} use_new_attention_order={order}"] = setting
    return out


def is_process(d) -> bool:
    from .formulations import ProcessDenoiser
    return isinstance(d, ProcessDenoiser)


def _time_label(d) -> str:
    ti, scale = d.time_input, d.time_scale
    if callable(ti):
        return "time_input=" + getattr(ti, "__name__", "callable")
    if ti in ("scaled", "t"):
        if ti == "scaled" and scale is None:
            scale = 1.0 / d.schedule.num_train_timesteps
        return f"time_input={ti} time_scale={_num(scale)}"
    return f"time_input={ti}"


def time_candidates(d) -> dict[str, tuple]:
    """{label: (time_input, time_scale)}, the current first.

    ADM: t, and t * 1000 / T (guided-diffusion's rescale_timesteps), when they differ. Other
    discrete models: index, t / T_train (and t / (T_train - 1) for a schedule of 100 k + 1
    steps), t * 1000 / T_train, sigma, logsnr. Process models:
    sigma, c_noise, logsnr, t and t * 1000. Candidates equal to an earlier one at every step of
    the schedule are left out by :func:`evaluate_settings`.
    """
    current = (d.time_input, d.time_scale)
    if d.source.format == "adm":
        T = d.schedule.num_train_timesteps
        label = {("index", None): "rescale_timesteps=False",
                 ("scaled", 1000.0 / T): "rescale_timesteps=True"}.get(current, _time_label(d))
        out = {label: current}
        for name, setting in (("rescale_timesteps=False", ("index", None)),
                              ("rescale_timesteps=True", ("scaled", 1000.0 / T))):
            if setting != current and T != 1000:
                out[name] = setting
        return out
    if is_process(d):
        from .formulations import default_time_input
        # the process's usual input first: where two feed the same numbers (flow: sigma = t)
        # the first is kept and named
        usual = default_time_input(d.process, "x0")
        options = sorted([("sigma", 1.0), ("c_noise", 1.0), ("logsnr", 1.0), ("t", 1.0),
                          ("t", 1000.0)], key=lambda o: o[0] != usual)
    else:
        T = d.schedule.num_train_timesteps
        # a schedule of 100 k + 1 steps (0..1000) usually means t / 1000
        over = [1.0 / (T - 1)] if T > 100 and (T - 1) % 100 == 0 else []
        options = [("index", None), *(("scaled", s) for s in (*over, 1.0 / T, 1000.0 / T)),
                   ("sigma", None), ("logsnr", None)]
    out = {_time_label(d): current}
    for ti, scale in options:
        label = f"time_input={ti}" + (f" time_scale={_num(scale)}" if ti in ("scaled", "t") else "")
        out.setdefault(label, (ti, scale))
    return out


def range_candidates(d) -> dict[str, tuple]:
    """{label: (lo, hi)}: the chosen data range, then [-1, 1], [0, 1], [-0.5, 0.5]."""
    label = lambda r: f"data_range={_num(r[0])},{_num(r[1])}"  # noqa: E731
    out = {label(d.data_range): tuple(d.data_range)}
    for r in DATA_RANGES:
        out.setdefault(label(r), r)
    return out


def target_candidates(d) -> dict[str, str]:
    """{label: target}: the chosen one, then eps, x0, v, flow (process models also edm)."""
    if is_process(d):
        from .formulations import TARGETS
        current, options = d.target, TARGETS
    else:
        from .parameterization import PARAMETERIZATIONS
        current, options = d.parameterization, PARAMETERIZATIONS
    out = {f"parameterization={current}": current}
    for t in options:
        out.setdefault(f"parameterization={t}", t)
    return out


# the convention axis of a model that is not a process model: nothing to vary
NO_CONVENTION = {"current": (None, None, None)}


def _process_label(p) -> str:
    if p.name == "flow":
        return f"flow_time={'reversed' if p.reverse else 'forward'}"
    return f"process={p.name}"


def convention_candidates(d) -> dict[str, tuple]:
    """{label: (process, target_sign, time or None)} of a process model, the current first.

    What a foreign repository's code may count otherwise than the chosen flags, each with both
    target signs (a net that outputs its target negated, ``--target-sign -1``):
    a flow's time direction (``--flow-time reversed``: x = t x0 + (1 - t) eps, t = 0 noise);
    Song's two VE SDEs for one another (``vesde``: sigma(t) = sigma_min (sigma_max /
    sigma_min)^t, ``vesde_tutorial``: sigma(t)^2 = (b^(2t) - 1) / (2 ln b), at their defaults);
    and for ``ve`` both of them fed t (their nets are fed t; fed sigma they equal ``ve``, which
    the time axis tries). A candidate's label names only what differs from the chosen one.
    Other models: :data:`NO_CONVENTION`.
    """
    if not is_process(d):
        return dict(NO_CONVENTION)
    from .processes import Flow, get_process
    p, sign = d.process, d.target_sign
    out = {f"{_process_label(p)} target_sign={sign}": (p, sign, None)}
    others = [(p, None)]
    if p.name == "flow":
        others.append((Flow(shift=p.shift, t_min=p.t_min, t_max=p.t_max, reverse=not p.reverse),
                       None))
    elif p.name in ("vesde", "vesde_tutorial"):
        others.append((get_process("vesde_tutorial" if p.name == "vesde" else "vesde"), None))
    elif p.name == "ve":
        others += [(get_process(k), ("t", 1.0)) for k in ("vesde", "vesde_tutorial")]
    for (q, time), s in product(others, (sign, -sign)):
        parts = ([] if q is p else [_process_label(q)]) + (["time_input=t time_scale=1"] if time
                                                            else [])
        parts += [] if s == sign else [f"target_sign={s}"]
        if parts:
            out[" ".join(parts)] = (q, s, time)
    return out


@contextmanager
def applied(d, blocks, heads, time, target, convention=(None, None, None)):
    """``d`` read under one candidate of each axis (a convention's own time input, where it
    has one, replaces ``time``); its own settings are put back on exit."""
    saved = ([(b.num_heads, b.new_order) for b in blocks], (d.time_input, d.time_scale),
             d.target if is_process(d) else d.parameterization,
             (d.process, d.target_sign) if is_process(d) else None)
    try:
        for b, h in zip(blocks, heads[0]):
            b.num_heads, b.new_order = h, heads[1]
        process, sign, own_time = convention
        d.time_input, d.time_scale = own_time or time
        if process is not None:
            d.process, d.target_sign = process, sign
        if is_process(d):
            d.target = target
        else:
            d.parameterization = target
        yield
    finally:
        for b, (h, o) in zip(blocks, saved[0]):
            b.num_heads, b.new_order = h, o
        d.time_input, d.time_scale = saved[1]
        if is_process(d):
            d.target = saved[2]
            d.process, d.target_sign = saved[3]
        else:
            d.parameterization = saved[2]


def given_heads(info) -> dict:
    """The head flags the user gave, else the assumed num_heads (from the loader's info)."""
    given = {k: v for k, v in info.get("given", {}).items()
             if k in ("num_heads", "num_head_channels", "use_new_attention_order")}
    if not given and "config" in info:
        given = {"num_heads": info["config"].get("num_heads", 1)}
    return given


def distinct_times(d, times: dict, t: torch.Tensor) -> dict:
    """The time candidates that feed the network other numbers than every earlier one."""
    out, seen = {}, []
    saved = d.time_input, d.time_scale
    try:
        for label, tm in times.items():
            d.time_input, d.time_scale = tm
            try:
                feats = d.time_features(t).double().cpu()
            except (TypeError, ValueError, RuntimeError, IndexError):
                continue
            if not any(f.shape == feats.shape and torch.allclose(f, feats, rtol=1e-6, atol=0)
                       for f in seen):
                out[label] = tm
                seen.append(feats)
    finally:
        d.time_input, d.time_scale = saved
    return out
