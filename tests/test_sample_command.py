"""`biaskit sample --data`: statistics of the samples against the data, checked on a model whose
samples are known exactly (x0_hat = c, so DDIM's last step returns c), against numbers computed
here from the data; the stored timesteps are the model's; the grid shows up to 64 samples."""

import json
import math
import re

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


def _eps_scaled_run(tmp_path, *extra):
    (tmp_path / "const.py").write_text(PLUGIN)
    out = tmp_path / "e"
    rc = main(["sample", f"{tmp_path / 'const.py'}:Const", "--parameterization", "x0", "--noise-schedule",
               "linear", "--diffusion-steps", "20", "--shape", "3,4,4", "--steps", "3", "--n", "16",
               "--out", str(out), "--no-progress", "--settings-check", "off", *extra])
    return rc, out


def test_eps_scale_divides_eps_hat_along_the_chain(tmp_path):
    """x0_hat = c: on x = alpha c + sigma e the model's eps_hat is e. Scaled (Ning et al. 2024),
    eps' = e / lambda and x0' = c + sigma e (1 - 1/lambda) / alpha, so DDIM keeps x = alpha c +
    sigma e with e' = e (alpha' sigma (1 - 1/lambda) / (alpha sigma') + 1/lambda) and ends at
    x0 = c + sigma e (1 - 1/lambda) / alpha: a factor g on e_T = x_T - alpha_T c (sigma_T = 1 up
    to abar_T), recomputed here in float64 from the schedule's abar."""
    from biaskit import get_schedule
    lam = 1.25
    rc, out = _eps_scaled_run(tmp_path, "--eps-scale", str(lam))
    assert rc == 0
    z = np.load(out / "samples.npz")
    ts = z["timesteps"].tolist()
    assert ts == [19, 10, 0]
    abar = get_schedule("linear", 20).abar.double()
    alpha, sigma = abar[ts].sqrt().tolist(), (1 - abar[ts]).sqrt().tolist()
    g = 1.0 / sigma[0]  # e_T = (x_T - alpha_T c) / sigma_T
    for i in range(2):
        g *= alpha[i + 1] * sigma[i] * (1 - 1 / lam) / (alpha[i] * sigma[i + 1]) + 1 / lam
    g *= sigma[2] * (1 - 1 / lam) / alpha[2]
    c = torch.tensor(C_VALUES, dtype=torch.float64).view(1, 3, 1, 1)
    x_T = torch.randn((16, 3, 4, 4), generator=torch.Generator().manual_seed(0)).double()
    want = c + g * (x_T - alpha[0] * c)
    np.testing.assert_allclose(z["x0"], want.numpy(), rtol=1e-5, atol=1e-5)
    assert abs(g) > 1e-3  # the scaling moves the samples off c
    assert json.loads((out / "sample_meta.json").read_text())["eps_scale"] == "1.25"


@pytest.mark.parametrize("value, message", [
    ("abc", "--eps-scale: expected B or B,K"), ("1,2,3", "--eps-scale: expected B or B,K"),
    ("nan", "--eps-scale: expected B or B,K"), ("0", "lambda_t must be > 0 .* got 0 at t = 0"),
    ("1,-0.1", "lambda_t must be > 0 .* got -0.9 at t = 19")])
def test_bad_eps_scale_is_one_error(tmp_path, capsys, value, message):
    rc, out = _eps_scaled_run(tmp_path, "--eps-scale", value)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert not out.exists()


def test_eps_scale_is_refused_on_a_process_grid(tmp_path, capsys):
    """EpsScaled reads the steps of the model's schedule: a sampler that walks a process model's
    own grid (flow_euler on a flow model) is refused before any sampling."""
    (tmp_path / "const.py").write_text(PLUGIN)
    rc = main(["sample", f"{tmp_path / 'const.py'}:Const", "--process", "flow", "--time-input", "t",
               "--shape", "3,4,4", "--sampler", "flow_euler", "--steps", "3", "--n", "4", "--out",
               str(tmp_path / "p"), "--no-progress", "--settings-check", "off", "--eps-scale", "1.01"])
    err = capsys.readouterr().err
    assert rc == 2 and "flow_euler walks the process's own noise levels" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "p").exists()
