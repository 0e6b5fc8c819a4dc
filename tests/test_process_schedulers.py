"""diffusers' flow-matching and EDM schedulers as samplers of biaskit models, against biaskit's own
samplers on the same noise levels and against closed-form probability-flow endpoints."""

import math

import numpy as np
import pytest
import torch

from biaskit.formulations import ProcessDenoiser, process_oracle
from biaskit.mixture import GaussianMixture
from biaskit.oracle import oracle_denoiser
from biaskit.processes import VE, Flow
from biaskit.sampling import ModelCall, ddim, flow_euler, model_calls, sample, scheduler_logsnr
from biaskit.sampling.run import sampling_grid
from biaskit.schedules import get_schedule

pytest.importorskip("diffusers")

F32 = 2.0**-23  # float32 unit roundoff: diffusers keeps its state and sigmas in float32


def _gmm():
    means = torch.tensor([[1.0, -0.5, 0.2], [-0.8, 0.4, 0.0], [0.1, 0.9, -1.1]], dtype=torch.float64)
    return GaussianMixture.isotropic([0.5, 0.3, 0.2], means, 0.3)


def _noise(seed=1, n=64, d=3):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _same_levels(name, den, steps, noise, native):
    """(diffusers' x0 and trajectory, biaskit's ``native`` sampler's x0 on the same view)."""
    r = sample(den, noise, sampler=name, steps=steps, progress=False, return_trajectory=True)
    view, grid = sampling_grid(name, den, steps)
    call = ModelCall(view, grid, False, noise.device)
    x0 = native(call, noise, grid) if native is flow_euler else native(call, noise, grid, eta=0.0)
    return r, x0


def _linear_velocity(x, t):
    # a toy flow net: u_hat = 0.5 x + 0.2 (t)  (t the process time fed as is)
    return 0.5 * x + 0.2 * t[:, None].to(x.dtype)


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("steps", [1, 2, 5, 12])
def test_flow_match_euler_is_biaskits_flow_euler(shift, steps):
    # both are z' = z + (s' - s) u_hat on the scheduler's sigmas s; diffusers holds z and s in
    # float32, so per step z moves by O(u) * (one rounding of s and of z): measured max |diff|
    # (oracle / linear net) at 1, 2, 5, 12 steps: shift 1: 0 / 0, 7.5e-9 / 0, 1.2e-7 / 1.2e-7,
    # 4.8e-7 / 2.4e-7; shift 3: 0 / 0, 3e-8 / 6e-8, 1.2e-7 / 1.2e-7, 2.4e-7 / 1.2e-7
    noise = _noise()
    oracle = process_oracle(_gmm(), Flow(shift=shift), "flow")
    linear = ProcessDenoiser(_linear_velocity, Flow(shift=shift), "flow", time_input="t")
    for den in (oracle, linear):
        r, x0 = _same_levels("flow_match_euler", den, steps, noise, flow_euler)
        assert r.nfe == steps == model_calls("flow_match_euler", den, steps)
        assert float((r.x0 - x0).abs().max()) < 16 * steps * F32 * (1 + float(noise.abs().max()))
        assert r.trajectory.x0_hat.shape == (steps, 64, 3)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_match_euler_walks_diffusers_own_sigmas(shift):
    from diffusers import FlowMatchEulerDiscreteScheduler
    n = 6
    ref = FlowMatchEulerDiscreteScheduler(shift=shift)
    ref.set_timesteps(n)
    s = ref.sigmas[:-1].double()
    fed = []

    def net(x, t):
        fed.append(t.clone())
        return torch.zeros_like(x)

    den = ProcessDenoiser(net, Flow(shift=shift), "flow", time_input="sigma")
    r = sample(den, (5, 2), sampler="flow_match_euler", steps=n, progress=False, return_trajectory=True)
    # the net was fed the scheduler's sigmas (the process's sigma(t) = s), logsnr = 2 log((1-s)/s)
    np.testing.assert_allclose(torch.stack(fed)[:, 0].numpy(), s.numpy(), rtol=1e-6)
    np.testing.assert_allclose(r.trajectory.logsnr.numpy()[1:], (2 * (torch.log1p(-s) - s.log())).numpy()[1:],
                               rtol=1e-9)
    assert r.trajectory.logsnr[0] == -math.inf  # diffusers starts at s = 1: pure noise
    # a zero velocity never moves: x0 = the initial noise (x_1 = eps)
    assert torch.equal(r.x0, r.trajectory.x_t[0])


@pytest.mark.parametrize("name", ["edm_euler", "edm_dpmpp_2m", "flow_match_euler"])
def test_flow_and_edm_schedulers_on_a_vp_model_are_their_vp_counterparts(name):
    # a discrete VP model is exact only at its steps, so these schedulers walk its kept steps.
    # EDM's Euler step x' = x + (s' - s)(x - D)/s = D + s'(x - D)/s is DDIM in VE coordinates, the
    # flow Euler step is DDIM in flow coordinates, and EDM DPM-Solver++(2M) is diffusers' VP
    # DPM-Solver++(2M) on the same logsnr grid: the samples must agree (measured at 4, 10, 25
    # steps: 8.9e-7, 6.6e-7, 7.2e-7 (edm_euler); 7.2e-7, 1.3e-6, 3e-6 (edm_dpmpp_2m); 2.4e-7,
    # 5.4e-7, 1.2e-6 (flow_match_euler))
    vp = oracle_denoiser(_gmm(), get_schedule("linear", 1000))
    noise = _noise(2)
    other = "dpmpp_2m" if name == "edm_dpmpp_2m" else "ddim"
    for n in (4, 10, 25):
        a = sample(vp, noise, sampler=name, steps=n, progress=False, spacing="trailing")
        b = sample(vp, noise, sampler=other, steps=n, progress=False, spacing="trailing")
        assert a.timesteps == b.timesteps
        assert float((a.x0 - b.x0).abs().max()) < 1e-5


