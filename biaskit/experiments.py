"""Recipes the notebooks share: load a family's trained runs, probe them on common random numbers
and sample them, each through the cache.

A *family* is a dataset with one training preset per weighting (``digits-constant``,
``digits-debias`` ... see :func:`biaskit.config.preset_names`); the runs come from the study plan
(:func:`biaskit.profiles.train_runs`), so two notebooks asking for the same family share them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .cache import Cache


def load_family(runs: dict[str, Path], *, step: int | None = None, device=None) -> dict:
    """{name: Denoiser} (EMA weights) of each run at its last or a given step, named by key."""
    from .checkpoint import load_run
    models = {}
    for name, run in runs.items():
        d = load_run(run, step=step, device=device)
        d.name = name
        models[name] = d
    return models


def run_dataset(run_dir):
    """The :class:`biaskit.data.Dataset` a run was trained on (its test split is held out)."""
    from .checkpoint import read_run_info
    from .data import load_dataset
    spec = dict(read_run_info(run_dir)["data"])
    return load_dataset(spec.pop("name"), **spec)


def compare_family(cache: Cache, runs: dict[str, Path], data=None, *, reference: str | None = None,
                   step: int | None = None, device=None, **probe_kwargs):
    """:func:`biaskit.probe.compare` of the runs' models on the held-out data (default: the first
    run's dataset), computed once per (runs, step, data, probe settings)."""
    from .probe import compare
    data = data if data is not None else run_dataset(next(iter(runs.values())))
    key = {"runs": {k: run_key(v) for k, v in runs.items()}, "step": step,
           "data": getattr(data, "spec", None), "reference": reference, **probe_kwargs}
    if key["data"] is None:
        raise ValueError("compare_family caches by the data's spec: pass a biaskit Dataset")
    return cache.results("compare", key, lambda: compare(
        load_family(runs, step=step, device=device), data, reference=reference, device=device,
        **probe_kwargs), label="-".join(runs))


def high_t_summary(df_compare, T: int, stats=("x0_mse", "x0_bias_l2"), fraction: float = 0.5):
    """Paired differences against the reference over the noisiest ``fraction`` of the T steps
    (t >= (1 - fraction) T), from a :func:`biaskit.probe.compare` frame: one row per (model,
    statistic) with the reference's mean, the mean difference, its interval and the relative
    difference (difference / reference mean).

    The interval of the mean over the grid's high-t rows is :func:`biaskit.intervals.mean_of_intervals`
    (the mean of the per-t 95% half-widths: conservative for correlated estimates).
    """
    import pandas as pd

    from .intervals import mean_of_intervals
    high = df_compare[df_compare["t"] >= (1 - fraction) * T]
    diffs = high[high["kind"] == "difference"]
    if diffs.empty:
        raise ValueError("no difference rows at high t: compare() needs two or more models and a "
                         "timestep grid reaching the noisy end")
    reference = diffs["reference"].iloc[0]
    ref = high[(high["kind"] == "model") & (high["model"] == reference)].set_index("t")
    rows = []
    for name, d in diffs.groupby("model", sort=False):
        d = d.set_index("t")
        for s in stats:
            diff, lo, hi = mean_of_intervals(d[s], d[f"{s}_lo"], d[f"{s}_hi"])
            base = ref.loc[d.index, s].mean()
            rows.append({"model": name.split(" - ")[0], "reference": reference, "statistic": s,
                         "t_from": int(d.index.min()), "n_t": len(d), "reference_mean": base,
                         "difference": diff, "difference_lo": lo, "difference_hi": hi,
                         "relative": diff / base, "relative_lo": lo / base, "relative_hi": hi / base})
    return pd.DataFrame(rows)


def run_key(run_dir) -> str:
    """The cache key of a run folder made by :meth:`Cache.run` (its parent folder's name)."""
    return Path(run_dir).parent.name


def tensor_digest(x: torch.Tensor) -> str:
    """sha256 of a tensor's values and shape (a cache key for data sets and schedules)."""
    import hashlib
    t = x.detach().cpu().contiguous()
    return hashlib.sha256(str(tuple(t.shape)).encode() + t.numpy().tobytes()).hexdigest()


def sample_run(cache: Cache, run_dir, n: int, *, sampler: str = "ddim", steps: int = 50,
               seed: int = 0, step: int | None = None, device=None, denoiser=None, **sample_kwargs):
    """``n`` samples (n, *shape) of a run's EMA model (at its last or a given checkpoint ``step``)
    drawn by :func:`biaskit.sampling.sample`, cached per (run, step, n, sampler, steps, seed,
    options): the same seed gives every model the same initial noise. ``denoiser``: the run's
    model on another view (e.g. a common logsnr schedule, :func:`~biaskit.formulations.on_common_logsnr`),
    sampled instead of the run as loaded; its schedule joins the key."""
    from .checkpoint import load_run, read_run_info
    from .sampling import sample
    shape = tuple(read_run_info(run_dir)["shape"])
    key = {"run": run_key(run_dir), "step": step, "n": int(n), "sampler": sampler,
           "steps": int(steps), "seed": int(seed), **sample_kwargs}
    if denoiser is not None:
        key["view"] = tensor_digest(denoiser.schedule.abar)

    def compute():
        den = denoiser if denoiser is not None else load_run(run_dir, step=step, device=device)
        return {"x0": sample(den, (int(n), *shape), sampler=sampler, steps=int(steps), seed=int(seed),
                             progress=False, **sample_kwargs).x0}

    return cache.tensors("samples", key, compute, label=f"{Path(run_dir).name}-{sampler}-{steps}")["x0"]
