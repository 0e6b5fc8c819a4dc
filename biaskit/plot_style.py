"""The look every biaskit figure shares: one seaborn style, channel colours and names, panel
grids that wrap, and saving as PNG and PDF with the same bytes on every run."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
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


# One colour per weighting (and formulation) in every figure. A model named "B - A" (a paired
# difference) takes B's colour, "family: W" and "W, detail" take W's, "min_snr(5)" takes
# min_snr's; other names a colour fixed by the name. A formulation's usual loss and its
# debias-equivalent are a dark/light pair; grey is left to floors and references.
_CB = sns.color_palette("colorblind", 10)
WEIGHTING_COLOURS = {"constant": _CB[0], "debias": _CB[1], "min_snr": _CB[2], "p2": _CB[3],
                     "snr": _CB[4], "v": _CB[5], "v-debias": _CB[6], "edm": "#8c6d00",
                     "edm-debias": _CB[8], "flow": "#003f5c", "flow-debias": _CB[9],
                     "soft_min_snr": "#6b8e23", "sigmoid": "#008b8b", "trunc_snr": "#8b0000",
                     "vlb": "#4b0082", "constant+ip": "#5fa8d3"}
WEIGHTING_ORDER = tuple(WEIGHTING_COLOURS)


def _weighting_of(name: str) -> str:
    name = str(name).split(": ", 1)[-1].split(" - ", 1)[0].split(", ", 1)[0]
    return name.split("(", 1)[0].split(":", 1)[0].strip()


def weighting_colour(name: str):
    """The colour of weighting ``name`` (:data:`WEIGHTING_COLOURS`), the same in every figure."""
    w = _weighting_of(name)
    if w in WEIGHTING_COLOURS:
        return WEIGHTING_COLOURS[w]
    import zlib
    return sns.color_palette("husl", 24)[zlib.crc32(w.encode()) % 24]


def weighting_palette(names) -> dict:
    """{name: :func:`weighting_colour`} for seaborn's ``palette=``."""
    return {n: weighting_colour(n) for n in dict.fromkeys(names)}


def y_scale(values, log) -> str | bool:
    """How a log-spanning quantity is drawn: "log" when every value (estimates and bounds) is
    positive, else "symlog" (zeros stay visible, linear below the smallest positive value)."""
    if not log:
        return False
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return "log" if v.size and (v > 0).all() else "symlog"


def apply_y_scale(ax, scale, values):
    if scale == "log":
        ax.set_yscale("log")
    elif scale == "symlog":
        v = np.asarray(values, dtype=float)
        pos = v[np.isfinite(v) & (v > 0)]
        lin = 10 ** np.floor(np.log10(pos.min())) if pos.size else 1e-3
        ax.set_yscale("symlog", linthresh=lin)
        ax.axhline(0.0, color="0.4", lw=0.6)
        ax.text(0.01, 0.01, f"linear below {lin:g}", transform=ax.transAxes, fontsize=7, color="0.3")