@pytest.mark.parametrize("target", ["edm", "x0", "eps"])
@pytest.mark.parametrize("steps", [1, 2, 5, 20])
def test_edm_euler_is_ddim_on_the_scheduler_sigmas(target, steps):
    # the state is x0 + sigma eps with sigma up to 80, so float32 rounding of |z| <= 80 (1 + 3)
    # is 80 * 4 * 1.2e-7 = 3.8e-5: measured (edm and x0 / eps targets) at 1, 2, 5, 20 steps
    # 1.8e-5 / 0, 1.4e-5 / 9.6e-6, 6e-7 / 7.6e-7, 1.3e-6 / 7.7e-7
    noise = _noise(3)
    den = process_oracle(_gmm(), VE(), target)
    r, x0 = _same_levels("edm_euler", den, steps, noise, ddim)
    assert float((r.x0 - x0).abs().max()) < 4 * 80 * F32 * (1 + float(noise.abs().max()))
    lam = scheduler_logsnr("edm_euler", den, steps)
    np.testing.assert_allclose(r.trajectory.logsnr.numpy(), lam.numpy(), rtol=1e-12)
    # Karras et al. 2022 Eq. 5 (rho 7, 0.002 .. 80) is the scheduler's grid
    i = np.arange(steps) / max(steps - 1, 1)
    karras = (80 ** (1 / 7) + i * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(np.exp(-lam.numpy() / 2), karras, rtol=1e-6)


MU2, S2 = [0.5, -0.3], 0.4


def _edm_error(name, steps, noise):
    # PF ODE of N(mu, s^2 I) under VE: (x - mu) / sqrt(s^2 + sigma^2) is constant, so from
    # x = noise sqrt(1 + sigma_max^2) (VP noise at sigma_max) the endpoint is
    # mu + s (x - mu) / sqrt(s^2 + sigma_max^2)
    den = process_oracle(GaussianMixture.isotropic([1.0], torch.tensor([MU2], dtype=torch.float64), S2),
                         VE(), "edm")
    mu = torch.tensor(MU2, dtype=torch.float64)
    x = noise.double() * math.sqrt(1 + 80.0**2)
    exact = mu + S2 * (x - mu) / math.sqrt(S2**2 + 80.0**2)
    return float((sample(den, noise, sampler=name, steps=steps, progress=False).x0 - exact).abs().max())


@pytest.mark.parametrize("name,order", [("edm_euler", 1), ("edm_dpmpp_2m", 2)])
def test_edm_schedulers_converge_to_the_gaussian_probability_flow_endpoint(name, order):
    noise = _noise(4, 256, 2)
    # measured at 16, 32, 64, 128 steps: edm_euler 0.245, 0.125, 0.0629, 0.0316 (order 0.98,
    # 0.99, 0.99); edm_dpmpp_2m 0.116, 0.0251, 5.6e-3, 1.31e-3 (order 2.21, 2.16, 2.09)
    errs = {n: _edm_error(name, n, noise) for n in (16, 32, 64, 128)}
    orders = [math.log2(errs[n] / errs[2 * n]) for n in (16, 32, 64)]
    assert all(order - 0.2 < o < order + 0.4 for o in orders), (errs, orders)
    assert errs[128] < (0.04 if order == 1 else 2e-3)


def test_unsupported_and_refused_settings_are_named():
    den = process_oracle(_gmm(), Flow(), "flow")
    with pytest.raises(ValueError, match="FlowMatchHeunDiscreteScheduler.*flow_match_euler"):
        sample(den, (2, 3), sampler="FlowMatchHeunDiscreteScheduler", steps=3, progress=False)
    with pytest.raises(ValueError, match="use_dynamic_shifting"):
        sample(den, (2, 3), sampler="flow_match_euler", steps=3, progress=False,
               scheduler_kwargs={"use_dynamic_shifting": True})
    with pytest.raises(ValueError, match="takes no"):
        sample(den, (2, 3), sampler="edm_euler", steps=3, progress=False, scheduler_kwargs={"shift": 2})
    zero_snr = oracle_denoiser(_gmm(), get_schedule("linear", 1000, zero_terminal_snr=True))
    with pytest.raises(ValueError, match="finite sigma"):
        sample(zero_snr, (2, 3), sampler="edm_euler", steps=3, progress=False, spacing="trailing")
    # flow starts at s = 1 there, as FlowMatchEuler does: fine
    assert sample(zero_snr, (2, 3), sampler="flow_match_euler", steps=3, progress=False,
                  spacing="trailing").x0.isfinite().all()
