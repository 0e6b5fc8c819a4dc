"""Settings a third-party checkpoint cannot tell, checked against held-out data.

No weight depends on how t was fed to the network (the integer index, t / T, sigma, log SNR, a
process's t or c_noise), on the range the clean data were scaled to, on what the network predicts
(eps, x0, v, flow; EDM's preconditioned output), nor, for an ADM UNet, on how attention splits
its channels into heads (``num_heads`` / ``num_head_channels``, ``use_new_attention_order``).
Yet a wrong choice changes every output. A network read with the settings it was trained with
denoises held-out data far better than with any other, so :func:`evaluate_settings` noises a few
held-out samples at a few t with common random numbers (the same x0, eps and t for every
candidate) and measures the eps error of each candidate setting; :func:`check_settings` warns,
naming the flags, when another candidate is clearly better than the user's choice, and raises
when it is certain. It covers every third-party loader: plugins, diffusers folders, ADM state
dicts, and plugins trained under a continuous process.

Candidates, one axis at a time from the chosen settings (for ADM the heads x time grid), then the
per-axis best ones together when several axes find a better one:

- time input: index, t / T_train (also t / (T_train - 1) for 100 k + 1 steps), t * 1000 /
  T_train, the user's scale, sigma, log SNR (a process model: sigma, c_noise, log SNR, its t
  times 1 and 1000); candidates that feed the network the same numbers are tried once;
- data range: [-1, 1], [0, 1], [-0.5, 0.5] (the held-out x0, loaded in the chosen range, mapped
  affinely into each);
- target: eps, x0, v, flow (a process model also edm and score);
- convention (process models, :func:`~biaskit.settings_candidates.convention_candidates`): the
  target's sign (``--target-sign -1``) with each of: a flow's time direction (``--flow-time
  reversed``, which feeds 1 - t), Song's other VE SDE (``--process vesde`` / ``vesde_tutorial``),
  and for ``ve`` both of Song's fed t.

Paired statistic: for the n (sample, t) pairs, d_i = s_i(chosen) - s_i(candidate) with s_i the
per-element eps-MSE, z = mean(d) / (std(d) / sqrt(n)), rel = mean(d) / mean(s(chosen)).
A candidate with another data range is scored conservatively: for data of variance v noised to
x_t = a x0 + s eps the least eps-MSE is a^2 v / (a^2 v + s^2) (Gaussian data), which grows with
the data's scale, while the least x0-MSE in units of the range's width w, s^2 / (a^2 v + s^2),
shrinks with it; a narrower candidate (width w_r < w) is scored in the second way, s_i =
e_i (w / w_r)^2, a wider one in the first, s_i = e_i, so that neither scale alone can make a
candidate win (a network that outputs eps_hat = 0 ties every range). A process model's view
spans eps-MSE from near 1 to near 0 over the checked steps, so there each pair's s_i is also
divided by the per-element linear denoiser's eps-MSE at its t (each t counts equally, in units
of what the data allow there); its candidates are ranked by that score, and a candidate is
clearly better (or certain) when either weighting says so (``z``/``rel`` or ``z_raw``/``rel_raw``):
a reversed flow time errs only at high noise (on a trained 2-D flow MLP: 0.45 against 0.36 in
plain eps-MSE, 1.11 against 2.00 in per-t units), a time input clamped to pure noise only at
low noise.

Another target is named only when it also beats the estimate that ignores x_t, x0_hat = mean(x0)
(whose eps-MSE is (alpha / sigma)^2 var(x0)), by CLEAR's z: any near-constant output (an
untrained network) read as x0 is about that estimate, far better than the same output read as
eps at high noise, so without this rule every untrained network would be "an x0 model"; it gets
a warning saying it looks untrained instead. (Not for the other axes: at the checked 30-90% of T
a small trained network beats the mean by only a few percent.) A network whose output does not
depend on its input gets that warning whatever wins (a zero output read as EDM's F is a linear
denoiser).

Absolute checks, whatever the candidates: an eps-MSE at a checked t (30-90% of T) within 20% of
that of predicting eps_hat = 0 (exactly 1 per element), where the per-element linear denoiser of
the held-out data does 1.25 times better, is a loud warning naming the flags that usually cause
it; without ``trained_timesteps``, the two ends of the schedule are compared with their
neighbours (an eps-MSE at t = 0 more than twice that at t = 1: never trained there) and a
schedule of 100 k + 1 steps (0..1000: a model trained on 1000 steps never saw one end) is named.

Cost: ``n`` samples x 4 timesteps x the number of candidates (about 11; 19 for a small ADM)
forward passes, plus 4 n for the ends. Measured on the MNIST DDPM (``benchmarks/
bench_settings_check.py``, CPU, one thread): 11 candidates, 1,408 passes (5.5% of a default
probe's 500 x 50), 7.5 s against the probe's 156 s (4.8%; 5.4% with the ends, 1,536 passes).
A process model adds its conventions: 3 candidates for a flow or a VE SDE, 5 for ``ve``, 1 (the
sign) otherwise; a flow MLP: 15 candidates, 1,920 passes (7.7% of 500 x 50), 0.15 s.
"""

