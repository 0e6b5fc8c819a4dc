"""Schedules against diffusers' own DDPMScheduler and against hand-computed values."""

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from biaskit import schedules as S


@pytest.mark.parametrize("kind,zsnr", [("linear", False), ("scaled_linear", False),
                                       ("squaredcos_cap_v2", False), ("sigmoid", False),
                                       ("linear", True), ("scaled_linear", True)])
def test_abar_matches_diffusers(kind, zsnr):
    cfg = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02,
           "beta_schedule": kind, "rescale_betas_zero_snr": zsnr}
    ref = DDPMScheduler(**cfg).alphas_cumprod.double()
    ours = S.from_diffusers_config(cfg).abar
    # diffusers computes in float32: agree to float32 precision
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=2e-5, atol=1e-7)
    if zsnr:
        assert ours[-1] == 0 and ours.numpy()[0] == pytest.approx(ref.numpy()[0], rel=1e-6)


def test_scaled_linear_sd_defaults_match_diffusers():
    ref = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod
    np.testing.assert_allclose(S.get_schedule("scaled_linear").abar.numpy(), ref.double().numpy(), rtol=2e-5)


def test_from_config_file_and_trained_betas(tmp_path):
    betas = np.linspace(1e-3, 0.05, 50)
    (tmp_path / "scheduler_config.json").write_text(json.dumps({"trained_betas": betas.tolist()}))
    s = S.from_diffusers_config(tmp_path)
    np.testing.assert_allclose(s.abar.numpy(), np.cumprod(1 - betas), rtol=1e-12)
    with pytest.raises(FileNotFoundError):
        S.from_diffusers_config(tmp_path / "nope.json")


def test_derived_quantities_hand_computed():
    s = S.linear(1000)
    abar0 = 1 - 1e-4
    assert float(s.abar[0]) == pytest.approx(abar0, rel=1e-12)
    assert float(s.snr[0]) == pytest.approx(abar0 / 1e-4, rel=1e-9)
    assert float(s.logsnr[0]) == pytest.approx(np.log(abar0 / 1e-4), rel=1e-9)
    # abar_999 of DDPM's linear schedule: prod(1 - beta_i), computed independently in log space
    b = np.linspace(1e-4, 0.02, 1000)
    assert float(s.abar[-1]) == pytest.approx(np.exp(np.sum(np.log1p(-b))), rel=1e-10)
    assert torch.allclose(s.alpha**2 + s.sigma**2, torch.ones(1000, dtype=torch.float64))
    np.testing.assert_allclose(s.betas.numpy(), b, rtol=1e-9)


def test_zero_terminal_snr_properties():
    s = S.get_schedule("cosine_zsnr")
    assert float(s.snr[-1]) == 0 and s.logsnr[-1] == -np.inf
    assert float(s.abar[0]) == pytest.approx(float(S.cosine().abar[0]), rel=1e-12)


def test_space_timesteps_like_guided_diffusion():
    # hand-derived: 10 of 1000 in one section, stride 999/9 = 111
    assert S.space_timesteps(1000, "10") == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    assert S.space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    # second section 50..99, stride 49/2 = 24.5; Python (and guided-diffusion) round(24.5) = 24
    assert S.space_timesteps(100, "2,3") == [0, 49, 50, 74, 99]


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("n", [2, 10, 37, 250])
def test_diffusers_spacings_match_diffusers(spacing, n):
    sched = DDIMScheduler(timestep_spacing=spacing)
    sched.set_timesteps(n)
    assert S.diffusers_spacing(1000, n, spacing) == sorted(sched.timesteps.tolist())


def test_respace_keeps_abar_and_recomputes_betas():
    s = S.linear(1000)
    r = S.respace(s, 25)
    assert r.T == 25 and r.num_train_timesteps == 1000
    np.testing.assert_allclose(r.abar.numpy(), s.abar[r.timesteps].numpy())
    # beta'_i = 1 - abar(t_i) / abar(t_{i-1})
    ab = s.abar[r.timesteps].numpy()
    np.testing.assert_allclose(r.betas.numpy()[1:], 1 - ab[1:] / ab[:-1], rtol=1e-12)
    r2 = S.respace(s, [999, 0, 500])
    assert r2.timesteps.tolist() == [0, 500, 999]


def test_errors_name_valid_choices():
    with pytest.raises(ValueError, match="valid schedules: .*linear"):
        S.get_schedule("nope")
    with pytest.raises(ValueError, match="non-increasing"):
        S.from_abar([0.5, 0.9])
    with pytest.raises(ValueError, match="valid: linspace"):
        S.diffusers_spacing(1000, 10, "middle")


