"""Figures in one consistent seaborn style. Every function returns a matplotlib Figure.

Call :func:`style` once (each plotting function does it for you). Use :func:`save` to write a
figure as PNG and PDF side by side. Style, colours and saving live in :mod:`biaskit.plot_style`,
image grids and sample tables in :mod:`biaskit.plot_images`; both are re-exported here, so
``plots.NAME`` reaches every figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .plot_axes import finish, panels
from .plot_images import (mosaic, mosaic_inches, plot_image_table, plot_points_table,
                          plot_x0_grid, plot_x0_grids, to_unit)
from .plot_samples import (METRIC_LABELS, X_LABELS, integer_log_ticks, metric_label,
                           plot_channel_stats, plot_hybrid, plot_quality, plot_trajectory_stats)
from .plot_style import (RGB, apply_y_scale, channel_colours, channel_names, grid, save, style,
                         weighting_colour, weighting_palette, y_scale)

__all__ = ["plot_weightings", "stat_label", "plot_per_timestep", "plot_colour_bias",
           "plot_paired_difference", "plot_channel_stats", "plot_trajectory_stats", "plot_hybrid",
           "metric_label", "integer_log_ticks", "plot_quality", "STAT_LABELS", "METRIC_LABELS",
           "X_LABELS", "mosaic", "mosaic_inches", "plot_image_table", "plot_points_table",
           "plot_x0_grid", "to_unit", "RGB", "channel_colours", "channel_names", "grid", "save",
           "style", "weighting_colour", "weighting_palette", "plot_x0_grids", "plot_relative_difference"]


def plot_weightings(df, space: str = "x0", schedule_name: str = "", ax=None):
    """Every weighting column of a :func:`biaskit.weighting.weights_table` frame, against t and
    against logsnr, on a log y axis (weights span many decades); each weighting in its colour
    (:func:`weighting_colour`). ``ax``: two Axes to draw into (default: a new figure)."""
    style()
    cols = [c for c in df.columns if c not in ("t", "snr", "logsnr")]
    fig, axes = panels(ax, 1, 2, figsize=(11, 4), sharey=True)
    axes = axes[0]
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
    for a in axes:
        a.set_yscale("log")
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


def _finish_x(ax, x):
    ax.set_xlabel(_X_LABELS.get(x, x))
    if x == "logsnr":
        ax.invert_xaxis()  # noise grows to the right, as against t


def plot_per_timestep(df, stats=("x0_mse", "eps_mse"), x="t", models=None, log=None, ax=None):
    """One panel per statistic of a probe/compare frame against ``x`` ("t", "logsnr" or both as a
    tuple), every model overlaid with its 95% band in its colour (:func:`weighting_colour`); a
    log y where a statistic spans decades (or as ``log`` says), symmetric-log when an estimate or
    a bound is <= 0 (a log axis would hide it). ``ax``: stats x xs Axes to draw into."""
    style()
    df = _models(df)
    stats = [stats] if isinstance(stats, str) else list(stats)
    xs = [x] if isinstance(x, str) else list(x)
    missing = [s for s in stats if s not in df]
    if missing:
        raise ValueError(f"statistics {missing} not in the frame; available: "
                         f"{', '.join(c for c in df.columns if not c.endswith(('_lo', '_hi')))}")
    names = list(dict.fromkeys(df["model"])) if models is None else list(models)
    fig, axes = panels(ax, len(stats), len(xs), figsize=(5.2 * len(xs), 3.6 * len(stats)))
    for i, stat in enumerate(stats):
        cols = [c for c in (stat, f"{stat}_lo", f"{stat}_hi") if c in df]
        values = df[cols].to_numpy(dtype=float).ravel()
        scale = y_scale(values, _spans_decades(df[stat]) if log is None else bool(log))
        for j, xv in enumerate(xs):
            a = axes[i, j]
            for name in names:
                _band(a, df[df["model"] == name].sort_values("t"), xv, stat, weighting_colour(name), name, scale)
            apply_y_scale(a, scale, values)
            a.set_ylabel(stat_label(stat), fontsize=9)
            _finish_x(a, xv)
    axes[0, -1].legend(loc="best")
    return finish(fig, ax)


def plot_per_timestep_groups(df, stat: str, groups: dict, x="logsnr", linthresh: float | None = None,
                             ax=None):
    """One panel per group {title: [model, ...]} of a probe/compare frame, ``stat`` with its 95%
    band against ``x``, panels side by side with a shared y axis (symmetric-log with a linear
    part below ``linthresh`` when given: estimates of exactly 0 stay visible); each model in its
    colour (:func:`weighting_colour`). ``ax``: one Axes per group to draw into."""
    style()
    df = _models(df)
    fig, axes = panels(ax, 1, len(groups), figsize=(3.4 * len(groups), 3.4), sharey=True)
    axes = axes[0]
    for a, (title, models) in zip(axes, groups.items()):
        for name in models:
            _band(a, df[df["model"] == name].sort_values("t"), x, stat, weighting_colour(name), name, False)
        if linthresh is not None:
            a.set_yscale("symlog", linthresh=linthresh)
        a.set_title(title, fontsize=10)
        a.legend(loc="upper left", fontsize=8)
        _finish_x(a, x)
    axes[0].set_ylabel(stat_label(stat) + ("" if linthresh is None else f"\n(linear below {linthresh:g})"),
                       fontsize=9)
    axes[0].set_ylim(bottom=0)
    return finish(fig, ax)


def plot_colour_bias(df, x="t", ax=None):
    """Per-channel mean error of x0_hat (x0_bias_c{k}) with 95% bands, each channel in its RGB
    colour (one grey line for grayscale); one panel per model, two panels a row, shared y.
    ``ax``: one Axes per model to draw into."""
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
    frame with their 95% bands and the zero line; one panel per statistic; each difference in
    the colour of its non-reference model (:func:`weighting_colour`). ``ax``: one Axes per
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
    fig, axes = panels(ax, 1, len(stats), figsize=(5.2 * len(stats), 3.6))
    axes = axes[0]
    for a, stat in zip(axes, stats):
        for name in names:
            _band(a, d[d["model"] == name].sort_values("t"), x, stat, weighting_colour(name), name, log=False)
        a.axhline(0.0, color="black", linewidth=0.8)
        a.set_ylabel(f"paired difference of\n{stat_label(stat)}", fontsize=9)
        _finish_x(a, x)
    axes[-1].legend(loc="best")
    return finish(fig, ax)


def _clip_to_estimates(ax, estimates, bounds):
    """y limits from the estimates (and -100%, a ratio's floor, when they come near it), so that a
    band whose reference is near 0 at some t (an upper bound of +1e9%) does not flatten the
    others; the axis says when a band runs past it."""
    est = estimates[np.isfinite(estimates)]
    if est.size == 0:
        return
    span = max(20.0, 0.5 * float(est.max() - est.min()))
    lo, hi = max(-105.0, float(est.min()) - span), float(est.max()) + span
    b = bounds[np.isfinite(bounds)]
    if b.size and (b.min() < lo or b.max() > hi):
        ax.set_ylim(lo, hi)
        ax.text(0.01, 0.01, "bands clipped at the axis", transform=ax.transAxes, fontsize=7,
                color="0.4", va="bottom")


def plot_relative_difference(ratios, stats=("x0_mse",), x="t", ax=None):
    """Per-t relative differences R - 1 = m(model) / m(reference) - 1 of
    :func:`biaskit.probe.compare_ratio` rows with one probed t each (``per_t=True``), with their
    95% intervals (delta method on log R: the reference's noise included, never below -100%),
    on a percent axis; one panel per statistic, each model in its colour. ``ax``: one Axes per
    statistic to draw into."""
    style()
    stats = [stats] if isinstance(stats, str) else list(stats)
    d = ratios[ratios["t_from"] == ratios["t_to"]].assign(t=lambda f: f["t_from"], logsnr=lambda f: f["logsnr_from"])
    fig, axes = panels(ax, 1, len(stats), figsize=(5.2 * len(stats), 3.6))
    axes = axes[0]
    for a, stat in zip(axes, stats):
        ds = d[d["statistic"] == stat]
        for name, g in ds.groupby("model", sort=False):
            g = g.sort_values("t").assign(pct=100 * g["relative"], pct_lo=100 * g["relative_lo"],
                                          pct_hi=100 * g["relative_hi"])
            _band(a, g, x, "pct", weighting_colour(name), f"{name} vs {g['reference'].iloc[0]}", False,
                  marker="o", ms=3)
        _clip_to_estimates(a, 100 * ds["relative"].to_numpy(dtype=float),
                           100 * ds[["relative_lo", "relative_hi"]].to_numpy(dtype=float))
        a.axhline(0.0, color="black", linewidth=0.8)
        a.set_ylabel(f"relative difference of\n{stat_label(stat).split(' (')[0]} (%)", fontsize=9)
        _finish_x(a, x)
    axes[-1].legend(loc="best", fontsize=8)
    return finish(fig, ax)
