"""Figures in one consistent seaborn style. Every function returns a matplotlib Figure.

Call :func:`style` once (each plotting function does it for you). Use :func:`save` to write a
figure as PNG and PDF side by side. Style, colours and saving live in :mod:`biaskit.plot_style`,
image grids and sample tables in :mod:`biaskit.plot_images`; both are re-exported here, so
``plots.NAME`` reaches every figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .plot_images import (mosaic, mosaic_inches, plot_image_table, plot_points_table,
                          plot_x0_grid, plot_x0_grids, to_unit)
from .plot_style import (RGB, channel_colours, channel_names, grid, save, style, weighting_colour,
                         weighting_palette)

__all__ = ["plot_weightings", "stat_label", "plot_per_timestep", "plot_colour_bias",
           "plot_paired_difference", "plot_channel_stats", "plot_trajectory_stats", "plot_hybrid",
           "metric_label", "integer_log_ticks", "plot_quality", "STAT_LABELS", "METRIC_LABELS",
           "X_LABELS", "mosaic", "mosaic_inches", "plot_image_table", "plot_points_table",
           "plot_x0_grid", "to_unit", "RGB", "channel_colours", "channel_names", "grid", "save",
           "style", "weighting_colour", "weighting_palette", "plot_x0_grids", "plot_relative_difference"]


def plot_weightings(df, space: str = "x0", schedule_name: str = "", axes=None):
    """Every weighting column of a :func:`biaskit.weighting.weights_table` frame, against t and
    against logsnr, on a log y axis (weights span many decades); each weighting in its colour
    (:func:`weighting_colour`). ``axes``: two axes to draw into (default: a new figure)."""
    style()
    cols = [c for c in df.columns if c not in ("t", "snr", "logsnr")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True) if axes is None else (axes[0].figure, axes)
    dashes = ("-", "--", "-.", ":")  # with many curves colour alone does not separate them
    for i, c in enumerate(cols):
        y = df[c].to_numpy(dtype=float)
        y = np.where(y > 0, y, np.nan)
        kw = dict(label=c, color=weighting_colour(c), ls=dashes[i % len(dashes)], lw=1.6)
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
    fig.tight_layout()
    return fig


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
    """``stat`` of frame ``d`` against ``x`` with its 95% band; ``log``: "log" drops values <= 0
    (the caller chose log only when there are none), "symlog" or False keep them."""
    xs = _x_values(d, x)
    y = d[stat].to_numpy(dtype=float)
    lo = d[f"{stat}_lo"].to_numpy(dtype=float) if f"{stat}_lo" in d else None
    hi = d[f"{stat}_hi"].to_numpy(dtype=float) if f"{stat}_hi" in d else None
    if log == "log" or log is True:
        y = np.where(y > 0, y, np.nan)
        lo = None if lo is None else np.where(lo > 0, lo, np.nan)
    ax.plot(xs, y, color=colour, label=label, **line)
    if lo is not None and hi is not None:
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.2, linewidth=0)


def _spans_decades(values) -> bool:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return v.size > 1 and v.max() / v.min() > 30


def _y_scale(values, log) -> str | bool:
    """How a log-spanning quantity is drawn: "log" when every value (estimates and bounds) is
    positive, else "symlog" (zeros stay visible, linear below the smallest positive value)."""
    if not log:
        return False
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return "log" if v.size and (v > 0).all() else "symlog"


def _apply_y_scale(ax, scale, values):
    if scale == "log":
        ax.set_yscale("log")
    elif scale == "symlog":
        v = np.asarray(values, dtype=float)
        pos = v[np.isfinite(v) & (v > 0)]
        lin = 10 ** np.floor(np.log10(pos.min())) if pos.size else 1e-3
        ax.set_yscale("symlog", linthresh=lin)
        ax.axhline(0.0, color="0.4", lw=0.6)
        ax.text(0.01, 0.01, f"linear below {lin:g}", transform=ax.transAxes, fontsize=7, color="0.3")


def _finish_x(ax, x):
    ax.set_xlabel(_X_LABELS.get(x, x))
    if x == "logsnr":
        ax.invert_xaxis()  # noise grows to the right, as against t


def plot_per_timestep(df, stats=("x0_mse", "eps_mse"), x="t", models=None, log=None, axes=None):
    """One panel per statistic of a probe/compare frame against ``x`` ("t", "logsnr" or both as a
    tuple), every model overlaid with its 95% band in its colour (:func:`weighting_colour`); a
    log y where a statistic spans decades (or as ``log`` says), symmetric-log when an estimate or
    a bound is <= 0 (a log axis would hide it). ``axes``: a (stats, xs) array to draw into."""
    style()
    df = _models(df)
    stats = [stats] if isinstance(stats, str) else list(stats)
    xs = [x] if isinstance(x, str) else list(x)
    missing = [s for s in stats if s not in df]
    if missing:
        raise ValueError(f"statistics {missing} not in the frame; available: "
                         f"{', '.join(c for c in df.columns if not c.endswith(('_lo', '_hi')))}")
    names = list(dict.fromkeys(df["model"])) if models is None else list(models)
    if axes is None:
        fig, axes = plt.subplots(len(stats), len(xs), figsize=(5.2 * len(xs), 3.6 * len(stats)),
                                 squeeze=False)
    else:
        axes = np.asarray(axes, dtype=object).reshape(len(stats), len(xs))
        fig = axes[0, 0].figure
    for i, stat in enumerate(stats):
        cols = [c for c in (stat, f"{stat}_lo", f"{stat}_hi") if c in df]
        values = df[cols].to_numpy(dtype=float).ravel()
        scale = _y_scale(values, _spans_decades(df[stat]) if log is None else bool(log))
        for j, xv in enumerate(xs):
            ax = axes[i, j]
            for name in names:
                _band(ax, df[df["model"] == name].sort_values("t"), xv, stat, weighting_colour(name), name, scale)
            _apply_y_scale(ax, scale, values)
            ax.set_ylabel(stat_label(stat), fontsize=9)
            _finish_x(ax, xv)
    axes[0, -1].legend(loc="best")
    fig.tight_layout()
    return fig


def plot_per_timestep_groups(df, stat: str, groups: dict, x="logsnr", linthresh: float | None = None,
                             axes=None):
    """One panel per group {title: [model, ...]} of a probe/compare frame, ``stat`` with its 95%
    band against ``x``, panels side by side with a shared y axis (symmetric-log with a linear
    part below ``linthresh`` when given: estimates of exactly 0 stay visible); each model in its
    colour (:func:`weighting_colour`). ``axes``: one axis per group to draw into."""
    style()
    df = _models(df)
    if axes is None:
        fig, axes = plt.subplots(1, len(groups), figsize=(3.4 * len(groups), 3.4), sharey=True, squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, (title, models) in zip(axes, groups.items()):
        for name in models:
            _band(ax, df[df["model"] == name].sort_values("t"), x, stat, weighting_colour(name), name, False)
        if linthresh is not None:
            ax.set_yscale("symlog", linthresh=linthresh)
        ax.set_title(title, fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        _finish_x(ax, x)
    axes[0].set_ylabel(stat_label(stat) + ("" if linthresh is None else f"\n(linear below {linthresh:g})"),
                       fontsize=9)
    axes[0].set_ylim(bottom=0)
    fig.tight_layout()
    return fig


def plot_colour_bias(df, x="t", axes=None):
    """Per-channel mean error of x0_hat (x0_bias_c{k}) with 95% bands, each channel in its RGB
    colour (one grey line for grayscale); one panel per model, two panels a row, shared y.
    ``axes``: one axis per model to draw into."""
    style()
    df = _models(df)
    chans = sorted((c for c in df.columns if c.startswith("x0_bias_c") and c[9:].isdigit()),
                   key=lambda c: int(c[9:]))
    if not chans:
        raise ValueError("the frame has no x0_bias_c{k} columns")
    names = list(dict.fromkeys(df["model"]))
    fig, axes = grid(len(names), sharey=True) if axes is None else (axes[0].figure, list(axes))
    for ax, name in zip(axes, names):
        d = df[df["model"] == name].sort_values("t")
        for c, colour, label in zip(chans, channel_colours(len(chans)), channel_names(len(chans))):
            _band(ax, d, x, c, colour, label, log=False)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(name)
        ax.set_ylabel("mean x0_hat - x0 (data units)")
        ax.yaxis.set_tick_params(labelleft=True)
        _finish_x(ax, x)
    axes[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_paired_difference(df_compare, stats=("x0_mse",), x="t", axes=None):
    """Paired differences statistic(model) - statistic(reference) of a :func:`biaskit.probe.compare`
    frame with their 95% bands and the zero line; one panel per statistic; each difference in
    the colour of its non-reference model (:func:`weighting_colour`). ``axes``: one axis per
    statistic to draw into. The same differences relative to the reference:
    :func:`plot_relative_difference`."""
    style()
    if "kind" not in df_compare:
        raise ValueError("plot_paired_difference needs a compare() frame (it has a 'kind' column)")
    d = df_compare[df_compare["kind"] == "difference"]
    if d.empty:
        raise ValueError("the frame has no difference rows (compare() needs two or more models)")
    stats = [stats] if isinstance(stats, str) else list(stats)
    names = list(dict.fromkeys(d["model"]))
    if axes is None:
        fig, axes = plt.subplots(1, len(stats), figsize=(5.2 * len(stats), 3.6), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, stat in zip(axes, stats):
        for name in names:
            _band(ax, d[d["model"] == name].sort_values("t"), x, stat, weighting_colour(name), name, log=False)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylabel(f"paired difference of\n{stat_label(stat)}", fontsize=9)
        _finish_x(ax, x)
    axes[-1].legend(loc="best")
    fig.tight_layout()
    return fig


def plot_relative_difference(ratios, stats=("x0_mse",), x="t", axes=None):
    """Per-t relative differences R - 1 = m(model) / m(reference) - 1 of
    :func:`biaskit.probe.compare_ratio` rows with one probed t each (``per_t=True``), with their
    95% intervals (delta method on log R: the reference's noise included, never below -100%),
    on a percent axis; one panel per statistic, each model in its colour. ``axes``: one axis per
    statistic to draw into."""
    style()
    stats = [stats] if isinstance(stats, str) else list(stats)
    d = ratios[ratios["t_from"] == ratios["t_to"]].assign(t=lambda f: f["t_from"], logsnr=lambda f: f["logsnr_from"])
    if axes is None:
        fig, axes = plt.subplots(1, len(stats), figsize=(5.2 * len(stats), 3.6), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, stat in zip(axes, stats):
        ds = d[d["statistic"] == stat]
        for name, g in ds.groupby("model", sort=False):
            g = g.sort_values("t").assign(pct=100 * g["relative"], pct_lo=100 * g["relative_lo"],
                                          pct_hi=100 * g["relative_hi"])
            _band(ax, g, x, "pct", weighting_colour(name), f"{name} vs {g['reference'].iloc[0]}", False,
                  marker="o", ms=3)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylabel(f"relative difference of\n{stat_label(stat).split(' (')[0]} (%)", fontsize=9)
        _finish_x(ax, x)
    axes[-1].legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_channel_stats(df, names: dict | None = None, title: str = ""):
    """Per-sample channel means (top) and standard deviations (bottom) of a
    :func:`biaskit.trajectory.channel_stats` frame: a box per (set, channel), channels in their
    RGB colours for 3 channels, so a colour shift or a wrong contrast of samples against the data
    shows as displaced boxes. ``names`` maps channel index -> name (default :func:`channel_names`)."""
    style()
    d = df.copy()
    C = d["channel"].nunique()
    d["channel"] = d["channel"].map(names or dict(enumerate(channel_names(C))))
    sets = list(dict.fromkeys(d["set"]))
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.9 * len(sets) + 1.5), 6.4), sharex=True)
    palette = list(RGB) if C == 3 else channel_colours(C)
    for ax, stat in zip(axes, ("mean", "std")):
        sns.boxplot(data=d, x="set", y=stat, hue="channel", ax=ax, fliersize=1, palette=palette,
                    legend=ax is axes[0])
        ax.set_ylabel(f"per-sample channel {stat}\n(data units)")
        ax.set_xlabel("")
    axes[0].legend(fontsize=8, loc="best")
    axes[1].set_xlabel("sample set")
    axes[1].tick_params(axis="x", rotation=35)
    for lab in axes[1].get_xticklabels():
        lab.set_horizontalalignment("right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_trajectory_stats(df, hue: str | None = None, title: str = "", axes=None):
    """A :func:`biaskit.trajectory.trajectory_stats` frame against t (noise to the left, the chain
    runs left to right): clip fraction of x0_hat, its MSE to the final sample (log y), and the
    drift of its channel means. ``hue`` names a column (e.g. ``weighting``) for several
    trajectories in one frame (each weighting in its colour). A chain that clips x0_hat
    (``clip`` column all true) has no x0_hat outside the data range by construction: its clip
    fraction panel is left out. ``axes``: one axis per panel to draw into."""
    style()
    stats = [("clip_fraction", "fraction of x0_hat outside the data range"),
             ("mse_to_final", "MSE(x0_hat, final sample)\n(per element, data units²)"),
             ("mean_abs_drift", "|channel-mean drift| of x0_hat\n(data units)")]
    if "clip" in df and df["clip"].astype(str).str.lower().eq("true").all():
        stats = stats[1:]
    if axes is None:
        fig, axes = plt.subplots(1, len(stats), figsize=(4.4 * len(stats), 3.8))
    fig = np.atleast_1d(axes)[0].figure
    axes = list(np.atleast_1d(axes))
    palette = weighting_palette(df[hue]) if hue == "weighting" else None
    for ax, (col, label) in zip(axes, stats):
        d = df if col != "mse_to_final" else df[df[col] > 0]  # the final step's 0 has no log
        sns.lineplot(data=d, x="t", y=col, hue=hue, marker="o", ms=4, ax=ax, palette=palette,
                     legend=(ax is axes[-1]))
        ax.set_ylabel(label)
        ax.set_xlabel("timestep t of the step")
        ax.invert_xaxis()
        if col == "mse_to_final":
            ax.set_yscale("log")
    if hue is not None and axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "center left", bbox_to_anchor=(1.02, 0.5))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_hybrid(df, calls: int, title: str = "", axes=None):
    """A hybrid sweep (columns k, metric, value, lo, hi, order): one panel per metric, a line per
    order ("A then B", in A's colour, dashed when A is the second order's) with its 95% band
    against k, the number of model calls given to the first model out of ``calls``. ``axes``:
    one axis per metric to draw into."""
    style()
    metrics_ = list(dict.fromkeys(df["metric"]))
    fig, axes = grid(len(metrics_), panel=(4.6, 3.4), ncols=3) if axes is None else (axes[0].figure, list(axes))
    for ax, metric in zip(axes, metrics_):
        for i, (order, d) in enumerate(df[df["metric"] == metric].groupby("order", sort=False)):
            d = d.sort_values("k")
            colour = weighting_colour(order.split(" then ")[0])
            ax.plot(d["k"], d["value"], marker="o", ms=4, color=colour, ls="-" if i == 0 else "--", label=order)
            if {"lo", "hi"} <= set(d) and d[["lo", "hi"]].notna().all().all():
                ax.fill_between(d["k"], d["lo"], d["hi"], color=colour, alpha=0.2, linewidth=0)
        ax.set_xticks(sorted(df["k"].unique()))
        ax.set_xlabel(f"k: model calls to the first model (of {calls})")
        ax.set_ylabel(metric_label(metric) + "\n95% bootstrap band", fontsize=9)
        ax.set_title(metric)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


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
    :func:`biaskit.metrics.evaluate` frame with columns metric, value, lo, hi, weighting, ``x`` and
    optionally sampler. One panel per metric (rows) and sampler (columns), a line per weighting
    in its colour (:func:`weighting_colour`) with its 95% bootstrap band and an error bar at each
    point (a single point has no band to show); log x (steps span decades). Rows whose weighting
    is "data vs data" (:func:`biaskit.metrics.data_vs_data`) are drawn as the noise floor (a grey
    dashed line with its band), "pure noise" as a dotted line (the score of x_T itself).
    ``log_metrics``: metrics drawn on a log y, symmetric-log when a bound is <= 0 (zeros stay
    visible). ``ax``: an axis to draw into when the frame holds one metric and one sampler."""
    from .metrics import BASELINE
    from .replication import NOISE
    style()
    floor, noise = df[df["weighting"] == BASELINE], df[df["weighting"] == NOISE]
    df = df[~df["weighting"].isin([BASELINE, NOISE])]
    by_sampler = "sampler" in df
    pairs = list(dict.fromkeys(zip(df["metric"], df["sampler"] if by_sampler else df["metric"])))
    if ax is not None:
        if len(pairs) != 1:
            raise ValueError(f"ax= draws one panel; the frame holds {len(pairs)} (metric, sampler) panels")
        fig, where = ax.figure, {pairs[0]: ax}
    else:
        metrics_ = list(dict.fromkeys(df["metric"]))
        samplers = list(dict.fromkeys(df["sampler"])) if by_sampler else [None]
        fig, axes = plt.subplots(len(metrics_), len(samplers), figsize=(4.2 * len(samplers), 2.8 * len(metrics_)),
                                 squeeze=False, sharey="row")
        where = {(m, s if by_sampler else m): axes[i, j] for i, m in enumerate(metrics_)
                 for j, s in enumerate(samplers)}
    for (metric, sampler), a in where.items():
        d = df[(df["metric"] == metric) & ((df["sampler"] == sampler) if by_sampler else True)]
        for w, dw in d.groupby("weighting", sort=False):
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
            _apply_y_scale(a, _y_scale(vals.to_numpy().ravel(), True), vals.to_numpy().ravel())
        a.set_title(f"{metric} | {sampler}" if by_sampler else metric, fontsize=9)
        a.set_xlabel(X_LABELS.get(x, x.replace("_", " ")) + " (log scale)")
        a.set_ylabel(metric_label(metric) + "\n95% bootstrap band", fontsize=9)
    next(iter(where.values())).legend(fontsize=8)
    fig.tight_layout()
    if title:
        fig.suptitle(title, y=1.0, va="bottom")
    for a in where.values():   # once the panels have their final widths
        integer_log_ticks(a, df[x])
    return fig


