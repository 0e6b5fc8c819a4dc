"""The analyses of notebook 06 (the bias a sampler meets), each computed once per setting
through the cache: exposure-bias statistics of a dataset's chains (:mod:`biaskit.exposure`), the
epsilon-scaling sweep, the runs its fixes need (input perturbation, terminal-SNR schedules) and
the terminal-SNR brightness effect (Lin et al. 2024).

Terminal SNR: a schedule with abar_T > 0 trains its model on x_T that still holds
sqrt(abar_T) x0, then samples from x_T ~ N(0, I): the data's mean leaks into every sample and
samples cannot be very dark or bright. The comparison trains the dataset's constant model on
``scaled_linear`` (Stable Diffusion's schedule, abar_T = 0.0047) and a v-prediction model on its
zero-terminal-SNR rescaling, and reads the spread of the samples' per-sample mean (an image's
mean brightness) against the data's: :func:`brightness_spread`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from .artefacts import field_values, paths, read
from .cache import Cache, run_key, tensor_digest
# the runs of the fixes (study settings live in profiles)
from .profiles import EXTRA_RUNS, NOTEBOOK_EXTRA_RUNS, TERMINAL_SNR_RUNS
from .verdicts import seeded

# the mixture's runs of the training-time fix (input perturbation)
FIX_RUNS = NOTEBOOK_EXTRA_RUNS["06_sampling_bias"]["dataset"]
# (run, spacing) pairs sampled for the brightness comparison: leading spacing never visits the
# last step (Lin et al.'s second fix is trailing spacing)
TERMINAL_SNR_CHAINS = [("constant, scaled_linear", "even"), ("constant, scaled_linear", "leading"),
                       ("v, scaled_linear zero SNR", "leading"), ("v, scaled_linear zero SNR", "trailing")]


def extra_config(profile: str, dataset: str, name: str, seed: int = 0):
    """The :class:`~biaskit.config.TrainConfig` of extra run ``name`` (:data:`EXTRA_RUNS`): the
    study profile's config of its variant with the run's overrides
    (:func:`biaskit.study.profiles.run_config` reads this table, so the study plan trains them too)."""
    from .profiles import run_config
    if name not in EXTRA_RUNS:
        raise ValueError(f"unknown extra run {name!r}; valid: {', '.join(EXTRA_RUNS)}")
    return run_config(profile, dataset, name, seed)


def train_extra(cache: Cache, profile: str, dataset: str, names, *, seed: int = 0, device: str = "auto",
                progress: bool = False) -> dict[str, Path]:
    """{name: run folder} of the extra runs, each trained only on a cache miss (the same cache
    entries as :func:`biaskit.study.profiles.train_runs` of those names)."""
    from .profiles import train_runs
    for name in names:
        extra_config(profile, dataset, name, seed)  # an unknown name is an error
    return train_runs(cache, profile, dataset, list(names), seed=seed, device=device, progress=progress)


def exposure(cache: Cache, runs: dict, models: dict, noise, x0, *, mixture, data, sampler: str,
             steps: int, clip: bool, seed: int, eps_scales=(None,)) -> pd.DataFrame:
    """:func:`biaskit.exposure.visited_states` of every model (and every epsilon scale of
    ``eps_scales``, None = unscaled) from ``noise`` against forward states of ``x0``, cached per
    (run, noise, x0, sampler, steps, clip, seed, scale); one frame, ``model`` naming the model by
    its key in ``models`` (in place of the denoiser's own name)."""
    from ..exposure import STATISTICS, visited_states
    frames = []
    for w, den in models.items():
        for scale in eps_scales:
            key = {"run": run_key(runs[w]), "noise": tensor_digest(noise), "x0": tensor_digest(x0),
                   "data": data.spec, "sampler": sampler, "steps": int(steps), "clip": bool(clip),
                   "seed": int(seed), "scale": None if scale is None else [scale.b, scale.k],
                   "statistics": list(STATISTICS)}
            frames.append(cache.frame("exposure", key, lambda: visited_states(
                den, noise, x0, mixture=mixture, sampler=sampler, steps=steps, clip=clip, seed=seed,
                eps_scale=scale)).assign(model=w))
    return pd.concat(frames, ignore_index=True)


def sweep(frame: pd.DataFrame, statistic: str = "eps_norm2_per_dim") -> pd.DataFrame:
    """Per (model, eps_scale) of an :func:`exposure` frame: the mean over steps of |gap| of
    ``statistic`` and the mean of the per-step 95% half-widths (bounding the half-width of the
    mean from above, :func:`biaskit.intervals.mean_of_intervals`); ``chosen`` marks each
    model's scale with the smallest mean |gap| (Ning et al.'s pick, by the norm gap)."""
    d = frame[frame.statistic == statistic].assign(abs_gap=lambda f: f.gap.abs(),
                                                   half=lambda f: (f.gap_hi - f.gap_lo) / 2)
    out = d.groupby(["model", "eps_scale"], sort=False).agg(
        mean_abs_gap=("abs_gap", "mean"), half=("half", "mean")).reset_index()
    best = out.groupby("model").mean_abs_gap.transform("min")
    return out.assign(chosen=out.mean_abs_gap == best)


def brightness_spread(sets: dict, reference: str = "data", q: float = 0.025, n_boot: int = 200,
                      seed: int = 0) -> pd.DataFrame:
    """Per named sample set (N, ...): the spread of the per-sample mean m_i = mean of x_i's
    entries (an image's mean brightness), quantile(1 - q) - quantile(q) of the m_i, and its ratio
    to the ``reference`` set's, each with the BC bootstrap interval of
    :func:`biaskit.metrics.bootstrap` (both sets resampled). Columns: set, spread, spread_lo,
    spread_hi, ratio, ratio_lo, ratio_hi, m_lo, m_hi (the two quantiles)."""
    from ..metrics import bootstrap
    means = {k: torch.as_tensor(v).double().flatten(1).mean(1) for k, v in sets.items()}
    if reference not in means:
        raise ValueError(f"no set named {reference!r}; sets: {', '.join(means)}")
    ref = means[reference]

    def spread(m):  # m (B, n) -> (B,)
        lo, hi = torch.quantile(m, torch.tensor([q, 1 - q], dtype=m.dtype), dim=1)
        return hi - lo

    rows = []
    for name, m in means.items():
        s = bootstrap(lambda i: spread(m[i]), (len(m),), "spread", n_boot=n_boot, seed=seed)
        r = bootstrap(lambda i, j: spread(m[i]) / spread(ref[j]), (len(m), len(ref)), "ratio",
                      n_boot=n_boot, seed=seed)
        lo, hi = torch.quantile(m, torch.tensor([q, 1 - q], dtype=m.dtype)).tolist()
        rows.append(dict(set=name, spread=s.value, spread_lo=s.lo, spread_hi=s.hi, ratio=r.value,
                         ratio_lo=r.lo, ratio_hi=r.hi, m_lo=lo, m_hi=hi))
    return pd.DataFrame(rows)


def _mean_interval(d: pd.DataFrame, col: str) -> tuple[float, float, float]:
    """(mean, lo, hi) over rows of ``col`` with its interval columns: the mean of the per-row
    half-widths bounds the mean's (:func:`biaskit.intervals.mean_of_intervals`)."""
    from ..intervals import mean_of_intervals
    return tuple(float(v) for v in mean_of_intervals(d[col], d[f"{col}_lo"], d[f"{col}_hi"]))


def summary(frame: pd.DataFrame, logsnr_max: float | None = None) -> pd.DataFrame:
    """Per (model, eps_scale, statistic) of an :func:`exposure` frame, over the steps with
    logsnr <= ``logsnr_max`` (all when None): the means of chain, forward and gap, each with the
    conservative interval of :func:`_mean_interval`; x0_error_to_oracle adds ``off_marginal_share``
    = gap / chain, the part of the model's error at the visited states that its error on the
    forward marginal does not explain."""
    d = frame if logsnr_max is None else frame[frame.logsnr <= logsnr_max]
    rows = []
    for (w, scale, stat), g in d.groupby(["model", "eps_scale", "statistic"], sort=False):
        row = {"model": w, "eps_scale": scale, "statistic": stat, "steps_in_range": len(g)}
        for col in ("chain", "forward", "gap"):
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = _mean_interval(g, col)
        if stat == "x0_error_to_oracle":
            row["off_marginal_share"] = row["gap"] / row["chain"] if row["chain"] > 0 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).assign(logsnr_max=logsnr_max)