from __future__ import annotations

import math
import warnings
from itertools import product

import pandas as pd
import torch

from .settings_candidates import (DATA_RANGES, applied, attention_blocks, convention_candidates,
                                  distinct_times, given_heads, is_process, flags,
                                  head_candidates, range_candidates, target_candidates,
                                  time_candidates)
from .settings_stats import beats, linear_eps_mse, mean_predictor_errors, paired, pair_weights

__all__ = ["evaluate_settings", "check_settings", "head_candidates", "time_candidates",
           "range_candidates", "target_candidates", "flags", "CLEAR", "CERTAIN", "ZERO_LEVEL",
           "DATA_RANGES", "END_JUMP", "MEAN_MARGIN", "FORMATS"]

# (z, rel): "clearly better" warns, "certain" stops (auto mode)
CLEAR = (4.0, 0.02)
CERTAIN = (6.0, 0.25)
# where eps errors tell settings apart best: middle to high noise, where the irreducible part of
# the eps error is small (fractions of T)
T_FRACTIONS = (0.3, 0.5, 0.7, 0.9)
# an eps-MSE at least this fraction of that of eps_hat = 0 (1 per element) is a loud warning
ZERO_LEVEL = 0.8
# an end of the schedule whose eps-MSE exceeds its neighbour's by this factor looks untrained
END_JUMP = 2.0
# another target named must beat x0_hat = mean(x0) by CLEAR's z and by more than this fraction
MEAN_MARGIN = 0.0
# the loaders whose settings the user states (biaskit runs and oracles record their own)
FORMATS = ("plugin", "diffusers", "diffusers-unet", "adm")
AXES = ("heads", "time", "range", "target", "convention")
# the flags that usually make a network no better than eps_hat = 0
USUAL_CAUSES = ("--time-input / --time-scale", "--parameterization", "--data-range",
                "the schedule (--abar-key, --betas-key, --noise-schedule, --diffusion-steps, "
                "--scheduler-config)", "--state-dict-prefix / --state-dict-key")


# ---------------------------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def _eps_errors(d, x_t, t, eps, batch_size: int, y=None) -> torch.Tensor:
    """(n,) per-element eps-MSE of each (x_t, t) pair (y: (n,) labels of a conditional model)."""
    out = []
    for i in range(0, x_t.shape[0], batch_size):
        pred = d(x_t[i:i + batch_size], t[i:i + batch_size],
                 None if y is None else y[i:i + batch_size])
        out.append((pred.eps_hat.float() - eps[i:i + batch_size]).square().flatten(1).mean(1))
    return torch.cat(out)


def _steps(d, timesteps) -> list[int]:
    T = d.schedule.T
    return sorted({min(T - 1, round(f * (T - 1))) for f in T_FRACTIONS}) if timesteps is None \
        else sorted({int(t) for t in timesteps})


