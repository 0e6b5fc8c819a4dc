"""Foreign conventions read through flags: a flow model biaskit trains here, rewrapped as the
network a reversed-time flow repository, a negated-velocity one, score_sde's VE SDE and the
score-SDE MNIST tutorial would have trained, probes through ``--flow-time``, ``--target-sign``,
``--process vesde`` / ``vesde_tutorial`` and the ``score`` target to the native numbers. Each
wrapper restates its convention from its own definition (not through biaskit's conversions)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import biaskit
from biaskit.probe import probe
from biaskit.loaders.plugin import load_plugin
from biaskit.processes import Flow, get_process
from biaskit.vesde import VESDE
from biaskit.train import run_training

MU, SD = torch.tensor([0.5, -0.3]), torch.tensor([0.4, 0.7])
VIEW = torch.linspace(6.0, -4.0, 11, dtype=torch.float64)  # logsnr values every process reaches
STATS = ("x0_mse", "eps_mse", "x0_bias_sq", "excess_mse")


def _gauss(n, seed):
    g = torch.Generator().manual_seed(seed)
    return MU + SD * torch.randn(n, 2, generator=g)


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """A flow-matching MLP (x = (1 - t) x0 + t eps, predicts u = eps - x0, fed t) trained here."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("flow")
    cfg = {"model": {"name": "mlp", "config": {"hidden": 32, "blocks": 1, "emb_dim": 16, "freq_dim": 16}},
           "batch_size": 128, "steps": 150, "log_every": 150, "ckpt_every": 150, "out": str(out),
           "optim": {"lr": 2e-3, "warmup_steps": 5}, "device": "cpu", "threads": 1,
           "process": {"name": "flow"}, "loss": {"target": "flow", "weighting": "flow_constant"}}
    run_training(cfg, data=(_gauss(2000, 0), _gauss(500, 1)), progress=False)
    den = biaskit.load(out)
    assert (den.time_input, den.time_scale) == ("t", 1000.0)
    return den.net.eval()


