"""`biaskit sample --data`: statistics of the samples against the data, checked on a model whose
samples are known exactly (x0_hat = c, so DDIM's last step returns c), against numbers computed
here from the data; the stored timesteps are the model's; the grid shows up to 64 samples."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from biaskit.cli import main
from biaskit.data import load_dataset
from biaskit.plots import mosaic_inches
from biaskit.probe import CLIP_TOL

C_VALUES = (0.2, -0.5, 1.5)  # channel 2 lies beyond the range [-1, 1]
PLUGIN = f"""
import torch
from torch import nn

class Const(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("c", torch.tensor({list(C_VALUES)}).view(1, 3, 1, 1))

    def forward(self, x, t):
        return self.c.expand_as(x).clone() + 0 * x
"""
DATA = ["--data", "gmm", "--data-option", "shape=[3,4,4]", "--data-option", "n_test=300"]


def _run(tmp_path, *extra):
    (tmp_path / "const.py").write_text(PLUGIN)
    out = tmp_path / "s"
    rc = main(["sample", f"{tmp_path / 'const.py'}:Const", "--parameterization", "x0", "--noise-schedule",
               "linear", "--diffusion-steps", "20", "--trained-timesteps", "1:19", "--shape", "3,4,4",
               "--sampler", "ddim", "--n", "64", "--out", str(out), "--no-progress",
               "--settings-check", "off", *extra])  # a constant net: no settings to check
    assert rc == 0
    return out


def test_sample_statistics_against_the_data(tmp_path, capsys):
    out = _run(tmp_path, "--steps", "3,5", *DATA)
    console = capsys.readouterr().out
    stats = pd.read_csv(out / "sample_stats.csv")
    data = load_dataset("gmm", shape=[3, 4, 4], n_test=300).test.double()
    c = torch.tensor(C_VALUES, dtype=torch.float64)
    for steps in (3, 5):
        st = stats[stats["steps"] == steps].set_index("statistic")
        for k in range(3):
            # every sample is c: mean c_k (a zero-width interval), std 0
            assert st.at[f"mean_c{k}", "samples"] == pytest.approx(C_VALUES[k], abs=1e-6)
            assert st.at[f"mean_c{k}", "hi"] - st.at[f"mean_c{k}", "lo"] == pytest.approx(0, abs=1e-6)
            assert st.at[f"std_c{k}", "samples"] == pytest.approx(0, abs=1e-6)
            assert st.at[f"mean_c{k}", "data"] == pytest.approx(float(data[:, k].mean()), rel=1e-9)
            assert st.at[f"std_c{k}", "data"] == pytest.approx(float(data[:, k].std()), rel=1e-9)
        # one channel of three lies 0.5 beyond the range
        assert st.at["outside_frac", "samples"] == pytest.approx(1 / 3)
        tol = CLIP_TOL * 2
        outside = float(((data < -1 - tol) | (data > 1 + tol)).double().mean())
        assert st.at["outside_frac", "data"] == pytest.approx(outside)
        # SW_2 between the point mass at c and the data: E_theta (theta . (y - c))^2 = |y - c|^2 / D
        # for theta uniform on the unit sphere, so SW_2 = sqrt(mean_j |y_j - c|^2 / D) (256 random
        # projections: a Monte Carlo estimate within a few percent)
        d = data.flatten(1) - c.repeat_interleave(16)
        swd = math.sqrt(float(d.square().sum(1).mean()) / d.shape[1])
        assert st.at["swd", "samples"] == pytest.approx(swd, rel=0.05)
        assert st.at["swd", "lo"] <= st.at["swd", "samples"] <= st.at["swd", "hi"]
    assert console.count("SWD") == 2 and "outside the range 33.33%" in console


def test_stored_timesteps_are_the_models_and_the_grid_shows_64(tmp_path, monkeypatch):
    from biaskit import plots
    seen = {}
    original = plots.plot_image_table

    def spy(table, data_range, columns=None, cell_inches=1.6):
        seen.update(sizes=[len(x) for row in table.values() for x in row.values()], columns=columns,
                    inches=cell_inches)
        return original(table, data_range, columns, cell_inches)
    monkeypatch.setattr(plots, "plot_image_table", spy)
    out = _run(tmp_path, "--steps", "3", "--trajectory")
    z = np.load(out / "samples.npz")
    # 3 of the 19 trained steps, evenly: steps 0, 9, 18 of the sub-schedule = timesteps 1, 10, 19
    assert z["timesteps"].tolist() == [19, 10, 1] and z["t"].tolist() == [19, 10, 1]
    assert (out / "samples.png").stat().st_size > 0
    # all 64 samples in an 8 x 8 mosaic, 0.3 inch per 4-pixel image
    assert seen == {"sizes": [64], "columns": 8, "inches": pytest.approx(2.4)}
    # panels: H / 96 inches per image, 0.3..1 inch, 1.6 at least
    assert mosaic_inches(8, 28) == pytest.approx(2.4)
    assert mosaic_inches(8, 64) == pytest.approx(8 * 64 / 96)
    assert mosaic_inches(8, 256) == pytest.approx(8.0) and mosaic_inches(2, 8) == pytest.approx(1.6)


def test_data_of_another_shape_is_one_error(tmp_path, capsys):
    (tmp_path / "const.py").write_text(PLUGIN)
    rc = main(["sample", f"{tmp_path / 'const.py'}:Const", "--parameterization", "x0", "--diffusion-steps",
               "20", "--shape", "3,4,4", "--steps", "2", "--n", "4", "--out", str(tmp_path / "o"),
               "--no-progress", "--data", "gmm2d"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--data gmm2d" in err and "(3, 4, 4)" in err and "Traceback" not in err
