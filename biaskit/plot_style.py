"""The look every biaskit figure shares: one seaborn style, channel colours and names, panel
grids that wrap, and saving as PNG and PDF with the same bytes on every run."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from .atomic import write_savefig

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
        out.append(write_savefig(fig, p, bbox_inches="tight", metadata=meta))
    return out


def channel_names(C: int) -> list[str]:
    """Display names of C channels: red/green/blue for 3, gray for 1, else channel k."""
    return ["red", "green", "blue"] if C == 3 else ["gray"] if C == 1 else [f"channel {k}" for k in range(C)]


def channel_colours(C: int):
    if C == 1:
        return ["0.35"]
    if C == 3:
        return list(RGB)
    return sns.color_palette("husl", C)


def grid(n: int, panel=(4.2, 3.0), ncols: int = 2, **kw):
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