def _draws(d, x0: torch.Tensor, n: int, ts, seed: int, labels=None):
    """(x0, t, eps, y) for n samples at each step of ``ts``: common random numbers for every
    candidate; y: each sample's label (None without ``labels``)."""
    x0 = torch.as_tensor(x0)[:n].float().to(d.device)
    y = None if labels is None else \
        torch.as_tensor(labels)[:n].long().to(d.device).repeat(len(ts))
    g = torch.Generator().manual_seed(seed)
    t = torch.tensor(ts).repeat_interleave(x0.shape[0]).to(d.device)
    x0 = x0.repeat(len(ts), *([1] * (x0.ndim - 1)))
    eps = torch.randn(x0.shape, generator=g).to(d.device)
    return x0, t, eps, y


def _noised(d, x0, t, eps, lo_hi, chosen) -> torch.Tensor:
    """x_t = alpha x0' + sigma eps with x0 mapped affinely from the ``chosen`` range to ``lo_hi``."""
    (lo, hi), (lo0, hi0) = lo_hi, chosen
    x0 = lo + (x0 - lo0) * ((hi - lo) / (hi0 - lo0))
    alpha, sigma = d.schedule.coefficients(t)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    return alpha.reshape(shape).float() * x0 + sigma.reshape(shape).float() * eps


def _plan(heads: dict, times: dict, ranges: dict, targets: dict, conventions: dict) -> list[tuple]:
    """(heads, time, range, target, convention) labels to try: the heads x time grid at the
    chosen rest, then each other range, target and convention with the chosen rest."""
    first = [next(iter(a)) for a in (heads, times, ranges, targets, conventions)]
    plan = [(h, tm, *first[2:]) for h, tm in product(heads, times)]
    plan += [(*first[:2], r, *first[3:]) for r in list(ranges)[1:]]
    plan += [(*first[:3], g, first[4]) for g in list(targets)[1:]]
    plan += [(*first[:4], c) for c in list(conventions)[1:]]
    return plan


