"""What a person reads from a probe: every t in the model's own timesteps (a model trained on
timesteps 1..T-1 reads t = 1..T-1), both ends of the probed range in the report, clip_frac with a
stated tolerance, and an image folder probed whole at the model's size. Expected numbers are
derived here from the definitions (the schedule's betas, eps_hat = 0, counts of files)."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from biaskit.cli import main
from test_probe import Fn  # net(x, t) = fn(x, t) as a module
from biaskit.denoiser import Denoiser
import biaskit
from biaskit.plots import plot_x0_grid
from biaskit.probe import CLIP_TOL, probe
from biaskit.report import cell_widths, headline, high_noise_share, timestep_span, write_report
from biaskit.results import load_results
from biaskit.schedules import get_schedule, respace

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / ".." / "shared" / "checkpoints" / "mnist-ddpm-cnn" / "ddpm_mnist_starter.pth"
MNIST_FLAGS = ["--model-spec", f"{ROOT / 'examples' / 'mnist_ddpm_cnn.py'}:factory", "--state-dict-prefix",
               "gt.", "--abar-key", "alpha_t", "--time-input", "scaled", "--time-scale", "0.001",
               "--data-range=-0.5,0.5", "--trained-timesteps", "1:999"]

T = 20
# linear betas from 1e-4 to 0.5 over T = 20 steps (snr from 1e4 to 2e-4), written out:
# abar_t = prod_{s <= t} (1 - beta_s)
ABAR = np.cumprod(1 - np.linspace(1e-4, 0.5, T))
SNR = ABAR / (1 - ABAR)


def schedule():
    return get_schedule("linear", T, beta_end=0.5)


def sub_model(fn=lambda x, t: torch.zeros_like(x), parameterization="eps"):
    """A model trained on timesteps 1..T-1 of a T-step linear schedule (as --trained-timesteps 1:19)."""
    return Denoiser(Fn(fn), respace(schedule(), list(range(1, T))), parameterization)


def images(n=64, seed=0):
    return 0.3 * torch.randn(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# item 5: the model's timesteps

def test_probe_reads_the_models_timesteps_of_a_sub_schedule():
    d = sub_model()
    df = probe(d, images(), timesteps=[1, 10, 19], n=64, progress=False)
    assert df["t"].tolist() == [1, 10, 19] and df["schedule_index"].tolist() == [0, 9, 18]
    np.testing.assert_allclose(df["snr"], SNR[[1, 10, 19]], rtol=1e-9)
    # eps_hat = 0: x0_hat - x0 = eps / sqrt(snr), so x0_mse estimates 1 / snr(t) of the model's t
    # (a mean of 64 x 48 squared normals: relative sd 2.6%)
    np.testing.assert_allclose(df["x0_mse"] * SNR[[1, 10, 19]], 1.0, atol=0.12)
    assert df.attrs["metadata"]["timesteps"] == [1, 10, 19]
    # the same network on the full schedule sees the same draws at the same model timestep
    full = Denoiser(d.net, schedule(), "eps")
    np.testing.assert_array_equal(probe(full, images(), timesteps=[10, 19], n=64, progress=False)["x0_mse"],
                                  df["x0_mse"].to_numpy()[1:])
    with pytest.raises(ValueError, match=r"timestep\(s\) 0 not in the model's schedule: it has t = 1..19"):
        probe(d, images(), timesteps=[0, 5], n=8, progress=False)
    # an even grid over the 19 trained steps runs from the first to the last trained timestep
    assert probe(d, images(), num_timesteps=3, n=8, progress=False)["t"].tolist() == [1, 10, 19]
    # a failure names the model's timestep (schedule step 9 is t = 10)
    bad = sub_model(lambda x, t: torch.where((t >= 10).view(-1, 1, 1, 1), torch.nan, 0.0).expand_as(x).clone())
    with pytest.raises(ValueError, match=r"NaN or inf at t=10 "):
        probe(bad, images(), timesteps=[5, 10], n=8, progress=False)


def test_report_and_grid_name_the_models_timesteps(tmp_path):
    c = 0.3
    d = sub_model(lambda x, t: torch.full_like(x, c))
    # eps_hat = c: the channel bias of x0_hat is -c / sqrt(snr), largest at the last trained t = 19
    df = probe(d, images(), num_timesteps=T - 1, n=64, progress=False)
    text = write_report(tmp_path, df).read_text()
    assert re.search(r"bias of x0_hat: \w+, -[\d.]+ \[.*\] at t = 19 ", text), text
    rows = re.findall(r"^\| (\d+) \| ", text, flags=re.M)
    assert rows[0] == "1" and rows[-1] == "19"          # both ends of the trained range
    assert "timesteps t = 1..19 of the model's 20" in text
    fig = plot_x0_grid(d, images(4), [1, 19], n=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["x0", "x_t, t=1", "x0_hat, t=1", "x_t, t=19", "x0_hat, t=19"]
    with pytest.raises(ValueError, match="not in the model's schedule"):
        plot_x0_grid(d, images(4), [0], n=2)


def test_high_noise_share_over_the_trained_span():
    assert timestep_span(schedule()) == (T, (0, T - 1))
    assert timestep_span(respace(schedule(), list(range(1, T))).to_dict()) == (T, (1, T - 1))
    # t = 1..19 each one step wide on [0.5, 19.5]; t >= 10 holds 10 of the 19
    assert np.allclose(cell_widths(np.arange(1, T), T, (1, T - 1)), 1.0)
    assert high_noise_share(np.arange(1, T), np.ones(T - 1), T, (1, T - 1)) == pytest.approx(10 / 19)
    # grid {1, 19} on [0.5, 19.5]: cells [0.5, 10] and [10, 19.5], 9.5 steps each
    assert np.allclose(cell_widths([1, 19], T, (1, 19)), [9.5, 9.5])


# ---------------------------------------------------------------------------------------------
# item 9: both ends in the headlines, clip tolerance

def test_headline_levels_include_both_ends():
    ts = np.arange(3, 90, 7)
    d = pd.DataFrame({"t": ts, "snr": np.geomspace(100, 0.01, ts.size), "x0_mse": np.ones(ts.size)})
    levels = [r["t"] for r in headline(d, 100)["levels"]]
    assert levels[0] == 3 and levels[-1] == ts[-1] and len(levels) == 7


def test_clip_frac_counts_only_values_beyond_the_tolerance(tmp_path):
    w = 2.0  # width of the default data range [-1, 1]
    edge = [-1.0, -1 - 0.5 * CLIP_TOL * w, -1 - 3 * CLIP_TOL * w, 1 + 3 * CLIP_TOL * w, 1.0, 0.0]
    x0_hat = torch.tensor(edge)
    d = Denoiser(Fn(lambda x, t: x0_hat.expand_as(x).clone()), schedule(), "x0")
    df = probe(d, torch.zeros(8, len(edge)), timesteps=[1, 19], n=8, progress=False)
    # on the edge and within the tolerance: inside; 3 tolerances beyond either end: outside
    np.testing.assert_allclose(df["clip_frac"], [2 / 6, 2 / 6], rtol=1e-6)
    text = write_report(tmp_path, df).read_text()
    assert f"outside the data range by more than {CLIP_TOL:g} x its width: 33.3% at t = 1" in text
    assert df.attrs["metadata"]["clip_tol"] == CLIP_TOL


# ---------------------------------------------------------------------------------------------
# item 6: an image folder is the evaluation set, read at the model's size

def _unet_folder(tmp_path, size=8):
    from diffusers import UNet2DModel
    unet = UNet2DModel(sample_size=size, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)
    folder = tmp_path / "unet"
    unet.save_pretrained(folder)
    return folder


def test_probe_of_an_image_folder_uses_all_of_it_at_the_models_size(tmp_path, capsys):
    from PIL import Image
    imgs = tmp_path / "imgs"
    (imgs / "sub").mkdir(parents=True)
    for i in range(23):  # 23 files: the default 10% split would keep 2
        Image.new("RGB", (24, 20), (10 * i, 5 * i, 0)).save(imgs / ("sub" if i % 2 else "") / f"{i}.png")
    out = tmp_path / "out"
    rc = main(["probe", str(_unet_folder(tmp_path)), "--data", str(imgs), "--timesteps", "500",
               "--samples", "23", "--out", str(out), "--no-plots", "--no-progress"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "no scheduler config" in err  # the CLI prints warnings as one line
    assert "all 23 images are the evaluation set, read at 8x8 L (the model's size and channels)" in err
    df, meta = load_results(out)
    assert df["n"].tolist() == [23] and meta["data"]["shape"] == [1, 8, 8]
    assert meta["data"]["dataset"]["n_train"] == 0 and meta["data"]["dataset"]["n_test"] == 23


def test_sample_shape_from_what_each_format_records(tmp_path):
    from biaskit.loaders.build import image_shape
    assert image_shape(16, 3) == (3, 16, 16) and image_shape([8, 12], 2) == (2, 8, 12)  # diffusers
    assert image_shape(None, 3) is None  # an ADM state dict without --image-size
    with pytest.warns(UserWarning, match="no scheduler config"):
        assert biaskit.load(_unet_folder(tmp_path, size=8)).shape == (1, 8, 8)
    assert biaskit.load("oracle:gmm2d").shape == (2,)
    assert Denoiser(Fn(lambda x, t: x), schedule()).shape is None


# ---------------------------------------------------------------------------------------------
# the real third-party MNIST checkpoint, trained on timesteps 1..999

@pytest.mark.skipif(not MNIST.is_file(), reason=f"third-party checkpoint not present at {MNIST}")
def test_real_mnist_checkpoint_reads_its_own_timesteps(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["probe", str(MNIST), *MNIST_FLAGS, "--data", "mnist", "--timesteps", "1,999",
                 "--samples", "32", "--out", str(out), "--no-progress", "--no-plots"]) == 0
    console = capsys.readouterr().out
    df, meta = load_results(out)
    assert df["t"].tolist() == [1, 999] and df["schedule_index"].tolist() == [0, 998]
    abar = torch.load(MNIST, map_location="cpu", weights_only=True)["alpha_t"].double()  # abar, 1001 steps
    np.testing.assert_allclose(df["snr"], (abar / (1 - abar))[[1, 999]].numpy(), rtol=1e-6)
    assert re.search(r"^\s*999 ", console, flags=re.M)
    report = (out / "report.md").read_text()
    assert "at t = 999 " in report and "| 1 |" in report and "| 999 |" in report
    # at t = 1 the background (80% of MNIST's pixels, on the range edge) is not counted as outside
    assert df["clip_frac"].iloc[0] < 0.02
    # sampling: the stored timesteps are the model's, first and last trained one for two steps
    s = tmp_path / "s"
    assert main(["sample", str(MNIST), *MNIST_FLAGS, "--shape", "1,28,28", "--sampler", "ddim",
                 "--steps", "2", "--n", "2", "--out", str(s), "--no-progress"]) == 0
    assert np.load(s / "samples.npz")["timesteps"].tolist() == [999, 1]
