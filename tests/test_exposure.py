"""Exposure-bias statistics against closed forms: Gaussian data N(m, s^2 I) and a model whose
eps_hat is the exact one times c make every DDIM(eta = 0) step linear in x_t, so the chain's
states, and every statistic of them, follow from a recursion derived here."""

import math

import numpy as np
import pytest
from scipy.stats import chi2, ncx2
import torch
from torch import nn

from biaskit import Denoiser, get_schedule
from biaskit.exposure import EpsScale, chain_states, eps_scale_sweep, fit_eps_scale, visited_states
from biaskit.oracle import GaussianMixture, oracle_denoiser
from biaskit.sampling import Grid

SCHED = get_schedule("linear")
M_, S_, D = 0.7, 0.4, 2


class ScaledExactEps(nn.Module):
    """eps_hat = c E[eps | x_t] for x0 ~ N(m, s^2 I): E[eps | x_t] = sigma (x_t - alpha m) / v,
    v = alpha^2 s^2 + sigma^2 (from E[x0 | x_t] = m + alpha s^2 (x_t - alpha m) / v)."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x, time_in):
        a, sg = time_in[:, :1].double(), time_in[:, 1:].double()
        v = a**2 * S_**2 + sg**2
        return (self.c * sg * (x.double() - a * M_) / v).to(x.dtype)


def _model(c):
    return Denoiser(ScaledExactEps(c), SCHED, "eps", time_input="alpha_sigma", channels=D,
                    data_range=(-10.0, 10.0), name=f"c={c}")


def _gauss():
    return GaussianMixture.isotropic([1.0], [[M_] * D], S_)


def _recursion(c, steps):
    """Per call k (noisiest first): (alpha, sigma, G, h) with x_t = G z + h for x_T = z.
    DDIM: x' = a' x0_hat + s' eps_hat, x0_hat = (x - sigma eps_hat) / alpha, eps_hat = g (x - alpha m),
    g = c sigma / v, so x' = (A + B g) x - B g alpha m, A = a' / alpha, B = s' - a' sigma / alpha."""
    kept = Grid.of(SCHED, steps).kept
    abar, prev = kept.abar.tolist(), kept.abar_prev.tolist()
    G, h, out = 1.0, 0.0, []
    for k in range(len(abar) - 1, -1, -1):
        alpha, sigma = math.sqrt(abar[k]), math.sqrt(1 - abar[k])
        out.append((alpha, sigma, G, h))
        a1, s1 = math.sqrt(prev[k]), math.sqrt(1 - prev[k])
        g = c * sigma / (alpha**2 * S_**2 + sigma**2)
        A, B = a1 / alpha, s1 - a1 * sigma / alpha
        G, h = (A + B * g) * G, (A + B * g) * h - B * g * alpha * M_
    return out


def _noise(n=4000, seed=0):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_ddim_chain_of_a_scaled_exact_model_follows_the_closed_form():
    z, c, steps = _noise(), 1.3, 6
    chain = chain_states(_model(c), z, sampler="ddim", steps=steps)
    for s, (alpha, sigma, G, h) in zip(chain, _recursion(c, steps)):
        assert torch.allclose(s["x_t"], G * z + h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("c", [0.8, 1.3])  # under- and over-predicted noise: the chain spreads, shrinks
def test_drift_statistics_match_their_closed_forms(c):
    """Given the noise's own mean and variance, the chain's x_t has mean G zbar + h and variance
    G^2 var(z) per dim, so log q_t, the x0 error to E[x0 | x_t] and ||eps_hat||^2 averaged over
    the chain's samples are known exactly at every step."""
    z, steps = _noise(), 6
    frame = visited_states(_model(c), z, _gauss().sample(4000, torch.Generator().manual_seed(1),
                                                           torch.float64), mixture=_gauss(), steps=steps)
    for k, (alpha, sigma, G, h) in enumerate(_recursion(c, steps)):
        v = alpha**2 * S_**2 + sigma**2
        dev2 = float(((G * z.mean(0) + h - alpha * M_) ** 2 + G**2 * z.var(0, unbiased=False)).mean())
        want = {"log_q_per_dim": -0.5 * math.log(2 * math.pi * v) - 0.5 * dev2 / v,
                "eps_norm2_per_dim": (c * sigma / v) ** 2 * dev2,
                # x0_hat - E[x0 | x_t] = -(sigma / alpha) (eps_hat - E[eps | x_t])
                "x0_error_to_oracle": ((c - 1) * sigma**2 / (alpha * v)) ** 2 * dev2}
        got = frame[frame.step == k].set_index("statistic")
        for stat, value in want.items():
            assert math.isclose(got.loc[stat, "chain"], value, rel_tol=1e-4, abs_tol=1e-9), (k, stat)
        # outside q_t's 99% region: ||x - alpha m||^2 > chi2_{D, 0.99} v, and ||x - alpha m||^2 / G^2
        # is non-central chi2 with D dof and non-centrality D (h - alpha m)^2 / G^2 (the forward
        # threshold is a sample quantile: 0.01 of slack)
        out = ncx2.sf(chi2.ppf(0.99, D) * v / G**2, D, D * (h - alpha * M_) ** 2 / G**2)
        o = got.loc["outside_q99"]
        assert o.chain_lo - 0.01 < out < o.chain_hi + 0.01, (k, out, o.chain)
        # forward states: E||eps_hat||^2 / D = c^2 sigma^2 / v, inside the interval
        f = got.loc["eps_norm2_per_dim"]
        assert f.forward_lo - 0.02 < c**2 * sigma**2 / v < f.forward_hi + 0.02


