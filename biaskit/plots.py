"""Figures in one consistent seaborn style. Every function returns a matplotlib Figure.

Call :func:`style` once (each plotting function does it for you). Use :func:`save` to write a
figure as PNG and PDF side by side.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

RGB = ("#d62728", "#2ca02c", "#1f77b4")  # channel colours for colour-bias plots


def style():
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1,
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "axes.titleweight": "bold",
                      "legend.frameon": False})


def save(fig, path, formats=("png", "pdf")) -> list[Path]:
    """Write ``fig`` as path.png and path.pdf (the suffix of ``path`` is ignored); return the paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in formats:
        p = path.with_suffix(f".{ext}")
        # no creation date in the file, so the same figure gives the same bytes on every run
        meta = {"CreationDate": None} if ext == "pdf" else {"Software": None} if ext == "png" else None
        fig.savefig(p, bbox_inches="tight", metadata=meta)
        out.append(p)
    return out


def plot_weightings(df, space: str = "x0", schedule_name: str = ""):
    """Every weighting column of a :func:`biaskit.weighting.weights_table` frame, against t and
    against logsnr, on a log y axis (weights span many decades)."""
    style()
    cols = [c for c in df.columns if c not in ("t", "snr", "logsnr")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
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
    fig.tight_layout()
    return fig


# --- probe results (biaskit.probe) -------------------------------------------------------------

_X_LABELS = {"t": "timestep t", "logsnr": "log SNR (nats)"}


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


def plot_per_timestep(df, stats=("x0_mse", "eps_mse"), x="t", models=None):
    """One panel per statistic of a probe/compare frame against ``x`` ("t", "logsnr" or both as a
    tuple), every model overlaid with its 95% band; log y where a statistic spans decades."""
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
    fig, axes = plt.subplots(len(stats), len(xs), figsize=(5.2 * len(xs), 3.6 * len(stats)),
                             squeeze=False)
    for i, stat in enumerate(stats):
        log = _spans_decades(df[stat])
        for j, xv in enumerate(xs):
            ax = axes[i, j]
            for name, colour in zip(names, colours):
                _band(ax, df[df["model"] == name].sort_values("t"), xv, stat, colour, name, log)
            if log:
                ax.set_yscale("log")
            ax.set_ylabel(stat.replace("_", " ") + " (per element)")
            _finish_x(ax, xv)
    axes[0, -1].legend(loc="best")
    fig.tight_layout()
    return fig


def channel_names(C: int) -> list[str]:
    """Display names of C channels: red/green/blue for 3, gray for 1, else channel k."""
    return ["red", "green", "blue"] if C == 3 else ["gray"] if C == 1 else [f"channel {k}" for k in range(C)]


def _channel_colours(C: int):
    if C == 1:
        return ["0.35"]
    if C == 3:
        return list(RGB)
    return sns.color_palette("husl", C)


def _grid(n: int, panel=(4.2, 3.0), ncols: int = 2, **kw):
    """A figure of ``n`` panels in rows of at most ``ncols`` (the unused ones removed), so many
    panels wrap into a readable block instead of one long strip; returns (fig, flat axes)."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows),
                             squeeze=False, **kw)
    flat = list(axes.flat)
    for ax in flat[n:]:
        fig.delaxes(ax)
    return fig, flat[:n]


def plot_colour_bias(df, x="t"):
    """Per-channel mean error of x0_hat (x0_bias_c{k}) with 95% bands, each channel in its RGB
    colour (one grey line for grayscale); one panel per model, two panels a row, shared y."""
    style()
    df = _models(df)
    chans = sorted((c for c in df.columns if c.startswith("x0_bias_c") and c[9:].isdigit()),
                   key=lambda c: int(c[9:]))
    if not chans:
        raise ValueError("the frame has no x0_bias_c{k} columns")
    names = list(dict.fromkeys(df["model"]))
    fig, axes = _grid(len(names), sharey=True)
    for ax, name in zip(axes, names):
        d = df[df["model"] == name].sort_values("t")
        for c, colour, label in zip(chans, _channel_colours(len(chans)), channel_names(len(chans))):
            _band(ax, d, x, c, colour, label, log=False)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(name)
        ax.set_ylabel("mean x0_hat - x0 (data units)")
        ax.yaxis.set_tick_params(labelleft=True)
        _finish_x(ax, x)
    axes[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_paired_difference(df_compare, stats=("x0_mse",), x="t"):
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
    fig, axes = plt.subplots(1, len(stats), figsize=(5.2 * len(stats), 3.6), squeeze=False)
    for ax, stat in zip(axes[0], stats):
        for name, colour in zip(names, colours):
            _band(ax, d[d["model"] == name].sort_values("t"), x, stat, colour, name, log=False)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylabel(f"paired difference of {stat.replace('_', ' ')}")
        _finish_x(ax, x)
    axes[0, -1].legend(loc="best")
    fig.tight_layout()
    return fig


def to_unit(x, data_range):
    """Map data in ``data_range`` to [0, 1] for display (clipped): a float CPU tensor."""
    lo, hi = data_range
    return ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)


def _to_image(x, data_range):
    img = to_unit(x, data_range)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def plot_x0_grid(denoiser, x0, timesteps, seed: int = 0, n: int = 4):
    """Rows: the first ``n`` images of ``x0`` (N, C, H, W); columns: x0, then x_t and x0_hat at
    each t in ``timesteps`` (the model's own timesteps, as the probe's ``t`` column). x_t uses the
    probe's noise for (seed, t, sample), so the grid shows the draws :func:`biaskit.probe.probe`
    scored. Images are mapped from the model's data range to [0, 1] (x_t and x0_hat clipped)."""
    import torch

    from .parameterization import noisy
    from .probe import draw_noise, schedule_indices

    style()
    x0 = torch.as_tensor(x0)
    if x0.ndim != 4:
        raise ValueError(f"plot_x0_grid needs images (N, C, H, W), got shape {tuple(x0.shape)}")
    x0 = x0[:n].float()
    n = x0.shape[0]
    ks = schedule_indices(denoiser.schedule, timesteps).tolist()
    ts = denoiser.schedule.timesteps[ks].tolist()
    dev = denoiser.device
    cols = 1 + 2 * len(ts)
    fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.3 * n + 0.4), squeeze=False)
    cmap = "gray" if x0.shape[1] == 1 else None
    with torch.inference_mode():
        for j, (t, k) in enumerate(zip(ts, ks)):
            eps = draw_noise(seed, t, 0, n, x0.shape[1:], dev)
            alpha, sigma = denoiser.schedule.coefficients(torch.full((n,), k, device=dev))
            x_t = noisy(x0.to(dev), eps, alpha[:, None, None, None], sigma[:, None, None, None])
            x0_hat = denoiser(x_t, torch.full((n,), k, device=dev)).x0_hat
            for i in range(n):
                axes[i, 1 + 2 * j].imshow(_to_image(x_t[i], denoiser.data_range), cmap=cmap, vmin=0, vmax=1)
                axes[i, 2 + 2 * j].imshow(_to_image(x0_hat[i], denoiser.data_range), cmap=cmap, vmin=0, vmax=1)
            axes[0, 1 + 2 * j].set_title(f"x_t, t={t}", fontsize=8)
            axes[0, 2 + 2 * j].set_title(f"x0_hat, t={t}", fontsize=8)
    for i in range(n):
        axes[i, 0].imshow(_to_image(x0[i], denoiser.data_range), cmap=cmap, vmin=0, vmax=1)
    axes[0, 0].set_title("x0", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


# --- sample tables (biaskit.sampling) ----------------------------------------------------------

def mosaic(images, data_range=(-1.0, 1.0), columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile images (N, C, H, W) into one (rows*(H+pad)-pad, cols*(W+pad)-pad[, 3]) array in
    [0, 1], row-major, white gaps; grayscale comes back 2-D."""
    import torch
    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ValueError(f"mosaic needs images (N, C, H, W), got shape {tuple(x.shape)}")
    N, C, H, W = x.shape
    cols = columns or N
    rows = -(-N // cols)
    x = to_unit(x, data_range)
    canvas = torch.ones(C, rows * (H + pad) - pad, cols * (W + pad) - pad)
    for i in range(N):
        r, c = divmod(i, cols)
        canvas[:, r * (H + pad): r * (H + pad) + H, c * (W + pad): c * (W + pad) + W] = x[i]
    return canvas[0].numpy() if C == 1 else canvas.permute(1, 2, 0).numpy()


def mosaic_inches(columns: int, H: int, minimum: float = 1.6) -> float:
    """Width in inches of a cell holding a mosaic ``columns`` images wide of H-pixel images: each
    image gets H / 96 inches (one inch per 96 pixels), at least 0.3 and at most 1, so 64 samples
    in 8 columns stay readable."""
    return max(minimum, columns * min(max(H / 96, 0.3), 1.0))


def plot_image_table(table: dict, data_range=(-1.0, 1.0), columns: int | None = None,
                     cell_inches: float = 1.6, reference=None, reference_title: str = "held-out data",
                     title: str = ""):
    """Rows x columns of image mosaics: ``table[row][column]`` is a batch (N, C, H, W), e.g.
    ``{weighting: {f"{steps} steps": samples}}`` drawn from the same seeds, so every cell shows
    the same N noise draws. ``reference`` (N, C, H, W), e.g. held-out data, fills one panel left
    of the table spanning all rows. A cell missing from a row leaves no panel (no empty frames)."""
    style()
    rows = list(table)
    cols = list(dict.fromkeys(c for r in rows for c in table[r]))
    lead = 1 if reference is not None else 0
    fig = plt.figure(figsize=(cell_inches * (len(cols) + lead) + 0.8, cell_inches * len(rows) + 0.4
                              + 0.3 * bool(title)))
    grid = fig.add_gridspec(len(rows), len(cols) + lead)
    axes = np.empty((len(rows), len(cols)), dtype=object)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if c in table[r]:
                axes[i, j] = fig.add_subplot(grid[i, j + lead])
                _show_mosaic(axes[i, j], mosaic(table[r][c], data_range, columns))
    if reference is not None:
        ax = fig.add_subplot(grid[:, 0])
        _show_mosaic(ax, mosaic(reference, data_range, columns))
        ax.set_title(reference_title, fontsize=9)
    _label_table(axes, rows, cols)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _show_mosaic(ax, img):
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _label_table(axes, rows, cols):
    """Column names as titles of each column's top panel, row names as y labels of each row's
    first panel (``axes`` may hold None where a row has no such cell)."""
    for j, c in enumerate(cols):
        top = next(ax for ax in axes[:, j] if ax is not None)
        top.set_title(str(c), fontsize=9)
    for i, r in enumerate(rows):
        first = next(ax for ax in axes[i] if ax is not None)
        first.set_ylabel(str(r), fontsize=9)


def plot_points_table(table: dict, reference=None, cell_inches: float = 2.0, lim=None):
    """Scatter version of :func:`plot_image_table` for 2-D samples: ``table[row][column]`` is an
    (N, 2) batch, drawn over ``reference`` (e.g. held-out data, grey) when given."""
    style()
    rows = list(table)
    cols = list(dict.fromkeys(c for r in rows for c in table[r]))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(cell_inches * len(cols) + 0.8,
                                                            cell_inches * len(rows) + 0.4),
                             squeeze=False, sharex=True, sharey=True)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            if reference is not None:
                ref = np.asarray(reference)
                ax.scatter(ref[:, 0], ref[:, 1], s=2, color="0.8", rasterized=True)
            if c in table[r]:
                x = np.asarray(table[r][c].detach().cpu() if hasattr(table[r][c], "detach") else table[r][c])
                ax.scatter(x[:, 0], x[:, 1], s=2, rasterized=True)
            if lim is not None:
                ax.set_xlim(*lim)
                ax.set_ylim(*lim)
            ax.set_aspect("equal")
    _label_table(axes, rows, cols)
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
    palette = list(RGB) if C == 3 else _channel_colours(C)
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


def plot_trajectory_stats(df, hue: str | None = None, title: str = ""):
    """A :func:`biaskit.trajectory.trajectory_stats` frame against t (noise to the left, the chain
    runs left to right): clip fraction of x0_hat, its MSE to the final sample (log y), and the
    drift of its channel means. ``hue`` names a column (e.g. ``weighting``) for several
    trajectories in one frame."""
    style()
    stats = [("clip_fraction", "fraction of x0_hat outside the data range"),
             ("mse_to_final", "MSE(x0_hat, final sample)\n(per element, data units²)"),
             ("mean_abs_drift", "|channel-mean drift| of x0_hat\n(data units)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (col, label) in zip(axes, stats):
        d = df if col != "mse_to_final" else df[df[col] > 0]  # the final step's 0 has no log
        sns.lineplot(data=d, x="t", y=col, hue=hue, marker="o", ms=4, ax=ax,
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


def plot_hybrid(df, calls: int, title: str = ""):
    """A hybrid sweep (columns k, metric, value, lo, hi, order): one panel per metric, a line per
    order ("A then B") with its 95% band against k, the number of model calls given to the first
    model out of ``calls``."""
    style()
    metrics_ = list(dict.fromkeys(df["metric"]))
    fig, axes = _grid(len(metrics_), panel=(4.6, 3.4), ncols=3)
    colours = sns.color_palette("colorblind")
    for ax, metric in zip(axes, metrics_):
        for (order, d), colour in zip(df[df["metric"] == metric].groupby("order", sort=False), colours):
            d = d.sort_values("k")
            ax.plot(d["k"], d["value"], marker="o", ms=4, color=colour, label=order)
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


def plot_quality(df, x: str, title: str = ""):
    """Sample-quality estimates against ``x`` (e.g. sampling steps or training step): a
    :func:`biaskit.metrics.evaluate` frame with columns metric, value, lo, hi, weighting, ``x`` and
    optionally sampler. One panel per metric (rows) and sampler (columns), a line per weighting
    with its 95% bootstrap band; log x (steps span decades)."""
    style()
    by_sampler = "sampler" in df
    g = sns.FacetGrid(df, row="metric", col="sampler" if by_sampler else None, hue="weighting",
                      sharey="row", height=2.6, aspect=1.3)
    colours = dict(zip(df["weighting"].unique(), sns.color_palette("colorblind")))
    for (metric, sampler), d in df.groupby(["metric", "sampler"] if by_sampler else ["metric", "metric"]):
        ax = g.axes[list(g.row_names).index(metric), list(g.col_names).index(sampler) if by_sampler else 0]
        for w, dw in d.groupby("weighting", sort=False):
            dw = dw.sort_values(x)
            ax.plot(dw[x], dw["value"], marker="o", ms=3, color=colours[w], label=w)
            ax.fill_between(dw[x], dw["lo"], dw["hi"], color=colours[w], alpha=0.2, linewidth=0)
        ax.set_xscale("log")
        integer_log_ticks(ax, df[x])
    g.set_titles("{row_name} | {col_name}" if by_sampler else "{row_name}")
    g.set_xlabels(X_LABELS.get(x, x.replace("_", " ")) + " (log scale)")
    for metric, row in zip(g.row_names, g.axes):
        row[0].set_ylabel(metric_label(metric) + "\n95% bootstrap band", fontsize=9)
    g.axes.flat[0].legend(fontsize=8)
    if title:
        g.figure.suptitle(title, y=1.02)
    return g.figure
