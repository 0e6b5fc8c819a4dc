"""The ADM settings check on a small ADM that biaskit trains itself: the settings it was trained
with (time fed as t, four heads, the new qkv order) give the lowest eps error on held-out digits,
and each wrong one (t * 1000 / T, one head, the legacy order) is measurably worse and named."""

import warnings

import numpy as np
import pytest
import torch

import biaskit
from biaskit.settings_check import CERTAIN, CLEAR, check_settings, evaluate_settings

T = 250
ARCH = dict(model_channels=32, num_res_blocks=1, channel_mult=[1], attention_resolutions=[1],
            use_scale_shift_norm=True, num_heads=4, use_new_attention_order=True)
RIGHT = dict(num_heads=4, use_new_attention_order=True)
TRAIN = {"schedule": {"name": "linear_adm", "T": T}, "data": {"name": "digits"},
         "model": {"name": "adm", "time_input": "index", "config": ARCH},
         "loss": {"target": "eps"}, "optim": {"lr": 2e-3, "warmup_steps": 20},
         "ema": {"decay": 0.98, "start": 50}, "batch_size": 32, "steps": 200, "threads": 1,
         "log_every": 1000, "ckpt_every": 100000, "device": "cpu"}


@pytest.fixture(scope="session")
def trained_adm(tmp_path_factory):
    """(path of an ADM state dict, digits dataset): 200 steps of biaskit training, T = 250 with
    guided-diffusion's linear schedule, time fed as the integer t."""
    from biaskit.train import Trainer
    out = tmp_path_factory.mktemp("adm")
    trainer = Trainer({**TRAIN, "out": str(out / "run")})
    for _ in trainer.run(progress=False):
        pass
    path = out / "ema.pt"
    torch.save(trainer.ema.state_dict(), path)
    return path, trainer.data


def _load(trained_adm, **flags):
    path, data = trained_adm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return biaskit.load(path, noise_schedule="linear", diffusion_steps=T,
                            data_range=data.data_range, **flags)