class Native(nn.Module):
    """The trained net at its own flow time t in [0, 1] (biaskit fed it 1000 t)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t):
        return self.net(x, 1000 * t)


class ReversedFlow(nn.Module):
    """Lipman-style: x = t' x0 + (1 - t') eps, t' = 0 noise, fed t'; outputs ``sign`` d x / d t'
    = sign (x0 - eps) (sign 1: Lipman's own target; -1: eps - x0, time reversed only)."""

    def __init__(self, net, sign):
        super().__init__()
        self.net, self.sign = Native(net), sign

    def forward(self, x, t_rev):
        # the same x at the native time t = 1 - t'; the native net gives eps - x0, d x / d t' = x0 - eps
        return self.sign * -self.net(x, 1 - t_rev)


class Negated(nn.Module):
    """A flow net that predicts x0 - eps (x = (1 - t) x0 + t eps, fed t)."""

    def __init__(self, net):
        super().__init__()
        self.net = Native(net)

    def forward(self, x, t):
        return -self.net(x, t)


class ScoreVE(nn.Module):
    """A VE SDE score net: x = x0 + sigma(t) eps, outputs grad log p_t(x) = -E[eps | x] / sigma,
    fed t (or sigma when ``feed_sigma``), from the native flow net: s = sigma / (1 + sigma) is the
    flow time at that noise level and x (1 - s) its flow input; eps = x_f + (1 - s) u."""

    def __init__(self, net, sigma_of_t, feed_sigma=False):
        super().__init__()
        self.net, self.sigma_of_t, self.feed_sigma = Native(net), sigma_of_t, feed_sigma

    def forward(self, x, time_in):
        sigma = time_in if self.feed_sigma else self.sigma_of_t(time_in)
        s = (sigma / (1 + sigma))[:, None]
        x_f = x * (1 - s)
        eps = x_f + (1 - s) * self.net(x_f, s[:, 0])
        return -eps / sigma[:, None]


def score_sde_sigma(t, smin=0.01, smax=50.0):
    return smin * (smax / smin) ** t  # score_sde VESDE.marginal_prob std


def tutorial_sigma(t, b=25.0):
    return torch.sqrt((b ** (2 * t) - 1) / (2 * math.log(b)))  # the MNIST tutorial's marginal_prob_std


def _factory(module):
    return lambda **_: module


def _probe(den):
    x = _gauss(400, 7)
    df = probe(den.with_schedule(VIEW), x, n=400, seed=3, oracle=False, progress=False)
    return df


def _prediction_gap(ref, den):
    """The largest |x0_hat| and |eps_hat| difference of two readings of one network, in float64,
    at every VIEW logsnr, relative to the size of the reference's."""
    ref.net.double(), den.net.double()
    try:
        g = torch.Generator().manual_seed(11)
        x0, eps = _gauss(64, 9).double(), torch.randn(64, 2, generator=g, dtype=torch.float64)
        gap = 0.0
        for lam in VIEW:
            a, s = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
            with torch.no_grad():
                p, q = (d.predict(a * x0 + s * eps, lam.expand(64)) for d in (ref, den))
            for u, v in ((p.x0_hat, q.x0_hat), (p.eps_hat, q.eps_hat)):
                gap = max(gap, float((u - v).abs().max() / u.abs().max()))
        return gap
    finally:
        ref.net.float(), den.net.float()


def _native(tmp_path, net):
    return _plugin(tmp_path, net, process="flow", time_scale=1000.0)


def _plugin(tmp_path, net, **flags):
    spec = tmp_path / "plug.py"
    spec.write_text("def make(module):\n    return module\n")
    return load_plugin(None, f"{spec}:make", factory_kwargs={"module": net}, channels=2, **flags)


@pytest.mark.parametrize("case", ["reversed", "negated", "reversed_negated", "vesde_t", "vesde_sigma",
                                  "vesde_tutorial"])
def test_foreign_convention_probes_to_native_numbers(native, tmp_path, case):
    ref = _probe(_native(tmp_path, native))
    wrapped, flags = {
        "reversed": (ReversedFlow(native, -1), dict(flow_time="reversed")),
        "negated": (Negated(native), dict(target_sign=-1)),
        "reversed_negated": (ReversedFlow(native, 1), dict(flow_time="reversed", target_sign=-1)),
        "vesde_t": (ScoreVE(native, score_sde_sigma), dict(process="vesde", sigma_min=0.01, sigma_max=50.0)),
        "vesde_sigma": (ScoreVE(native, None, feed_sigma=True),
                        dict(process="vesde", time_input="sigma", sigma_max=50.0)),
        "vesde_tutorial": (ScoreVE(native, tutorial_sigma), dict(process="vesde_tutorial", sigma_base=25.0)),
    }[case]
    flags = {"process": "flow", **flags}
    den = _plugin(tmp_path, wrapped, **flags)
    got = _probe(den)
    # the probe runs in float32: a VE input x0 + sigma eps (sigma up to 7.4 here) rounds
    # differently from the flow input, so the VE rows agree to float32 rounding, and the
    # predictions themselves, in float64, to 1e-6
    rtol = 2e-5 if case.startswith("vesde") else 1e-6
    for stat in STATS[:3]:
        np.testing.assert_allclose(got[stat], ref[stat], rtol=rtol, atol=1e-9, err_msg=f"{case} {stat}")
    assert _prediction_gap(_native(tmp_path, native), den) < 1e-6, case
    # the convention matters: read without its flags, the same net predicts otherwise
    wrong = {k: v for k, v in flags.items() if k in ("process", "sigma_max", "sigma_min", "sigma_base")}
    if case.startswith("vesde"):
        wrong = {"process": "ve", "parameterization": "x0"}
    assert _prediction_gap(_native(tmp_path, native), _plugin(tmp_path, wrapped, **wrong)) > 1e-3, case


def test_process_t_column_is_the_models_own_time(native, tmp_path):
    lam = VIEW
    s = 1 / (1 + torch.exp(lam / 2))  # flow time: sigma / (alpha + sigma), snr = ((1 - s) / s)^2
    rev = _probe(_plugin(tmp_path, ReversedFlow(native, -1), process="flow", flow_time="reversed"))
    np.testing.assert_allclose(rev["process_t"], (1 - s).numpy(), rtol=1e-12)
    ve = _probe(_plugin(tmp_path, ScoreVE(native, score_sde_sigma), process="vesde"))
    t_ve = torch.log(torch.exp(-lam / 2) / 0.01) / math.log(50 / 0.01)
    np.testing.assert_allclose(ve["process_t"], t_ve.numpy(), rtol=1e-12)
    cols = list(ve.columns)
    assert cols.index("process_t") == cols.index("logsnr") + 1


def test_vesde_processes_restate_song():
    t = torch.tensor([1e-5, 0.3, 1.0], dtype=torch.float64)
    geo, tut = get_process("vesde"), get_process("vesde_tutorial")
    torch.testing.assert_close(geo.sigma(t), score_sde_sigma(t), rtol=1e-14, atol=0)
    torch.testing.assert_close(tut.sigma(t), tutorial_sigma(t), rtol=1e-9, atol=0)
    assert abs(float(tut.sigma(1.0)) - 9.85) < 0.01  # the 9.85 at t = 1
    for p in (geo, tut, VESDE("geometric", sigma_min=0.002, sigma_max=80.0)):
        torch.testing.assert_close(p.t_of_logsnr(p.logsnr(t)), t, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(p.alpha(t), torch.ones_like(t))
    assert torch.all(Flow(reverse=True).own_time(t) == 1 - t)


def test_process_flags_that_do_not_apply_are_named(native, tmp_path):
    with pytest.raises(ValueError, match=r"--sigma-max do\(es\) not apply to --process flow"):
        _plugin(tmp_path, native, process="flow", sigma_max=50.0)
    with pytest.raises(ValueError, match="--sigma-base"):
        _plugin(tmp_path, native, process="vesde", sigma_base=25.0)
    with pytest.raises(ValueError, match="--flow-time need"):
        _plugin(tmp_path, native, flow_time="reversed", noise_schedule="linear")
    with pytest.raises(ValueError, match="target_sign must be 1 or -1"):
        biaskit.formulations.ProcessDenoiser(native, "flow", "flow", target_sign=2)


LIPMAN_PLUGIN = '''
from biaskit.models.mlp import MLP


class Lipman(MLP):
    """x = t x0 + (1 - t) eps (t = 0 noise), fed t, predicts x0 - eps: the trained flow MLP
    (fed 1000 s, s = 1 - t, predicting eps - x0) in that convention."""

    def forward(self, x, t):
        return -super().forward(x, 1000 * (1 - t))


def make():
    return Lipman(dim=2, hidden=32, blocks=1, emb_dim=16, freq_dim=16)


def native():
    return MLP(dim=2, hidden=32, blocks=1, emb_dim=16, freq_dim=16)
'''


def test_cli_flags_read_a_lipman_style_flow_checkpoint(native, tmp_path, capsys):
    import pandas as pd
    from safetensors.torch import save_file

    from biaskit.cli import main
    (tmp_path / "lip.py").write_text(LIPMAN_PLUGIN)
    w = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in native.state_dict().items()}, str(w))
    common = ["--process", "flow", "--data", "gmm", "--samples", "64", "--timesteps", "100,500,900",
              "--no-progress"]
    runs = {"native": ["--model-spec", f"{tmp_path / 'lip.py'}:native", "--time-scale", "1000"],
            "lipman": ["--model-spec", f"{tmp_path / 'lip.py'}:make", "--flow-time", "reversed",
                       "--target-sign", "-1"]}
    frames = {}
    for name, flags in runs.items():
        assert main(["probe", str(w), *flags, *common, "--out", str(tmp_path / name)]) == 0, \
            capsys.readouterr().err
        frames[name] = pd.read_csv(tmp_path / name / "per_timestep.csv")
    nat, lip = frames["native"], frames["lipman"]
    np.testing.assert_allclose(lip["x0_mse"], nat["x0_mse"], rtol=1e-6)
    s = 1 / (1 + np.exp(nat["logsnr"] / 2))  # flow time of each row's logsnr
    np.testing.assert_allclose(nat["process_t"], s, rtol=1e-9)
    np.testing.assert_allclose(lip["process_t"], 1 - s, rtol=1e-9)