def final_quality(models: dict, noise, reference, *, sampler: str, steps: int, clip: bool, seed: int,
                  scales: dict | None = None, spacing: dict | None = None, n_boot: int = 20) -> pd.DataFrame:
    """Sliced Wasserstein distance (bootstrap interval) of each model's final samples from the
    same ``noise`` to ``reference``; ``scales``: {name: EpsScale} applied to that model;
    ``spacing``: {name: spacing}. One row per model: set, metric, value, lo, hi."""
    from ..exposure import EpsScaled
    from ..metrics import sliced_wasserstein
    from ..sampling import sample
    rows = []
    for name, den in models.items():
        scale = (scales or {}).get(name)
        model = EpsScaled(den, scale) if scale is not None else den
        x = sample(model, noise.clone(), sampler=sampler, steps=steps, clip=clip, seed=seed,
                   spacing=(spacing or {}).get(name, "even"), progress=False, check_finite=False).x0
        e = sliced_wasserstein(x, reference, seed=seed, n_boot=n_boot)
        rows.append({"set": name, "metric": e.metric, "value": e.value, "lo": e.lo, "hi": e.hi})
    return pd.DataFrame(rows)


def scaled_fixes(sweep_frame: pd.DataFrame) -> dict:
    """{"M, eps scaled": EpsScale} of each model M whose chosen scale (a :func:`sweep` frame's
    ``chosen`` row) is not 1: a chosen 1 is the unscaled model, whose samples would enter the
    fixes' comparison a second time as a "fix"."""
    from ..exposure import EpsScale
    return {f"{r.model}, eps scaled": EpsScale(float(r.eps_scale))
            for r in sweep_frame[sweep_frame.chosen].itertuples() if float(r.eps_scale) != 1.0}


