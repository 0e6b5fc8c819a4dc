"""Where a figure draws: new subplots, or the caller's own Axes (``ax=`` of every plot function).

Every plot function of :mod:`biaskit.plots` and :mod:`biaskit.plot_images` takes ``ax=``: one
matplotlib Axes for a one-panel figure, or as many Axes as the figure has panels (any array
shape, read row by row); it draws there and returns that figure, leaving its layout to the caller.
Panels drawn on given Axes share no axis limits (matplotlib shares axes only at creation).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["panels", "finish"]


def panels(ax, rows: int, cols: int, **subplots_kw):
    """(figure, Axes array (rows, cols)): ``plt.subplots(rows, cols, **subplots_kw)`` when ``ax``
    is None, else the given Axes; a ValueError names the number of panels when they do not fit."""
    if ax is None:
        fig, axes = plt.subplots(rows, cols, **{**subplots_kw, "squeeze": False})
        return fig, axes
    given = np.asarray(ax, dtype=object).ravel()
    if given.size != rows * cols:
        raise ValueError(f"ax: this figure has {rows * cols} panel(s) ({rows} x {cols}); "
                         f"got {given.size} Axes")
    return given[0].figure, given.reshape(rows, cols)


def finish(fig, ax):
    """The figure, laid out tightly when biaskit made it (a caller's figure keeps its layout)."""
    if ax is None:
        fig.tight_layout()
    return fig
