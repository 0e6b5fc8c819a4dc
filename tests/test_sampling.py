"""Samplers against diffusers' own schedulers, a closed-form probability-flow solution, and the
exact GMM oracle; trajectory statistics against hand-built trajectories."""

import diffusers
import pytest
import torch
from torch import nn

from biaskit import Denoiser, get_schedule
from biaskit import metrics as M
from biaskit.data import load_dataset
from biaskit.oracle import GaussianMixture, oracle_denoiser
from biaskit.sampling import (DIFFUSERS_SAMPLERS, SPACINGS, SwitchAfter, hybrid_sample, hybrid_sweep,
                              kept_steps, model_calls, sample, sampler_method)
from biaskit.schedules import respace
from biaskit.trajectory import channel_stats, clip_fraction, trajectory_stats, x0_drift, x0_error

SCHED = get_schedule("linear")


class TinyNet(nn.Module):
    """A fixed random network, eps- or v-like output, optionally with a 2C learned-variance half."""

    def __init__(self, dim=3, out=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(dim + 1, out)

    def forward(self, x, t):
        h = torch.cat([x, (t.float() / 1000)[:, None]], 1)
        return torch.tanh(self.lin(h))


def _close(a, b, rel=1e-5):
    scale = 1 + max(a.abs().max(), b.abs().max())
    assert (a - b).abs().max() <= rel * scale, float((a - b).abs().max() / scale)


def _diffusers_loop(scheduler, den, x, steps, generator=None, var=False):
    scheduler.set_timesteps(steps)
    xs, x0s = [], []
    for t in scheduler.timesteps:
        p = den(x, t)
        out = torch.cat([p.out, p.var_out], 1) if var else p.out
        kw = {"generator": generator} if generator is not None else {}
        res = scheduler.step(out, t, x, **kw)
        xs.append(x)
        x0s.append(res.pred_original_sample)
        x = res.prev_sample
    return x, torch.stack(xs), torch.stack(x0s)


@pytest.mark.parametrize("param", ["eps", "v"])
def test_ddim_equals_diffusers_ddim(param):
    den = Denoiser(TinyNet(), SCHED, param)
    noise = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
    ours = sample(den, noise, sampler="ddim", steps=10, spacing="leading", return_trajectory=True,
                  progress=False)
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, trained_betas=SCHED.betas.numpy(),
                                  clip_sample=False, set_alpha_to_one=True,
                                  prediction_type={"eps": "epsilon", "v": "v_prediction"}[param])
    x, xs, x0s = _diffusers_loop(ref, den, noise, 10)
    assert ours.timesteps == ref.timesteps.tolist()
    _close(ours.x0, x)
    _close(ours.trajectory.x_t, xs)
    _close(ours.trajectory.x0_hat, x0s)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large", "learned"])
def test_ddpm_equals_diffusers_ddpm_with_same_noise(variance):
    learned = variance == "learned"
    den = Denoiser(TinyNet(out=6 if learned else 3), SCHED, "eps", channels=3)
    ours = sample(den, (16, 3), sampler="ddpm", steps=20, spacing="leading", variance=variance,
                  seed=7, progress=False)
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(16, 3, generator=g)  # x_T first, then each step's draw, as ours
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, trained_betas=SCHED.betas.numpy(),
                                  clip_sample=False, variance_type={"learned": "learned_range"}
                                  .get(variance, variance))
    x, _, _ = _diffusers_loop(ref, den, noise, 20, generator=g, var=learned)
    _close(ours.x0, x)


def _gaussian_oracle(mu, s):
    mix = GaussianMixture.isotropic([1.0], torch.tensor([mu]), s)
    return oracle_denoiser(mix, SCHED, data_range=(-3, 3))


