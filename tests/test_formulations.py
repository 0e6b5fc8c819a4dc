"""Models of other processes read as VP denoisers, and the EDM / flow ODE samplers, against
numbers derived by hand here (closed forms of zero-output nets and of Gaussian data)."""

import math

import numpy as np
import pytest
import torch

from biaskit.formulations import ProcessDenoiser
from biaskit.mixture import GaussianMixture
from biaskit.oracle import oracle_denoiser, posterior_mean
from biaskit.probe import compare, probe
from biaskit.processes import VE, ContinuousVP, Flow
from biaskit.sampling import model_calls, sample
from biaskit.schedules import get_schedule

MU = torch.tensor([0.3, -0.2, 0.1])


def _images(n=2048, seed=0):
    """(n, 3, 4, 4): channel means MU, per-element sd 0.5 around them."""
    g = torch.Generator().manual_seed(seed)
    return MU[None, :, None, None] + 0.5 * torch.randn(n, 3, 4, 4, generator=g)


def _zero(x, t):
    return torch.zeros_like(x)


def _mc_tol(scale, count):
    # 6 standard errors of a mean of `count` terms of standard deviation `scale`
    return 6 * scale / math.sqrt(count)


def test_zero_velocity_flow_model_has_x0_hat_equal_to_x_t():
    # u_hat = 0: x0_hat = x_t = (1 - t) x0 + t eps, so x0_hat - x0 = t (eps - x0):
    # x0_mse = t^2 (1 + m2), per-channel bias -t mu_k (+ t mean(eps), mean zero)
    x0 = _images()
    m2 = float((x0.double() ** 2).mean())
    ts = [0.1, 0.3, 0.5, 0.8, 0.95]
    lam = [2 * math.log((1 - t) / t) for t in ts]
    den = ProcessDenoiser(_zero, Flow(), "flow", view=lam, name="flow0")
    df = probe(den, x0, n=x0.shape[0], progress=False, oracle=False).sort_values("logsnr", ascending=False)
    np.testing.assert_allclose(df["logsnr"].to_numpy(), lam, rtol=1e-6)
    count = x0.numel()
    for t, (_, row) in zip(ts, df.iterrows()):
        want = t**2 * (1 + m2)
        # per element t^2 (eps - x0)^2 has sd about t^2 sqrt(2 (1 + m2)^2)
        assert abs(row["x0_mse"] - want) < _mc_tol(t**2 * 2 * (1 + m2), count)
        for k in range(3):
            assert abs(row[f"x0_bias_c{k}"] - (-t * float(MU[k]))) < _mc_tol(t, count / 3)


def test_edm_model_with_zero_raw_output_is_c_skip_times_x():
    # F = 0: D = c_skip x with x = x0 + sigma eps, so x0_mse = (c_skip - 1)^2 m2 + c_skip^2 sigma^2
    x0 = _images()
    m2 = float((x0.double() ** 2).mean())
    sigmas = [0.05, 0.3, 1.0, 4.0, 20.0]
    den = ProcessDenoiser(_zero, VE(), "edm", view=[-2 * math.log(s) for s in sigmas])
    df = probe(den, x0, n=x0.shape[0], progress=False, oracle=False).sort_values("logsnr")
    for sigma, (_, row) in zip(sigmas[::-1], df.iterrows()):
        c_skip = 0.25 / (sigma**2 + 0.25)
        want = (c_skip - 1) ** 2 * m2 + c_skip**2 * sigma**2
        assert abs(row["x0_mse"] - want) < _mc_tol(3 * want, x0.numel())
        np.testing.assert_allclose(row["logsnr"], -2 * math.log(sigma), rtol=1e-6)


def _gmm():
    means = torch.tensor([[1.0, -0.5, 0.2], [-0.8, 0.4, 0.0], [0.1, 0.9, -1.1]], dtype=torch.float64)
    a = torch.tensor([[0.3, 0.1, 0.0], [0.0, 0.2, 0.1], [0.1, 0.0, 0.4]], dtype=torch.float64)
    covs = torch.stack([a @ a.T + 0.05 * torch.eye(3, dtype=torch.float64), 0.1 * torch.eye(3, dtype=torch.float64),
                        torch.diag(torch.tensor([0.3, 0.05, 0.2], dtype=torch.float64))])
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), means, covs)


