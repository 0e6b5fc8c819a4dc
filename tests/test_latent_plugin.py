"""Plugin latent models outside diffusers (biaskit.loaders.latent_plugin): the user's denoiser,
encoder and decoder as model specs; latent normalisation given or computed from the encoded data;
images and point data, against closed forms of linear encoders and a zero denoiser."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biaskit.latent import probe_plugin_latent
from biaskit.loaders.latent_plugin import latent_normalisation, load_latent_plugin
from biaskit.probe.draws import draw_noise
from biaskit.schedules import get_schedule

PLUGIN = '''
import torch
from torch import nn

class Zero(nn.Module):
    def forward(self, x, t):
        return torch.zeros_like(x)

class Pool(nn.Module):          # images (N, 3, 16, 16) -> latents (N, 3, 8, 8)
    def forward(self, x):
        return nn.functional.avg_pool2d(x, 2)

class Up(nn.Module):
    def forward(self, z):
        return nn.functional.interpolate(z, scale_factor=2, mode="nearest")

class Proj(nn.Module):          # points (N, 3) -> latents (N, 2), a posterior with a mean
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
    def forward(self, x):
        class Posterior:
            pass
        p = Posterior()
        p.mean = self.lin(x)
        return p

def zero():
    return Zero()

def pool():
    return Pool()

def up():
    return Up()

def proj():
    torch.manual_seed(1)
    return Proj()

def lift():
    torch.manual_seed(2)
    return nn.Linear(2, 3)
'''


@pytest.fixture
def spec(tmp_path):
    f = tmp_path / "latent_plugin_nets.py"
    f.write_text(PLUGIN)
    return lambda name: f"{f}:{name}"


def _x_images(n=12):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1 + 0.3


def test_normalisation_from_encoded_data(spec):
    """global: shift = mean, scale = 1 / std (population) of every pooled element, by numpy;
    channel: per channel; given: as given."""
    x = _x_images()
    pooled = x.reshape(12, 3, 8, 2, 8, 2).mean(dim=(3, 5)).double().numpy()
    kw = dict(encoder_spec=spec("pool"), decoder_spec=spec("up"), noise_schedule="linear")
    pl = load_latent_plugin(spec("zero"), fit_data=x, **kw)
    assert float(pl.shift) == pytest.approx(pooled.mean(), rel=1e-5)
    assert float(pl.scale) == pytest.approx(1 / pooled.std(), rel=1e-5)
    assert "global: mean / std of 12 encoded" in pl.normalisation
    z = pl.encode(x).double()
    assert float(z.mean()) == pytest.approx(0, abs=1e-5) and float(z.std(correction=0)) == pytest.approx(1, rel=1e-5)
    pc = load_latent_plugin(spec("zero"), fit_data=x, normalisation="channel", **kw)
    assert np.allclose(pc.shift.flatten().numpy(), pooled.mean(axis=(0, 2, 3)), rtol=1e-5)
    assert np.allclose(pc.scale.flatten().numpy(), 1 / pooled.std(axis=(0, 2, 3)), rtol=1e-5)
    pg = load_latent_plugin(spec("zero"), normalisation="given", latent_shift=0.2, latent_scale=0.5, **kw)
    assert torch.allclose(pg.encode(x), (torch.from_numpy(pooled).float() - 0.2) * 0.5, atol=1e-6)
    assert torch.allclose(pg.decode(pg.encode(x)), torch.from_numpy(pooled).float().repeat_interleave(
        2, 2).repeat_interleave(2, 3), atol=1e-6)


def test_zero_denoiser_on_images_closed_form(spec):
    """eps_hat = 0: x0_hat = x_t / alpha = z0 + eps sigma / alpha, so decode(x0_hat) - decode(z0)
    = up(eps sigma / alpha / scale): brightness_i = mean(eps_i) sigma / (alpha scale), channel
    c likewise, on the probe's own draws."""
    x = _x_images()
    pl = load_latent_plugin(spec("zero"), encoder_spec=spec("pool"), decoder_spec=spec("up"),
                            noise_schedule="linear", fit_data=x)
    df, pix = probe_plugin_latent(pl, x, n=12, timesteps=[100, 800], progress=False, pixel_timesteps=[800])
    s = get_schedule("linear", 1000)
    eps = draw_noise(0, 800, 0, 12, (3, 8, 8)).double()
    k = float(s.sigma[800] / s.alpha[800]) / float(pl.scale)
    rows = pix[pix.reference == "decoded_latent"].set_index("statistic")
    assert rows.loc["brightness", "estimate"] == pytest.approx(float(eps.mean()) * k, rel=1e-4)
    for c in range(3):
        assert rows.loc[f"channel_{c}", "estimate"] == pytest.approx(float(eps[:, c].mean()) * k, rel=1e-4)
    assert df.attrs["metadata"]["latent"]["normalisation"].startswith("global")
    assert (df.x0_mse > 0).all() and set(pix.reference) == {"decoded_latent", "image"}


