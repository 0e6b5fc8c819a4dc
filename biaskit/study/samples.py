"""The sample analyses of the impact (02) and reasons (03) notebooks, each computed once per
setting through the cache: sample quality of a dataset's runs, the colour statistics of samples
against the data with intervals, hybrid sweeps scored with intervals, and trajectory statistics.

Every sample set names its protocol: ``clip=True`` clamps x0_hat to the data range at every
step, as the paper's code samples (guided-diffusion ``clip_denoised=True``, diffusers'
DDPMScheduler default); ``clip=False`` is the unclipped chain, where the high-noise x0 error
shows most. Frames carry ``clip`` and ``protocol`` columns, figures say it in their titles.
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import pandas as pd
import torch

from .cache import Cache, run_key, tensor_digest as _digest
from .recipes import sample_run
from .verdicts import NOISE

PROTOCOLS = {True: "x0_hat clipped to the data range (paper's protocol)",
             False: "unclipped chain"}


def protocol(clip: bool) -> str:
    """The words figures and tables use for a sampling protocol."""
    return PROTOCOLS[bool(clip)]


def sample_sets(cache: Cache, runs: dict[str, Path], n: int, *, sampler: str, steps: int,
                clip: bool, seed: int, step: int | None = None, device=None, models=None) -> dict:
    """{name: (n, *shape) samples} of every run from the same seed (same x_T), cached.
    ``models``: {name: the run's model on another view} to sample instead (:func:`sample_run`)."""
    models = models or {}
    return {w: sample_run(cache, run, n, sampler=sampler, steps=steps, seed=seed, step=step,
                          device=device, clip=bool(clip), denoiser=models.get(w)) for w, run in runs.items()}


def sample_quality(cache: Cache, runs: dict[str, Path], reference, metrics, *, data, sampler: str,
                   steps: int, clip: bool, n: int, seed: int, step: int | None = None,
                   n_scored: int | None = None, inception=None, device=None,
                   baseline=None, noise: bool = False, models=None,
                   n_boot: int | None = None) -> pd.DataFrame:
    """:func:`biaskit.metrics.evaluate` of each run's ``n`` samples (the first ``n_scored`` of
    them when given) against ``reference``, cached per (run, checkpoint step, sampler, steps,
    clip, n, seed, metrics, reference). One row per (model, metric) with value, lo, hi and
    the columns sampler, steps, clip, protocol and training_step (the checkpoint; None: the last).
    ``baseline``: other data of the same law, scored at the samples' size as model "data vs data"
    (the noise floor, :func:`biaskit.metrics.data_vs_data`), cached once per (reference,
    baseline, size, metrics, seed) whatever the sampler. ``noise``: also score pure noise,
    x ~ N(0, I) of the reference's shape (clamped to the data range under ``clip``: what a
    sampler that never denoised returns), as model "pure noise" (the ceiling against which
    "neither model generates" is read), cached like the floor. ``models``: {name: the run's model on
    another view} sampled instead of the run as loaded (its schedule joins the key);
    ``n_boot``: bootstrap resamples of every interval (None: :data:`biaskit.metrics.N_BOOT`)."""
    from .. import metrics as M
    size = int(n_scored or n)
    models = models or {}
    common = {"metrics": list(metrics), "seed": int(seed), "data": data.spec,
              "reference": _digest(reference), "n_scored": size}
    kw = dict(data_range=data.data_range, mixture=getattr(data, "mixture", None), inception=inception,
              seed=seed)
    if n_boot is not None:
        common["n_boot"] = kw["n_boot"] = int(n_boot)

    def score(w):
        def compute():
            x = sample_sets(cache, {w: runs[w]}, n, sampler=sampler, steps=steps, clip=clip,
                            seed=seed, step=step, device=device, models=models)[w][:size]
            return M.evaluate({w: x}, reference, list(metrics), **kw)
        key = {**common, "run": run_key(runs[w]), "step": step, "sampler": sampler,
               "steps": int(steps), "clip": bool(clip), "n": int(n)}
        if w in models:
            key["view"] = _digest(models[w].schedule.abar)
        return cache.frame("quality", key, compute)

    frames = [score(w) for w in runs]
    if baseline is not None:
        frames.append(cache.frame("quality_floor", {**common, "baseline": _digest(baseline)},
                                  lambda: M.data_vs_data(baseline, reference, list(metrics), size, **kw)))
    if noise:
        def pure_noise():
            g = torch.Generator().manual_seed(int(seed))
            x = torch.randn((size, *reference.shape[1:]), generator=g)
            x = x.clamp(*data.data_range) if clip else x
            return M.evaluate({NOISE: x}, reference, list(metrics), **kw)
        frames.append(cache.frame("quality_noise", {**common, "clip": bool(clip)}, pure_noise))
    q = pd.concat(frames, ignore_index=True)
    return q.rename(columns={"set": "model"}).assign(
        sampler=sampler, steps=int(steps), clip=bool(clip), protocol=protocol(clip),
        training_step=step)


def channel_shift(cs: pd.DataFrame, reference: str = "data", stat: str = "mean",
                  ci: float = 0.95) -> pd.DataFrame:
    """Per (set, channel) of a :func:`biaskit.trajectory.channel_stats` frame: the average of the
    per-sample channel ``stat`` (mean or std) over samples, its std and count, and its shift from
    the ``reference`` set's average with the half-width of a normal-approximation interval,
    z * sqrt(s^2 / n + s_ref^2 / n_ref), z the standard normal quantile at (1 + ci) / 2."""
    agg = cs.groupby(["set", "channel"], sort=False)[stat].agg(["mean", "std", "count"]).reset_index()
    ref = agg[agg["set"] == reference].set_index("channel")
    if ref.empty:
        raise ValueError(f"no set named {reference!r}; sets: {', '.join(map(str, agg['set'].unique()))}")
    z = NormalDist().inv_cdf((1 + ci) / 2)
    agg["shift"] = agg["mean"] - agg["channel"].map(ref["mean"])
    agg["shift_half"] = z * (agg["std"] ** 2 / agg["count"]
                             + agg["channel"].map(ref["std"] ** 2 / ref["count"])) ** 0.5
    return agg.assign(statistic=stat)


def colour_error(x, reference, n_boot: int = 20, seed: int = 0, ci: float = 0.95):
    """max over channels of |average channel mean of x - that of ``reference``| (data units),
    with the bootstrap interval of :func:`biaskit.metrics.bootstrap` (both sets resampled)."""
    from ..metrics import bootstrap
    mx = torch.as_tensor(x).double().flatten(2).mean(2)  # (N, C) per-sample channel means
    my = torch.as_tensor(reference).double().flatten(2).mean(2)
    # i, j: (B, n) resampled rows; the statistic of each of the B resamples, (B,)
    return bootstrap(lambda i, j: (mx[i].mean(1) - my[j].mean(1)).abs().amax(-1),
                     (len(mx), len(my)), "colour_error", n_boot=n_boot, seed=seed, ci=ci)


def hybrid_quality(cache: Cache, runs: dict[str, Path], models: dict, a: str, b: str, ks, noise,
                   reference, *, data, sampler: str, steps: int, clip: bool, seed: int,
                   n_boot: int = 20) -> pd.DataFrame:
    """:func:`biaskit.sampling.hybrid_sample` (model ``a`` for the first k calls, ``b`` after)
    for each k from the same ``noise``, scored against ``reference`` by SWD and
    :func:`colour_error`, each with its bootstrap interval; cached. One row per (k, metric):
    value, lo, hi, model_a, model_b, order ("a then b"), clip, protocol."""
    from ..metrics import sliced_wasserstein
    from ..sampling import hybrid_sample
    key = {"a": run_key(runs[a]), "b": run_key(runs[b]), "names": [a, b], "ks": list(ks),
           "sampler": sampler, "steps": int(steps), "clip": bool(clip), "n": len(noise),
           "seed": int(seed), "n_boot": n_boot, "data": data.spec}

    def compute():
        rows = []
        for k in ks:
            x0 = hybrid_sample(models[a], models[b], int(k), noise.clone(), sampler=sampler,
                               steps=steps, seed=seed, clip=clip, progress=False, check_finite=False).x0
            for e in (sliced_wasserstein(x0, reference, seed=seed, n_boot=n_boot),
                      colour_error(x0, reference, n_boot=n_boot, seed=seed)):
                rows.append({"k": int(k), "model_a": a, "model_b": b, "metric": e.metric,
                             "value": e.value, "lo": e.lo, "hi": e.hi})
        return pd.DataFrame(rows)

    return cache.frame("hybrid", key, compute).assign(
        order=f"{a} then {b}", clip=bool(clip), protocol=protocol(clip))


def trajectories(models: dict, noise, *, sampler: str, steps: int, clip: bool, seed: int,
                 data_range) -> pd.DataFrame:
    """:func:`biaskit.trajectory.trajectory_stats` of every model's chain from the same
    ``noise``, one frame with columns model (its name in ``models``), clip and protocol added."""
    from ..sampling import sample
    from ..trajectory import trajectory_stats
    rows = []
    for w, den in models.items():
        res = sample(den, noise.clone(), sampler=sampler, steps=steps, seed=seed, clip=clip,
                     return_trajectory=True, progress=False, check_finite=False)
        rows.append(trajectory_stats(res.trajectory, data_range=data_range).assign(model=w))
    return pd.concat(rows, ignore_index=True).assign(clip=bool(clip), protocol=protocol(clip))


def file_name(base: str, clip: bool) -> str:
    """A figure's file name: the clipped protocol keeps ``base``, the unclipped view adds
    ``_unclipped``."""
    return base if clip else f"{base}_unclipped"


def high_noise_shares(per_t: pd.DataFrame, T: int) -> pd.DataFrame:
    """Per model of a probe frame (kind "model" rows): the share of its summed x0_mse and eps_mse
    over the probed t that lies in t >= T / 2 (:func:`biaskit.report.high_noise_share`)."""
    from ..report import high_noise_share
    return pd.DataFrame([{"model": name, "x0_mse share in t >= T/2": high_noise_share(d.t, d.x0_mse, T),
                          "eps_mse share in t >= T/2": high_noise_share(d.t, d.eps_mse, T)}
                         for name, d in per_t.groupby("model", sort=False)])


def hybrid_share(hybrid: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Per (clip, order, metric) of a :func:`hybrid_quality` sweep over k (model A for the first
    k of ``steps`` calls, then B): the share of the gap between pure B (k = 0) and pure A
    (k = max) that running A for the first half of the chain recovers,
    (v(k_half) - v(0)) / (v(k_max) - v(0)), k_half the swept k nearest steps / 2."""
    rows = []
    for (clip, order, metric), d in hybrid.groupby(["clip", "order", "metric"], sort=False):
        v = d.set_index("k")["value"]
        half = min(v.index, key=lambda k: abs(k - steps / 2))
        gap = v[v.index.max()] - v[0]
        rows.append({"clip": clip, "order": order, "metric": metric, "k_half": half, "pure_b": v[0],
                     "pure_a": v[v.index.max()],
                     "share_recovered_by_first_half": (v[half] - v[0]) / gap if gap != 0 else float("nan")})
    return pd.DataFrame(rows)
