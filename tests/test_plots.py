"""Figure files: PNG and PDF side by side, byte-identical when the same figure is saved again."""

import hashlib

import matplotlib.pyplot as plt

from biaskit import plots


def test_save_writes_png_and_pdf_reproducibly(tmp_path):
    digests = []
    for run in range(2):
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [1, 4, 9])
        paths = plots.save(fig, tmp_path / f"run{run}" / "fig.anything")
        plt.close(fig)
        assert [p.suffix for p in paths] == [".png", ".pdf"]
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in paths])
    assert digests[0] == digests[1]


def test_plot_quality_draws_every_estimate_in_its_panel():
    import numpy as np
    import pandas as pd
    rows = [{"metric": m, "sampler": s, "model": w, "steps": n, "value": v, "lo": v - 0.1,
             "hi": v + 0.1}
            for m in ("swd", "mmd") for s in ("ddim", "ddpm") for w in ("constant", "debias")
            for n, v in ((2, 3.0 + (w == "debias")), (10, 1.0))]
    fig = plots.plot_quality(pd.DataFrame(rows), "steps", "t")
    axes = np.array(fig.axes).reshape(2, 2)
    assert axes[0, 1].get_title() == "swd | ddpm" and axes[0, 1].get_xscale() == "log"
    lines = {ln.get_label(): ln for ln in axes[1, 0].get_lines()}
    assert list(lines["debias"].get_ydata()) == [4.0, 1.0]
    assert list(lines["constant"].get_xdata()) == [2, 10]
    plt.close(fig)


# --- readable figures: properties a reader relies on -------------------------------------------
def _quality_frame(steps=(2, 3, 4, 5, 10, 20, 50, 100, 250, 500, 1000), samplers=("ddim", "ddpm")):
    import pandas as pd
    return pd.DataFrame([{"metric": m, "sampler": s, "model": w, "steps": n, "value": 1 / n,
                          "lo": 0.8 / n, "hi": 1.2 / n}
                         for m in ("swd", "mmd2") for s in samplers for w in ("constant", "debias")
                         for n in steps])


def _visible_labels(ax):
    ax.figure.canvas.draw()
    return [lab for lab in ax.get_xticklabels() if lab.get_visible() and lab.get_text()]


def test_quality_x_ticks_are_plain_integers_that_do_not_overlap():
    steps = (2, 3, 4, 5, 10, 20, 50, 100, 250, 500, 1000)
    fig = plots.plot_quality(_quality_frame(steps), "steps", "t")
    bottom = fig.axes[-1]  # a bottom-row panel shows the tick labels
    labels = _visible_labels(bottom)
    texts = [lab.get_text() for lab in labels]
    assert texts[0] == "2" and texts[-1] == "1000" and {"10", "100"} <= set(texts)
    assert all(t.isdigit() and int(t) in steps for t in texts)  # no "2x10^0" mathtext labels
    assert not bottom.xaxis.get_minorticklabels() or \
        all(not t.get_text() for t in bottom.xaxis.get_minorticklabels())
    boxes = [lab.get_window_extent() for lab in labels]
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), texts
    plt.close(fig)


def test_every_axis_names_its_quantity():
    fig = plots.plot_quality(_quality_frame((2, 5, 10)), "steps", "t")
    ylabels = {ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()}
    assert any("sliced Wasserstein" in y and "data units" in y for y in ylabels)
    assert any(y.startswith("MMD²") for y in ylabels)
    assert not any(y.strip().lower().startswith("value") for y in ylabels)
    assert all("sampling steps" in ax.get_xlabel() for ax in fig.axes[-2:])
    plt.close(fig)


def _compare_frame(models=("constant", "debias", "min_snr", "p2"), C=3):
    import pandas as pd
    rows = []
    for m in models:
        for t in (0, 250, 500, 999):
            r = {"model": m, "kind": "model", "t": t, "logsnr": 5 - t / 100}
            for k in range(C):
                r.update({f"x0_bias_c{k}": 0.1 * k, f"x0_bias_c{k}_lo": 0.1 * k - 0.05,
                          f"x0_bias_c{k}_hi": 0.1 * k + 0.05})
            rows.append(r)
    return pd.DataFrame(rows)


def test_colour_bias_is_a_compact_grid_with_labelled_panels():
    fig = plots.plot_colour_bias(_compare_frame())
    w, h = fig.get_size_inches()
    assert len(fig.axes) == 4 and w <= 10 and w / h <= 2.0  # 2 x 2, not a 4-panel strip
    for ax in fig.axes:
        assert ax.get_xlabel() == "timestep t" and "data units" in ax.get_ylabel()
        assert [ln.get_color() for ln in ax.get_lines()[:3]] == list(plots.RGB)
    assert {ax.get_title() for ax in fig.axes} == {"constant", "debias", "min_snr", "p2"}
    plt.close(fig)
    fig = plots.plot_colour_bias(_compare_frame(models=("a", "b", "c"), C=1))
    assert len(fig.axes) == 3  # the fourth cell of the 2 x 2 grid is removed, not left empty
    plt.close(fig)


def test_image_table_has_no_empty_panels_and_shows_the_reference():
    import torch
    x = torch.zeros(6, 3, 4, 4)
    table = {w: {f"{s} steps": x for s in (2, 5, 10)} for w in ("constant", "debias")}
    table["debias"].pop("5 steps")
    fig = plots.plot_image_table(table, columns=3, reference=x, title="clipped")
    assert len(fig.axes) == 2 * 3 - 1 + 1  # five cells and the reference panel
    assert all(ax.get_images() for ax in fig.axes)
    assert "held-out data" in {ax.get_title() for ax in fig.axes}
    assert fig._suptitle.get_text() == "clipped"
    plt.close(fig)


