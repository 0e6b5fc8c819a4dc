"""EDM2's learned uncertainty weighting: the learned log-variance reaches its closed-form optimum
exp(u*(lam)) = w E[mse | lam], and a run trains, saves, resumes and reads it back."""

import math

import pytest
import torch

from biaskit.config import LossConfig, load_config
from biaskit.processes import get_process
from biaskit.train.process_objective import ProcessObjective


def _edm_f_mse(lam, m2, sd=0.5):
    """E[F^2] per element for a zero raw network: F = (x0 - c_skip x_e) / c_out, x_e = x0 + sigma eps,
    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2); with EDM's weight
    lambda = 1 / c_out^2 on the D-MSE, the F-MSE weight is 1 and
    E[F^2] = (sigma^2 m2 + sd^4) / ((sigma^2 + sd^2) sd^2)."""
    s2 = math.exp(-lam)
    return (s2 * m2 + sd**4) / ((s2 + sd**2) * sd**2)


@pytest.mark.slow
def test_learned_log_variance_reaches_the_closed_form_optimum():
    # x0 ~ N(0, 1) per element (m2 = 1 != sigma_data^2, so the optimum varies from 1 to 4 over lam)
    cfg = LossConfig(target="edm", weighting="edm", density="lognormal_sigma:-1.2:1.2", uncertainty=True)
    obj = ProcessObjective(cfg, get_process("edm"), "edm", lambda t, lam: t, 0.5)
    assert obj.logvar is not None and float(obj.logvar.weight(torch.zeros(1))) == 1.0   # starts unweighted

    def zero_net(x, t):
        return torch.zeros_like(x)

    opt = torch.optim.Adam(obj.logvar.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    for step in range(1200):
        if step == 800:   # a smaller step to settle (batch noise of the stochastic optimum ~1%)
            opt.param_groups[0]["lr"] = 0.003
        x0 = torch.randn(4096, 8, generator=g, dtype=torch.float64)
        eps = torch.randn(4096, 8, generator=g, dtype=torch.float64)
        t = obj.sampler(torch.rand(4096, generator=g, dtype=torch.float64))
        loss, _ = obj.loss(zero_net, x0, t, eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for lam in (-2.0, 0.0, 2.4, 5.0):   # inside the density's bulk, lam ~ N(2.4, 2.4^2)
        want = _edm_f_mse(lam, m2=1.0)
        got = 1 / float(obj.logvar.weight(torch.tensor([lam])))
        assert got == pytest.approx(want, rel=0.02), (lam, got, want)
    assert _edm_f_mse(-2.0, 1.0) / _edm_f_mse(5.0, 1.0) > 2.5      # the optimum is far from constant


def test_uncertainty_run_saves_resumes_and_reads_back(tmp_path):
    from biaskit.train import run_training
    from biaskit.train.uncertainty import learned_weight
    cfg = {"model": {"name": "mlp", "config": {"hidden": 32, "blocks": 1, "emb_dim": 32, "freq_dim": 16}},
           "data": {"name": "gmm", "n_train": 512, "n_test": 64, "options": {"dim": 2, "K": 4}},
           "process": {"name": "edm"},
           "loss": {"target": "edm", "weighting": "edm", "density": "lognormal_sigma:-1.2:1.2",
                    "uncertainty": True},
           "optim": {"lr": 1e-2}, "batch_size": 64, "steps": 20, "log_every": 10, "ckpt_every": 10,
           "out": str(tmp_path / "r"), "device": "cpu", "threads": 1}
    run_training(dict(cfg, steps=10), progress=False)
    run_training(cfg, progress=False, resume=True)
    w = learned_weight(tmp_path / "r", torch.tensor([-2.0, 2.4]))
    assert w.shape == (2,) and torch.isfinite(w).all() and not torch.allclose(w, torch.ones(2, dtype=torch.float64))
    straight = dict(cfg, out=str(tmp_path / "s"))
    run_training(straight, progress=False)   # resuming at 10 gives the same learned weight as 20 at once
    torch.testing.assert_close(learned_weight(tmp_path / "s", torch.tensor([-2.0, 2.4])), w)


def test_uncertainty_needs_a_continuous_process():
    with pytest.raises(ValueError, match="loss.uncertainty"):
        load_config({"loss": {"uncertainty": True}, "data": {"name": "gmm"}, "model": {"name": "mlp"}})
