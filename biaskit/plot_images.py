"""Image figures: grids of x_t and x0_hat at chosen t, mosaics of sample batches, and tables of
them (rows x columns, e.g. weighting x sampling steps), images mapped from the data range to
[0, 1] for display. Each takes ``ax=`` (the caller's Axes, one per panel) and returns its figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .plot_axes import finish, panels
from .plot_style import style


def to_unit(x, data_range):
    """Map data in ``data_range`` to [0, 1] for display (clipped): a float CPU tensor."""
    lo, hi = data_range
    return ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)


def _to_image(x, data_range):
    img = to_unit(x, data_range)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def plot_x0_grid(denoiser, x0, timesteps, seed: int = 0, n: int = 4, labels=None, ax=None):
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
    fig, axes = panels(ax, n, cols, figsize=(1.3 * cols, 1.3 * n + 0.4))
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
    for a in axes.flat:
        a.set_axis_off()
    return finish(fig, ax)


def plot_x0_grids(models: dict, x0, timesteps, seed: int = 0, sample: int = 0, ax=None):
    """One figure for a family: image ``sample`` of ``x0`` (N, C, H, W) noised at each t of
    ``timesteps`` with the probe's noise for (seed, t, sample) (the draws the probe scored; the
    same x_t for every model), then per model {name: Denoiser} (same schedule) a row of x0_hat
    (shown in the data range, clipped for display only) and a row of its error
    e = sqrt(mean_c (x0_hat - x0)^2) per pixel, unclipped, on one logarithmic colour scale with
    its colour bar (data units), so the size of an error beyond the data range stays readable.
    ``ax``: (1 + 2 M) x (1 + len(timesteps)) Axes to draw into."""
    import torch
    from matplotlib.colors import LogNorm

    from .parameterization import noisy
    from .probe import draw_noise, schedule_indices

    style()
    names = list(models)
    first = models[names[0]]
    x0 = torch.as_tensor(x0)
    if x0.ndim != 4:
        raise ValueError(f"plot_x0_grids needs images (N, C, H, W), got shape {tuple(x0.shape)}")
    ks = schedule_indices(first.schedule, timesteps).tolist()
    ts = first.schedule.timesteps[ks].tolist()
    img = x0[sample:sample + 1].float()
    rows, cols = 1 + 2 * len(names), 1 + len(ts)
    fig, axes = panels(ax, rows, cols, figsize=(1.35 * cols + 1.2, 1.3 * rows + 0.5))
    cmap = "gray" if img.shape[1] == 1 else None
    x_t, x0_hat = {}, {name: {} for name in names}
    with torch.inference_mode():
        for t, k in zip(ts, ks):
            dev = first.device
            eps = draw_noise(seed, t, sample, sample + 1, img.shape[1:], dev)
            alpha, sigma = first.schedule.coefficients(torch.full((1,), k, device=dev))
            x_t[t] = noisy(img.to(dev), eps, alpha[:, None, None, None], sigma[:, None, None, None])
            for name in names:
                d = models[name]
                x0_hat[name][t] = d(x_t[t].to(d.device), torch.full((1,), k, device=d.device)).x0_hat.cpu()
    err = {name: {t: (x0_hat[name][t] - img).square().mean(1)[0].sqrt().numpy() for t in ts} for name in names}
    values = np.concatenate([e.ravel() for row in err.values() for e in row.values()])
    pos = values[values > 0]
    norm = LogNorm(vmin=max(pos.min(), pos.max() * 1e-4) if pos.size else 1e-6,
                   vmax=pos.max() if pos.size else 1.0)
    axes[0, 0].imshow(_to_image(img[0], first.data_range), cmap=cmap, vmin=0, vmax=1)
    axes[0, 0].set_title("x0", fontsize=8)
    for j, t in enumerate(ts, start=1):
        axes[0, j].imshow(_to_image(x_t[t][0], first.data_range), cmap=cmap, vmin=0, vmax=1)
        axes[0, j].set_title(f"x_t, t={t}", fontsize=8)
    for i, name in enumerate(names):
        r_img, r_err = 1 + 2 * i, 2 + 2 * i
        axes[r_img, 0].text(0.5, 0.5, f"{name}\nx0_hat", ha="center", va="center", fontsize=8)
        axes[r_err, 0].text(0.5, 0.5, f"{name}\nerror", ha="center", va="center", fontsize=8)
        for j, t in enumerate(ts, start=1):
            axes[r_img, j].imshow(_to_image(x0_hat[name][t][0], first.data_range), cmap=cmap, vmin=0, vmax=1)
            im = axes[r_err, j].imshow(np.maximum(err[name][t], norm.vmin), cmap="magma", norm=norm)
    for a in axes.flat:
        a.set_axis_off()
    finish(fig, ax)
    if ax is None:  # a column of its own right of the panels (stealing space overlaps the images)
        fig.subplots_adjust(right=0.86)
        top, bottom = axes[2, 1].get_position().y1, axes[-1, 1].get_position().y0
        bar = fig.colorbar(im, cax=fig.add_axes([0.89, bottom, 0.015, top - bottom]))
    else:
        bar = fig.colorbar(im, ax=list(axes[2::2, 1:].flat), fraction=0.03, pad=0.02)
    bar.set_label("|x0_hat - x0| per pixel,\nRMS over channels (data units)", fontsize=8)
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
                     title: str = "", ax=None):
    """Rows x columns of image mosaics: ``table[row][column]`` is a batch (N, C, H, W), e.g.
    ``{weighting: {f"{steps} steps": samples}}`` drawn from the same seeds, so every cell shows
    the same N noise draws. ``reference`` (N, C, H, W), e.g. held-out data, fills one panel left
    of the table spanning all rows. A cell missing from a row leaves no panel (no empty frames).
    ``ax``: rows x columns Axes, plus one first for ``reference`` (a missing cell's is hidden)."""
    style()
    rows = list(table)
    cols = list(dict.fromkeys(c for r in rows for c in table[r]))
    lead = 1 if reference is not None else 0
    given = None if ax is None else list(np.asarray(ax, dtype=object).flat)
    if given is not None:
        fig, cells = panels(given[lead:], len(rows), len(cols))
    else:
        fig = plt.figure(figsize=(cell_inches * (len(cols) + lead) + 0.8, cell_inches * len(rows) + 0.4
                                  + 0.3 * bool(title)))
        grid = fig.add_gridspec(len(rows), len(cols) + lead)
    axes = np.empty((len(rows), len(cols)), dtype=object)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if c in table[r]:
                axes[i, j] = cells[i, j] if given is not None else fig.add_subplot(grid[i, j + lead])
                _show_mosaic(axes[i, j], mosaic(table[r][c], data_range, columns))
            elif given is not None:
                cells[i, j].set_axis_off()
    if reference is not None:
        a = given[0] if given is not None else fig.add_subplot(grid[:, 0])
        _show_mosaic(a, mosaic(reference, data_range, columns))
        a.set_title(reference_title, fontsize=9)
    _label_table(axes, rows, cols)
    if title:
        fig.suptitle(title, fontsize=10)
    return finish(fig, ax)


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


def plot_points_table(table: dict, reference=None, cell_inches: float = 2.0, lim=None, ax=None):
    """Scatter version of :func:`plot_image_table` for 2-D samples: ``table[row][column]`` is an
    (N, 2) batch, drawn over ``reference`` (e.g. held-out data, grey) when given."""
    style()
    rows = list(table)
    cols = list(dict.fromkeys(c for r in rows for c in table[r]))
    fig, axes = panels(ax, len(rows), len(cols), figsize=(cell_inches * len(cols) + 0.8,
                                                          cell_inches * len(rows) + 0.4),
                       sharex=True, sharey=True)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            a = axes[i, j]
            if reference is not None:
                ref = np.asarray(reference)
                a.scatter(ref[:, 0], ref[:, 1], s=2, color="0.8", rasterized=True)
            if c in table[r]:
                x = np.asarray(table[r][c].detach().cpu() if hasattr(table[r][c], "detach") else table[r][c])
                a.scatter(x[:, 0], x[:, 1], s=2, rasterized=True)
            if lim is not None:
                a.set_xlim(*lim)
                a.set_ylim(*lim)
            a.set_aspect("equal")
    _label_table(axes, rows, cols)
    return finish(fig, ax)
