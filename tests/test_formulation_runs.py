"""The gmm presets of notebook 05_formulations train the objectives they claim: each *-debias
variant has eps-VP debias's x0 weight per unit logsnr W(lam) = w_x0 p_lam, each usual variant its
published one. The equations are restated here in numpy, not read from biaskit."""

import math
from statistics import NormalDist

import numpy as np
import pytest
import torch

from biaskit.config import get_preset
from biaskit.densities import get_density
from biaskit.train.process_objective import TimeSampler, build_process, x0_weight_per_logsnr

T = 1000


def _linear_logsnr():
    """lam_i of DDPM's linear schedule (betas linspace(1e-4, 0.02, 1000)), i = 0 least noisy."""
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, T))
    return np.log(abar / (1 - abar))


def _p_lam_linear(lam):
    """Uniform t on [0, T - 1] with logsnr linear between steps: 1 / ((T - 1) |lam_{i+1} - lam_i|)."""
    lam_i = _linear_logsnr()
    seg = np.searchsorted(-lam_i, -lam) - 1  # lam_i >= lam > lam_{i+1}
    seg = np.clip(seg, 0, T - 2)
    return 1 / ((T - 1) * np.abs(lam_i[seg + 1] - lam_i[seg]))


# inside the linear schedule's range (-10.13 .. 9.21), avoiding its step points
LAM = np.linspace(-10.0, 9.1, 157) + 1e-4


def _W(variant):
    return x0_weight_per_logsnr(get_preset(f"gmm-{variant}"), torch.tensor(LAM)).numpy()


def test_debias_reference_is_sqrt_snr_under_uniform_linear_steps():
    assert np.allclose(_W("debias"), np.exp(LAM / 2) * _p_lam_linear(LAM), rtol=1e-9)


@pytest.mark.parametrize("variant", ["v-debias", "edm-debias", "flow-debias"])
def test_debias_variants_train_eps_vp_debias_objective(variant):
    ref = np.exp(LAM / 2) * _p_lam_linear(LAM)
    assert np.max(np.abs(_W(variant) / ref - 1)) < 1e-6
    assert np.max(np.abs(_W(variant) / _W("debias") - 1)) < 1e-6


def test_usual_variants_have_their_published_weights():
    snr, sd = np.exp(LAM), 0.5
    # eps-VP L_simple: w_eps = 1, w_x0 = snr; v-VP: w_v = 1, x0_hat = alpha x - sigma v_hat, w_x0 = 1 / sigma^2
    assert np.allclose(_W("constant"), snr * _p_lam_linear(LAM), rtol=1e-9)
    assert np.allclose(_W("v"), (1 + snr) * _p_lam_linear(LAM), rtol=1e-9)
    # EDM: lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 on the D-MSE, ln sigma ~ N(-1.2, 1.2^2)
    # truncated to sigma in [0.002, 80]; |d ln sigma / d lam| = 1/2
    sigma = np.exp(-LAM / 2)
    lam_edm = (sigma**2 + sd**2) / (sigma * sd) ** 2
    n = NormalDist(-1.2, 1.2)
    mass = n.cdf(math.log(80)) - n.cdf(math.log(0.002))
    pdf = np.array([n.pdf(v) for v in np.log(sigma)]) / 2 / mass
    assert np.allclose(_W("edm"), lam_edm * pdf, rtol=1e-5)
    # flow matching: t ~ U(0, 1), x = (1 - t) x0 + t eps, w_u = 1; x0_hat = x - t u_hat so
    # w_x0 = 1 / t^2, and lam = 2 log((1 - t) / t) gives |dt / dlam| = t (1 - t) / 2
    t = 1 / (1 + np.exp(LAM / 2))
    assert np.allclose(_W("flow"), t * (1 - t) / 2 / t**2, rtol=1e-9)
    assert np.allclose(_W("flow"), np.exp(LAM / 2) / 2, rtol=1e-9)  # sqrt(snr) / 2


def test_vp_linear_density_is_the_linear_schedules_and_draws_its_steps():
    d = get_density("vp_linear")
    assert np.allclose(d(torch.tensor(LAM)).numpy(), _p_lam_linear(LAM), rtol=1e-9)
    lam_i = _linear_logsnr()
    assert float(d(torch.tensor([lam_i[-1] - 0.01, lam_i[0] + 0.01])).abs().max()) == 0
    grid = torch.linspace(lam_i[-1], lam_i[0], 200_001, dtype=torch.float64)
    assert abs(float(torch.trapezoid(d(grid), grid)) - 1) < 1e-4
    # a flow run under it: P(t_vp < 500) = 500 / 999 for t uniform on [0, 999]
    sampler = TimeSampler(build_process(get_preset("gmm-flow-debias")), "vp_linear")
    u = torch.rand(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lam = sampler.process.logsnr(sampler(u))
    frac = float((lam > lam_i[500]).double().mean())
    assert abs(frac - 500 / 999) < 4 * math.sqrt(0.25 / len(u))
    with pytest.raises(ValueError, match="integer"):
        get_density("vp_linear:10.5")


def test_every_profile_plans_the_formulation_runs_of_notebook_05():
    from biaskit.study.profiles import PROFILES, parameters, planned_runs
    for profile in PROFILES:
        params = parameters(profile, "05_formulations")
        plan = planned_runs(profile, ["05_formulations"])
        assert plan == [("gmm", w, 0) for w in params["variants"]], profile
        assert set(plan) <= set(planned_runs(profile))
    assert {w for _, w, _ in planned_runs("quick", ["05_formulations"])} >= {"v-debias", "edm", "flow-debias"}