def test_zero_denoiser_on_points_closed_form(spec):
    """Point data (N, 3) through a linear encoder with a posterior mean and a linear decoder B:
    decode(x0_hat) - decode(z0) = B (eps sigma / alpha) / scale per channel (the bias cancels)."""
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(3))
    pl = load_latent_plugin(spec("zero"), encoder_spec=spec("proj"), decoder_spec=spec("lift"),
                            noise_schedule="linear", fit_data=x, normalisation="channel")
    assert pl.shift.shape == (1, 2)
    df, pix = probe_plugin_latent(pl, x, n=20, timesteps=[500], progress=False)
    s = get_schedule("linear", 1000)
    eps = draw_noise(0, 500, 0, 20, (2,)).double()
    B = pl.decoder.weight.double()
    want = (eps * float(s.sigma[500] / s.alpha[500]) / pl.scale.double()) @ B.T
    rows = pix[pix.reference == "decoded_latent"].set_index("statistic")
    for j in range(3):
        assert rows.loc[f"dim_{j}", "estimate"] == pytest.approx(float(want[:, j].mean()), rel=1e-4)
    assert rows.loc["mean", "estimate"] == pytest.approx(float(want.mean()), rel=1e-4)


def test_plugin_latent_errors(spec):
    x = _x_images(4)
    kw = dict(encoder_spec=spec("pool"), decoder_spec=spec("up"), noise_schedule="linear")
    with pytest.raises(ValueError, match="computed from the encoded training data"):
        load_latent_plugin(spec("zero"), **kw)
    with pytest.raises(ValueError, match="are the given normalisation"):
        load_latent_plugin(spec("zero"), fit_data=x, latent_scale=2.0, **kw)
    with pytest.raises(ValueError, match="latent normalisation 'std'"):
        load_latent_plugin(spec("zero"), fit_data=x, normalisation="std", **kw)
    with pytest.raises(ValueError, match="zero spread"):
        latent_normalisation(torch.ones(4, 3, 2, 2))
    with pytest.raises(ValueError, match="has no 'nope'"):
        load_latent_plugin(spec("zero"), encoder_spec=spec("nope"), decoder_spec=spec("up"),
                           noise_schedule="linear", fit_data=x)


def test_cli_plugin_latent_on_points_and_images(spec, tmp_path, capsys):
    """The command on a point file (normalisation from its train split) and on an image folder
    (given normalisation): data_bias.csv equals the Python call on the same data."""
    import json
    import pandas as pd
    from PIL import Image
    from biaskit.cli import main
    from biaskit.data import load_dataset
    pts = tmp_path / "pts.npy"
    np.save(pts, np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32))
    common = ["--timesteps", "200,900", "--samples", "16", "--no-progress", "--noise-schedule", "linear"]
    assert main(["probe", spec("zero"), "--encoder-spec", spec("proj"), "--decoder-spec", spec("lift"),
                 "--latent-norm", "channel", "--data", str(pts), "--out", str(tmp_path / "p"), *common]) == 0, \
        capsys.readouterr().err
    got = pd.read_csv(tmp_path / "p" / "data_bias.csv")
    ds = load_dataset(str(pts), seed=0)
    pl = load_latent_plugin(spec("zero"), encoder_spec=spec("proj"), decoder_spec=spec("lift"),
                            noise_schedule="linear", fit_data=ds.train, normalisation="channel")
    _, want = probe_plugin_latent(pl, ds.test, n=16, timesteps=[200, 900], progress=False)
    assert np.allclose(got["estimate"], want["estimate"], rtol=1e-5, atol=1e-7)
    meta = json.loads((tmp_path / "p" / "metadata.json").read_text())
    assert meta["latent"]["normalisation"].startswith("channel") and meta["normalisation_split"] == "train"
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            folder / f"{i}.png")
    assert main(["probe", spec("zero"), "--encoder-spec", spec("pool"), "--decoder-spec", spec("up"),
                 "--latent-shift", "0.1", "--latent-scale", "2", "--data", str(folder), "--data-option",
                 "size=16", "--out", str(tmp_path / "i"), *common]) == 0, capsys.readouterr().err
    bias = pd.read_csv(tmp_path / "i" / "data_bias.csv")
    assert {"brightness", "channel_2"} <= set(bias.statistic)
    capsys.readouterr()
    assert main(["probe", spec("zero"), "--encoder-spec", spec("pool"), "--data", str(folder),
                 "--out", str(tmp_path / "x")]) != 0
    assert "give both --encoder-spec and --decoder-spec (missing --decoder-spec)" in capsys.readouterr().err