def test_exact_oracle_has_zero_error_on_every_visited_state():
    mix = GaussianMixture.isotropic([0.3, 0.7], [[-0.5, 0.2], [0.6, -0.4]], [0.1, 0.2])
    oracle = oracle_denoiser(mix, SCHED)
    frame = visited_states(oracle, _noise(256).float(), mix.sample(256, torch.Generator().manual_seed(3)),
                           mixture=mix, steps=8)
    err = frame[frame.statistic == "x0_error_to_oracle"]
    assert len(err) == 8 and (err.chain.abs() < 1e-12).all() and (err.forward.abs() < 1e-12).all()
    # clipped to a range the posterior mean leaves at high noise: both sides clipped alike
    oracle.data_range = (-0.3, 0.3)
    clipped = visited_states(oracle, _noise(256).float(), mix.sample(256, torch.Generator().manual_seed(3)),
                             mixture=mix, steps=8, clip=True)
    err = clipped[clipped.statistic == "x0_error_to_oracle"]
    assert (err.chain.abs() < 1e-12).all() and (err.forward.abs() < 1e-12).all()
    # the data-vs-data floor: forward states sit on q_t, the gap of log q has 0 inside or near
    lq = frame[frame.statistic == "log_q_per_dim"]
    assert (lq.forward_hi > lq.forward_lo).all()


def test_eps_scaling_by_one_over_c_recovers_the_exact_chain():
    z, c = _noise(512), 1.25
    exact = chain_states(oracle_denoiser(_gauss(), SCHED), z, steps=7)
    scaled = chain_states(_model(c), z, steps=7, eps_scale=EpsScale(c))
    unscaled = chain_states(_model(c), z, steps=7)
    for e, s, u in zip(exact, scaled, unscaled):
        assert torch.allclose(e["x_t"], s["x_t"], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(exact[-1]["x_t"], unscaled[-1]["x_t"], atol=1e-3)


def test_eps_norm_is_ning_et_al_definition():
    """Ning et al. 2024: the mean over samples of ||eps_theta(x_hat_t, t)||_2^2 along the chain
    (here per dimension), with x_hat_t the sampler's own state; restated from StepInfo."""
    from biaskit.sampling import sample
    z, den = _noise(300), _model(1.1)
    seen = []
    sample(den, z.clone(), sampler="ddpm", steps=5, seed=4, progress=False, callback=seen.append)
    frame = visited_states(den, z, z, sampler="ddpm", steps=5, seed=4)
    for k, s in enumerate(seen):
        want = float((torch.linalg.vector_norm(s.eps_hat, dim=1) ** 2).mean() / D)
        assert math.isclose(frame.loc[frame.step == k, "chain"].item(), want, rel_tol=1e-9)


def test_sweep_picks_the_scale_that_closes_the_gap_and_the_fit_recovers_it():
    """A model that over-predicts eps by c on forward states too: the gap closes at lambda = c."""
    z, c = _noise(2000), 1.2
    x0 = _gauss().sample(2000, torch.Generator().manual_seed(5), torch.float64)
    sweep = eps_scale_sweep(_model(c), z, x0, [1.0, 1.1, 1.2, 1.3], steps=10)
    assert sweep.loc[sweep.chosen, "b"].item() in (1.1, 1.2)
    assert sweep.mean_abs_gap.iloc[0] > sweep.mean_abs_gap.min()
    fit = fit_eps_scale(visited_states(_model(c), z, x0, steps=10))
    assert np.isfinite(fit.b) and np.isfinite(fit.k)


def test_eps_scaling_reaches_every_kind_of_sampler():
    """Applied at the model call: a diffusers solver and the EDM Heun sampler walk the exact
    oracle's chain when the c-scaled model is divided by c."""
    z, c = _noise(64).float(), 1.25
    for sampler in ("ddpm", "dpm_solver++", "heun"):
        exact = chain_states(oracle_denoiser(_gauss(), SCHED), z, sampler=sampler, steps=6, seed=2)
        scaled = chain_states(_model(c), z, sampler=sampler, steps=6, seed=2, eps_scale=EpsScale(c))
        assert len(exact) == len(scaled) > 0, sampler
        for e, s in zip(exact, scaled):
            assert torch.allclose(e["x0_hat"], s["x0_hat"], rtol=1e-4, atol=1e-4), sampler


def test_linear_eps_scale_reads_the_models_timestep():
    lam = EpsScale(b=1.01, k=2e-5)
    assert torch.allclose(lam(torch.tensor([0, 500, 999])), torch.tensor([1.01, 1.02, 1.02998],
                                                                          dtype=torch.float64))