def image_exposure(cache: Cache, runs: dict, models: dict, noise, x0, *, data, eps_scales, sampler: str,
                   steps: int, clip: bool, seed: int, n_boot: int) -> dict[str, pd.DataFrame]:
    """The exposure analysis of an image dataset, whose data law is not known: no E[x0 | x_t] and
    no q_t, so Ning et al.'s own statistic, the predicted-noise norm along the chain against its
    forward-process value (:func:`exposure` without a mixture), then the epsilon-scaling sweep and
    the final samples' SWD to ``x0`` (held-out images) unscaled and at each model's chosen
    scale. {"exposure": per-step frame, "gap": its :func:`sweep`, "sweep": the scales' sweep,
    "quality": :func:`final_quality`}."""
    from ..exposure import EpsScale
    chain = dict(mixture=None, data=data, sampler=sampler, steps=steps, clip=clip, seed=seed)
    frame = exposure(cache, runs, models, noise, x0, **chain)
    scaled = sweep(exposure(cache, runs, models, noise, x0, **chain,
                            eps_scales=[EpsScale(float(b)) for b in eps_scales]))
    chosen = scaled_fixes(scaled)
    sets = {**models, **{name: models[name.split(", ")[0]] for name in chosen}}
    quality = final_quality(sets, noise, x0, sampler=sampler, steps=steps, clip=clip, seed=seed,
                            scales=chosen, n_boot=n_boot)
    return {"exposure": frame, "gap": sweep(frame), "sweep": scaled, "quality": quality}


def _disjoint(a_lo, a_hi, b_lo, b_hi, lower: str, higher: str) -> str:
    """``lower`` when interval a lies below b, ``higher`` when above, else inconclusive."""
    return lower if a_hi < b_lo else higher if a_lo > b_hi else "inconclusive"


def _gap_rows(folder: Path, gap: str, quality: str, where: str, **fields) -> list[tuple]:
    """Rows of the eps-norm gap (artefact ``gap``) and of the fixes' sample quality (artefact
    ``quality``) of one dataset (``where``: its name in the claim; ``fields`` fill the names)."""
    rows = []
    if (g := read(folder, gap, **fields)) is not None:
        g = g.set_index("model")
        if {"constant", "debias"} <= set(g.index):
            a, b = g.loc["constant"], g.loc["debias"]
            rows.append((f"beyond the paper: debias reduces exposure bias{where} (mean |eps-norm gap| per "
                         "dim along the chain)",
                         f"constant {a.mean_abs_gap:.3g} [{a.mean_abs_gap - a.half:.3g}, "
                         f"{a.mean_abs_gap + a.half:.3g}], debias {b.mean_abs_gap:.3g} "
                         f"[{b.mean_abs_gap - b.half:.3g}, {b.mean_abs_gap + b.half:.3g}]",
                         _disjoint(b.mean_abs_gap - b.half, b.mean_abs_gap + b.half,
                                   a.mean_abs_gap - a.half, a.mean_abs_gap + a.half, "observed", "reversed")))
    if (q := read(folder, quality, **fields)) is not None:
        q = q.set_index("set")
        for fix, base in (("constant, eps scaled", "constant"), ("constant+ip", "constant"),
                          ("debias, eps scaled", "debias")):
            if fix in q.index and base in q.index:
                a, b = q.loc[base], q.loc[fix]
                rows.append((f"Ning et al.: {fix} samples closer to the data than {base}{where} (SWD)",
                             f"{base} {a.value:.3g} [{a.lo:.3g}, {a.hi:.3g}], {fix} {b.value:.3g} "
                             f"[{b.lo:.3g}, {b.hi:.3g}]",
                             _disjoint(b.lo, b.hi, a.lo, a.hi, "agrees", "disagrees")))
    return rows


