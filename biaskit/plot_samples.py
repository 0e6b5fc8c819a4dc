"""Figures of sample analyses (:mod:`biaskit.study.samples`): colour statistics of sample sets,
trajectory statistics along the chain, hybrid sweeps and sample quality against steps or
training iterations, each model in its weighting's colour (:func:`biaskit.plot_style.weighting_colour`).
Re-exported by :mod:`biaskit.plots`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .plot_axes import finish, panels
from .plot_style import (RGB, apply_y_scale, channel_colours, channel_names, grid, style,
                         weighting_colour, weighting_palette, y_scale)


def plot_channel_stats(df, names: dict | None = None, title: str = "", ax=None):
    """Per-sample channel means (top) and standard deviations (bottom) of a
    :func:`biaskit.trajectory.channel_stats` frame: a box per (set, channel), channels in their
    RGB colours for 3 channels, so a colour shift or a wrong contrast of samples against the data
    shows as displaced boxes. ``names`` maps channel index -> name (default :func:`channel_names`).
    ``ax``: two Axes (means, stds) to draw into."""
    style()
    d = df.copy()
    C = d["channel"].nunique()
    d["channel"] = d["channel"].map(names or dict(enumerate(channel_names(C))))
    sets = list(dict.fromkeys(d["set"]))
    fig, axes = panels(ax, 2, 1, figsize=(max(6.0, 0.9 * len(sets) + 1.5), 6.4), sharex=True)
    axes = axes[:, 0]
    palette = list(RGB) if C == 3 else channel_colours(C)
    for a, stat in zip(axes, ("mean", "std")):
        sns.boxplot(data=d, x="set", y=stat, hue="channel", ax=a, fliersize=1, palette=palette,
                    legend=a is axes[0])
        a.set_ylabel(f"per-sample channel {stat}\n(data units)")
        a.set_xlabel("")
    axes[0].legend(fontsize=8, loc="best")
    axes[1].set_xlabel("sample set")
    axes[1].tick_params(axis="x", rotation=35)
    for lab in axes[1].get_xticklabels():
        lab.set_horizontalalignment("right")
    if title:
        fig.suptitle(title, fontsize=10)
    return finish(fig, ax)


def plot_trajectory_stats(df, hue: str | None = None, title: str = "", ax=None):
    """A :func:`biaskit.trajectory.trajectory_stats` frame against t (noise to the left, the chain
    runs left to right): clip fraction of x0_hat, its MSE to the final sample (log y), and the
    drift of its channel means. ``hue`` names a column (e.g. ``model``) for several
    trajectories in one frame (each model in its weighting's colour). A chain that clips x0_hat
    (``clip`` column all true) has no x0_hat outside the data range by construction: its clip
    fraction panel is left out. ``ax``: one Axes per panel to draw into."""
    style()
    stats = [("clip_fraction", "fraction of x0_hat outside the data range"),
             ("mse_to_final", "MSE(x0_hat, final sample)\n(per element, data units²)"),
             ("mean_abs_drift", "|channel-mean drift| of x0_hat\n(data units)")]
    if "clip" in df and df["clip"].astype(str).str.lower().eq("true").all():
        stats = stats[1:]
    fig, axes = panels(ax, 1, len(stats), figsize=(4.4 * len(stats), 3.8))
    axes = list(axes[0])
    palette = weighting_palette(df[hue]) if hue == "model" else None
    for a, (col, label) in zip(axes, stats):
        d = df if col != "mse_to_final" else df[df[col] > 0]  # the final step's 0 has no log
        sns.lineplot(data=d, x="t", y=col, hue=hue, marker="o", ms=4, ax=a, palette=palette,
                     legend=(a is axes[-1]))
        a.set_ylabel(label)
        a.set_xlabel("timestep t of the step")
        a.invert_xaxis()
        if col == "mse_to_final":
            a.set_yscale("log")
    if hue is not None and axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "center left", bbox_to_anchor=(1.02, 0.5))
    if title:
        fig.suptitle(title, fontsize=10)
    return finish(fig, ax)


def plot_hybrid(df, calls: int, title: str = "", ax=None):
    """A hybrid sweep (columns k, metric, value, lo, hi, order): one panel per metric, a line per
    order ("A then B", in A's colour, dashed when A is the second order's) with its 95% band
    against k, the number of model calls given to the first model out of ``calls``. ``ax``:
    one Axes per metric to draw into."""
    style()
    metrics_ = list(dict.fromkeys(df["metric"]))
    fig, axes = grid(len(metrics_), panel=(4.6, 3.4), ncols=3) if ax is None else panels(ax, 1, len(metrics_))
    axes = list(np.asarray(axes, dtype=object).flat)
    for a, metric in zip(axes, metrics_):
        for i, (order, d) in enumerate(df[df["metric"] == metric].groupby("order", sort=False)):
            d = d.sort_values("k")
            colour = weighting_colour(order.split(" then ")[0])
            a.plot(d["k"], d["value"], marker="o", ms=4, color=colour, ls="-" if i == 0 else "--", label=order)
            if {"lo", "hi"} <= set(d) and d[["lo", "hi"]].notna().all().all():
                a.fill_between(d["k"], d["lo"], d["hi"], color=colour, alpha=0.2, linewidth=0)
        a.set_xticks(sorted(df["k"].unique()))
        a.set_xlabel(f"k: model calls to the first model (of {calls})")
        a.set_ylabel(metric_label(metric) + "\n95% bootstrap band", fontsize=9)
        a.set_title(metric)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return finish(fig, ax)


METRIC_LABELS = {"swd": "sliced Wasserstein distance (data units)",
                 "mmd": "MMD² (RBF kernel, unitless)", "mmd2": "MMD² (RBF kernel, unitless)",
                 "log_likelihood": "mean log-likelihood (nats)",
                 "mode_coverage": "share of modes covered", "off_mode_fraction": "share off the modes",
                 "mode_weight_tv": "total variation of mode weights",
                 "fid": "FID (Inception features²)", "kid": "KID (Inception features²)",
                 "colour_error": "max |channel-mean shift| (data units)"}
X_LABELS = {"steps": "sampling steps", "training_step": "training iterations",
            "k": "k: model calls to the first model"}


def metric_label(metric: str) -> str:
    """The y-axis text of a metric: its name and unit."""
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def integer_log_ticks(ax, values, fontsize: float | None = None):
    """Ticks of a log x axis at the integers ``values``, labelled as plain integers (no 2x10^0
    minor labels). Going from the left, a label that would touch the previous one is left
    unlabelled (its tick stays), judged from the axis width in inches and the label's width."""
    from matplotlib.ticker import FixedLocator, NullLocator
    v = np.unique(np.asarray(values, dtype=float))
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return
    lo, hi = np.log10(v.min()), np.log10(v.max())
    span = max(hi - lo, 1e-9) * 1.1  # matplotlib's default margins add about 5% each side
    width = ax.get_position().width * ax.figure.get_figwidth()
    size = fontsize or plt.rcParams["xtick.labelsize"]
    size = size if isinstance(size, (int, float)) else 10.0
    labels, last_right = [], -np.inf
    for x in v:
        text = f"{x:g}"
        centre = (np.log10(x) - lo) / span * width
        half = 0.3 * len(text) * size / 72  # a digit is about 0.6 em wide
        if centre - half > last_right + 0.05:
            labels.append(text)
            last_right = centre + half
        else:
            labels.append("")
    ax.xaxis.set_major_locator(FixedLocator(v))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels(labels)


def plot_quality(df, x: str, title: str = "", log_metrics=(), ax=None):
    """Sample-quality estimates against ``x`` (e.g. sampling steps or training step): a
    :func:`biaskit.metrics.evaluate` frame with columns metric, value, lo, hi, model (or set, as
    ``evaluate`` names it), ``x`` and optionally sampler. One panel per metric (rows) and
    sampler (columns), a line per model in its weighting's colour (:func:`weighting_colour`)
    with its 95% bootstrap band and an error bar at each point (a single point has no band to
    show); log x (steps span decades). Rows whose model is "data vs data"
    (:func:`biaskit.metrics.data_vs_data`) are drawn as the noise floor (a grey dashed line with
    its band), "pure noise" as a dotted line (the score of x_T itself).
    ``log_metrics``: metrics drawn on a log y, symmetric-log when a bound is <= 0 (zeros stay
    visible). ``ax``: one Axes per (metric, sampler) panel to draw into, rows by metric."""
    from .metrics import BASELINE
    from .study.verdicts import NOISE
    style()
    df = df if "model" in df else df.rename(columns={"set": "model"})
    floor, noise = df[df["model"] == BASELINE], df[df["model"] == NOISE]
    df = df[~df["model"].isin([BASELINE, NOISE])]
    by_sampler = "sampler" in df
    pairs = list(dict.fromkeys(zip(df["metric"], df["sampler"] if by_sampler else df["metric"])))
    metrics_ = list(dict.fromkeys(df["metric"]))
    samplers = list(dict.fromkeys(df["sampler"])) if by_sampler else [None]
    if ax is not None and np.asarray(ax, dtype=object).size == 1 and len(pairs) == 1:
        fig, axes = np.asarray(ax, dtype=object).ravel()[0].figure, np.asarray(ax, dtype=object).reshape(1, 1)
        where = {pairs[0]: axes[0, 0]}
    else:
        fig, axes = panels(ax, len(metrics_), len(samplers), figsize=(4.2 * len(samplers), 2.8 * len(metrics_)),
                           sharey="row")
        where = {(m, s if by_sampler else m): axes[i, j] for i, m in enumerate(metrics_)
                 for j, s in enumerate(samplers)}
    for (metric, sampler), a in where.items():
        d = df[(df["metric"] == metric) & ((df["sampler"] == sampler) if by_sampler else True)]
        for w, dw in d.groupby("model", sort=False):
            dw = dw.sort_values(x)
            c = weighting_colour(w)
            a.plot(dw[x], dw["value"], marker="o", ms=3, color=c, label=w, lw=1.2)
            a.errorbar(dw[x], dw["value"], yerr=[dw["value"] - dw["lo"], dw["hi"] - dw["value"]],
                       fmt="none", ecolor=c, capsize=2, lw=1)
            a.fill_between(dw[x], dw["lo"], dw["hi"], color=c, alpha=0.15, linewidth=0)
        for ref, ls, label in ((floor, "--", BASELINE), (noise, ":", NOISE)):
            f = ref[ref["metric"] == metric]
            if by_sampler and "sampler" in f and (f["sampler"] == sampler).any():
                f = f[f["sampler"] == sampler]
            if len(f):
                a.axhline(f["value"].iloc[0], color="0.3", ls=ls, lw=1, label=label)
                if ref is floor:
                    a.axhspan(f["lo"].iloc[0], f["hi"].iloc[0], color="0.5", alpha=0.15, linewidth=0)
        a.set_xscale("log")
        if metric in log_metrics:
            vals = pd.concat([d[["value", "lo", "hi"]], floor[floor["metric"] == metric][["value", "lo", "hi"]]])
            apply_y_scale(a, y_scale(vals.to_numpy().ravel(), True), vals.to_numpy().ravel())
        a.set_title(f"{metric} | {sampler}" if by_sampler else metric, fontsize=9)
        a.set_xlabel(X_LABELS.get(x, x.replace("_", " ")) + " (log scale)")
        a.set_ylabel(metric_label(metric) + "\n95% bootstrap band", fontsize=9)
    next(iter(where.values())).legend(fontsize=8)
    finish(fig, ax)
    if title:
        fig.suptitle(title, y=1.0, va="bottom")
    for a in where.values():   # once the panels have their final widths
        integer_log_ticks(a, df[x])
    return fig


