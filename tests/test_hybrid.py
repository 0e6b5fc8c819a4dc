"""L_hybrid against guided-diffusion's training_losses (learn_sigma, rescale_learned_sigmas), restated
here in numpy from its definitions; a learned-variance model trained by biaskit samples with
variance="learned"; the Debias fork's objective (debias_fork) against biaskit's debias."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from biaskit import weighting as W
from biaskit.models.mlp import MLP
from biaskit.schedules import get_schedule, respace
from biaskit.train import diffusion_loss
from biaskit.train.hybrid import VarianceBound


# --- guided-diffusion, restated from its definitions (numpy, float64) --------------------------
def _normal_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1.0 + lv2 - lv1 + np.exp(lv1 - lv2) + (m1 - m2) ** 2 * np.exp(-lv2))


def _cdf(x):  # approx_standard_normal_cdf
    return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def _decoder_log_likelihood(x, means, log_scales):  # discretized_gaussian_log_likelihood, x in [-1, 1]
    c = x - means
    inv = np.exp(-log_scales)
    cdf_plus, cdf_min = _cdf(inv * (c + 1 / 255)), _cdf(inv * (c - 1 / 255))
    log_cdf_plus = np.log(np.maximum(cdf_plus, 1e-12))
    log_1m_cdf_min = np.log(np.maximum(1 - cdf_min, 1e-12))
    log_delta = np.log(np.maximum(cdf_plus - cdf_min, 1e-12))
    return np.where(x < -0.999, log_cdf_plus, np.where(x > 0.999, log_1m_cdf_min, log_delta))


def _reference_losses(betas, x0, eps, t, out, target, w):
    """guided-diffusion's training_losses (MSE mean term, learned range variance, RESCALED_MSE) with
    the Debias fork's weight ``w`` (T,) on the MSE; ``out`` the 2C network output at x_t."""
    T = len(betas)
    alphas_cumprod = np.cumprod(1.0 - betas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    post_var = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    post_log_var_clipped = np.log(np.append(post_var[1], post_var[1:]))
    coef1 = betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    coef2 = (1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod)
    col = lambda a: a[t][:, None]  # noqa: E731
    x_t = np.sqrt(col(alphas_cumprod)) * x0 + np.sqrt(1 - col(alphas_cumprod)) * eps
    C = x0.shape[1]
    model_output, var_values = out[:, :C], out[:, C:]
    # the model's mean from x0_hat (clip_denoised=False in the vb term)
    if target == "eps":
        x0_hat = np.sqrt(1 / col(alphas_cumprod)) * x_t - np.sqrt(1 / col(alphas_cumprod) - 1) * model_output
        tgt = eps
    elif target == "x0":
        x0_hat, tgt = model_output, x0
    else:  # v = sqrt(abar) eps - sqrt(1 - abar) x0
        a, s = np.sqrt(col(alphas_cumprod)), np.sqrt(1 - col(alphas_cumprod))
        x0_hat, tgt = a * x_t - s * model_output, a * eps - s * x0
    min_log, max_log = col(post_log_var_clipped), np.log(col(betas))
    frac = (var_values + 1) / 2
    model_log_var = frac * max_log + (1 - frac) * min_log
    model_mean = col(coef1) * x0_hat + col(coef2) * x_t
    true_mean = col(coef1) * x0 + col(coef2) * x_t
    kl = _normal_kl(true_mean, min_log, model_mean, model_log_var).mean(1) / np.log(2.0)
    nll = -_decoder_log_likelihood(x0, model_mean, 0.5 * model_log_var).mean(1) / np.log(2.0)
    vb = np.where(t == 0, nll, kl) * T / 1000.0
    mse = ((tgt - model_output) ** 2).mean(1)
    return w[t] * mse + vb


def _batch(B=24, D=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, 256, (B, D), generator=g).double() / 255 * 2 - 1  # 8-bit data, edges included
    eps = torch.randn(B, D, generator=g, dtype=torch.float64)
    return x0, eps


@pytest.mark.parametrize("target,weighting,respaced", [("eps", "constant", False), ("eps", "debias", True),
                                                      ("x0", "debias_fork", False), ("v", "debias", True)])
def test_hybrid_loss_equals_guided_diffusion_training_losses(target, weighting, respaced):
    sched = get_schedule("linear", 1000)
    betas = np.linspace(1e-4, 0.02, 1000)  # DDPM's linear betas (guided-diffusion at T = 1000)
    if respaced:  # guided-diffusion's respacing: kept abar, betas recomputed; T / 1000 = 0.1
        keep = list(range(0, 1000, 10))
        sched = respace(sched, keep)
        abar = np.cumprod(1 - betas)[keep]
        betas = 1 - abar / np.append(1.0, abar[:-1])
    T = len(betas)
    x0, eps = _batch()
    t = torch.tensor([0, 0, 1, 2, T - 1, T - 2] + list(range(3, T, T // 18))[:18])
    torch.manual_seed(0)
    net = MLP(dim=6, hidden=32, blocks=1, emb_dim=16, freq_dim=16, learn_sigma=True).double()
    time_in = torch.arange(T, dtype=torch.float64)
    w_t = W.per_sample_weights(weighting, sched, target)
    loss, _ = diffusion_loss(net, time_in, x0, t, eps, sched.alpha, sched.sigma, target, w_t,
                             vlb=VarianceBound(sched, target))
    # the reference: its own x_t and weights, the same network
    snr = np.cumprod(1 - betas) / (1 - np.cumprod(1 - betas))
    w = {("eps", "constant"): np.ones(T), ("eps", "debias"): snr ** -0.5, ("x0", "debias_fork"): snr ** -0.5,
         ("v", "debias"): snr ** 0.5 / (snr + 1)}[target, weighting]
    ab = np.cumprod(1 - betas)[t.numpy()][:, None]
    x_t = np.sqrt(ab) * x0.numpy() + np.sqrt(1 - ab) * eps.numpy()
    with torch.no_grad():
        out = net(torch.from_numpy(x_t), time_in[t]).numpy()
    ref = _reference_losses(betas, x0.numpy(), eps.numpy(), t.numpy(), out, target, w)
    assert ref[t.numpy() == 0].mean() > 0 and np.isfinite(ref).all()
    assert abs(loss.item() - ref.mean()) <= 1e-6 * abs(ref.mean())


def test_variance_bound_stops_the_gradient_on_the_mean():
    sched = get_schedule("linear", 1000)
    x0, eps = _batch()
    t = torch.arange(0, 1000, 42)[:24]
    a, s = sched.alpha[t, None], sched.sigma[t, None]
    x_t = a * x0 + s * eps
    mean = torch.randn_like(x0).requires_grad_(True)
    var = torch.zeros_like(x0).requires_grad_(True)
    vb = VarianceBound(sched, "eps")(mean, var, x0, x_t, t).sum()
    g_mean, g_var = torch.autograd.grad(vb, (mean, var), allow_unused=True)
    assert g_mean is None and g_var.abs().sum() > 0


def test_debias_fork_equals_debias_for_eps_and_differs_by_derived_factor():
    sched = get_schedule("linear", 1000)
    snr = sched.snr.double()
    for target, factor in (("eps", torch.ones_like(snr)), ("x0", 1 / snr), ("v", (snr + 1) / snr)):
        fork = W.per_sample_weights("debias_fork", sched, target)
        ref = W.per_sample_weights("debias", sched, target)
        torch.testing.assert_close(fork, ref * factor, rtol=1e-12, atol=0)
        torch.testing.assert_close(fork, snr ** -0.5, rtol=1e-12, atol=0)  # the fork: 1/sqrt(snr) on its own MSE
    # normalisation is on the x0-equivalent weight of the objective actually trained
    x0_equiv = snr ** -0.5 * (snr + 1)  # w_v (snr + 1)
    torch.testing.assert_close(W.per_sample_weights("debias_fork", sched, "v", normalize="mean"),
                               snr ** -0.5 / x0_equiv.mean(), rtol=1e-12, atol=0)


def test_debias_fork_refused_on_a_continuous_process(tmp_path):
    from biaskit.config import load_config
    with pytest.raises(ValueError, match="loss.weighting: debias_fork"):
        load_config({"process": {"name": "flow"}, "loss": {"target": "flow", "weighting": "debias_fork"},
                     "out": str(tmp_path / "r")})


@pytest.mark.slow
def test_learned_variance_gmm_samples_like_the_data(tmp_path):
    from biaskit import metrics as M
    from biaskit.checkpoint import load_run
    from biaskit.data import load_dataset
    from biaskit.sampling import sample
    from biaskit.train import run_training
    torch.set_num_threads(1)
    ds = load_dataset("gmm", seed=0, n_train=20000, n_test=1000, dim=2, K=8)
    cfg = {"data": {"name": "gmm", "n_train": 20000, "n_test": 1000, "options": {"dim": 2, "K": 8}},
           "model": {"name": "mlp", "config": {"hidden": 128, "blocks": 3, "learn_sigma": True}},
           "optim": {"lr": 1e-3, "warmup_steps": 100}, "ema": {"decay": 0.995, "start": 100},
           "batch_size": 256, "steps": 2400, "ckpt_every": 2400, "log_every": 100,
           "out": str(tmp_path / "ls"), "device": "cpu", "threads": 1}
    trainer = run_training(cfg, progress=False)
    assert trainer.objective.vlb is not None
    den = load_run(tmp_path / "ls")
    with torch.no_grad():
        x = sample(den, (1000, 2), sampler="ddpm", steps=1000, variance="learned", seed=1,
                   progress=False).x0
        pred = den(torch.zeros(4, 2), torch.tensor([1, 10, 100, 999]))
    assert pred.var_out.abs().max() < 1.5 and not torch.allclose(pred.var_out, pred.var_out[:1])
    ll_data = M.gmm_log_likelihood(ds.test, ds.mixture, n_boot=0).value
    ll, cov, off, tv = M.gmm_metrics(x, ds.mixture, n_boot=0)
    assert cov.value == 1 and off.value < 0.05 and tv.value < 0.1
    assert abs(ll.value - ll_data) < 0.5 * math.log(2) * 2  # within 0.7 nats per point of the data's


@pytest.mark.parametrize("v,warns", [(0.9, False), (3.0, True)])
def test_learned_variance_sampling_warns_when_v_leaves_its_range(v, warns):
    import warnings
    from biaskit.denoiser import Denoiser
    from biaskit.sampling import sample

    class Net(torch.nn.Module):  # eps_hat = 0, variance half v everywhere
        def forward(self, x, t):
            return torch.cat([torch.zeros_like(x), torch.full_like(x, v)], 1)

    den = Denoiser(Net(), get_schedule("linear", 1000), "eps", channels=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sample(den, (4, 2), sampler="ddpm", steps=10, variance="learned", progress=False)
    hits = [w for w in caught if "left [-1, 1]" in str(w.message)]
    assert bool(hits) == warns
    if warns:
        assert "max |v| = 3" in str(hits[0].message)