def replication_rows(folder: Path) -> list[tuple]:
    """(claim, measured, verdict) rows of notebook 06 from the artefacts it writes under the
    figures folder ``folder`` (:data:`biaskit.study.artefacts.ARTEFACTS`): findings beyond the
    paper, read from 95% intervals (``observed`` / ``reversed`` / ``inconclusive``); each image
    dataset's rows from its ``image_*`` artefacts."""
    ci = lambda r, c: f"{r[c]:.3g} [{r[c + '_lo']:.3g}, {r[c + '_hi']:.3g}]"  # noqa: E731
    rows = []
    if (f := read(folder, "final_states")) is not None:
        f = f[(f.statistic == "outside_q99") & (f.eps_scale == "none")].set_index("model")
        pct = lambda r: f"{100 * r.chain:.1f}% [{100 * r.chain_lo:.1f}%, {100 * r.chain_hi:.1f}%]"  # noqa: E731
        for w, r in f.iterrows():
            rows.append((f"beyond the paper: the {w} model's chain leaves the forward marginal (share of "
                         "its states at the last call outside q_t's 99% region; forward states: 1%)",
                         f"{pct(r)} at t = {int(r.t)}",
                         _disjoint(r.gap_lo, r.gap_hi, 0, 0, "reversed", "observed")))
        if {"constant", "debias"} <= set(f.index):
            a, b = f.loc["constant"], f.loc["debias"]
            rows.append(("beyond the paper: debias's chain ends nearer the forward marginal than constant's "
                         "(share outside q_t's 99% region at the last call)",
                         f"constant {pct(a)}, debias {pct(b)}",
                         _disjoint(b.chain_lo, b.chain_hi, a.chain_lo, a.chain_hi, "observed", "reversed")))
    rows += _gap_rows(folder, "exposure_gap", "fixes_quality", "")
    for p in paths(folder, "image_exposure_gap"):
        dataset = field_values("image_exposure_gap", p)["dataset"]
        rows += _gap_rows(folder, "image_exposure_gap", "image_fixes_quality", f" on {dataset}", dataset=dataset)
    if (br := read(folder, "brightness")) is not None:
        br = br.set_index("set")
        base, fix = (f"{n}, {s}" for n, s in (TERMINAL_SNR_CHAINS[0], TERMINAL_SNR_CHAINS[-1]))
        if base in br.index and fix in br.index:
            a, b = br.loc[base], br.loc[fix]
            on = f" on {br['dataset'].iloc[0]}" if "dataset" in br.columns else ""
            rows.append((f"Lin et al.: zero terminal SNR + v + trailing steps widens the samples' per-sample "
                         f"mean range toward the data's{on} (ratio of spreads, 1 = data)",
                         f"{base} {ci(a, 'ratio')}, {fix} {ci(b, 'ratio')}",
                         _closer_to_one(a, b)))
    # every model of 06 is one training seed: no decided verdict (biaskit.study.verdicts.MIN_SEEDS)
    return [(claim, measured + " (1 training seed)", seeded(verdict, 1)) for claim, measured, verdict in rows]


def _closer_to_one(a, b) -> str:
    """``agrees`` when b's ratio interval lies nearer to 1 than a's, everywhere; ``disagrees``
    when farther; else inconclusive."""
    far = lambda r: max(abs(r.ratio_lo - 1), abs(r.ratio_hi - 1))  # noqa: E731
    near = lambda r: 0.0 if r.ratio_lo <= 1 <= r.ratio_hi else min(abs(r.ratio_lo - 1), abs(r.ratio_hi - 1))  # noqa: E731
    return "agrees" if far(b) < near(a) else "disagrees" if far(a) < near(b) else "inconclusive"
