"""Settings an ADM state dict cannot tell, checked against held-out data.

No weight of a guided-diffusion / improved-diffusion UNet depends on how t was fed
(``rescale_timesteps``: t or t * 1000 / T) or on how attention splits its channels into heads
(``num_heads`` / ``num_head_channels``, ``use_new_attention_order``), yet a wrong choice changes
every output. A network read with the settings it was trained with denoises held-out data far
better than with any other, so :func:`evaluate_settings` noises a few held-out samples at a few t
with common random numbers (the same x0, eps and t for every candidate) and measures the eps error
of each candidate setting; :func:`check_adm_settings` warns, naming the flags, when another
candidate is clearly better than the user's choice, and raises when it is certain.

Paired statistic: for the n (sample, t) pairs, d_i = e_i(chosen) - e_i(candidate) with e_i the
per-element eps-MSE; z = mean(d) / (std(d) / sqrt(n)), rel = mean(d) / mean(e(chosen)).
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from itertools import product

import pandas as pd
import torch

__all__ = ["evaluate_settings", "check_adm_settings", "head_candidates", "time_candidates",
           "CLEAR", "CERTAIN"]

# (z, rel): "clearly better" warns, "certain" stops (auto mode)
CLEAR = (4.0, 0.02)
CERTAIN = (6.0, 0.25)
# where eps errors tell settings apart best: middle to high noise, where the irreducible part of
# the eps error is small (fractions of T)
T_FRACTIONS = (0.3, 0.5, 0.7, 0.9)


def _attention_blocks(net) -> list:
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


def time_candidates(d) -> dict[str, tuple]:
    """{label: (time_input, time_scale)}: t, and t * 1000 / T (rescale_timesteps), when they differ."""
    T = d.schedule.num_train_timesteps
    current = (d.time_input, d.time_scale)
    label = {("index", None): "rescale_timesteps=False",
             ("scaled", 1000.0 / T): "rescale_timesteps=True"}.get(current, f"time_input={d.time_input}")
    out = {label: current}
    if T != 1000:
        for name, setting in (("rescale_timesteps=False", ("index", None)),
                              ("rescale_timesteps=True", ("scaled", 1000.0 / T))):
            if setting != current:
                out[name] = setting
    return out


@contextmanager
def _applied(d, blocks, heads, time):
    saved = [(b.num_heads, b.new_order) for b in blocks], (d.time_input, d.time_scale)
    try:
        for b, h in zip(blocks, heads[0]):
            b.num_heads, b.new_order = h, heads[1]
        d.time_input, d.time_scale = time
        yield
    finally:
        for b, (h, o) in zip(blocks, saved[0]):
            b.num_heads, b.new_order = h, o
        d.time_input, d.time_scale = saved[1]


@torch.no_grad()
def _eps_errors(d, x_t, t, eps, batch_size: int) -> torch.Tensor:
    """(n,) per-element eps-MSE of each (x_t, t) pair."""
    out = []
    for i in range(0, x_t.shape[0], batch_size):
        pred = d(x_t[i:i + batch_size], t[i:i + batch_size])
        out.append((pred.eps_hat.float() - eps[i:i + batch_size]).square().flatten(1).mean(1))
    return torch.cat(out)


def _draws(d, x0: torch.Tensor, n: int, timesteps, seed: int):
    """(x_t, t, eps) for n samples at each timestep: common random numbers for every candidate."""
    T = d.schedule.T
    ts = sorted({min(T - 1, round(f * (T - 1))) for f in T_FRACTIONS}) if timesteps is None \
        else [int(t) for t in timesteps]
    x0 = torch.as_tensor(x0)[:n].float().to(d.device)
    g = torch.Generator().manual_seed(seed)
    t = torch.tensor(ts).repeat_interleave(x0.shape[0]).to(d.device)
    x0 = x0.repeat(len(ts), *([1] * (x0.ndim - 1)))
    eps = torch.randn(x0.shape, generator=g).to(d.device)
    alpha, sigma = d.schedule.coefficients(t)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    return alpha.reshape(shape) * x0 + sigma.reshape(shape) * eps, t, eps


def _given_heads(info) -> dict:
    """The head flags the user gave, else the assumed num_heads (from the loader's info)."""
    given = {k: v for k, v in info.get("given", {}).items()
             if k in ("num_heads", "num_head_channels", "use_new_attention_order")}
    if not given and "config" in info:
        given = {"num_heads": info["config"].get("num_heads", 1)}
    return given


def evaluate_settings(d, x0, *, n: int = 32, timesteps=None, seed: int = 0,
                      batch_size: int = 64) -> pd.DataFrame:
    """Eps error of every candidate (time convention x head setting) of an ADM denoiser ``d``.

    x0: held-out clean samples (N, C, H, W) in ``d``'s data range; the first n are noised at each
    timestep (default: 30, 50, 70, 90% of T). One row per candidate: ``setting`` (its flags),
    ``chosen`` (the user's), ``eps_mse``, ``diff`` = eps_mse(chosen) - eps_mse, ``diff_se``, ``z``,
    ``rel`` = diff / eps_mse(chosen), ``pairs``.
    """
    blocks = _attention_blocks(d.net)
    heads = head_candidates(blocks, _given_heads(d.source.extras))
    times = time_candidates(d)
    x_t, t, eps = _draws(d, x0, n, timesteps, seed)
    rows, errors = [], {}
    for (h_label, h), (t_label, tm) in product(heads.items(), times.items()):
        with _applied(d, blocks, h, tm):
            errors[(h_label, t_label)] = _eps_errors(d, x_t, t, eps, batch_size)
    chosen = errors[(next(iter(heads)), next(iter(times)))]
    for (h_label, t_label), e in errors.items():
        diff = chosen - e
        se = float(diff.std()) / math.sqrt(diff.numel()) if diff.numel() > 1 else float("nan")
        mean = float(diff.mean())
        rows.append({"setting": f"{h_label} {t_label}", "heads": h_label, "time": t_label,
                     "chosen": e is chosen, "eps_mse": float(e.mean()), "diff": mean, "diff_se": se,
                     "z": mean / se if se > 0 else (0.0 if mean == 0 else math.inf),
                     "rel": mean / float(chosen.mean()), "pairs": diff.numel()})
    return pd.DataFrame(rows)


def _verdict(row, chosen, d_name: str) -> str:
    changed = [part for part, mine in ((row["heads"], chosen["heads"]), (row["time"], chosen["time"]))
               if part != mine]
    flags = " ".join("--" + p.replace("_", "-").replace("=", " ") for c in changed for p in c.split())
    return (f"{d_name}: the settings check ({row['pairs']} held-out (sample, t) pairs, common noise) finds "
            f"eps-MSE {row['eps_mse']:.4g} with {' '.join(changed)} against {chosen['eps_mse']:.4g} "
            f"with your {' '.join(chosen[p] for p in ('heads', 'time') if row[p] != chosen[p])} "
            f"(lower by {100 * row['rel']:.0f}%, {row['z']:.1f} standard errors): the weights were "
            f"probably trained with {flags}")


def check_adm_settings(d, x0, *, mode: str = "auto", n: int = 32, seed: int = 0, timesteps=None,
                       batch_size: int = 64) -> pd.DataFrame | None:
    """Evaluate the candidates (:func:`evaluate_settings`) of an ADM denoiser on held-out ``x0``.

    mode ``auto``: a candidate clearly better than the chosen settings (z > 4 and 2% lower eps
    error) is a warning naming its flags; a certain one (z > 6 and 25% lower) a ValueError.
    ``warn``: warnings only. ``off`` (or a non-ADM model): nothing, returns None.
    """
    if mode not in ("auto", "warn", "off"):
        raise ValueError(f"settings check mode must be auto, warn or off, got {mode!r}")
    if mode == "off" or d.source.format != "adm":
        return None
    df = evaluate_settings(d, x0, n=n, seed=seed, timesteps=timesteps, batch_size=batch_size)
    chosen = df[df["chosen"]].iloc[0]
    best = df.loc[df["eps_mse"].idxmin()]
    d.source = d.source.with_extras(settings_check={
        "chosen": chosen["setting"], "eps_mse": float(chosen["eps_mse"]), "best": best["setting"],
        "best_eps_mse": float(best["eps_mse"]), "z": float(best["z"]), "pairs": int(best["pairs"])})
    if best["chosen"] or not (best["z"] > CLEAR[0] and best["rel"] > CLEAR[1]):
        return df
    message = _verdict(best, chosen, d.name)
    if mode == "auto" and best["z"] > CERTAIN[0] and best["rel"] >= CERTAIN[1]:
        raise ValueError(message + " (pass those flags, or --settings-check warn to go on)")
    warnings.warn(message, stacklevel=2)
    return df
