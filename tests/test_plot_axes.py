"""``ax=``: every plot function draws on the caller's Axes (one per panel) and returns their figure."""

import inspect

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from biaskit import plot_images, plots


def _probe_frame(models=("a", "b"), C=1):
    rows = []
    for m in models:
        for t in (0, 500, 999):
            r = {"model": m, "kind": "model", "t": t, "logsnr": 5 - t / 100, "x0_mse": 1.0 + t,
                 "x0_mse_lo": 0.5 + t, "x0_mse_hi": 1.5 + t}
            for k in range(C):
                r.update({f"x0_bias_c{k}": 0.1, f"x0_bias_c{k}_lo": 0.0, f"x0_bias_c{k}_hi": 0.2})
            rows.append(r)
    rows += [{**r, "model": "b - a", "kind": "difference"} for r in rows[:3]]
    return pd.DataFrame(rows)


def _cases():
    from biaskit import Denoiser, schedules, trajectory
    g = torch.Generator().manual_seed(0)
    weights = pd.DataFrame({"t": [0, 500, 999], "snr": [100.0, 1.0, 0.01], "logsnr": [4.6, 0.0, -4.6],
                            "constant": [1.0, 2.0, 3.0]})
    quality = pd.DataFrame([{"metric": m, "sampler": s, "model": "w", "steps": n, "value": 1.0 / n,
                             "lo": 0.5 / n, "hi": 2.0 / n} for m in ("swd", "mmd") for s in ("ddim", "ddpm")
                            for n in (2, 10)])
    hybrid = pd.DataFrame([{"k": k, "metric": "swd", "order": "a then b", "value": 1.0, "lo": 0.5, "hi": 1.5}
                           for k in (0, 5)])
    chans = trajectory.channel_stats({"data": torch.randn(8, 3, 4, 4, generator=g)})
    traj = pd.DataFrame({"t": [999, 0], "clip_fraction": [0.5, 0.0], "mse_to_final": [1.0, 0.0],
                         "mean_abs_drift": [0.3, 0.0]})
    ratios = pd.DataFrame([{"model": "b", "reference": "a", "statistic": "x0_mse", "t_from": t, "t_to": t,
                            "logsnr_from": 5 - t / 100, "relative": 0.1, "relative_lo": -0.2,
                            "relative_hi": 0.5} for t in (0, 500, 999)])
    x = torch.zeros(4, 1, 8, 8)
    zero = Denoiser(lambda x, t: torch.zeros_like(x), schedules.linear(100))
    return {  # function: (args, kwargs, panels)
        plots.plot_weightings: ((weights,), {}, 2),
        plots.plot_per_timestep: ((_probe_frame(),), {"stats": ("x0_mse",)}, 1),
        plots.plot_per_timestep_groups: ((_probe_frame(), "x0_mse", {"g1": ["a"], "g2": ["b"]}), {}, 2),
        plots.plot_colour_bias: ((_probe_frame(models=("a", "b", "c"), C=3),), {}, 4),
        plots.plot_paired_difference: ((_probe_frame(),), {}, 1),
        plots.plot_channel_stats: ((chans,), {}, 2),
        plots.plot_trajectory_stats: ((traj,), {}, 3),
        plots.plot_hybrid: ((hybrid,), {"calls": 5}, 1),
        plots.plot_quality: ((quality, "steps"), {}, 4),
        plots.plot_relative_difference: ((ratios,), {}, 1),
        plot_images.plot_x0_grids: (({"a": zero, "b": zero}, x, [10, 90]), {}, 5 * 3),
        plot_images.plot_x0_grid: ((zero, x, [10, 90]), {"n": 2}, 2 * 5),
        plot_images.plot_image_table: (({"r": {"c1": x, "c2": x}},), {"reference": x}, 3),
        plot_images.plot_points_table: (({"r": {"c": torch.randn(10, 2, generator=g)}},), {}, 1),
    }


def test_every_plot_function_takes_ax():
    public = {f for mod in (plots, plot_images) for name, f in vars(mod).items()
              if name.startswith("plot_") and inspect.isfunction(f)}
    assert public == set(_cases()), public ^ set(_cases())
    assert all("ax" in inspect.signature(f).parameters for f in public)


@pytest.mark.parametrize("case", range(14))
def test_plot_draws_on_the_given_axes_and_returns_their_figure(case):
    f, (args, kwargs, n) = list(_cases().items())[case]
    if f is plots.plot_colour_bias:
        n = 3  # one panel per model; 4 given is an error naming the count
        fig, axes = plt.subplots(1, 4)
        with pytest.raises(ValueError, match="has 3 panel"):
            f(*args, **kwargs, ax=axes)
        plt.close(fig)
    fig, axes = plt.subplots(1, n, squeeze=False)
    out = f(*args, **kwargs, ax=axes if n > 1 else axes[0, 0])
    bars = 1 if f is plot_images.plot_x0_grids else 0  # its colour bar is an Axes of its own
    assert out is fig and len(fig.axes) == n + bars  # drawn there, no other axes added
    drawn = [a for a in fig.axes if a.get_lines() or a.get_images() or a.collections or a.patches]
    assert len(drawn) >= 1 and (n == 1 or len(drawn) >= n // 2)
    plt.close(fig)