def evaluate_settings(d, x0, *, n: int = 32, timesteps=None, seed: int = 0,
                      batch_size: int = 64, labels=None) -> pd.DataFrame:
    """Eps error of every candidate setting of a third-party denoiser ``d`` (see the module).

    x0: held-out clean samples (N, C, H, W) or (N, D) in ``d``'s data range; the first n are
    noised at each timestep (default: 30, 50, 70, 90% of T). One row per candidate: ``setting``
    (its labels), ``heads``, ``time``, ``range``, ``target``, ``convention`` (the label on each
    axis; a convention: a process model's flow direction or VE SDE, and target sign),
    ``chosen`` (the user's), ``eps_mse``, ``score`` (the eps-MSE, scaled for a narrower data
    range; for a process model in units of the linear denoiser's at each t), ``diff`` =
    score(chosen) - score, ``diff_se``, ``z``, ``rel`` = diff / score(chosen), ``z_raw`` and
    ``rel_raw`` (the same on the eps-MSE without the per-t units: z and rel but for process
    models), ``z_vs_mean`` and ``rel_vs_mean`` (the same against x0_hat = mean(x0)), ``pairs``.
    ``labels``: (N,) classes of ``x0``, fed to a conditional model with each sample. A
    candidate with which the network fails to run has no row; when the per-axis best
    candidates of two or more axes beat the chosen one, their combination gets a row too.
    """
    blocks = attention_blocks(d.net) if d.source.format == "adm" else []
    axes = {"heads": head_candidates(blocks, given_heads(d.source.extras)) if blocks
            else {"current": ((), False)},
            "time": time_candidates(d), "range": range_candidates(d), "target": target_candidates(d),
            "convention": convention_candidates(d)}
    x_all = torch.as_tensor(x0).float()
    x0, t, eps, y = _draws(d, x0, n, _steps(d, timesteps), seed, labels)
    axes["time"] = distinct_times(d, axes["time"], t.unique())
    chosen_range = tuple(d.data_range)
    width0 = chosen_range[1] - chosen_range[0]
    steps = t.unique()
    linear = linear_eps_mse(d, x_all, steps)
    weight = pair_weights(d, linear, t.numel() // steps.numel())
    cache = {}

    def errors(labels):
        if labels not in cache:
            h, tm, r, g, c = (axes[a][lab] for a, lab in zip(AXES, labels))
            x_t = _noised(d, x0, t, eps, r, chosen_range)
            try:
                with applied(d, blocks, h, tm, g, c):
                    e = _eps_errors(d, x_t, t, eps, batch_size, y)
            except (RuntimeError, TypeError, ValueError, IndexError):
                if all(lab == next(iter(axes[a])) for a, lab in zip(AXES, labels)):
                    raise
                e = None
            scaled = None if e is None else e * max(1.0, (width0 / (r[1] - r[0])) ** 2)
            cache[labels] = None if e is None else (e, weight * scaled, scaled)
        return cache[labels]

    plan = _plan(*axes.values())
    for labels in plan:
        errors(labels)
    chosen = plan[0]
    base = cache[chosen][1]
    better = {}
    for labels, res in cache.items():
        if res is not None and res[1].mean() < base.mean():
            for a, lab, mine in zip(AXES, labels, chosen):
                if lab != mine and (a not in better or res[1].mean() < cache[better[a]][1].mean()):
                    better[a] = labels
    if len(better) > 1:
        combo = tuple(better[a][i] if a in better else chosen[i] for i, a in enumerate(AXES))
        errors(combo)
    rows = []
    trivial = weight * mean_predictor_errors(d, x0, t)
    for labels, res in cache.items():
        if res is None:
            continue
        e, s, s_raw = res
        r = axes["range"][labels[2]]
        k2 = ((r[1] - r[0]) / width0) ** 2
        z, rel = paired(base, s)
        z_raw, rel_raw = paired(cache[chosen][2], s_raw)
        z_mean, rel_mean = paired(trivial * max(k2, 1.0), s)
        rows.append({"setting": " ".join(lab for lab in labels if lab != "current"),
                     **dict(zip(AXES, labels)), "chosen": labels == chosen,
                     "eps_mse": float(e.mean()), "score": float(s.mean()),
                     "diff": float((base - s).mean()), "diff_se": float((base - s).std()) /
                     math.sqrt(s.numel()) if s.numel() > 1 else float("nan"), "z": z, "rel": rel,
                     "z_raw": z_raw, "rel_raw": rel_raw,
                     "z_vs_mean": z_mean, "rel_vs_mean": rel_mean, "pairs": s.numel()})
    df = pd.DataFrame(rows)
    parent = [int(p) for p in d.schedule.timesteps.to(steps.device)[steps].tolist()]
    by_t = cache[chosen][0].reshape(len(parent), -1).mean(1).tolist()
    df.attrs["chosen_by_t"] = dict(zip(parent, by_t))
    df.attrs["linear_by_t"] = dict(zip(parent, linear.tolist()))
    df.attrs["per_t_scaled"] = is_process(d)
    with torch.no_grad():  # the raw output on the chosen reading's first pairs
        out = d(_noised(d, x0, t, eps, chosen_range, chosen_range)[:batch_size], t[:batch_size],
                None if y is None else y[:batch_size]).out
    df.attrs["constant_output"] = bool(out.float().flatten(1).std(0).max() < 1e-6)
    return df


def _best(df: pd.DataFrame):
    """The index of the first candidate (the chosen one first, then in the order of the axes'
    candidates) whose score is within 0.5% of the least: near-ties go to the user's settings,
    then to the plainer flag (t / 1000 before t / 1001, 0.09% apart on the MNIST DDPM)."""
    return df.index[df["score"] <= df["score"].min() * 1.005][0]


def _verdict(row, chosen, d_name: str, per_t: bool = False) -> str:
    axes = [a for a in AXES if row[a] != chosen[a]]
    theirs = " ".join(row[a] for a in axes)
    mine = " ".join(chosen[a] for a in axes)
    scaled = (" (scaled to your range's width)" if "range" in axes and row["score"] != row["eps_mse"]
              else "")
    what = "eps-MSE in units of the linear denoiser's at each t" if per_t else "eps-MSE"
    return (f"{d_name}: the settings check ({row['pairs']} held-out (sample, t) pairs, common noise) "
            f"finds {what} {row['score']:.4g}{scaled} with {theirs} against {chosen['score']:.4g} "
            f"with your {mine} (lower by {100 * row['rel']:.0f}%, {row['z']:.1f} standard errors): "
            f"the weights were probably trained with {' '.join(flags(row[a]) for a in axes)}")


def _loud_zero(by_t: dict, linear_by_t: dict, d_name: str) -> str | None:
    """The warning when the chosen settings denoise no better than eps_hat = 0 at some checked t
    (eps-MSE >= ZERO_LEVEL) where the data allow far better (1.25 times the per-element linear
    denoiser's eps-MSE: at low noise, data of unit variance keep even the best eps-MSE near 1)."""
    bad = {t: e for t, e in by_t.items() if e >= ZERO_LEVEL and e > 1.25 * linear_by_t[t]}
    if not bad:
        return None
    at = ", ".join(f"{e:.3g} at t = {t}" for t, e in bad.items())
    return (f"{d_name}: NO BETTER THAN PREDICTING ZERO: the eps-MSE on held-out data is {at}, "
            f"against 1 for eps_hat = 0; a trained network is far lower in the middle of the "
            f"noise range. Check the flags that usually cause this: {'; '.join(USUAL_CAUSES)}")


@torch.no_grad()
def _ends(d, x0, n: int, seed: int, batch_size: int, labels=None) -> tuple[dict, str | None]:
    """The eps-MSE at both ends of the schedule and their neighbours, and a warning when an end
    looks untrained (or the schedule has 100 k + 1 steps); only without trained_timesteps."""
    T = d.schedule.T
    if "trained_timesteps" in d.source.extras or T < 4 or is_process(d):
        return {}, None
    x0, t, eps, y = _draws(d, x0, n, [0, 1, T - 2, T - 1], seed + 1, labels)
    e = _eps_errors(d, _noised(d, x0, t, eps, d.data_range, d.data_range), t, eps, batch_size, y)
    e = e.reshape(4, -1).mean(1).tolist()
    parent = [int(v) for v in d.schedule.timesteps[[0, 1, T - 2, T - 1]]]
    found = {"eps_mse": dict(zip(map(str, parent), e))}
    said, lo, hi = [], 0, T - 1
    if e[0] > END_JUMP * e[1]:
        said.append(f"eps-MSE {e[0]:.3g} at t = {parent[0]} against {e[1]:.3g} at t = {parent[1]}")
        lo = 1
    if e[3] > END_JUMP * e[2]:
        said.append(f"eps-MSE {e[3]:.3g} at t = {parent[3]} against {e[2]:.3g} at t = {parent[2]}")
        hi = T - 2
    N = d.schedule.num_train_timesteps
    if N > 100 and (N - 1) % 100 == 0:
        said.append(f"the schedule has {N} steps (0..{N - 1}): a model trained on {N - 1} steps "
                    f"never drew one of its ends")
        lo, hi = max(lo, 1), min(hi, T - 2)
    found["untrained"] = bool(said)
    if not said:
        return found, None
    return found, (f"{d.name}: the ends of the schedule look untrained ({'; '.join(said)}); they "
                   f"are probed as if trained: pass --trained-timesteps LO:HI with the timesteps "
                   f"the model was trained on (e.g. --trained-timesteps "
                   f"{int(d.schedule.timesteps[lo])}:{int(d.schedule.timesteps[hi])})")


def check_settings(d, x0, *, mode: str = "auto", n: int = 32, seed: int = 0, timesteps=None,
                   batch_size: int = 64, labels=None) -> pd.DataFrame | None:
    """Evaluate the candidates (:func:`evaluate_settings`) of a third-party denoiser on held-out
    ``x0`` and run the absolute checks (see the module); the outcome goes into
    ``d.source.extras["settings_check"]`` (so into ``metadata.json``).

    mode ``auto``: a candidate clearly better than the chosen settings (z > 4 and 2% lower
    score) is a warning naming its flags; a certain one (z > 6 and 25% lower) a ValueError.
    ``warn``: warnings only. ``off`` (or a model of another format: oracles and biaskit runs
    record their own settings): nothing, returns None. ``labels``: (N,) the held-out samples'
    own classes, with which a class-conditional model probed per sample is checked (every
    candidate sees each sample with its label); without them such a model is skipped.
    """
    if mode not in ("auto", "warn", "off"):
        raise ValueError(f"settings check mode must be auto, warn or off, got {mode!r}")
    if mode == "off" or d.source.format not in FORMATS:
        return None
    cond = getattr(d, "conditioning", None)
    per_sample = cond is not None and cond.class_label is None
    if per_sample and labels is None:  # its candidates need each sample's label
        d.source = d.source.with_extras(settings_check={
            "outcome": "skipped", "why": "a class-conditional model probed with each sample's own "
            "label, and the held-out data carry none (give --class-label K to check its "
            "settings on one class)"})
        return None
    labels = labels if per_sample else None
    if labels is not None and len(labels) != len(x0):
        raise ValueError(f"settings check: {len(labels)} labels for {len(x0)} held-out samples")
    df = evaluate_settings(d, x0, n=n, seed=seed, timesteps=timesteps, batch_size=batch_size,
                           labels=labels)
    chosen = df[df["chosen"]].iloc[0]
    best = df.loc[_best(df)]
    by_t = df.attrs["chosen_by_t"]
    ends, end_warning = _ends(d, x0, n, seed, batch_size, labels)
    steps = len(_steps(d, timesteps))
    record = {"chosen": chosen["setting"], "eps_mse": float(chosen["eps_mse"]),
              "rel_vs_mean": float(chosen["rel_vs_mean"]),
              "best": best["setting"], "best_eps_mse": float(best["eps_mse"]),
              "z": float(best["z"]), "rel": float(best["rel"]), "pairs": int(best["pairs"]),
              "candidates": len(df), "eps_mse_by_t": {str(k): v for k, v in by_t.items()},
              "forward_passes": int(len(df) * n * steps + 4 * n * bool(ends)), "ends": ends,
              "outcome": "ok", **({"labels": "each held-out sample's own"} if labels is not None
                                   else {})}
    clear = not best["chosen"] and beats(best, CLEAR)
    # a network that does no better than x0_hat = mean(x0) under any reading (an untrained one)
    # tells nothing about its settings: a near-zero output read as x0 would win every time
    credible = best["target"] == chosen["target"] or (best["z_vs_mean"] > CLEAR[0]
                                                      and best["rel_vs_mean"] > MEAN_MARGIN)
    if df.attrs["constant_output"]:  # a zero net read as edm is a linear denoiser: not a finding
        credible = False
    message = _verdict(best, chosen, d.name, df.attrs["per_t_scaled"]) if clear and credible else None
    if clear and not credible:
        why = ("its output is the same for every input" if df.attrs["constant_output"] else
               f"under no candidate setting does it denoise held-out data clearly better than "
               f"x0_hat = mean(x0) (best: {best['setting']}, eps-MSE {best['eps_mse']:.4g}, "
               f"{100 * best['rel_vs_mean']:.0f}% below it)")
        message = (f"{d.name}: {why}: it looks untrained, or its schedule or weights are not the "
                   f"ones it was trained with; its settings cannot be checked")
        clear = False
    certain = clear and beats(best, CERTAIN, strict=False)
    zero = _loud_zero(by_t, df.attrs["linear_by_t"], d.name)
    said = [m for m in (message, zero, end_warning) if m]
    record.update(outcome="stopped" if certain and mode == "auto" else "warned" if said else "ok",
                  warnings=said)
    d.source = d.source.with_extras(settings_check=record)
    if certain and mode == "auto":
        raise ValueError(message + " (pass those flags, or --settings-check warn to go on)")
    for m in said:
        warnings.warn(m, stacklevel=2)
    return df