def _ve_oracle_net(mix):
    return lambda x, sigma: posterior_mean(mix, x, 1.0, sigma)


def _flow_oracle_net(mix):
    # u = E[eps - x0 | x] with x = (1 - s) x0 + s eps: E[eps | x] = (x - (1 - s) D) / s, so u = (x - D) / s
    def net(x, s):
        d = posterior_mean(mix, x, 1 - s, s)
        return (x - d) / s[:, None]
    return net


def _vp_eps_oracle_net(mix):
    def net(x, t):
        lam = ContinuousVP("cosine").logsnr(t)
        a, s = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
        return (x - a[:, None] * posterior_mean(mix, x, a, s)) / s[:, None]
    return net


@pytest.mark.parametrize("kind", ["ve", "flow", "vp_cosine_eps"])
def test_gmm_oracle_of_another_process_is_the_vp_oracle_at_the_same_snr(kind):
    mix = _gmm()
    lam = torch.tensor([9.0, 4.0, 1.5, 0.0, -2.0, -6.0], dtype=torch.float64)
    if kind == "ve":
        den = ProcessDenoiser(_ve_oracle_net(mix), VE(), "x0", time_input="sigma", view=lam)
    elif kind == "flow":
        den = ProcessDenoiser(_flow_oracle_net(mix), Flow(shift=3.0), "flow", time_input="sigma", view=lam)
    else:
        den = ProcessDenoiser(_vp_eps_oracle_net(mix), ContinuousVP("cosine"), "eps", view=lam)
    g = torch.Generator().manual_seed(1)
    for i in range(lam.numel()):
        a_vp = 1 / math.sqrt(1 + math.exp(-float(lam[i])))   # sigmoid(lam)^(1/2)
        s_vp = 1 / math.sqrt(1 + math.exp(float(lam[i])))
        x_vp = a_vp * mix.sample(64, generator=g, dtype=torch.float64) + \
            s_vp * torch.randn(64, 3, generator=g, dtype=torch.float64)
        # den's view is sorted least noisy first: step i has logsnr lam[i]
        pred = den(x_vp, torch.full((64,), i))
        want = posterior_mean(mix, x_vp, a_vp, s_vp)
        assert (pred.x0_hat - want).abs().max() < 1e-10
        assert (pred.eps_hat - (x_vp - a_vp * want) / s_vp).abs().max() < 1e-9


def test_compare_pairs_a_vp_model_and_a_ve_model_at_equal_logsnr():
    mix = GaussianMixture.isotropic([0.6, 0.4], torch.tensor([[0.5, -0.5], [-0.6, 0.3]]), 0.3)
    x0 = mix.sample(512, generator=torch.Generator().manual_seed(2))
    vp = oracle_denoiser(mix, get_schedule("linear", 1000), name="vp")
    ve = ProcessDenoiser(_ve_oracle_net(mix), VE(), "x0", time_input="sigma", name="ve")
    assert not ve.schedule.same_as(vp.schedule)
    df = compare([vp, ve], x0, timesteps=[0, 100, 400, 700, 999], progress=False, oracle=False)
    diff = df[df.kind == "difference"]
    want = get_schedule("linear", 1000).logsnr[[0, 100, 400, 700, 999]].numpy()
    np.testing.assert_allclose(diff["logsnr"].to_numpy(), want)
    # the same exact denoiser at the same logsnr on the same draws: equal up to float32
    assert diff["x0_mse"].abs().max() < 1e-5


def _gaussian(mu, s):
    return GaussianMixture.isotropic([1.0], torch.tensor([mu], dtype=torch.float64), s)


MU2, S2 = [0.5, -0.3], 0.4


