"""Noise processes against closed forms written out here independently."""

import math

import numpy as np
import pytest
import torch

from biaskit import processes as PR
from biaskit.schedules import get_schedule

ALL = [PR.DiscreteVP(get_schedule("linear", 1000)), PR.DiscreteVP(get_schedule("cosine", 200)),
       PR.ContinuousVP("cosine"), PR.ContinuousVP("linear_logsnr", -10, 8), PR.VE(),
       PR.VE(0.01, 20, rho=3), PR.Flow(), PR.Flow(shift=3.0, t_min=1e-3, t_max=1 - 1e-3)]


def _times(p, n=257):
    return torch.linspace(p.t_min, p.t_max, n, dtype=torch.float64)[1:-1]


@pytest.mark.parametrize("p", ALL, ids=repr)
def test_vp_equivalence(p):
    # x_t / sqrt(a^2 + s^2) has VP coefficients a^2 = sigmoid(logsnr), s^2 = sigmoid(-logsnr)
    t = _times(p)
    lam = (p.alpha(t) / p.sigma(t)).log().numpy() * 2
    a_vp = (p.alpha(t) * p.vp_scale(t)).numpy()
    s_vp = (p.sigma(t) * p.vp_scale(t)).numpy()
    np.testing.assert_allclose(a_vp**2, 1 / (1 + np.exp(-lam)), rtol=1e-12)
    np.testing.assert_allclose(s_vp**2, 1 / (1 + np.exp(lam)), rtol=1e-10)
    np.testing.assert_allclose(p.logsnr(t).numpy(), lam, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", ALL, ids=repr)
def test_time_logsnr_round_trip_and_monotone(p):
    t = _times(p)
    lam = p.logsnr(t)
    assert torch.all(lam[1:] < lam[:-1])
    np.testing.assert_allclose(p.t_of_logsnr(lam).numpy(), t.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("p", ALL, ids=repr)
def test_dlogsnr_dt_matches_central_differences(p):
    t = _times(p, 65)
    h = 1e-6 * (p.t_max - p.t_min)
    if isinstance(p, PR.DiscreteVP):
        t = t.floor() + 0.5  # piecewise linear: differentiate inside a segment
    fd = (p.logsnr(t + h) - p.logsnr(t - h)) / (2 * h)
    np.testing.assert_allclose(p.dlogsnr_dt(t).numpy(), fd.numpy(), rtol=1e-5)


def test_discrete_vp_keeps_the_schedule_numbers():
    s = get_schedule("linear", 1000)
    p = PR.DiscreteVP(s)
    t = torch.arange(1000, dtype=torch.float64)
    # alpha_t^2 = prod (1 - beta), betas linspace(1e-4, 0.02) (Ho et al. 2020)
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(p.alpha(t).numpy() ** 2, abar, rtol=1e-12)
    np.testing.assert_allclose(p.sigma(t).numpy() ** 2, 1 - abar, rtol=1e-12)
    assert p.grid(4).tolist() == [999.0, 666.0, 333.0, 0.0, 0.0]


def test_discrete_vp_zero_terminal_snr_is_exact_at_the_last_step():
    p = PR.DiscreteVP(get_schedule("linear_zsnr", 1000))
    assert float(p.alpha(999.0)) == 0.0 and float(p.sigma(999.0)) == 1.0
    assert math.isfinite(float(p.logsnr(998.0)))


def test_flow_closed_forms():
    p = PR.Flow(shift=3.0)
    t = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    s = 3 * t.numpy() / (1 + 2 * t.numpy())  # 0.5, 0.75, 0.9
    np.testing.assert_allclose(p.sigma(t).numpy(), s, rtol=1e-14)
    np.testing.assert_allclose(p.alpha(t).numpy(), 1 - s, rtol=1e-14)
    np.testing.assert_allclose(p.logsnr(t).numpy(), 2 * np.log((1 - s) / s), rtol=1e-12)
    # unshifted: d logsnr / dt = -2 / (t (1 - t))
    q = PR.Flow()
    np.testing.assert_allclose(q.dlogsnr_dt(t).numpy(), -2 / (t.numpy() * (1 - t.numpy())), rtol=1e-12)


def test_continuous_cosine_is_cos_of_mapped_time():
    p = PR.ContinuousVP("cosine", -12.0, 9.0)
    u0, u1 = 2 / np.pi * np.arctan(np.exp(-9.0 / 2)), 2 / np.pi * np.arctan(np.exp(12.0 / 2))
    t = np.linspace(0, 1, 11)
    np.testing.assert_allclose(p.alpha(torch.tensor(t)).numpy(), np.cos(np.pi / 2 * (u0 + t * (u1 - u0))),
                               rtol=1e-12)
    assert float(p.logsnr(0.0)) == pytest.approx(9.0, abs=1e-12)
    assert float(p.logsnr(1.0)) == pytest.approx(-12.0, abs=1e-12)


def test_karras_grid():
    p = PR.VE(0.002, 80.0, rho=7.0)
    g = p.grid(18).numpy()
    i = np.arange(18)
    ref = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(g[:-1], ref, rtol=1e-12)
    assert g[0] == pytest.approx(80.0) and g[-2] == pytest.approx(0.002) and g[-1] == 0.0
    np.testing.assert_allclose(p.logsnr(torch.tensor(ref)).numpy(), -2 * np.log(ref), rtol=1e-12)


def test_edm_preconditioning_table_values():
    sd = 0.5
    c = PR.edm_preconditioning(torch.tensor([sd, 2.0]), sigma_data=sd)
    assert float(c["c_skip"][0]) == pytest.approx(0.5)
    assert float(c["c_out"][0]) == pytest.approx(sd / math.sqrt(2))
    assert float(c["c_in"][0]) == pytest.approx(1 / (sd * math.sqrt(2)))
    assert float(c["c_noise"][1]) == pytest.approx(math.log(2.0) / 4)
    # lambda(sigma) = 1 / c_out^2: the effective target F has unit variance (EDM Eq. 8)
    np.testing.assert_allclose((c["weight"] * c["c_out"] ** 2).numpy(), 1.0, rtol=1e-14)


@pytest.mark.parametrize("bad", [dict(kind="nope"), dict(logsnr_min=3, logsnr_max=1)])
def test_continuous_vp_bad_input(bad):
    with pytest.raises(ValueError):
        PR.ContinuousVP(**bad)


def test_get_process_names_and_errors():
    assert isinstance(PR.get_process("edm"), PR.VE)
    assert isinstance(PR.get_process(get_schedule("linear", 10)), PR.DiscreteVP)
    with pytest.raises(ValueError, match="valid: vp_cosine"):
        PR.get_process("rectified")
    with pytest.raises(ValueError, match="shift"):
        PR.Flow(shift=0)
    with pytest.raises(ValueError, match="steps"):
        PR.VE().grid(0)


@pytest.mark.parametrize("p", [PR.VE(), PR.Flow(shift=2.0)], ids=repr)
def test_gmm_oracle_under_a_process_is_the_vp_oracle_after_input_scaling(p):
    from biaskit.oracle import GaussianMixture, posterior_mean
    g = torch.Generator().manual_seed(0)
    mix = GaussianMixture.isotropic([0.3, 0.7], torch.tensor([[1.0, -0.5], [-1.0, 0.8]]), 0.3)
    x0 = mix.sample(64, generator=g)
    t = torch.linspace(p.t_min + 0.05 * (p.t_max - p.t_min), p.t_max * 0.9, 64, dtype=torch.float64)
    a, s = p.alpha(t)[:, None], p.sigma(t)[:, None]
    x_t = a * x0 + s * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    a_vp, s_vp = PR.vp_coefficients(p.logsnr(t))
    direct = posterior_mean(mix, x_t, a[:, 0], s[:, 0])
    via_vp = posterior_mean(mix, x_t * p.vp_scale(t)[:, None], a_vp, s_vp)
    np.testing.assert_allclose(direct.numpy(), via_vp.numpy(), rtol=1e-9, atol=1e-10)


def test_discrete_vp_slope_is_the_segments_also_at_the_integers():
    # the right-hand finite difference of the interpolated logsnr, at integers and between them;
    # autograd of the interpolation gave 0 at integers, i.e. an infinite uniform-t density there
    import torch
    from biaskit.processes import DiscreteVP
    from biaskit.schedules import get_schedule
    p = DiscreteVP(get_schedule("linear", 1000))
    t = torch.tensor([0.0, 1.0, 0.5, 250.0, 500.25, 998.0, 998.5], dtype=torch.float64)
    h = 1e-7
    fd = (p.logsnr(t + h) - p.logsnr(t)) / h
    torch.testing.assert_close(p.dlogsnr_dt(t), fd, rtol=1e-5, atol=0)
    assert float(p.dlogsnr_dt(torch.tensor([999.0]))) == float(p.dlogsnr_dt(torch.tensor([998.5])))


def test_each_process_class_owns_its_facts():
    # the config keys are the constructor's keywords, so a new keyword is a config key at once
    assert PR.PROCESS_KEYS["flow"] == ("shift", "t_min", "t_max", "reverse")
    assert PR.PROCESS_KEYS["vesde_tutorial"] == ("sigma_base", "t_min")
    assert {n: c.default_target for n, c in PR.PROCESSES.items()} == {
        "vp_cosine": "eps", "vp_linear_logsnr": "eps", "ve": "x0", "edm": "edm", "flow": "flow",
        "vesde": "score", "vesde_tutorial": "score"}
    assert {n: c.sampler for n, c in PR.PROCESSES.items() if c.sampler} == {
        "ve": "heun", "edm": "heun", "flow": "flow_euler"}
    assert [PR.VE().default_time_input(t) for t in ("x0", "edm")] == ["sigma", "c_noise"]
    assert [PR.Flow().default_time_input(t) for t in ("flow", "edm")] == ["t", "c_noise"]
    assert PR.get_process("edm").name == "ve" and isinstance(PR.get_process("vp_cosine"), PR.ContinuousVP)


@pytest.mark.parametrize("name", sorted(PR.PROCESSES))
def test_every_process_key_reloads_from_a_saved_config(name, tmp_path):
    # a run's config.yaml carries every key of every process: none falls back to a default on reload
    import yaml

    from biaskit.config import load_config, to_dict
    values = {"shift": 3.0, "t_min": 0.02, "t_max": 0.9, "reverse": True, "sigma_min": 0.005,
              "sigma_max": 40.0, "rho": 5.0, "logsnr_min": -9.0, "logsnr_max": 7.0, "s": 0.008,
              "sigma_base": 20.0}
    keys = PR.PROCESSES[name].keys()
    cfg = load_config({"process": {"name": name, **{k: values[k] for k in keys}}})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    again = PR.process_from_config(to_dict(load_config(path).process))
    assert again.describe() == PR.get_process(name, **{k: values[k] for k in keys}).describe()
    assert type(again) is PR.PROCESSES[name]