def test_hybrid_plot_draws_intervals_and_labels_its_axes():
    import pandas as pd
    rows = [{"k": k, "metric": m, "order": o, "value": v, "lo": v - 0.1, "hi": v + 0.1}
            for m in ("swd", "colour_error") for o in ("debias then constant", "constant then debias")
            for k, v in ((0, 1.0), (5, 0.5), (10, 0.2))]
    fig = plots.plot_hybrid(pd.DataFrame(rows), calls=10, title="DDIM, clipped")
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert "of 10" in ax.get_xlabel() and "95%" in ax.get_ylabel()
        assert len(ax.collections) == 2  # one band per order
        assert [int(t) for t in ax.get_xticks()] == [0, 5, 10]
    plt.close(fig)


def test_channel_stats_and_trajectory_plots_label_every_axis():
    import numpy as np
    import pandas as pd
    import torch
    from biaskit import trajectory
    g = torch.Generator().manual_seed(0)
    cs = trajectory.channel_stats({"data": torch.randn(20, 3, 4, 4, generator=g),
                                   "model": 2 + torch.randn(20, 3, 4, 4, generator=g)})
    fig = plots.plot_channel_stats(cs)
    assert [ax.get_ylabel().split("\n")[0] for ax in fig.axes] == \
        ["per-sample channel mean", "per-sample channel std"]
    plt.close(fig)
    traj = pd.DataFrame({"t": [999, 500, 0] * 2, "clip_fraction": [0.5, 0.1, 0.0] * 2,
                         "mse_to_final": [1.0, 0.1, 0.0] * 2, "mean_abs_drift": [0.3, 0.1, 0.0] * 2,
                         "model": ["a"] * 3 + ["b"] * 3})
    fig = plots.plot_trajectory_stats(traj, hue="model")
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.xaxis_inverted()
    assert np.isclose(fig.axes[1].get_lines()[0].get_ydata().min(), 0.1)  # the log panel drops 0
    plt.close(fig)


def test_probe_panels_name_statistic_and_unit():
    import pandas as pd
    rows = [{"model": m, "kind": "model", "t": t, "logsnr": 5 - t / 100, "x0_mse": 1 + t, "eps_mse": 1.0}
            for m in ("constant", "debias") for t in (0, 500, 999)]
    fig = plots.plot_per_timestep(pd.DataFrame(rows), stats=("x0_mse", "eps_mse"), x=("t", "logsnr"))
    assert [ax.get_ylabel() for ax in fig.axes[::2]] == ["x0-MSE (per element, data units²)",
                                                         "eps-MSE (per element, noise units²)"]
    assert [ax.get_xlabel() for ax in fig.axes[:2]] == ["timestep t", "log SNR (nats)"]
    plt.close(fig)


def _difference_frame():
    import pandas as pd
    rows = []
    for t in (0, 500, 999):
        for model, kind, v in (("constant", "model", 1.0), ("debias", "model", 0.0 if t == 0 else 0.5),
                               ("debias - constant", "difference", -0.5)):
            rows.append({"model": model, "kind": kind, "t": t, "logsnr": 5.0 - t / 100, "x0_mse": v * (1 + t),
                         "x0_mse_lo": v * (1 + t) * 0.9, "x0_mse_hi": v * (1 + t) * 1.1})
    return pd.DataFrame(rows)


def test_one_colour_per_weighting_in_every_figure_and_a_difference_in_its_models():
    from matplotlib.colors import to_hex
    df = _difference_frame()
    per_t = plots.plot_per_timestep(df, stats=["x0_mse"], log=True)
    diff = plots.plot_paired_difference(df, stats=["x0_mse"])
    colour = {ln.get_label(): to_hex(ln.get_color()) for f in (per_t, diff) for ln in f.axes[0].get_lines()}
    assert colour["debias"] == colour["debias - constant"] == to_hex(plots.weighting_colour("debias"))
    assert colour["constant"] == to_hex(plots.weighting_colour("constant")) != colour["debias"]
    # debias is 0 at t = 0: a log axis would drop it, so the axis is symmetric-log
    assert per_t.axes[0].get_yscale() == "symlog"
    plt.close("all")


def test_a_clipped_chain_has_no_clip_fraction_panel():
    import pandas as pd
    d = pd.DataFrame({"t": [999, 500, 0] * 2, "clip_fraction": 0.0, "mse_to_final": [1.0, 0.5, 0.0] * 2,
                      "mean_abs_drift": [0.1, 0.05, 0.0] * 2, "model": ["constant"] * 3 + ["debias"] * 3})
    clipped = plots.plot_trajectory_stats(d.assign(clip=True), hue="model")
    unclipped = plots.plot_trajectory_stats(d.assign(clip=False), hue="model")
    assert len(clipped.axes) == 2 and len(unclipped.axes) == 3
    # each model in its weighting's colour, named in the legend
    from matplotlib.colors import to_rgb
    legend = clipped.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["constant", "debias"]
    assert [to_rgb(ln.get_color()) for ln in clipped.axes[0].get_lines()[:2]] == \
        [to_rgb(plots.weighting_colour("constant")), to_rgb(plots.weighting_colour("debias"))]
    assert not any("outside" in ax.get_ylabel() for ax in clipped.axes)
    plt.close("all")