def _eps_mse(d, x0, t, seed=1):
    """Eps-MSE of d on x0 at step t, computed here from x_t = alpha x0 + sigma eps."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(x0.shape, generator=g)
    abar = d.schedule.abar[t].float()
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    with torch.no_grad():
        return float((d(x_t, torch.full((x0.shape[0],), t)).eps_hat - eps).square().mean())


def test_right_settings_have_lowest_error_and_pass(trained_adm):
    d = _load(trained_adm, **RIGHT)
    x0 = trained_adm[1].test
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the right settings
        df = check_settings(d, x0)
    assert df["chosen"].sum() == 1 and df.loc[df["score"].idxmin(), "chosen"]
    assert d.info["settings_check"]["best"] == d.info["settings_check"]["chosen"]  # in metadata
    # the trained network denoises: far below eps_hat = 0 (eps-MSE 1) at every checked t
    assert all(_eps_mse(d, x0[:64], t) < 0.5 for t in (75, 125, 175, 225))


@pytest.mark.parametrize("wrong,flag", [
    (dict(num_heads=1), "--num-heads 4 --use-new-attention-order True"),
    (dict(num_heads=4), "--use-new-attention-order True"),
])
def test_wrong_heads_are_measurably_worse_and_flagged(trained_adm, wrong, flag):
    right, bad = _load(trained_adm, **RIGHT), _load(trained_adm, **wrong)
    x0 = trained_adm[1].test
    # independent of the check's own draws: other samples, other noise, one t
    assert _eps_mse(bad, x0[64:192], 175) > 1.02 * _eps_mse(right, x0[64:192], 175)
    with pytest.warns(UserWarning, match=flag) as rec:
        df = check_settings(bad, x0, mode="warn")
    assert len(rec) == 1
    best = df.loc[df["score"].idxmin()]
    assert best["z"] > CLEAR[0] and best["heads"] == "num_heads=4 use_new_attention_order=True"


def test_wrong_time_scaling_is_certain_and_stops(trained_adm):
    bad = _load(trained_adm, rescale_timesteps=True, **RIGHT)
    x0 = trained_adm[1].test
    assert torch.allclose(bad.time_features(torch.tensor([10])), torch.tensor([40.0]))  # 1000/250 t
    assert _eps_mse(bad, x0[64:192], 175) > 1.25 * _eps_mse(_load(trained_adm, **RIGHT), x0[64:192], 175)
    with pytest.raises(ValueError, match=r"--rescale-timesteps False.*--settings-check warn"):
        check_settings(bad, x0)
    with pytest.warns(UserWarning, match="rescale-timesteps False"):
        df = check_settings(bad, x0, mode="warn")
    best = df.loc[df["score"].idxmin()]
    assert best["z"] > CERTAIN[0] and best["rel"] > CERTAIN[1]


def test_equivalent_settings_are_tried_once_and_non_adm_is_skipped(trained_adm):
    d = _load(trained_adm, **RIGHT)
    df = evaluate_settings(d, trained_adm[1].test, n=4)
    # 32-channel blocks: num_heads 1, 2, 4, 8 and num_head_channels 32 (= 1 head) in both orders
    # where heads > 1, once for one head: 1 + 3 * 2 = 7 head settings (the chosen is one of
    # them), times 2 time conventions (T = 250 != 1000); then the two other data ranges ([0, 1],
    # [-0.5, 0.5]; digits are in [-1, 1]) and the three other targets (x0, v, flow), one at a time
    assert len(df) == 14 + 2 + 3 and df["setting"].is_unique
    assert np.isclose(df.loc[df["chosen"], "diff"].iloc[0], 0)
    assert check_settings(biaskit.load("oracle:gmm2d"), torch.zeros(4, 2)) is None
    assert check_settings(d, trained_adm[1].test, mode="off") is None


# ---------------------------------------------------------------------------------------------
# every third-party loader: a plugin whose exact answer is known, and the real MNIST DDPM

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
MNIST = ROOT / ".." / "shared" / "checkpoints" / "mnist-ddpm-cnn" / "ddpm_mnist_starter.pth"
MNIST_SPEC = f"{ROOT / 'examples' / 'mnist_ddpm_cnn.py'}:factory"
MNIST_RIGHT = dict(state_dict_prefix="gt.", abar_key="alpha_t", time_input="scaled",
                   time_scale=1e-3, data_range=(-0.5, 0.5), trained_timesteps="1:999")

# the exact eps predictor of Gaussian data N(0, V I) noised by x = a x0 + s eps, fed the VP sigma
# s: E[eps | x] = s x / (a^2 V + s^2) with a = sqrt(1 - s^2) (a network "trained" with known
# settings: time input sigma, data range [-1, 1] as declared, target eps)
GAUSS_NET = '''
import torch
from torch import nn
class GaussEps(nn.Module):
    def __init__(self, V):
        super().__init__()
        self.V = V
    def forward(self, x, s):
        s = s.double().clamp(0, 1).reshape(-1, *([1] * (x.ndim - 1)))
        return (s * x.double() / ((1 - s**2) * self.V + s**2)).to(x.dtype)
def factory(V=1.0):
    return GaussEps(V)
class Zero(nn.Module):
    def forward(self, x, s):
        return torch.zeros_like(x)
def zero():
    return Zero()
'''
V = 1.0


@pytest.fixture
def gauss_spec(tmp_path):
    f = tmp_path / "gauss_net.py"
    f.write_text(GAUSS_NET)
    return f"{f}:factory"


def _gauss(spec, **kw):
    return biaskit.load(None, model_spec=spec, noise_schedule="linear", diffusion_steps=1000,
                        factory_kwargs={"V": V}, channels=None, **{"time_input": "sigma", **kw})


def _gauss_x0(n=64, dim=64, seed=3):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)) * V ** 0.5


def test_exact_plugin_passes_and_its_eps_error_is_the_closed_form(gauss_spec):
    d = _gauss(gauss_spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = check_settings(d, _gauss_x0())
    rec = d.info["settings_check"]
    assert rec["best"] == rec["chosen"] and rec["outcome"] == "ok" and not rec["warnings"]
    # the least eps-MSE of N(0, V) data: a^2 V / (a^2 V + s^2), DDPM's linear betas restated
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    for t, e in rec["eps_mse_by_t"].items():
        a2 = float(abar[int(t)])
        exact = a2 * V / (a2 * V + 1 - a2)
        assert abs(e - exact) < 0.1 * exact, (t, e, exact)  # 32 x 64 elements: se ~ 3%
    assert rec["forward_passes"] == len(df) * 32 * 4 + 4 * 32  # stated cost: candidates + ends
    assert set(df["time"]) >= {"time_input=sigma", "time_input=index", "time_input=logsnr"}


def test_wrong_time_input_on_a_plugin_is_named_and_stops(gauss_spec):
    # fed t / 1000 instead of sigma: at t = 300 the net takes s = 0.3 for s = 0.85 (eps-MSE about
    # 2x the exact 0.28), so the check is certain
    d = _gauss(gauss_spec, time_input="scaled", time_scale=1e-3)
    with pytest.raises(ValueError, match=r"--time-input sigma\b.*--settings-check warn"):
        check_settings(d, _gauss_x0())
    assert d.time_input == "scaled" and d.time_scale == 1e-3  # the settings are put back


def test_a_net_that_predicts_zero_ties_every_range_and_is_loud(gauss_spec):
    """eps_hat = 0: every time input and data range has eps-MSE mean(eps^2) on the same draws,
    about 1, so no range wins (a wider range is scored by its eps error, which does not reward
    it; a narrower one would be scaled up), and the loud warning names the usual flags. Read as
    x0 = 0 it is better, but a constant output is named as such, not as an x0 model."""
    d = biaskit.load(None, model_spec=gauss_spec.replace(":factory", ":zero"), time_input="sigma",
                     noise_schedule="linear", diffusion_steps=1000, data_range=(0.0, 1.0))
    x0 = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning) as rec:
        df = check_settings(d, x0, mode="warn")
    messages = [str(w.message) for w in rec]
    (loud,) = [m for m in messages if "NO BETTER THAN PREDICTING ZERO" in m]
    assert "--time-input" in loud and "--data-range" in loud and "--parameterization" in loud
    assert not any("--data-range=" in m or "probably trained with" in m for m in messages)
    assert any("its output is the same for every input" in m for m in messages)
    eps = df[df["target"] == "parameterization=eps"]
    assert np.allclose(eps["eps_mse"], 1.0, atol=0.05) and np.allclose(eps["eps_mse"], eps["eps_mse"].iloc[0])
    assert (eps["diff"] == 0).all()  # [-1, 1] (wider) and [-0.5, 0.5] (as wide): exact ties


def _mnist(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return biaskit.load(MNIST, model_spec=MNIST_SPEC, **kw)


def _mnist_check(d, mode="auto"):
    from biaskit.data import load_dataset
    return check_settings(d, load_dataset("mnist", data_range=d.data_range).test, mode=mode)


def mnist(test):
    """The real checkpoint's tests: skipped without it, slow (a check is 1,400 forward passes of
    a 7x7-conv net on 28x28 digits: 3-10 s alone, 10-30 s on a loaded 2-core machine)."""
    skip = pytest.mark.skipif(not MNIST.is_file(), reason=f"third-party checkpoint not present at {MNIST}")
    return pytest.mark.slow(skip(test))


@mnist
def test_real_mnist_right_flags_pass_silently():
    d = _mnist(**MNIST_RIGHT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _mnist_check(d)
    rec = d.info["settings_check"]
    assert rec["outcome"] == "ok" and rec["ends"] == {}  # trained timesteps given: ends not probed
    assert rec["eps_mse_by_t"]["500"] < 0.05   # README: eps-MSE 0.0045 at t = 526


@mnist
@pytest.mark.parametrize("drop,flag", [
    (("time_input", "time_scale"), r"--time-input scaled --time-scale 0\.001\b"),
    (("data_range",), r"--data-range=-0\.5,0\.5"),
])
def test_real_mnist_misconfigurations_stop_naming_the_flag(drop, flag):
    d = _mnist(**{k: v for k, v in MNIST_RIGHT.items() if k not in drop})
    with pytest.raises(ValueError, match=flag + r".*--settings-check warn"):
        _mnist_check(d)
    if "time_input" in drop:  # fed the index: eps-MSE 1.03 at t = 500, where the per-pixel
        with pytest.warns(UserWarning) as rec:  # linear denoiser of the digits has 0.0057
            _mnist_check(d, mode="warn")
        assert any("NO BETTER THAN PREDICTING ZERO" in str(w.message) and "t = 500" in
                   str(w.message) for w in rec)


@mnist
def test_real_mnist_untrained_ends_are_named():
    d = _mnist(**{k: v for k, v in MNIST_RIGHT.items() if k != "trained_timesteps"})
    with pytest.warns(UserWarning, match=r"--trained-timesteps 1:999") as rec:
        _mnist_check(d)
    assert len(rec) == 1
    ends = d.info["settings_check"]["ends"]["eps_mse"]
    assert ends["0"] > 2 * ends["1"]   # t = 0 was never drawn in training (1..999)


# a flow-matching net, exact for N(0, V) data: x = (1 - t) x0 + t eps, u = eps - x0, so
# E[u | x] = (t - (1 - t) V) x / ((1 - t)^2 V + t^2); fed t in [0, 1] (clamped, as a net's range)
FLOW_NET = '''
import torch
from torch import nn
class FlowU(nn.Module):
    def forward(self, x, t):
        t = t.double().clamp(0, 1).reshape(-1, *([1] * (x.ndim - 1)))
        V = 1.0
        return ((t - (1 - t) * V) * x.double() / ((1 - t) ** 2 * V + t ** 2)).to(x.dtype)
def factory():
    return FlowU()
'''


def test_process_plugin_passes_right_and_names_a_wrong_time_scale(tmp_path):
    f = tmp_path / "flow_net.py"
    f.write_text(FLOW_NET)
    x0 = _gauss_x0()

    def load(**kw):
        return biaskit.load(None, model_spec=f"{f}:factory", process="flow", **kw)

    d = load()  # default: target flow, time input t (scale 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = check_settings(d, x0)
    rec = d.info["settings_check"]
    assert rec["outcome"] == "ok" and rec["ends"] == {}  # a process has no untrained ends
    assert {"time_input=c_noise", "time_input=t time_scale=1000"} <= set(df["time"])
    assert "parameterization=edm" in set(df["target"])
    # exact E[u | x] error in eps terms: eps-MSE of the posterior mean, a^2 V / (a^2 V + s^2)
    # at VP scale (a, s) = ((1 - t), t) / sqrt((1 - t)^2 + t^2): the same ratio
    for t_view, e in rec["eps_mse_by_t"].items():
        lam = float(d.view_logsnr[d.schedule.timesteps.tolist().index(int(t_view))])
        snr = np.exp(lam)
        assert abs(e - snr * V / (snr * V + 1)) < 0.12 * snr * V / (snr * V + 1) + 1e-3
    bad = load(time_scale=1000.0)  # fed 1000 t: clamped to 1 (pure noise) almost everywhere
    with pytest.raises(ValueError, match=r"--time-input t --time-scale 1\b"):
        check_settings(bad, x0)