def _heun_error(steps, noise):
    # PF ODE of N(mu, s^2 I) under VE: (x - mu) / sqrt(s^2 + sigma^2) is constant, so from x at
    # sigma_max the endpoint is mu + s (x - mu) / sqrt(s^2 + sigma_max^2); the VP noise z is
    # x / sqrt(1 + sigma_max^2)
    den = ProcessDenoiser(_ve_oracle_net(_gaussian(MU2, S2)), VE(), "x0", time_input="sigma")
    x = noise * math.sqrt(1 + 80.0**2)
    mu = torch.tensor(MU2, dtype=torch.float64)
    exact = mu + S2 * (x - mu) / math.sqrt(S2**2 + 80.0**2)
    x0 = sample(den, noise, sampler="heun", steps=steps, progress=False).x0
    return float((x0 - exact).abs().max())


def test_edm_heun_converges_to_the_gaussian_probability_flow_endpoint():
    noise = torch.randn(256, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    # the map is linear in x - mu, so the error is the gain's error times |x - mu| (max |z| ~ 3):
    # measured 0.54, 0.097, 0.021, 4.9e-3, 1.2e-3, 2.8e-4 at 8 .. 256 steps
    errs = {n: _heun_error(n, noise) for n in (8, 16, 32, 64, 128, 256)}
    assert errs[64] < 1e-2 and errs[256] < 1e-3
    orders = [math.log2(errs[n] / errs[2 * n]) for n in (16, 32, 64, 128)]
    assert all(1.8 < o < 2.5 for o in orders), (errs, orders)


def test_heun_walks_the_karras_grid_and_calls_twice_per_step():
    fed = []

    def net(x, sigma):
        fed.append(float(sigma[0]))
        return torch.zeros_like(x)

    den = ProcessDenoiser(net, VE(), "x0", time_input="sigma")
    n = 5
    assert model_calls("heun", den, n) == 2 * n - 1
    r = sample(den, (3, 2), sampler="heun", steps=n, progress=False, return_trajectory=True)
    # Karras et al. 2022 Eq. 5, rho = 7, sigma from 80 to 0.002
    a, b = 80.0 ** (1 / 7), 0.002 ** (1 / 7)
    karras = [(a + i / (n - 1) * (b - a)) ** 7 for i in range(n)]
    want = [karras[0]] + [s for s in karras[1:] for _ in range(2)]
    np.testing.assert_allclose(fed, want, rtol=1e-6)  # fed in float32
    assert r.nfe == 2 * n - 1 and r.trajectory.x0_hat.shape == (2 * n - 1, 3, 2)
    np.testing.assert_allclose(r.trajectory.logsnr.numpy(), -2 * np.log(want), rtol=1e-9)
    assert torch.equal(r.x0, r.trajectory.x0_hat[-1])  # the last step, to sigma = 0, is D


def _flow_error(steps, noise, shift):
    # x_s = (1 - s) x0 + s eps, x0 ~ N(mu, sd^2): (x_s - (1 - s) mu) / sqrt((1 - s)^2 sd^2 + s^2)
    # is constant along the PF ODE, so from x_1 = eps the endpoint is mu + sd x_1
    den = ProcessDenoiser(_flow_oracle_net(_gaussian(MU2, S2)), Flow(shift=shift), "flow",
                          time_input="sigma")
    exact = torch.tensor(MU2, dtype=torch.float64) + S2 * noise
    x0 = sample(den, noise, sampler="flow_euler", steps=steps, progress=False).x0
    return float((x0 - exact).abs().max())


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_euler_converges_to_the_gaussian_probability_flow_endpoint(shift):
    noise = torch.randn(256, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    # first order: measured 0.22 .. 0.015 (shift 1) and 0.44 .. 0.031 (shift 3) at 8 .. 128 steps
    errs = {n: _flow_error(n, noise, shift) for n in (8, 16, 32, 64, 128)}
    assert errs[128] < 0.02 * shift
    orders = [math.log2(errs[n] / errs[2 * n]) for n in (8, 16, 32, 64)]
    assert all(0.9 < o < 1.1 for o in orders), (errs, orders)


def test_flow_euler_walks_the_shifted_process_grid():
    fed = []

    def net(x, t):
        fed.append(float(t[0]))
        return torch.zeros_like(x)

    den = ProcessDenoiser(net, Flow(shift=3.0), "flow", time_input="t", time_scale=1000.0)
    r = sample(den, (3, 2), sampler="flow_euler", steps=4, progress=False)
    np.testing.assert_allclose(fed, [1000.0, 750.0, 500.0, 250.0], rtol=1e-6)
    assert r.nfe == 4


def test_vp_denoiser_is_an_edm_denoiser_for_heun():
    # a VP oracle walked by heun on its kept steps ends at the same PF endpoint (VP form)
    sched = get_schedule("linear", 1000)
    den = oracle_denoiser(_gaussian(MU2, S2), sched, data_range=(-3, 3))
    noise = torch.randn(128, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    a, sg = sched.alpha[-1].item(), sched.sigma[-1].item()
    mu = torch.tensor(MU2, dtype=torch.float64)
    exact = mu + S2 * (noise - a * mu) / math.sqrt(a**2 * S2**2 + sg**2)
    errs = [float((sample(den, noise, sampler="heun", steps=n, progress=False).x0 - exact).abs().max())
            for n in (25, 100)]
    assert errs[1] < errs[0] < 0.04


ZERO_PLUGIN = '''
import torch
from torch import nn

class Zero(nn.Module):
    def forward(self, x, t):
        self.seen = t
        return torch.zeros_like(x)

def make():
    return Zero()
'''


def test_cli_probes_and_samples_a_plugin_under_process_flow(tmp_path, capsys):
    import pandas as pd

    from biaskit.cli import main
    from biaskit.data import load_dataset
    (tmp_path / "zero.py").write_text(ZERO_PLUGIN)
    spec = f"{tmp_path / 'zero.py'}:make"
    out = tmp_path / "out"
    rc = main(["probe", spec, "--process", "flow", "--time-input", "t", "--time-scale", "1000",
               "--data", "gmm", "--data-option", "shape=[3,4,4]", "--data-option", "n_test=512",
               "--samples", "512", "--timesteps", "99,499,899", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    df = pd.read_csv(out / "per_timestep.csv")
    x0 = load_dataset("gmm", shape=[3, 4, 4], n_test=512).test
    m2 = float((x0.double() ** 2).mean())
    # view step i of the default flow view is t = (i + 1) / 1000; logsnr = 2 log((1 - t) / t)
    t = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(df["logsnr"].to_numpy(), 2 * np.log((1 - t) / t), rtol=1e-6)
    tol = 6 * t**2 * 2 * (1 + m2) / math.sqrt(x0.numel())
    assert np.all(np.abs(df["x0_mse"].to_numpy() - t**2 * (1 + m2)) < tol)
    rc = main(["sample", spec, "--process", "flow", "--time-input", "t", "--sampler", "flow_euler",
               "--steps", "4", "--n", "8", "--shape", "3,4,4", "--out", str(tmp_path / "s"),
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rc = main(["probe", spec, "--process", "flow", "--noise-schedule", "cosine", "--data", "gmm",
               "--out", str(tmp_path / "o2"), "--no-progress"])
    assert rc != 0 and "replaces the discrete schedule" in capsys.readouterr().err


def test_flow_euler_is_ddim_on_the_same_steps():
    # z = x / (alpha + sigma) = (1 - s) x0_hat + s eps_hat and z' = z + (s' - s)(eps_hat - x0_hat)
    # = (1 - s') x0_hat + s' eps_hat, which is DDIM's x' = alpha' x0_hat + sigma' eps_hat / (alpha' + sigma')
    den = oracle_denoiser(_gmm(), get_schedule("cosine", 1000), data_range=(-3, 3))
    noise = torch.randn(64, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    a = sample(den, noise, sampler="ddim", steps=7, progress=False, return_trajectory=True)
    b = sample(den, noise, sampler="flow_euler", steps=7, progress=False, return_trajectory=True)
    assert a.timesteps == b.timesteps
    # equal up to the float32 coefficients a Denoiser reads its x0_hat / eps_hat pair with
    assert (a.x0 - b.x0).abs().max() < 1e-6
    assert (a.trajectory.x_t - b.trajectory.x_t).abs().max() < 1e-6


@pytest.mark.parametrize("process", [VE(), Flow(shift=2.0), ContinuousVP("cosine")], ids=repr)
@pytest.mark.parametrize("target", ["x0", "eps", "v", "flow", "edm"])
def test_process_oracle_of_every_target_is_the_vp_oracle(process, target):
    from biaskit.formulations import process_oracle
    mix = _gmm()
    lam = torch.tensor([7.0, 2.0, 0.0, -3.0], dtype=torch.float64)
    den = process_oracle(mix, process, target, view=lam)
    g = torch.Generator().manual_seed(7)
    for i in range(lam.numel()):
        a_vp = 1 / math.sqrt(1 + math.exp(-float(lam[i])))
        s_vp = 1 / math.sqrt(1 + math.exp(float(lam[i])))
        x_vp = a_vp * mix.sample(32, generator=g, dtype=torch.float64) + \
            s_vp * torch.randn(32, 3, generator=g, dtype=torch.float64)
        got = den(x_vp, torch.full((32,), i)).x0_hat
        assert (got - posterior_mean(mix, x_vp, a_vp, s_vp)).abs().max() < 1e-9


def test_hybrid_of_a_vp_and_an_edm_oracle_is_the_vp_chain():
    # both are E[x0 | x_t] at the same logsnr, so switching models changes nothing
    from biaskit.formulations import process_oracle
    from biaskit.sampling import hybrid_sample
    mix = _gmm()
    vp = oracle_denoiser(mix, get_schedule("linear", 1000), data_range=(-3, 3))
    edm = process_oracle(mix, VE(), "edm", data_range=(-3, 3))
    noise = torch.randn(32, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    pure = sample(vp, noise, sampler="ddim", steps=10, progress=False).x0
    mixed = hybrid_sample(vp, edm, 4, noise, sampler="ddim", steps=10, progress=False).x0
    assert (pure - mixed).abs().max() < 1e-5


@pytest.mark.parametrize("sampler", ["diffusers_ddim", "dpmpp_2m", "euler"])
def test_a_hybrid_of_x0_and_v_models_under_a_diffusers_scheduler_reads_their_targets(sampler):
    # every oracle here is E[x0 | x_t] at the chain's logsnr, whatever its target and process: a
    # hybrid of two x0 models, two v models or one of each walks exactly the pure x0 chain; a
    # scheduler fed an x0 or v output as eps (or an x0 output as v) would not
    from biaskit.formulations import process_oracle
    from biaskit.sampling import hybrid_sample
    TOL = 1e-4  # diffusers steps in float32; a misread target moves samples by ~0.1 and more
    mix = _gmm()
    noise = torch.randn(32, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    kw = dict(sampler=sampler, steps=10, progress=False)
    # (not Flow: its view starts at abar = 0, where these schedulers are undefined: refused,
    # test_sampler_table::test_samples_that_are_not_finite_are_refused_in_one_line)
    for process in (ContinuousVP(), VE()):
        x0 = [process_oracle(mix, process, "x0", data_range=(-3, 3), name=f"x0 {i}") for i in (0, 1)]
        v = [process_oracle(mix, process, "v", data_range=(-3, 3), name=f"v {i}") for i in (0, 1)]
        pure = sample(x0[0], noise, **kw).x0
        assert (sample(v[0], noise, **kw).x0 - pure).abs().max() < TOL
        for a, b in ((x0[0], x0[1]), (v[0], v[1]), (x0[0], v[1])):
            mixed = hybrid_sample(a, b, 5, noise, **kw).x0
            assert (mixed - pure).abs().max() < TOL, (process.name, a.name, b.name)
    # the discrete x0 oracles of one schedule alike
    vp = [oracle_denoiser(mix, get_schedule("linear", 1000), data_range=(-3, 3), name=f"vp {i}") for i in (0, 1)]
    pure = sample(vp[0], noise, **kw).x0
    assert (hybrid_sample(vp[0], vp[1], 5, noise, **kw).x0 - pure).abs().max() < TOL