def test_roundtrip_dict():
    r = S.respace(S.get_schedule("linear_zsnr"), 10)
    r2 = S.Schedule.from_dict(json.loads(json.dumps(r.to_dict())))
    assert torch.equal(r.abar, r2.abar) and torch.equal(r.timesteps, r2.timesteps)


def test_same_as():
    s = S.linear(1000)
    assert s.same_as(S.from_diffusers_config({"beta_schedule": "linear"}))
    assert not s.same_as(S.cosine(1000)) and not s.same_as(S.linear(999))


# ---------------------------------------------------------------------------------------------
# guided-diffusion's schedules and respacing, restated here from their definitions
# (guided_diffusion/gaussian_diffusion.py get_named_beta_schedule, betas_for_alpha_bar;
# guided_diffusion/respace.py space_timesteps)

def _gd_betas(name, T):
    if name == "linear":
        scale = 1000 / T
        return np.linspace(scale * 0.0001, scale * 0.02, T, dtype=np.float64)
    f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    return np.array([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)])


def _gd_space(T, counts):
    if isinstance(counts, str) and counts.startswith("ddim"):
        want = int(counts[4:])
        i = 1
        while i < T:
            if len(range(0, T, i)) == want:
                return set(range(0, T, i))
            i += 1
        raise ValueError
    if isinstance(counts, str):
        counts = [int(c) for c in counts.split(",")]
    per, extra = T // len(counts), T % len(counts)
    steps, begin = set(), 0
    for k, c in enumerate(counts):
        size = per + (k < extra)
        stride = 1 if c <= 1 else (size - 1) / (c - 1)
        pos = 0.0
        while len([s for s in steps if begin <= s < begin + size]) < c:
            steps.add(begin + round(pos))
            pos += stride
        begin += size
    return steps


@pytest.mark.parametrize("T", [50, 250, 1000, 4000])
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_adm_schedules_match_guided_diffusion(name, T):
    ref = np.cumprod(1 - _gd_betas(name, T))
    ours = S.adm_schedule(name, T)
    np.testing.assert_allclose(ours.abar.numpy(), ref, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(ours.betas.numpy(), _gd_betas(name, T), rtol=1e-9)


def test_biaskit_linear_keeps_ddpm_endpoints_and_adm_linear_scales():
    # biaskit's (and diffusers') linear: 1e-4..0.02 at any T; guided-diffusion's: x 1000/T
    assert float(S.linear(4000).betas[-1]) == pytest.approx(0.02, rel=1e-9)
    assert float(S.linear_adm(4000).betas[-1]) == pytest.approx(0.005, rel=1e-9)
    assert float(S.linear_adm(100).betas[0]) == pytest.approx(1e-3, rel=1e-9)
    assert S.linear_adm(1000).same_as(S.linear(1000), rtol=0, atol=0)
    # improved-diffusion's 4000-step baseline: last abar 4.25e-5 (the number)
    assert float(S.adm_schedule("linear", 4000).abar[-1]) == pytest.approx(4.25e-5, rel=0.01)
    ref = DDPMScheduler(num_train_timesteps=4000, beta_schedule="linear").alphas_cumprod
    np.testing.assert_allclose(S.from_diffusers_config({"num_train_timesteps": 4000}).abar.numpy(),
                               ref.double().numpy(), rtol=2e-5, atol=1e-12)


def test_space_timesteps_every_count_matches_guided_diffusion():
    for n in range(1, 1001):
        assert set(S.space_timesteps(1000, n)) == _gd_space(1000, [n]), n
    assert S.space_timesteps(1000, 21)[10] == 499  # the example (500 before)
    for T, counts in [(300, "10,15,20"), (1000, "250,200,50,25"), (1000, "1,1,1"), (301, "7,3"),
                      (1000, "0,10")]:
        assert set(S.space_timesteps(T, counts)) == _gd_space(T, counts), counts
    for n in (2, 10, 25, 50, 100, 250, 500, 1000):
        assert S.space_timesteps(1000, f"ddim{n}") == sorted(_gd_space(1000, f"ddim{n}"))
    for n in (1,):  # no stride < T gives 1 of 1000 steps; guided-diffusion refuses too
        with pytest.raises(ValueError, match="constant stride"):
            S.space_timesteps(1000, f"ddim{n}")
    with pytest.raises(ValueError, match="section of 100"):
        S.space_timesteps(300, "10,150,20")
