"""The training-loop monitor: each record is ``biaskit probe`` of the weights at that step (to
1e-6, through the command line), the change between records is the paired t-interval computed here
by hand, and the examples in examples/ run on tiny models."""

import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import biaskit
from biaskit.probe import draw_noise, select_samples

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _numeric(df):
    return [c for c in df.columns if df[c].dtype.kind in "fi" and c not in ("step", "reference_step")]


def test_plain_loop_records_equal_the_probe_command_of_the_saved_weights(tmp_path, capsys):
    from biaskit.cli import main as cli
    ex = runpy.run_path(str(EXAMPLES / "monitor_pytorch_loop.py"))
    monitor = ex["main"](steps=4, every=2, out=tmp_path / "mon", n=48, save=tmp_path / "w.safetensors")
    assert "288 forward passes per record" in capsys.readouterr().out  # 6 timesteps x 48 samples
    assert monitor.cost == {"forward_passes_per_record": 288, "batched_calls_per_record": 2,
                            "timesteps": 6, "samples": 48}
    csv = pd.read_csv(tmp_path / "mon" / "monitor.csv")
    assert list(csv.groupby("kind").step.unique().apply(list)) == [[4], [2, 4]]  # difference, model
    rc = cli(["probe", str(tmp_path / "w.safetensors"), "--model-spec",
              f"{EXAMPLES / 'monitor_pytorch_loop.py'}:factory", "--noise-schedule", "linear",
              "--diffusion-steps", "1000", "--data", "gmm2d", "--timesteps", ",".join(map(str, ex["TIMESTEPS"])),
              "--samples", "48", "--out", str(tmp_path / "probe"), "--no-plots", "--no-progress"])
    assert rc == 0
    probed = pd.read_csv(tmp_path / "probe" / "per_timestep.csv")
    last = csv[(csv.step == 4) & (csv.kind == "model")].reset_index(drop=True)
    cols = _numeric(probed)
    assert {"eps_mse", "x0_mse", "x0_bias_l2_hi", "excess_mse"} <= set(cols)
    np.testing.assert_allclose(last[cols].to_numpy(float), probed[cols].to_numpy(float), rtol=1e-6, atol=1e-6)


def test_diffusers_loop_equals_probe_and_keeps_the_loop_state():
    ex = runpy.run_path(str(EXAMPLES / "monitor_diffusers_loop.py"))
    monitor, unet, scheduler, data = ex["main"](steps=2, every=1, n=24, width=8, batch=8,
                                                prediction_type="v_prediction")
    assert unet.training  # the loop's mode is restored after each record
    probed = biaskit.probe(biaskit.load(unet, scheduler=scheduler), data, timesteps=ex["TIMESTEPS"], n=24,
                           progress=False)
    last = monitor.records[-1]
    last = last[last.kind == "model"].reset_index(drop=True)
    cols = _numeric(probed)
    np.testing.assert_allclose(last[cols].to_numpy(float), probed[cols].to_numpy(float), rtol=1e-6, atol=1e-6)


class Recorder:
    def __init__(self):
        self.calls = []

    def add_scalar(self, tag, value, step):
        self.calls.append((tag, value, step))


def test_change_between_records_is_the_paired_t_interval():
    """eps_mse of the difference row: mean and t-interval of e_i(w1) - e_i(w0), with
    e_i(w) = mean_j (net_w(x_t)_ij - eps_ij)^2 on the probe's samples and draws, computed here."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    data = biaskit.data.load_dataset("gmm2d")
    writer, n, t, seed = Recorder(), 40, 300, 5
    schedule = biaskit.schedules.linear(1000)
    mon = biaskit.Monitor(lambda x, tt: net(x), data, schedule=schedule, timesteps=[t, 900], n=n, seed=seed,
                          every=2, writer=writer)
    rng = torch.get_rng_state()
    assert mon.step(1) is None and mon.step(2) is not None
    assert torch.equal(rng, torch.get_rng_state())  # the loop's random stream is not touched
    w0 = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rec = mon.step(4)
    x0 = select_samples(data, n, seed)[0]
    eps = draw_noise(seed, t, 0, n, (2,))
    a = schedule.abar[t].float()
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps

    def err(params):
        with torch.no_grad():
            for p, v in zip(net.parameters(), params):
                p.copy_(v)
            return (net(x_t) - eps).pow(2).mean(1).double().numpy()

    w1 = [p.detach().clone() for p in net.parameters()]
    d = err(w1) - err(w0)
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / np.sqrt(n)
    row = rec[(rec.kind == "difference") & (rec.t == t)].iloc[0]
    assert row.reference_step == 2
    np.testing.assert_allclose([row.eps_mse, row.eps_mse_lo, row.eps_mse_hi],
                               [d.mean(), d.mean() - half, d.mean() + half], rtol=1e-5, atol=1e-8)
    tags = {c[0] for c in writer.calls}
    assert f"biaskit/eps_mse/t={t}" in tags and f"biaskit/eps_mse_change/t={t}" in tags
    assert {c[2] for c in writer.calls} == {2, 4}
    assert len(mon.frame()) == 2 + 2 + 2  # two model records and one difference, two t each


def test_logsnr_grid_and_errors():
    net = torch.nn.Linear(2, 2)
    data = biaskit.data.load_dataset("gmm2d")
    schedule = biaskit.schedules.cosine(1000)
    mon = biaskit.Monitor(net, data, schedule=schedule, logsnr=[4.0, 0.0, -4.0], n=8)
    got = schedule.logsnr[torch.as_tensor(mon.options.timesteps)]
    # the nearest steps: the schedule's logsnr moves by < 0.1 per step in this range
    np.testing.assert_allclose(sorted(got.tolist()), [-4.0, 0.0, 4.0], atol=0.1)
    edm = biaskit.Monitor(net, data, process="edm", logsnr=[4.0, 0.0, -4.0], n=8)
    np.testing.assert_allclose(sorted(edm.denoiser.schedule.logsnr.tolist()), [-4.0, 0.0, 4.0], atol=1e-9)
    with pytest.raises(ValueError, match="already a Denoiser: drop schedule"):
        biaskit.Monitor(biaskit.load(net, schedule="linear"), data, schedule="linear")
    with pytest.raises(ValueError, match="every must be a positive"):
        biaskit.Monitor(net, data, schedule="linear", every=0)
    with pytest.raises(ValueError, match="one of timesteps=, num_timesteps= or logsnr="):
        biaskit.Monitor(net, data, schedule="linear", timesteps=[1], logsnr=[0.0])
