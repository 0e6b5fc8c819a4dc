"""diffusers UNet2DModel folders whose scheduler is a flow-matching or EDM scheduler: the network
as diffusers calls it, closed forms of zero-output nets, and biaskit's sampling equal to the
plain diffusers loop with that scheduler."""

import json
import math

import numpy as np
import pytest
import torch

import biaskit
from biaskit.formulations import ProcessDenoiser
from biaskit.processes import VE, Flow
from biaskit.sampling import sample

diffusers = pytest.importorskip("diffusers")


def _unet(zero_out: bool, seed=0):
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                 layers_per_block=1, norm_num_groups=4, attention_head_dim=8,
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D")).eval()
    with torch.no_grad():
        for p in unet.parameters():  # diffusers zero-initialises some layers; make them count
            p.add_(0.05 * torch.randn_like(p))
        if zero_out:
            unet.conv_out.weight.zero_()
            unet.conv_out.bias.zero_()
    return unet


def _folder(tmp_path, scheduler, zero_out=False):
    """A pipeline folder (model_index.json, unet/, scheduler/) holding a tiny UNet2DModel."""
    unet = _unet(zero_out)
    folder = tmp_path / "pipe"
    unet.save_pretrained(folder / "unet")
    scheduler.save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
        "scheduler": ["diffusers", type(scheduler).__name__]}))
    return folder, unet


def _signs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.5 * (2 * torch.randint(0, 2, (n, 3, 8, 8), generator=g).float() - 1)  # m2 = 0.25


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_matching_folder_is_called_as_diffusers_calls_it(tmp_path, shift):
    folder, unet = _folder(tmp_path, diffusers.FlowMatchEulerDiscreteScheduler(shift=shift))
    d = biaskit.load(folder)
    assert isinstance(d, ProcessDenoiser) and isinstance(d.process, Flow) and d.target == "flow"
    assert d.process.shift == shift and d.info["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    i = torch.tensor([10, 500, 990])
    lam = d.view_logsnr[i]
    s = torch.sigmoid(-lam / 2)  # the flow sigma at that logsnr
    x_vp = torch.randn(3, 3, 8, 8)
    x = x_vp * ((1 - s) ** 2 + s**2).sqrt().float()[:, None, None, None]
    with torch.no_grad():
        u = unet(x, (s * 1000).float()).sample  # diffusers feeds timesteps = sigma * N
        pred = d(x_vp, i)
    assert torch.allclose(pred.out, u, atol=1e-5)
    assert torch.allclose(pred.x0_hat, x - s.float()[:, None, None, None] * u, atol=1e-5)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_edm_folder_is_called_as_diffusers_calls_it(tmp_path, kind):
    sched = diffusers.EDMEulerScheduler(sigma_min=0.01, sigma_max=50.0, sigma_data=0.6, rho=5.0,
                                        prediction_type=kind)
    folder, unet = _folder(tmp_path, sched)
    d = biaskit.load(folder)
    assert isinstance(d.process, VE) and d.target == "edm" and d.sigma_data == 0.6
    assert (d.process.t_min, d.process.t_max, d.process.rho) == (0.01, 50.0, 5.0)
    i = torch.tensor([0, 400, 999])
    sigma = torch.exp(-d.view_logsnr[i] / 2).float()
    x_vp = torch.randn(3, 3, 8, 8)
    x = x_vp * (1 + sigma**2).sqrt()[:, None, None, None]  # x0 + sigma eps
    col = sigma[:, None, None, None]
    with torch.no_grad():
        # diffusers' own preconditioning (scale_model_input, precondition_noise, precondition_outputs)
        out = unet(sched.precondition_inputs(x, col), sched.precondition_noise(sigma)).sample
        want = sched.precondition_outputs(x, out, col)
        got = d(x_vp, i).x0_hat
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)


