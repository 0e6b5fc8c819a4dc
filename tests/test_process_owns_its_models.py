"""A process class owns how its models are built and sampled by diffusers: a new Process subclass,
defined here and registered nowhere in biaskit, is loaded (in memory and as a plugin), and a
diffusers EDM scheduler walks its own noise levels, with no biaskit module changed."""

import math

import numpy as np
import pytest
import torch

import biaskit
from biaskit.denoiser import Denoiser
from biaskit.formulations import ProcessDenoiser, denoiser_under
from biaskit.loaders.plugin import load_plugin
from biaskit.process_base import Process, _f64
from biaskit.processes import DiscreteVP, Flow
from biaskit.sampling import sample
from biaskit.sampling.process_schedulers import make_process_scheduler, scheduler_logsnr
from biaskit.schedules import get_schedule


class SqrtVP(Process):
    """A VP with alpha(t)^2 = 1 - t, sigma(t)^2 = t: logsnr = log((1 - t) / t), t = sigmoid(-logsnr)."""

    name, t_min, t_max = "sqrt_vp", 1e-3, 1 - 1e-3

    def alpha(self, t):
        return (1 - _f64(t)).sqrt()

    def sigma(self, t):
        return _f64(t).sqrt()

    def t_of_logsnr(self, logsnr):
        return torch.sigmoid(-_f64(logsnr))


class SquaredVE(Process):
    """alpha = 1, sigma(t) = t^2 on t in [0.1, 8] (sigma 0.01 .. 64), walked by EDM's schedulers."""

    name, t_min, t_max, default_target, diffusers_kind = "squared_ve", 0.1, 8.0, "x0", "edm"

    def alpha(self, t):
        return torch.ones_like(_f64(t))

    def sigma(self, t):
        return _f64(t) ** 2

    def t_of_logsnr(self, logsnr):
        return torch.exp(-_f64(logsnr) / 4)

    def scheduler_defaults(self, sigma_data=0.5):
        return {"sigma_min": self.t_min ** 2, "sigma_max": self.t_max ** 2, "rho": 3.0,
                "sigma_data": sigma_data}


class Recorder(torch.nn.Module):
    """Predicts the constant c and records the time inputs it is fed."""

    def __init__(self, c=0.0):
        super().__init__()
        self.c, self.fed = c, []

    def forward(self, x, t):
        self.fed.append(t.detach().clone())
        return torch.full_like(x, self.c)


def _karras(n, smin, smax, rho):
    # Karras et al. 2022, Eq. 5, written out
    return [(smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
            for i in range(n)]


def test_a_new_process_is_loaded_in_memory_as_a_process_denoiser():
    net = Recorder(c=0.5)
    den = biaskit.load(net, process=SqrtVP(), name="sqrt")
    assert isinstance(den, ProcessDenoiser) and isinstance(den.process, SqrtVP)
    assert den.target == "eps" and den.source.extras["process"] == {"process": "sqrt_vp"}
    x, i = torch.randn(3, 2, dtype=torch.float64), torch.tensor([0, 400, 999])
    pred = den(x, i)
    lam = den.view_logsnr[i]
    t = torch.sigmoid(-lam)  # closed form of this process's time at logsnr
    np.testing.assert_allclose(net.fed[-1].numpy(), t.numpy(), rtol=1e-12)  # fed t (its own)
    # a VP process: x is x_vp; eps target 0.5 -> x0_hat = (x - sigma 0.5) / alpha
    want = (x - t.sqrt()[:, None] * 0.5) / (1 - t).sqrt()[:, None]
    np.testing.assert_allclose(pred.x0_hat.numpy(), want.numpy(), rtol=1e-10)


def test_a_new_process_is_loaded_as_a_plugin(tmp_path):
    (tmp_path / "netfile.py").write_text(
        "import torch\n\ndef make():\n    return torch.nn.Linear(2, 2)\n")
    spec = f"{tmp_path / 'netfile.py'}:make"
    den = load_plugin(None, spec, process=SqrtVP(), parameterization="x0", time_scale=1000.0)
    assert isinstance(den, ProcessDenoiser) and isinstance(den.process, SqrtVP)
    assert den.target == "x0" and den.time_scale == 1000.0 and not den.net.training
    with pytest.raises(ValueError, match=r"--flow-shift set\(s\) a named process's parameters"):
        load_plugin(None, spec, process=SqrtVP(), flow_shift=2.0)
    with pytest.raises(ValueError, match="replaces the discrete schedule: drop noise_schedule"):
        load_plugin(None, spec, process=SqrtVP(), noise_schedule="linear")


def test_a_new_process_with_a_diffusers_kind_gets_its_scheduler_config():
    den = biaskit.load(Recorder(), process=SquaredVE(), time_input="sigma")
    config = make_process_scheduler("edm_euler", den).config
    assert (config.sigma_min, config.sigma_max, config.rho, config.sigma_data) == \
        pytest.approx((0.01, 64.0, 3.0, 0.5))
    # the scheduler's own noise levels are Karras's on [0.01, 64] with rho 3: logsnr = -2 log sigma
    lam = scheduler_logsnr("edm_euler", den, 5)
    want = [-2 * math.log(s) for s in _karras(5, 0.01, 64.0, 3.0)]
    np.testing.assert_allclose(lam.numpy(), want, rtol=1e-5)
    # sampled by it, the network is fed those sigmas (its sigma(t) = t^2 at t = exp(-logsnr / 4))
    net = den.net
    sample(den, (4, 2), sampler="edm_euler", steps=5, progress=False)
    np.testing.assert_allclose(torch.stack(net.fed)[:, 0].numpy(), _karras(5, 0.01, 64.0, 3.0),
                               rtol=1e-5)
    # a process without a diffusers kind (or of the other kind) gets the scheduler's own defaults
    plain = make_process_scheduler("edm_euler", biaskit.load(Recorder(), process=SqrtVP())).config
    assert (plain.sigma_min, plain.sigma_max) == pytest.approx((0.002, 80.0))
    flow = make_process_scheduler("edm_euler", biaskit.load(Recorder(), process=Flow(shift=3.0))).config
    assert flow.sigma_max == pytest.approx(80.0)


def test_the_discrete_process_builds_a_denoiser_on_its_schedule():
    schedule = get_schedule("linear", 50)
    den = biaskit.load(Recorder(), process=DiscreteVP(schedule))
    assert type(den) is Denoiser and den.schedule is schedule and den.time_input == "index"
    assert den.parameterization == "eps"
    with pytest.raises(ValueError, match="target_sign=-1 applies to a continuous process"):
        denoiser_under(DiscreteVP(schedule), Recorder(), target_sign=-1)


def test_loader_process_errors_are_one_line():
    with pytest.raises(ValueError, match=r"process='bogus' is not a process name \(edm, flow"):
        biaskit.load(Recorder(), process="bogus")
    # process flags without a process are refused in memory too (they were ignored)
    with pytest.raises(ValueError, match=r"--flow-shift need\(s\) --process"):
        biaskit.load(Recorder(), schedule="linear", flow_shift=3.0)
