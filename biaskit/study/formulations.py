"""The analyses of notebook 05_formulations: models of several formulations (eps-VP, v-VP, EDM,
flow matching) of the same data, read as VP denoisers on one log-SNR axis
(:func:`biaskit.formulations.on_common_logsnr`), against the exact oracle and in few-step samples.

- :func:`run_table`: what each run trains (process, target, weighting, training density).
- :func:`with_oracle`: a probe frame with the oracle's own x0 error as one more "model".
- :func:`high_noise_table`: per model, where its excess x0 error over the oracle lies on the
  logsnr axis, and its excess and bias norm at the noisiest probed point.
- :func:`own_sampler`, :func:`formulation_samples`, :func:`formulation_quality`: samples of
  every model from the same noise, with the samplers of the common VP view (DDIM, DPM-Solver++ on
  the reference schedule) and each formulation's own (EDM's Heun on its Karras grid, the flow
  Euler ODE on its time grid), scored against held-out data with the data-vs-data floor.

"Own sampler" is a process's sampler (``Process.sampler``), labelled ``own`` in tables; it is not
:mod:`biaskit.sampling.native`'s sense of native (biaskit's implementation, not diffusers').
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..processes import PROCESSES, DiscreteVP
from .cache import Cache
from .recipes import sample_run
from .samples import sample_quality

ORACLE = "oracle (irreducible)"
# the samplers of :func:`own_sampler`: every named process's own (EDM's heun, flow's flow_euler)
OWN_SAMPLERS = tuple(dict.fromkeys(c.sampler for c in PROCESSES.values() if c.sampler))


def run_table(runs: dict[str, Path]) -> pd.DataFrame:
    """One row per run: model, process (``discrete`` = the VP schedule's integer steps), target,
    weighting and training density (``uniform`` steps for a discrete run), from its biaskit.json."""
    from ..checkpoint import read_run_info
    rows = []
    for name, run in runs.items():
        cfg = read_run_info(run)["train_config"]
        process, loss = cfg.get("process", {}).get("name", DiscreteVP.key), cfg["loss"]
        ts = loss.get("t_sampling", "uniform")  # an alias of loss.density
        rows.append({"model": name, "process": process, "target": loss["target"],
                     "weighting": loss["weighting"],
                     "density": loss.get("density", "uniform") if ts == "uniform" else ts})
    return pd.DataFrame(rows)


def with_oracle(df: pd.DataFrame) -> pd.DataFrame:
    """The model rows of a probe/compare frame plus rows of model :data:`ORACLE` whose x0_mse is
    the oracle's (oracle_mse, the same draws for every model: taken from the first model)."""
    models = df[df["kind"] == "model"] if "kind" in df else df
    if "oracle_mse" not in models:
        raise ValueError("the frame has no oracle_mse: probe with an oracle (data with a mixture)")
    first = models[models["model"] == models["model"].iloc[0]]
    oracle = first[["t", "schedule_index", "snr", "logsnr", "n"]].assign(
        model=ORACLE, x0_mse=first["oracle_mse"].to_numpy(), kind="model")
    for side in ("lo", "hi"):
        if f"oracle_mse_{side}" in first:
            oracle[f"x0_mse_{side}"] = first[f"oracle_mse_{side}"].to_numpy()
    return pd.concat([models, oracle], ignore_index=True)


def _trapezoid_below(lam: np.ndarray, y: np.ndarray, cut: float) -> tuple[float, float]:
    """(integral of y over lam < cut, integral over all lam), trapezoids with y linear between
    the points; the segment across the cut is split at it."""
    order = np.argsort(lam)
    lam, y = lam[order], y[order]
    total = float(np.trapezoid(y, lam))
    if cut <= lam[0]:
        return 0.0, total
    if cut >= lam[-1]:
        return total, total
    y_cut = float(np.interp(cut, lam, y))
    keep = lam < cut
    return float(np.trapezoid(np.append(y[keep], y_cut), np.append(lam[keep], cut))), total


def high_noise_table(df: pd.DataFrame, cut: float) -> pd.DataFrame:
    """Per model of a compare frame with oracle columns (kind "model" rows), on the logsnr axis:

    - ``excess_share_below_cut``: the share of the integral of excess_mse over logsnr
      (trapezoids over the probed points) that lies at logsnr < ``cut``;
    - ``excess_over_oracle_below_cut``: mean excess_mse / mean oracle_mse over the probed
      points with logsnr < cut (how much the model adds to the irreducible error there);
    - at the noisiest probed point (lowest logsnr): ``excess_noisiest`` and ``x0_bias_l2_noisiest``
      with their 95% intervals (``_lo``, ``_hi``) where the frame has them.
    """
    models = df[df["kind"] == "model"] if "kind" in df else df
    rows = []
    for name, d in models.groupby("model", sort=False):
        lam, ex = d["logsnr"].to_numpy(float), d["excess_mse"].to_numpy(float)
        below, total = _trapezoid_below(lam, ex, cut)
        hi_noise = d[d["logsnr"] < cut]
        last = d.loc[d["logsnr"].idxmin()]
        row = {"model": name, "logsnr_cut": cut, "n_below_cut": len(hi_noise),
               "excess_share_below_cut": below / total if total > 0 else float("nan"),
               "excess_over_oracle_below_cut": (hi_noise["excess_mse"].mean() / hi_noise["oracle_mse"].mean()
                                                if len(hi_noise) else float("nan")),
               "logsnr_noisiest": float(last["logsnr"])}
        for stat, col in (("excess_mse", "excess_noisiest"), ("x0_bias_l2", "x0_bias_l2_noisiest")):
            if stat in d:
                row[col] = float(last[stat])
                for side in ("lo", "hi"):
                    if f"{stat}_{side}" in d:
                        row[f"{col}_{side}"] = float(last[f"{stat}_{side}"])
        rows.append(row)
    return pd.DataFrame(rows)


def own_sampler(denoiser) -> str | None:
    """The sampler of a formulation's own papers: ``heun`` (EDM, Karras et al. 2022 Algorithm 2)
    for a VE / EDM model, ``flow_euler`` for a flow-matching model, None for a VP model (whose
    own samplers are the common ones): the process's ``sampler``."""
    return getattr(getattr(denoiser, "process", None), "sampler", None)


def formulation_samples(cache: Cache, runs: dict[str, Path], models: dict, name: str, n: int, *,
                        sampler: str, steps: int, seed: int, clip: bool = False) -> torch.Tensor:
    """(n, *shape) samples of ``models[name]`` (a model of ``runs[name]``, on the view it is given,
    e.g. the common logsnr schedule) from the seeded noise every model shares, cached
    (:func:`biaskit.study.recipes.sample_run`). A process's own ODE sampler (``heun``, ``flow_euler``) walks
    the model's own process grid (:func:`biaskit.sampling.sample`)."""
    return sample_run(cache, runs[name], n, sampler=sampler, steps=steps, seed=seed, clip=bool(clip),
                      denoiser=models[name])


def formulation_quality(cache: Cache, runs: dict[str, Path], models: dict, reference, metrics, *,
                        data, samplers, steps_list, n: int, seed: int, clip: bool = False,
                        baseline=None, own: bool = True, n_boot: int | None = None) -> pd.DataFrame:
    """:func:`biaskit.study.samples.sample_quality` of every model on its view (``models``) for each
    common sampler of ``samplers`` and, with ``own``, each model's :func:`own_sampler`, at
    each step count. One row per (model, sampler, steps, metric) with value, lo, hi;
    ``baseline`` adds the data-vs-data floor rows (model "data vs data", no sampler).
    ``n_boot``: bootstrap resamples of every interval (None: :data:`biaskit.metrics.N_BOOT`)."""
    kw = dict(data=data, clip=clip, n=n, seed=seed, n_boot=n_boot)
    frames = []
    for name, den in models.items():
        mine = [own_sampler(den)] if own and own_sampler(den) else []
        for sampler in list(samplers) + mine:
            for steps in steps_list:
                frames.append(sample_quality(cache, {name: runs[name]}, reference, metrics, sampler=sampler,
                                             steps=steps, models={name: den}, **kw))
    if baseline is not None:   # the floor does not depend on the sampler
        floor = sample_quality(cache, {}, reference, metrics, sampler="", steps=0, baseline=baseline, **kw)
        frames.append(floor.assign(sampler=np.nan, steps=np.nan))
    return pd.concat(frames, ignore_index=True).drop(columns="training_step")


def quality_over_floor(quality: pd.DataFrame) -> pd.DataFrame:
    """Each sample-quality row of :func:`formulation_quality` with ``floor`` (the data-vs-data
    value of its metric) and ``over_floor`` = value / floor (1: as close to the held-out data as
    other data of the same law)."""
    from ..metrics import BASELINE
    floor = quality[quality["model"] == BASELINE].groupby("metric")["value"].first()
    q = quality[quality["model"] != BASELINE].copy()
    q["floor"] = q["metric"].map(floor)
    q["over_floor"] = q["value"] / q["floor"]
    return q


def summary_table(high: pd.DataFrame, quality: pd.DataFrame, *, sampler: str, clip: bool,
                  metric: str = "swd") -> pd.DataFrame:
    """Per model: the :func:`high_noise_table` columns that say where its x0 error goes, then its
    ``metric`` / floor (:func:`quality_over_floor`) under protocol ``clip`` with ``sampler`` and
    with its :func:`own_sampler` (columns labelled ``own``; NaN for a VP model), at the fewest and
    the most steps."""
    q = quality_over_floor(quality)
    q = q[(q["metric"] == metric) & (q["clip"] == bool(clip))]
    out = high.set_index("model")[["excess_noisiest", "x0_bias_l2_noisiest", "excess_share_below_cut",
                                   "excess_over_oracle_below_cut"]].copy()
    for label, rows in ((sampler, q[q["sampler"] == sampler]), ("own", q[q["sampler"].isin(OWN_SAMPLERS)])):
        if rows.empty:
            continue
        for steps in (rows["steps"].min(), rows["steps"].max()):
            out[f"{metric}/floor {label} {int(steps)} steps"] = \
                rows[rows["steps"] == steps].set_index("model")["over_floor"]
    return out.reset_index()


FAMILY_TITLES = {"": "eps-VP", "v": "v-VP", "edm": "EDM", "flow": "flow matching"}


def formulation_groups(models) -> dict[str, list[str]]:
    """{panel title: [usual, debias-equivalent]} of the 05 variants in ``models`` (order kept):
    ``X`` and ``X-debias`` share a panel, constant and debias (eps-VP) another."""
    groups: dict[str, list[str]] = {}
    for m in models:
        base = m[: -len("-debias")] if m.endswith("-debias") else m
        base = "" if base in ("constant", "debias") else base
        groups.setdefault(FAMILY_TITLES.get(base, base), []).append(m)
    return groups
