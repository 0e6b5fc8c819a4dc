"""Recipes the notebooks share: load the trained runs of a dataset's preset variants, probe
them on common random numbers and sample them, each through the cache.

Each dataset has one training preset per variant (``digits-constant``, ``digits-debias`` ... see
:func:`biaskit.config.preset_names`); the runs ({variant: run folder}) come from the study plan
(:func:`biaskit.study.profiles.train_runs`), so two notebooks asking for the same runs share them.
"""

from __future__ import annotations

from pathlib import Path


from .cache import Cache, run_key, tensor_digest


def load_models(runs: dict[str, Path], *, step: int | None = None, device=None) -> dict:
    """{name: Denoiser} (EMA weights) of each run at its last or a given step, named by key."""
    from ..checkpoint import load_run
    models = {}
    for name, run in runs.items():
        d = load_run(run, step=step, device=device)
        d.name = name
        models[name] = d
    return models


def run_dataset(run_dir):
    """The :class:`biaskit.data.Dataset` a run was trained on (its test split is held out)."""
    from ..checkpoint import read_run_info
    from ..data import load_dataset
    spec = dict(read_run_info(run_dir)["data"])
    return load_dataset(spec.pop("name"), **spec)


def compare_runs(cache: Cache, runs: dict[str, Path], data=None, *, reference: str | None = None,
                 step: int | None = None, device=None, **probe_kwargs):
    """:func:`biaskit.probe.compare` of the runs' models on the held-out data (default: the first
    run's dataset), computed once per (runs, step, data, probe settings)."""
    from ..probe import compare
    data = data if data is not None else run_dataset(next(iter(runs.values())))
    key = {"runs": {k: run_key(v) for k, v in runs.items()}, "step": step,
           "data": getattr(data, "spec", None), "reference": reference, **probe_kwargs}
    if key["data"] is None:
        raise ValueError("compare_runs caches by the data's spec: pass a biaskit Dataset")
    return cache.results("compare", key, lambda: compare(
        load_models(runs, step=step, device=device), data, reference=reference, device=device,
        **probe_kwargs), label="-".join(runs))


def compare_ratio_runs(cache: Cache, runs: dict[str, Path], data, *, reference: str,
                       statistics, t_min: int | None, t_max: int | None = None,
                       weights: str = "logsnr", per_t: bool = False, device=None, **probe_kwargs):
    """:func:`biaskit.probe.compare_ratio` of the runs' models against ``reference`` over the
    probed t in [``t_min``, ``t_max``] (``per_t``: and at each probed t), computed once per
    (runs, data, settings)."""
    from ..probe import compare_ratio
    key = {"runs": {k: run_key(v) for k, v in runs.items()}, "data": data.spec, "reference": reference,
           "statistics": list(statistics), "t_min": t_min, "t_max": t_max, "weights": weights,
           **({"per_t": True} if per_t else {}), **probe_kwargs}
    return cache.frame("ratio", key, lambda: compare_ratio(
        load_models(runs, device=device), data, reference=reference, statistics=list(statistics),
        t_min=t_min, t_max=t_max, weights=weights, per_t=per_t, device=device, **probe_kwargs),
        label="-".join(runs))


def high_t_summary(cache: Cache, seed_runs: dict[int, dict[str, Path]], data, *, reference: str, T: int,
                   stats=("x0_mse", "x0_bias_l2"), fraction: float = 0.5, **kwargs):
    """:func:`range_summary` over the noisiest ``fraction`` of the T steps (probed
    t >= (1 - fraction) T)."""
    import math
    return range_summary(cache, seed_runs, data, reference=reference, stats=stats,
                         t_min=int(math.ceil((1 - fraction) * T)), **kwargs)