# --- agreement with the peers' own definitions -------------------------------------------------

def iddpm_logsnr(tau, s=0.008):
    """Nichol & Dhariwal 2021, Eq. 17: abar = f(tau) / f(0), f = cos^2((tau + s) / (1 + s) pi / 2)."""
    f = lambda u: np.cos((u + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    abar = f(tau) / f(0.0)
    return np.log(abar / (1 - abar))


def test_vp_cosine_offset_is_iddpms():
    tau = np.linspace(0.02, 0.98, 25)
    untruncated = get_process("vp_cosine", logsnr_min=-np.inf, logsnr_max=np.inf, s=0.008)
    np.testing.assert_allclose(untruncated.logsnr(torch.tensor(tau)).numpy(), iddpm_logsnr(tau), rtol=1e-9)
    # the default keeps VDM's form (s = 0): -2 log tan(pi tau / 2)
    vdm = get_process("vp_cosine", logsnr_min=-np.inf, logsnr_max=np.inf)
    np.testing.assert_allclose(vdm.logsnr(torch.tensor(tau)).numpy(), -2 * np.log(np.tan(np.pi / 2 * tau)),
                               rtol=1e-12)
    # iDDPM's discrete cosine schedule (abar_i = f((i + 1) / T) / f(0) while beta < 0.999) is
    # the s = 0.008 process at tau = (i + 1) / T, and not the default's
    from biaskit.schedules import cosine
    disc = cosine(1000).logsnr[:900].numpy()
    at = torch.arange(1, 901, dtype=torch.float64) / 1000
    np.testing.assert_allclose(untruncated.logsnr(at).numpy(), disc, rtol=1e-6, atol=1e-6)
    assert np.abs(vdm.logsnr(at).numpy() - disc).max() > 0.1
    # truncated, the ends are logsnr_max / logsnr_min and t_of_logsnr inverts logsnr
    p = get_process("vp_cosine", s=0.008)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert float(p.logsnr(0.0)) == pytest.approx(15.0, abs=1e-9)
    assert float(p.logsnr(1.0)) == pytest.approx(-15.0, abs=1e-9)
    torch.testing.assert_close(p.t_of_logsnr(p.logsnr(t)), t, rtol=0, atol=1e-12)


def test_vp_view_keeps_logsnr_exactly():
    from biaskit.formulations import view_schedule
    lam = torch.tensor([35.0, 30.0, 25.0, 0.0, -10.0], dtype=torch.float64)
    schedule, _ = view_schedule(get_process("ve"), lam)
    assert torch.equal(schedule.logsnr, lam)
    torch.testing.assert_close(schedule.sigma, torch.sigmoid(-lam).sqrt(), rtol=1e-15, atol=0)
    # read back from abar alone, logsnr 30 is off by about 1e-3
    from_abar = schedule.abar.log() - torch.log1p(-schedule.abar)
    assert abs(float(from_abar[1]) - 30.0) > 1e-4
    from biaskit.schedules import Schedule
    assert torch.equal(Schedule.from_dict(schedule.to_dict()).logsnr, lam)


def _gauss_flow_velocity(x, s, mu=MU.double(), sd=SD.double()):
    """E[eps - x0 | x_s] for x_s = (1 - s) x0 + s eps, x0 ~ N(mu, diag sd^2): Gaussian posterior."""
    var = (1 - s) ** 2 * sd**2 + s**2
    d = mu + (1 - s) * sd**2 / var * (x - (1 - s) * mu)  # E[x0 | x_s]
    return (x - (1 - s) * d) / s - d


class GaussFlowNet(nn.Module):
    """The exact flow velocity of N(MU, diag SD^2) under Flow(shift), fed the process time t."""

    def __init__(self, shift):
        super().__init__()
        self.process = Flow(shift=shift)

    def forward(self, x, t):
        s = self.process.s(t).to(x.dtype)[:, None]
        return _gauss_flow_velocity(x, s)


@pytest.mark.parametrize("steps,shift", [(2, 3.0), (7, 1.0), (50, 3.0)])
def test_flow_euler_flow_match_grid_is_diffusers_scheduler(steps, shift):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from biaskit.formulations import ProcessDenoiser
    from biaskit.sampling import sample
    eps = torch.randn(64, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(steps)
    x = eps.clone()
    for t in sched.timesteps:
        s = float(sched.sigmas[sched.index_for_timestep(t)])
        x = sched.step(_gauss_flow_velocity(x, s), t, x).prev_sample
    den = ProcessDenoiser(GaussFlowNet(shift), Flow(shift=shift), "flow", time_input="t")
    ours = sample(den, eps, sampler="flow_euler", steps=steps, spacing="flow_match", progress=False).x0
    # diffusers keeps its sigmas in float32: equal to that precision
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)
    default = sample(den, eps, sampler="flow_euler", steps=steps, progress=False).x0
    if steps == 2:
        assert float((default - x).abs().max()) > 0.1  # the default grid is another grid


def test_heun_reproduces_edm_sampler_from_sigma_max_noise():
    """EDM's edm_sampler (Karras et al. 2022, Algorithm 2, S_churn = 0) restated, on the exact
    denoiser of N(MU, SD^2) under VE: heun equals it when passed x_T = sigma_vp eps, i.e. the
    VP-scale image of EDM's start sigma_max eps (documented at heun and sample)."""
    from biaskit.formulations import ProcessDenoiser
    from biaskit.processes import VE
    from biaskit.sampling import sample
    mu, sd = MU.double(), SD.double()

    def D(x, sigma):
        return mu + sd**2 / (sd**2 + sigma**2) * (x - mu)

    class Net(nn.Module):
        def forward(self, x, sigma):
            return D(x, sigma.to(x.dtype)[:, None])

    eps = torch.randn(32, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    for n in (2, 5):
        a, b = 80.0 ** (1 / 7), 0.002 ** (1 / 7)
        t_steps = [(a + i / (n - 1) * (b - a)) ** 7 for i in range(n)] + [0.0]
        x = eps * t_steps[0]
        for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
            d_cur = (x - D(x, t_cur)) / t_cur
            x_next = x + (t_next - t_cur) * d_cur
            if i < n - 1:
                d_prime = (x_next - D(x_next, t_next)) / t_next
                x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
            x = x_next
        den = ProcessDenoiser(Net(), VE(), "x0", time_input="sigma")
        sigma_vp = 80.0 / math.sqrt(1 + 80.0**2)
        ours = sample(den, eps * sigma_vp, sampler="heun", steps=n, progress=False).x0
        torch.testing.assert_close(ours, x, rtol=1e-10, atol=1e-10)
        plain = sample(den, eps, sampler="heun", steps=n, progress=False).x0
        assert float((plain - x).abs().max()) > 1e-5  # unit noise starts at sqrt(1 + 80^2) eps


@pytest.mark.parametrize("scheme,kw,ours", [
    ("logit_normal", dict(logit_mean=0.0, logit_std=1.0), "sd3_logit_normal:0:1"),
    ("logit_normal", dict(logit_mean=0.5, logit_std=0.8), "sd3_logit_normal:0.5:0.8"),
    ("mode", dict(mode_scale=1.29), "sd3_mode:1.29"),
    ("cosmap", {}, "uniform")])  # the scripts draw cosmap uniformly (it is their loss weight)
def test_sd3_recipe_densities_are_the_scripts_draws(scheme, kw, ours):
    """diffusers' SD3 training recipe run as written (draw u, index the shifted scheduler's
    sigmas) against the CDF of our ``sd3_`` density under Flow(shift=3)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.training_utils import compute_density_for_timestep_sampling

    from biaskit.densities import get_density
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    g = torch.Generator().manual_seed(0)
    u = compute_density_for_timestep_sampling(scheme, 200_000, generator=g, **kw)
    N = sched.config.num_train_timesteps
    indices = (u * N).long()
    sigmas = sched.sigmas[indices].double()
    # the indexed sigma is shift(1 - v) up to the scheduler's 1 / N steps in unshifted time
    s_cont = Flow(shift=3.0).s(1 - u.double())
    t_idx, t_cont = (x / (3.0 - 2.0 * x) for x in (sigmas, s_cont))  # unshift
    assert float((t_idx - t_cont).max()) <= 1 / N + 1e-6 and float((t_idx - t_cont).min()) >= -1e-6
    s_draws = np.sort(s_cont.numpy())
    lam = torch.linspace(-25, 25, 40001, dtype=torch.float64)
    p = get_density(ours)(lam, Flow(shift=3.0)).numpy()
    cdf_lam = np.concatenate([[0], np.cumsum((p[1:] + p[:-1]) / 2 * np.diff(lam.numpy()))])
    assert abs(cdf_lam[-1] - 1) < 1e-4  # mode and cosmap keep mass near s = 0, 1 (|logsnr| > 25)
    s_grid = torch.sigmoid(-lam / 2).numpy()  # decreasing in lam: P(s <= s_grid) = 1 - cdf_lam
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        s_q = np.interp(q, (1 - cdf_lam)[::-1], s_grid[::-1])
        assert abs(np.searchsorted(s_draws, s_q) / len(s_draws) - q) < 0.004, (q, s_q)  # 3.5 MC sd
    if ours == "sd3_logit_normal:0:1":  # the medians: 0.751 (recipe) and 0.5 (default)
        p0 = get_density("logit_normal:0:1")(lam, Flow(shift=3.0)).numpy()
        c0 = np.concatenate([[0], np.cumsum((p0[1:] + p0[:-1]) / 2 * np.diff(lam.numpy()))])
        assert abs(np.interp(0.5, (1 - c0)[::-1], s_grid[::-1]) - 0.5) < 1e-4
        assert abs(float(sigmas.median()) - 0.75) < 0.005
