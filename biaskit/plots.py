"""Figures in one consistent seaborn style. Every function returns a matplotlib Figure.

Call :func:`style` once (each plotting function does it for you). Use :func:`save` to write a
figure as PNG and PDF side by side.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

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
        fig.savefig(p, bbox_inches="tight")
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