def range_summary(cache: Cache, seed_runs: dict[int, dict[str, Path]], data, *, reference: str,
                  stats=("x0_mse", "x0_bias_l2"), t_min: int | None = None, t_max: int | None = None,
                  weights: str = "logsnr", device=None, **probe_kwargs):
    """Relative differences against ``reference`` over the probed t in [``t_min``, ``t_max``],
    replicated over training seeds. ``seed_runs``: {training seed: {weighting: run}}
    (:func:`biaskit.study.profiles.train_seeds`).

    Per seed s, the models of seed s are probed against the reference of seed s on probe draws
    of seed s (so that probe noise, too, is independent between seeds): the log ratio L_s of
    :mod:`biaskit.probe.ratio` (weighted geometric mean over the range of m_model / m_ref).
    Over S >= 2 seeds the interval is :func:`biaskit.intervals.over_seeds` of the L_s (it covers
    seed-to-seed variance and probe noise); with one seed it is that seed's delta-method
    interval (probe noise only), and ``interval`` says so. Bounds map back by exp, so
    ``relative`` = R - 1 and its bounds lie above -1.

    One row per (model, statistic): model, reference, statistic, seeds (S), seed_list,
    relative_by_seed, t_from, t_to, logsnr_from, logsnr_to, n_t, weights, n, reference_mean and
    model_mean (averaged over seeds), log_ratio, relative and their ``_lo``/``_hi``, interval."""
    import numpy as np
    import pandas as pd

    from ..intervals import over_seeds
    per_seed = []
    for s, runs in seed_runs.items():
        if reference not in runs or len(runs) < 2:
            continue
        f = compare_ratio_runs(cache, runs, data, reference=reference, statistics=stats, t_min=t_min,
                               t_max=t_max, weights=weights, device=device, **{**probe_kwargs, "seed": int(s)})
        per_seed.append(f.assign(training_seed=int(s)))
    if not per_seed:
        raise ValueError(f"no seed has the reference {reference!r} and another model")
    d = pd.concat(per_seed, ignore_index=True)
    rows = []
    for (model, stat), g in d.groupby(["model", "statistic"], sort=False):
        g = g.sort_values("training_seed")
        first = g.iloc[0]
        if len(g) >= 2:
            L, lo, hi = over_seeds(g["log_ratio"].to_numpy())
            interval = f"t-interval over {len(g)} training seeds (seed and probe variance)"
        else:
            L, lo, hi = first["log_ratio"], first["log_ratio_lo"], first["log_ratio_hi"]
            interval = "1 training seed: probe noise only"
        rows.append({"model": model, "reference": reference, "statistic": stat, "seeds": len(g),
                     "seed_list": " ".join(str(v) for v in g["training_seed"]),
                     "relative_by_seed": " ".join(f"{v:+.3f}" for v in g["relative"]),
                     **{k: first[k] for k in ("t_from", "t_to", "logsnr_from", "logsnr_to", "n_t",
                                              "weights", "n")},
                     "reference_mean": g["reference_mean"].mean(), "model_mean": g["model_mean"].mean(),
                     "log_ratio": L, "log_ratio_lo": lo, "log_ratio_hi": hi,
                     "relative": np.expm1(L), "relative_lo": np.expm1(lo), "relative_hi": np.expm1(hi),
                     "interval": interval})
    return pd.DataFrame(rows)


def sample_run(cache: Cache, run_dir, n: int, *, sampler: str = "ddim", steps: int = 50,
               seed: int = 0, step: int | None = None, device=None, denoiser=None, **sample_kwargs):
    """``n`` samples (n, *shape) of a run's EMA model (at its last or a given checkpoint ``step``)
    drawn by :func:`biaskit.sampling.sample`, cached per (run, step, n, sampler, steps, seed,
    options): the same seed gives every model the same initial noise. ``denoiser``: the run's
    model on another view (e.g. a common logsnr schedule, :func:`~biaskit.formulations.on_common_logsnr`),
    sampled instead of the run as loaded; its schedule joins the key."""
    from ..checkpoint import load_run, read_run_info
    from ..sampling import sample
    shape = tuple(read_run_info(run_dir)["shape"])
    key = {"run": run_key(run_dir), "step": step, "n": int(n), "sampler": sampler,
           "steps": int(steps), "seed": int(seed), **sample_kwargs}
    if denoiser is not None:
        key["view"] = tensor_digest(denoiser.schedule.abar)

    def compute():
        den = denoiser if denoiser is not None else load_run(run_dir, step=step, device=device)
        return {"x0": sample(den, (int(n), *shape), sampler=sampler, steps=int(steps), seed=int(seed),
                             progress=False, check_finite=False, **sample_kwargs).x0}

    return cache.tensors("samples", key, compute, label=f"{Path(run_dir).name}-{sampler}-{steps}")["x0"]