def test_zero_output_flow_folder_has_x0_mse_s_squared_one_plus_m2(tmp_path):
    # u_hat = 0: x0_hat = x = (1 - s) x0 + s eps, so x0_mse = s^2 (1 + m2), m2 = 0.25 here
    folder, _ = _folder(tmp_path, diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), zero_out=True)
    d = biaskit.load(folder)
    ts = [5, 300, 700, 995]
    df = biaskit.probe.probe(d, _signs(256), timesteps=ts, n=256, progress=False, batch_size=256)
    np.testing.assert_allclose(df["logsnr"].to_numpy(), d.view_logsnr[ts].numpy(), rtol=1e-9)
    s = 1 / (1 + np.exp(df["logsnr"].to_numpy() / 2))
    truth = s**2 * 1.25
    # per element s^2 (eps - x0)^2 has relative sd about 1.1: 6 standard errors of 49152 terms
    assert np.all(np.abs(df["x0_mse"].to_numpy() / truth - 1) < 6 * 1.1 / math.sqrt(256 * 192))


def test_zero_output_edm_folder_is_c_skip_times_x(tmp_path):
    # F = 0: D = c_skip x, x0_mse = (c_skip - 1)^2 m2 + c_skip^2 sigma^2 (sigma_data 0.5, m2 0.25)
    folder, _ = _folder(tmp_path, diffusers.EDMDPMSolverMultistepScheduler(), zero_out=True)
    d = biaskit.load(folder)
    ts = [50, 400, 800, 990]
    df = biaskit.probe.probe(d, _signs(256), timesteps=ts, n=256, progress=False, batch_size=256)
    assert np.all(np.isfinite(df["x0_mse"].to_numpy()))
    sigma = np.exp(-df["logsnr"].to_numpy() / 2)
    c_skip = 0.25 / (sigma**2 + 0.25)
    truth = (c_skip - 1) ** 2 * 0.25 + c_skip**2 * sigma**2
    assert np.all(np.abs(df["x0_mse"].to_numpy() / truth - 1) < 0.05), (df["x0_mse"], truth)


def _diffusers_loop(unet, scheduler, x, steps):
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x
            out = unet(x_in, t).sample
            x = scheduler.step(out, t, x).prev_sample
    return x


@pytest.mark.parametrize("which", ["flow", "edm_euler", "edm_dpmpp_2m"])
def test_sampling_a_folder_equals_the_plain_diffusers_loop(tmp_path, which):
    # biaskit converts x0_hat back into what the scheduler takes; the UNet sees the same input up
    # to float32 rounding of the VP rescale: measured max |diff| at 3 / 8 steps 8.3e-7 / 4.8e-7
    # (flow, shift 3), 1.2e-6 / 7.2e-7 (EDM Euler), 1.2e-6 / 1.2e-6 (EDM DPM-Solver++ 2M); the
    # sampler takes sigma_min, sigma_max, rho, shift from the folder's process
    make = {"flow": lambda: diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
            "edm_euler": lambda: diffusers.EDMEulerScheduler(sigma_max=20.0),
            "edm_dpmpp_2m": lambda: diffusers.EDMDPMSolverMultistepScheduler(sigma_max=20.0)}[which]
    folder, unet = _folder(tmp_path, make())
    d = biaskit.load(folder)
    sampler = "flow_match_euler" if which == "flow" else which
    noise = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for steps in (3, 8):
        got = sample(d, noise, sampler=sampler, steps=steps, progress=False).x0
        # diffusers starts from noise * init_noise_sigma: sqrt(1 + sigma_max^2) for EDM, 1 for flow
        scheduler = make()
        want = _diffusers_loop(unet, scheduler, noise * getattr(scheduler, "init_noise_sigma", 1.0), steps)
        assert float((got - want).abs().max()) < 1e-5


def test_unsupported_schedulers_are_named_in_one_line(tmp_path):
    folder, _ = _folder(tmp_path, diffusers.ScoreSdeVeScheduler())
    with pytest.raises(ValueError, match=r"ScoreSdeVeScheduler is not supported.*FlowMatchEuler.*EDMEuler"):
        biaskit.load(folder)
    sched = diffusers.EDMDPMSolverMultistepScheduler(prediction_type="sample")
    folder2, _ = _folder(tmp_path / "b", sched)
    with pytest.raises(ValueError, match="epsilon and v_prediction only"):
        biaskit.load(folder2)
