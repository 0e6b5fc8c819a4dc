"""Image figures: grids of x_t and x0_hat at chosen t, mosaics of sample batches, and tables of
them (rows x columns, e.g. weighting x sampling steps), images mapped from the data range to
[0, 1] for display."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .plot_style import style


def to_unit(x, data_range):
    """Map data in ``data_range`` to [0, 1] for display (clipped): a float CPU tensor."""
    lo, hi = data_range
    return ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)


def _to_image(x, data_range):
    img = to_unit(x, data_range)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def plot_x0_grid(denoiser, x0, timesteps, seed: int = 0, n: int = 4, labels=None):
    """Rows: the first ``n`` images of ``x0`` (N, C, H, W); columns: x0, then x_t and x0_hat at
    each t in ``timesteps`` (the model's own timesteps, as the probe's ``t`` column). x_t uses the
    probe's noise for (seed, t, sample), so the grid shows the draws :func:`biaskit.probe.probe`
    scored. Images are mapped from the model's data range to [0, 1] (x_t and x0_hat clipped).
    ``labels`` (N,): the images' classes, fed to a class-conditional model."""
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
            t_k = torch.full((n,), k, device=dev)
            x0_hat = (denoiser(x_t, t_k) if labels is None else
                      denoiser(x_t, t_k, torch.as_tensor(labels)[:n].to(dev))).x0_hat
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
