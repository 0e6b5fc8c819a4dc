"""Figures in one consistent seaborn style. Every function returns a matplotlib Figure and takes
``ax=``: the caller's Axes to draw on (one per panel, :mod:`biaskit.plot_axes`).

Call :func:`style` once (each plotting function does it for you). Use :func:`save` to write a
figure as PNG and PDF side by side. Style, colours and saving live in :mod:`biaskit.plot_style`,
image grids and sample tables in :mod:`biaskit.plot_images`; both are re-exported here, so
``plots.NAME`` reaches every figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from .plot_axes import finish, panels
from .plot_images import (mosaic, mosaic_inches, plot_image_table, plot_points_table,
                          plot_x0_grid, to_unit)
from .plot_style import RGB, channel_colours, channel_names, grid, save, style

__all__ = ["plot_weightings", "stat_label", "plot_per_timestep", "plot_colour_bias",
           "plot_paired_difference", "plot_channel_stats", "plot_trajectory_stats", "plot_hybrid",
           "metric_label", "integer_log_ticks", "plot_quality", "STAT_LABELS", "METRIC_LABELS",
           "X_LABELS", "mosaic", "mosaic_inches", "plot_image_table", "plot_points_table",
           "plot_x0_grid", "to_unit", "RGB", "channel_colours", "channel_names", "grid", "save",
           "style"]


def plot_weightings(df, space: str = "x0", schedule_name: str = "", ax=None):
    """Every weighting column of a :func:`biaskit.weighting.weights_table` frame, against t and
    against logsnr, on a log y axis (weights span many decades)."""
    style()
    cols = [c for c in df.columns if c not in ("t", "snr", "logsnr")]
    fig, axes = panels(ax, 1, 2, figsize=(11, 4), sharey=True)
    axes = axes[0]
    palette = sns.color_palette("colorblind", len(cols)) if len(cols) <= 10 else \
        sns.color_palette("husl", len(cols))
    dashes = ("-", "--", "-.", ":")  # with many curves colour alone does not separate them
    for i, (c, colour) in enumerate(zip(cols, palette)):
        y = df[c].to_numpy(dtype=float)
        y = np.where(y > 0, y, np.nan)
        kw = dict(label=c, color=colour, ls=dashes[i % len(dashes)], lw=1.6)
        axes[0].plot(df["t"], y, **kw)
        axes[1].plot(df["logsnr"], y, **kw)
    axes[0].set_xlabel("timestep t")
    axes[1].set_xlabel("log SNR (nats)")
    axes[1].invert_xaxis()  # noise grows to the right in both panels
    axes[0].set_ylabel(f"weight on the {space}-MSE (per sample)")
    for ax in axes:
        ax.set_yscale("log")
    axes[0].set_title(f"against t ({schedule_name})" if schedule_name else "against t")
    axes[1].set_title("against log SNR")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    return finish(fig, ax)


# --- probe results (biaskit.probe) -------------------------------------------------------------

_X_LABELS = {"t": "timestep t", "logsnr": "log SNR (nats)"}
STAT_LABELS = {"x0_mse": "x0-MSE (per element, data units²)",
               "eps_mse": "eps-MSE (per element, noise units²)",
               "v_mse": "v-MSE (per element)",
               "excess_mse": "x0-MSE above the oracle's (per element, data units²)",
               "oracle_mse": "oracle x0-MSE (per element, data units²)",
               "x0_var": "variance of x0_hat (per element, data units²)",
               "x0_bias_l2": "channel-bias norm of x0_hat (data units)",
               "clip_frac": "fraction of x0_hat outside the data range"}


def stat_label(stat: str) -> str:
    """The axis text of a probe statistic: its name and unit."""
    return STAT_LABELS.get(stat, stat.replace("_", " "))


def _models(df):
    """Rows of single models (compare() frames also hold difference rows)."""
    return df[df["kind"] == "model"] if "kind" in df else df


def _x_values(d, x):
    v = d[x].to_numpy(dtype=float)
    return np.where(np.isfinite(v), v, np.nan)  # logsnr = -inf at zero terminal SNR


def _band(ax, d, x, stat, colour, label, log, **line):
    xs = _x_values(d, x)
    y = d[stat].to_numpy(dtype=float)
    lo = d[f"{stat}_lo"].to_numpy(dtype=float) if f"{stat}_lo" in d else None
    hi = d[f"{stat}_hi"].to_numpy(dtype=float) if f"{stat}_hi" in d else None
    if log:
        y = np.where(y > 0, y, np.nan)
        lo = None if lo is None else np.where(lo > 0, lo, np.nan)
    ax.plot(xs, y, color=colour, label=label, **line)
    if lo is not None and hi is not None:
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.2, linewidth=0)


def _spans_decades(values) -> bool:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return v.size > 1 and v.max() / v.min() > 30


def _finish_x(ax, x):
    ax.set_xlabel(_X_LABELS.get(x, x))
    if x == "logsnr":
        ax.invert_xaxis()  # noise grows to the right, as against t


def plot_per_timestep(df, stats=("x0_mse", "eps_mse"), x="t", models=None, log=None, ax=None):
    """One panel per statistic of a probe/compare frame against ``x`` ("t", "logsnr" or both as a
    tuple), every model overlaid with its 95% band; log y where a statistic spans decades (or
    as ``log`` says: True, False; a log axis drops values <= 0)."""
    style()
    df = _models(df)
    stats = [stats] if isinstance(stats, str) else list(stats)
    xs = [x] if isinstance(x, str) else list(x)
    missing = [s for s in stats if s not in df]
    if missing:
        raise ValueError(f"statistics {missing} not in the frame; available: "
                         f"{', '.join(c for c in df.columns if not c.endswith(('_lo', '_hi')))}")
    names = list(dict.fromkeys(df["model"])) if models is None else list(models)
    colours = sns.color_palette("colorblind", max(len(names), 1))
    fig, axes = panels(ax, len(stats), len(xs), figsize=(5.2 * len(xs), 3.6 * len(stats)))
    for i, stat in enumerate(stats):
        log_y = _spans_decades(df[stat]) if log is None else bool(log)
        for j, xv in enumerate(xs):
            a = axes[i, j]
            for name, colour in zip(names, colours):
                _band(a, df[df["model"] == name].sort_values("t"), xv, stat, colour, name, log_y)
            if log_y:
                a.set_yscale("log")
            a.set_ylabel(stat_label(stat), fontsize=9)
            _finish_x(a, xv)
    axes[0, -1].legend(loc="best")
    return finish(fig, ax)


def plot_per_timestep_groups(df, stat: str, groups: dict, x="logsnr", linthresh: float | None = None,
                             ax=None):
    """One panel per group {title: [model, ...]} of a probe/compare frame, ``stat`` with its 95%
    band against ``x``, panels side by side with a shared y axis (symmetric-log with a linear
    part below ``linthresh`` when given: estimates of exactly 0 stay visible)."""
    style()
    df = _models(df)
    fig, axes = panels(ax, 1, len(groups), figsize=(3.4 * len(groups), 3.4), sharey=True)
    colours = sns.color_palette("colorblind", max(len(m) for m in groups.values()))
    for a, (title, models) in zip(axes[0], groups.items()):
        for name, colour in zip(models, colours):
            _band(a, df[df["model"] == name].sort_values("t"), x, stat, colour, name, False)
        if linthresh is not None:
            a.set_yscale("symlog", linthresh=linthresh)
        a.set_title(title, fontsize=10)
        a.legend(loc="upper left", fontsize=8)
        _finish_x(a, x)
    axes[0, 0].set_ylabel(stat_label(stat) + ("" if linthresh is None else f"\n(linear below {linthresh:g})"),
                          fontsize=9)
    axes[0, 0].set_ylim(bottom=0)
    return finish(fig, ax)


def plot_colour_bias(df, x="t", ax=None):
    """Per-channel mean error of x0_hat (x0_bias_c{k}) with 95% bands, each channel in its RGB
    colour (one grey line for grayscale); one panel per model, two panels a row, shared y."""
    style()
    df = _models(df)
    chans = sorted((c for c in df.columns if c.startswith("x0_bias_c") and c[9:].isdigit()),
                   key=lambda c: int(c[9:]))
    if not chans:
        raise ValueError("the frame has no x0_bias_c{k} columns")
    names = list(dict.fromkeys(df["model"]))
    fig, axes = grid(len(names), sharey=True) if ax is None else panels(ax, 1, len(names))
    axes = list(np.asarray(axes, dtype=object).flat)
    for a, name in zip(axes, names):
        d = df[df["model"] == name].sort_values("t")
        for c, colour, label in zip(chans, channel_colours(len(chans)), channel_names(len(chans))):
            _band(a, d, x, c, colour, label, log=False)
        a.axhline(0.0, color="black", linewidth=0.8)
        a.set_title(name)
        a.set_ylabel("mean x0_hat - x0 (data units)")
        a.yaxis.set_tick_params(labelleft=True)
        _finish_x(a, x)
    axes[0].legend(loc="best", fontsize=8)
    return finish(fig, ax)


def plot_paired_difference(df_compare, stats=("x0_mse",), x="t", ax=None):
    """Paired differences statistic(model) - statistic(reference) of a :func:`biaskit.probe.compare`
    frame with their 95% bands and the zero line; one panel per statistic."""
    style()
    if "kind" not in df_compare:
        raise ValueError("plot_paired_difference needs a compare() frame (it has a 'kind' column)")
    d = df_compare[df_compare["kind"] == "difference"]
    if d.empty:
        raise ValueError("the frame has no difference rows (compare() needs two or more models)")
    stats = [stats] if isinstance(stats, str) else list(stats)
    names = list(dict.fromkeys(d["model"]))
    colours = sns.color_palette("colorblind", len(names))
    fig, axes = panels(ax, 1, len(stats), figsize=(5.2 * len(stats), 3.6))
    for a, stat in zip(axes[0], stats):
        for name, colour in zip(names, colours):
            _band(a, d[d["model"] == name].sort_values("t"), x, stat, colour, name, log=False)
        a.axhline(0.0, color="black", linewidth=0.8)
        a.set_ylabel(f"paired difference of\n{stat_label(stat)}", fontsize=9)
        _finish_x(a, x)
    axes[0, -1].legend(loc="best")
    return finish(fig, ax)


def plot_channel_stats(df, names: dict | None = None, title: str = "", ax=None):
    """Per-sample channel means (top) and standard deviations (bottom) of a
    :func:`biaskit.trajectory.channel_stats` frame: a box per (set, channel), channels in their
    RGB colours for 3 channels, so a colour shift or a wrong contrast of samples against the data
    shows as displaced boxes. ``names`` maps channel index -> name (default :func:`channel_names`)."""
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
    drift of its channel means. ``hue`` names a column (e.g. ``weighting``) for several
    trajectories in one frame."""
    style()
    stats = [("clip_fraction", "fraction of x0_hat outside the data range"),
             ("mse_to_final", "MSE(x0_hat, final sample)\n(per element, data units²)"),
             ("mean_abs_drift", "|channel-mean drift| of x0_hat\n(data units)")]
    fig, axes = panels(ax, 1, 3, figsize=(13, 3.8))
    axes = axes[0]
    for a, (col, label) in zip(axes, stats):
        d = df if col != "mse_to_final" else df[df[col] > 0]  # the final step's 0 has no log
        sns.lineplot(data=d, x="t", y=col, hue=hue, marker="o", ms=4, ax=a,
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
    order ("A then B") with its 95% band against k, the number of model calls given to the first
    model out of ``calls``."""
    style()
    metrics_ = list(dict.fromkeys(df["metric"]))
    fig, axes = grid(len(metrics_), panel=(4.6, 3.4), ncols=3) if ax is None else panels(ax, 1, len(metrics_))
    axes = list(np.asarray(axes, dtype=object).flat)
    colours = sns.color_palette("colorblind")
    for a, metric in zip(axes, metrics_):
        for (order, d), colour in zip(df[df["metric"] == metric].groupby("order", sort=False), colours):
            d = d.sort_values("k")
            a.plot(d["k"], d["value"], marker="o", ms=4, color=colour, label=order)
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


def plot_quality(df, x: str, title: str = "", ax=None):
    """Sample-quality estimates against ``x`` (e.g. sampling steps or training step): a
    :func:`biaskit.metrics.evaluate` frame with columns metric, value, lo, hi, weighting, ``x`` and
    optionally sampler. One panel per metric (rows) and sampler (columns), a line per weighting
    with its 95% bootstrap band; log x (steps span decades). Rows whose weighting is
    "data vs data" (:func:`biaskit.metrics.data_vs_data`) are drawn as the noise floor: a grey
    dashed line with its band across each panel of that metric."""
    from .metrics import BASELINE
    style()
    floor, df = df[df["weighting"] == BASELINE], df[df["weighting"] != BASELINE]
    by_sampler = "sampler" in df
    metrics_ = list(dict.fromkeys(df["metric"]))
    samplers = list(dict.fromkeys(df["sampler"])) if by_sampler else [None]
    fig, axes = panels(ax, len(metrics_), len(samplers), sharey="row",
                       figsize=(3.4 * len(samplers), 2.6 * len(metrics_)))
    colours = dict(zip(df["weighting"].unique(), sns.color_palette("colorblind")))
    for (metric, sampler), d in df.groupby(["metric", "sampler"] if by_sampler else ["metric", "metric"]):
        a = axes[metrics_.index(metric), samplers.index(sampler) if by_sampler else 0]
        for w, dw in d.groupby("weighting", sort=False):
            dw = dw.sort_values(x)
            a.plot(dw[x], dw["value"], marker="o", ms=3, color=colours[w], label=w)
            a.fill_between(dw[x], dw["lo"], dw["hi"], color=colours[w], alpha=0.2, linewidth=0)
        f = floor[floor["metric"] == metric]
        if by_sampler and "sampler" in f and (f["sampler"] == sampler).any():
            f = f[f["sampler"] == sampler]
        if len(f):
            a.axhline(f["value"].iloc[0], color="0.3", ls="--", lw=1, label=BASELINE)
            a.axhspan(f["lo"].iloc[0], f["hi"].iloc[0], color="0.5", alpha=0.15, linewidth=0)
        a.set_xscale("log")
        a.set_title(f"{metric} | {sampler}" if by_sampler else metric)
    for a in axes[-1]:
        a.set_xlabel(X_LABELS.get(x, x.replace("_", " ")) + " (log scale)")
    for metric, row in zip(metrics_, axes):
        row[0].set_ylabel(metric_label(metric) + "\n95% bootstrap band", fontsize=9)
    axes.flat[0].legend(fontsize=8)
    finish(fig, ax)
    for a in axes.flat:  # labels that fit the laid-out panel widths
        integer_log_ticks(a, df[x])
    if title:  # above the laid-out panels, as FacetGrid placed it
        fig.suptitle(title, y=1.0 + 0.03 * (title.count("\n") + 1), va="bottom")
    return fig