@pytest.mark.parametrize("spacing", SPACINGS)
def test_diffusers_ddim_equals_native_ddim_on_the_gmm2d_oracle(spacing):
    """Same x_T, same kept steps: the adapter's DDIM is the native DDIM at few steps (it was off by
    0.68 at 5 even steps when diffusers stepped from 999 to 799 while the model was next called at
    749). float64 noise: what is left is diffusers' float32 abar, whose relative rounding (6e-8)
    is amplified by 1 / sqrt(abar_999) = 156 in x0_hat at |x_T| ~ 3: up to ~3e-5 at 2 steps."""
    ds = load_dataset("gmm2d", seed=0, n_train=10, n_test=10)
    den = oracle_denoiser(ds.mixture, SCHED, ds.shape, ds.data_range)
    noise = torch.randn(100, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for steps in (2, 3, 5, 10):
        a = sample(den, noise, sampler="ddim", steps=steps, spacing=spacing, progress=False)
        b = sample(den, noise, sampler="diffusers_ddim", steps=steps, spacing=spacing, progress=False)
        assert a.timesteps == b.timesteps == kept_steps(1000, steps, spacing)[::-1]
        assert (a.x0 - b.x0).abs().max() < 1e-4, (steps, float((a.x0 - b.x0).abs().max()))


_STOCHASTIC = ("euler_a", "diffusers_ddpm")
_ENDS_AT_SIGMA_MIN = ("dpm_solver", "deis")  # their last step ends at the smallest step's noise


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("sampler", sorted(DIFFUSERS_SAMPLERS))
def test_every_diffusers_scheduler_walks_the_native_kept_steps(sampler, spacing):
    """Data = one point mu, so E[x0 | x_t] = mu and x_t = alpha_t mu + sigma_t z along the exact
    probability-flow path: a deterministic scheduler that steps to the t the model is called at
    next keeps each call's x_t on that path (per sample); a stochastic one keeps the marginal
    N(alpha_t mu, sigma_t^2). A scheduler stepping to another t (999 -> 799 while the next call is
    at 749) breaks both. The t are recorded inside the network."""
    mu, calls = 3.0, []

    def net(x, t):
        calls.append(int(t.reshape(-1)[0]))
        return torch.full_like(x, mu)

    den = Denoiser(net, SCHED, "x0")
    for steps in (2, 3, 5, 7, 10):
        native = kept_steps(1000, steps, spacing)[::-1]
        z = torch.randn(2000, 1, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
        x_T = SCHED.alpha[native[0]] * mu + SCHED.sigma[native[0]] * z
        calls.clear()
        if sampler in _ENDS_AT_SIGMA_MIN and spacing == "trailing":
            with pytest.raises(ValueError, match="use spacing even, linspace, leading"):
                sample(den, x_T, sampler=sampler, steps=steps, spacing=spacing, progress=False)
            continue
        r = sample(den, x_T, sampler=sampler, steps=steps, spacing=spacing, seed=5,
                   return_trajectory=True, progress=False)
        # Heun and PNDM evaluate some steps twice in a row
        assert torch.unique_consecutive(torch.tensor(calls)).tolist() == native
        assert r.timesteps == calls
        tr = r.trajectory
        alpha, sigma = (SCHED.alpha[tr.t][:, None, None], SCHED.sigma[tr.t][:, None, None])
        if sampler in _STOCHASTIC:
            zs = (tr.x_t - alpha * mu) / sigma
            assert zs.mean((1, 2)).abs().max() < 5 / 2000**0.5
            assert (zs.std((1, 2)) - 1).abs().max() < 0.1
        elif steps > 2:  # Heun's and PNDM's 2-step corrector from 999 to 0 loses ~0.1 to float32
            assert (tr.x_t - (alpha * mu + sigma * z)).abs().max() < 1e-3


def test_scheduler_settings_that_pick_their_own_steps_are_refused():
    den = _gaussian_oracle([0.0, 0.0], 0.5)
    with pytest.raises(ValueError, match="may not set timestep_spacing: .*spacing="):
        sample(den, (4, 2), sampler="euler", steps=5, progress=False,
               scheduler_kwargs={"timestep_spacing": "leading"})
    with pytest.raises(ValueError, match="picks timesteps of its own"):
        sample(den, (4, 2), sampler="euler", steps=5, progress=False,
               scheduler_kwargs={"use_karras_sigmas": True})


# first-order samplers (ddim, euler) converge as 1/steps, the multistep ones faster; the even
# (ADM) grid keeps t = 0, so its last logsnr step (t = 20 -> 0 at 50 steps) is 4x its previous one,
# which costs the 2nd-order multistep solvers accuracy there (0.09 at 50 steps, 0.006 at 200)
@pytest.mark.parametrize("sampler,steps,spacing,tol", [
    ("ddim", 100, "even", 0.06), ("euler", 100, "even", 0.06), ("heun", 25, "even", 0.04),
    ("dpmpp_2m", 50, "trailing", 0.015), ("unipc", 50, "trailing", 0.02),
    ("dpmpp_2m", 200, "even", 0.01), ("unipc", 200, "even", 0.01)])
def test_probability_flow_of_a_gaussian(sampler, steps, spacing, tol):
    # data N(mu, s^2 I): the probability-flow ODE keeps z = (x_t - alpha mu) / sqrt(alpha^2 s^2 + sigma^2)
    # fixed, so from x at the first step (t = T-1) it ends at x0 = mu + s z
    mu, s = [0.5, -0.3], 0.4
    den = _gaussian_oracle(mu, s)
    noise = torch.randn(128, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    a, sg = SCHED.alpha[-1].item(), SCHED.sigma[-1].item()
    exact = torch.tensor(mu) + s * (noise - a * torch.tensor(mu)) / (a**2 * s**2 + sg**2) ** 0.5
    x0 = sample(den, noise.float(), sampler=sampler, steps=steps, spacing=spacing, progress=False).x0
    assert (x0.double() - exact).abs().max() < tol


def test_callback_trajectory_and_respacing():
    den = _gaussian_oracle([0.0, 0.0], 0.5)
    seen = []
    r = sample(den, (4, 2), sampler="ddim", steps=7, callback=seen.append, return_trajectory=True,
               progress=False)
    assert r.timesteps == kept_steps(1000, 7)[::-1] == [999, 832, 666, 500, 333, 166, 0]
    assert [s.i for s in seen] == list(range(7)) and [s.t for s in seen] == r.timesteps
    assert r.trajectory.x0_hat.shape == (7, 4, 2)
    assert torch.equal(seen[-1].x_next, r.x0) and torch.equal(seen[3].x0_hat, r.trajectory.x0_hat[3])
    with pytest.raises(ValueError, match="steps must be in"):
        sample(den, (4, 2), steps=1001, progress=False)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(den, (4, 2), sampler="nope", progress=False)


def test_seeds_repeat_and_differ():
    den = _gaussian_oracle([0.0, 0.0], 0.5)
    a = sample(den, (8, 2), sampler="ddpm", steps=10, seed=1, progress=False).x0
    b = sample(den, (8, 2), sampler="ddpm", steps=10, seed=1, progress=False).x0
    c = sample(den, (8, 2), sampler="ddpm", steps=10, seed=2, progress=False).x0
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_clip_keeps_x0_hat_in_range_and_consistent_eps():
    den = Denoiser(TinyNet(), SCHED, "eps")
    seen = []
    sample(den, (8, 3), steps=5, clip=True, callback=seen.append, progress=False)
    for s in seen:
        assert s.x0_hat.abs().max() <= 1
        a, sg = SCHED.alpha[s.t].item(), SCHED.sigma[s.t].item()
        _close(a * s.x0_hat + sg * s.eps_hat, s.x_t)


def test_oracle_gmm_many_steps_reproduce_mixture_few_do_not():
    ds = load_dataset("gmm2d", seed=0, n_train=600, n_test=600)
    den = oracle_denoiser(ds.mixture, SCHED, ds.shape, ds.data_range)
    base = M.sliced_wasserstein(ds.train, ds.test, n_boot=0).value
    base_ll = M.gmm_log_likelihood(ds.test, ds.mixture, n_boot=0).value
    many = sample(den, (600, 2), sampler="ddpm", steps=1000, seed=1, progress=False).x0
    few = sample(den, (600, 2), sampler="ddim", steps=2, seed=1, progress=False).x0
    swd_many = M.sliced_wasserstein(many, ds.test, n_boot=0).value
    swd_few = M.sliced_wasserstein(few, ds.test, n_boot=0).value
    assert swd_many < 2.5 * base and swd_few > 5 * base
    assert abs(M.gmm_log_likelihood(many, ds.mixture, n_boot=0).value - base_ll) < 0.3
    assert M.gmm_log_likelihood(few, ds.mixture, n_boot=0).value < base_ll - 10
    _, cov_many, off_many, tv_many = M.gmm_metrics(many, ds.mixture, n_boot=0)
    _, cov_few, off_few, _ = M.gmm_metrics(few, ds.mixture, n_boot=0)
    assert cov_many.value == 1 and off_many.value < 0.02 and tv_many.value < 0.1
    assert off_few.value > 0.9 and cov_few.value < 0.5  # 2 steps land between the modes


def test_hybrid_endpoints_and_sweep():
    good = _gaussian_oracle([0.0, 0.0], 0.5)
    bad = _gaussian_oracle([0.8, 0.8], 0.5)
    kw = dict(sampler="ddim", steps=10, seed=0, progress=False)
    pure_a = sample(good, (64, 2), **kw).x0
    pure_b = sample(bad, (64, 2), **kw).x0
    assert torch.equal(hybrid_sample(good, bad, 10, (64, 2), **kw).x0, pure_a)
    assert torch.equal(hybrid_sample(good, bad, 0, (64, 2), **kw).x0, pure_b)
    df = hybrid_sweep(good, bad, [0, 5, 10], lambda x: {"mean0": x[:, 0].mean()}, (64, 2),
                      sampler="ddim", steps=10, progress=False)
    assert list(df.k) == [0, 5, 10] and set(df.metric) == {"mean0"}
    # the late (low-noise) steps of a mean-shifted model shift the samples' mean
    assert df.value.iloc[0] > df.value.iloc[1] > df.value.iloc[2]


class _Traj:
    def __init__(self, x0_hat):
        self.x0_hat, self.x_t = x0_hat, x0_hat
        self.t = torch.arange(len(x0_hat)).flip(0) * 100

    def __len__(self):
        return len(self.x0_hat)


def test_trajectory_statistics_by_hand():
    # 3 steps, 2 samples, 2 channels, 2x2 pixels; x0_hat = c (step) + offset (channel)
    x = torch.zeros(3, 2, 2, 2, 2)
    for s in range(3):
        x[s, :, 0] = 2.0 - s
        x[s, :, 1] = -1.0 + 0.5 * s
    traj = _Traj(x)
    d = x0_drift(traj)
    assert d.query("step == 0 and channel == 0").drift.item() == pytest.approx(2.0)
    assert d.query("step == 0 and channel == 1").drift.item() == pytest.approx(-1.0)
    assert list(clip_fraction(traj).clip_fraction) == [0.5, 0.0, 0.0]  # channel 0 at 2.0
    assert list(x0_error(traj).mse_to_final) == pytest.approx([(4 + 1) / 2, (1 + 0.25) / 2, 0])
    st = trajectory_stats(traj)
    assert list(st.columns) == ["step", "t", "clip_fraction", "mse_to_final", "mean_abs_drift"]
    assert st.mean_abs_drift.tolist() == pytest.approx([1.5, 0.75, 0.0])
    imgs = torch.stack([torch.full((3, 2, 2), 0.5), torch.tensor([0.0, 1.0]).repeat(3, 2, 1)])
    cs = channel_stats({"a": imgs})
    assert cs.query("sample == 0")["mean"].tolist() == [0.5] * 3
    assert cs.query("sample == 1")["std"].tolist() == [0.5] * 3


def test_every_step_count_starts_from_the_seeds_first_draw_and_step_noise_is_fresh():
    """x_T is the seed's first draw whatever the step count, and the first DDPM step's noise is
    not that same draw again (it was, when x_T came from a second generator with the same seed)."""
    s = get_schedule("linear", 1000)
    den = Denoiser(lambda x, t: torch.zeros_like(x), s, "x0")  # x0_hat = 0: x_next = ct x_t + std z
    first = {}
    for steps in (3, 2):
        sample(den, (4096, 1), sampler="ddpm", steps=steps, seed=7, progress=False,
               callback=lambda st: first.setdefault(steps, (st.x_t, st.x_next)))
    x_T, x_next = first[3]
    torch.testing.assert_close(x_T, torch.randn((4096, 1), generator=torch.Generator().manual_seed(7)))
    assert torch.equal(first[2][0], x_T)
    # kept steps of 3: 0, 500, 999 (ADM even spacing); hand posterior coefficient of x_t at 999 -> 500
    ab_t, ab_prev = float(s.abar[999]), float(s.abar[500])
    ct = (ab_t / ab_prev) ** 0.5 * (1 - ab_prev) / (1 - ab_t)
    z = x_next - ct * x_T
    corr = float(torch.corrcoef(torch.stack([z.flatten(), x_T.flatten()]))[0, 1])
    assert abs(corr) < 0.1


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmpp_2m", "heun"])
def test_timesteps_are_the_models_own_for_a_model_trained_on_part_of_its_schedule(sampler):
    """A model trained on timesteps 1..999: its schedule's step j is timestep j + 1. Results,
    trajectories and callbacks say the timestep (what the network is fed, recorded inside it),
    schedule_index the step (kept_steps of T = 999)."""
    part = respace(SCHED, list(range(1, 1000)))
    fed = []

    def net(x, t):
        fed.append(int(t[0]))
        return torch.zeros_like(x)

    den = Denoiser(net, part, "eps", time_input="index")
    seen = []
    r = sample(den, (4, 2), sampler=sampler, steps=3, return_trajectory=True, callback=seen.append,
               progress=False)
    steps = torch.unique_consecutive(torch.tensor(r.schedule_index)).tolist()
    assert steps == kept_steps(999, 3)[::-1] == [998, 499, 0]
    assert r.timesteps == fed and [j + 1 for j in r.schedule_index] == fed
    assert torch.unique_consecutive(torch.tensor(fed)).tolist() == [999, 500, 1]
    assert r.trajectory.t.tolist() == fed and r.trajectory.schedule_index.tolist() == r.schedule_index
    assert [st.t for st in seen] == fed and [st.schedule_index for st in seen] == r.schedule_index


def _counting(value, calls, name):
    def net(x, t):
        calls.append(name)
        return torch.full_like(x, value)
    return Denoiser(net, SCHED, "x0", name=name)


@pytest.mark.parametrize("sampler,steps", [("ddim", 5), ("heun", 3), ("ddpm", 4)])
def test_switch_after_calls_a_for_the_first_k_model_calls(sampler, steps):
    """Which network runs at each call is recorded inside the networks; Heun calls twice per step
    after the first, so k counts model calls, not steps."""
    calls = []
    a, b = _counting(0.5, calls, "a"), _counting(-0.5, calls, "b")
    n = model_calls(sampler, a, steps)
    assert n == (2 * steps - 1 if sampler == "heun" else steps)
    for k in range(n + 1):
        calls.clear()
        r = hybrid_sample(a, b, k, (3, 2), sampler=sampler, steps=steps, progress=False)
        assert calls == ["a"] * k + ["b"] * (n - k) and r.nfe == n
    switch = SwitchAfter(a, b, 2, n)
    calls.clear()
    for _ in range(2):  # the count wraps after n calls: a second chain switches at call 2 again
        sample(switch, (3, 2), sampler=sampler, steps=steps, progress=False)
    assert calls == (["a"] * 2 + ["b"] * (n - 2)) * 2


def test_hybrid_refuses_models_on_different_schedules_and_k_out_of_range():
    a = _gaussian_oracle([0.0, 0.0], 0.5)
    other = oracle_denoiser(GaussianMixture.isotropic([1.0], torch.zeros(1, 2), 0.5), get_schedule("cosine"))
    with pytest.raises(ValueError, match="share one schedule"):
        hybrid_sample(a, other, 1, (2, 2), steps=3, progress=False)
    with pytest.raises(ValueError, match=r"k must be in 0\.\.3"):
        hybrid_sample(a, a, 4, (2, 2), steps=3, progress=False)


def test_every_sampler_has_the_one_signature():
    """k-diffusion's shape: (model, x, grid, *, generator, callback, progress, own options)."""
    import inspect
    common = ["model", "x", "grid", "generator", "callback", "progress"]
    for name in ["ddpm", "ddim", "euler", "dpmpp_2m"]:
        params = list(inspect.signature(sampler_method(name)).parameters)
        assert params[:6] == common, (name, params)


def test_posterior_variance_clipped_is_adms_rule():
    """beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t) from the betas by hand; entry 0 takes t = 1's."""
    s = get_schedule("linear", 10)
    beta = s.betas
    abar = torch.cumprod(1 - beta, 0)
    bt = beta[1:] * (1 - abar[:-1]) / (1 - abar[1:])
    torch.testing.assert_close(s.posterior_variance_clipped, torch.cat([bt[:1], bt]))
    one = respace(s, [4])
    assert one.posterior_variance_clipped.tolist() == [0.0]


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "euler", "ddim"])
def test_hybrid_of_one_model_in_two_parameterizations_is_that_model(sampler):
    """The Gaussian oracle read as an eps network and as a v network is one model: switching
    between the two mid-chain must not change the samples (a v output fed to a scheduler as eps
    would)."""
    oracle = _gaussian_oracle([0.3, -0.2], 0.5)
    eps_den = Denoiser(lambda x, t: oracle(x, t).eps_hat, SCHED, "eps")
    v_den = Denoiser(lambda x, t: oracle(x, t).v_hat, SCHED, "v")
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    kw = dict(sampler=sampler, steps=6, spacing="trailing", progress=False)
    pure = sample(oracle, noise, **kw).x0
    for k in (2, 4):
        _close(hybrid_sample(eps_den, v_den, k, noise, **kw).x0, pure)
        _close(hybrid_sample(v_den, eps_den, k, noise, **kw).x0, pure)
