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
    rows = [{"metric": m, "sampler": s, "weighting": w, "steps": n, "value": v, "lo": v - 0.1,
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
