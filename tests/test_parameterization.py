"""Target conversions: every parameterization recovers the true (x0, eps) from its exact target."""

import pytest
import torch

from biaskit import parameterization as P


@pytest.mark.parametrize("kind", ["eps", "x0", "v", "flow", "epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("abar", [0.999, 0.5, 1e-3])
def test_exact_target_gives_exact_estimates(kind, abar):
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64), torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    alpha, sigma = torch.tensor(abar).sqrt().double(), torch.tensor(1 - abar).sqrt().double()
    x_t = alpha * x0 + sigma * eps
    x0_hat, eps_hat = P.to_x0_eps(kind, P.target(kind, x0, eps, alpha, sigma), x_t, alpha, sigma)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, eps)


def test_v_definition_and_flow_definition():
    x0, eps = torch.tensor([1.0]), torch.tensor([2.0])
    a, s = torch.tensor(0.6), torch.tensor(0.8)
    assert P.target("v", x0, eps, a, s).item() == pytest.approx(0.6 * 2 - 0.8 * 1)
    assert P.target("flow", x0, eps, a, s).item() == pytest.approx(1.0)


def test_v_and_x0_finite_at_zero_snr():
    x0, eps = torch.randn(3), torch.randn(3)
    a, s = torch.tensor(0.0), torch.tensor(1.0)
    x0_hat, eps_hat = P.to_x0_eps("v", P.target("v", x0, eps, a, s), eps, a, s)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, eps)


def test_learned_variance_split():
    out = torch.arange(2 * 6 * 4).float().reshape(2, 6, 2, 2)
    mean, var = P.split_learned_variance(out, 3)
    assert torch.equal(mean, out[:, :3]) and torch.equal(var, out[:, 3:])
    assert P.split_learned_variance(out, 6)[1] is None
    with pytest.raises(ValueError, match="expected 4 or 8"):
        P.split_learned_variance(out, 4)


def test_bad_name():
    with pytest.raises(ValueError, match="valid: x0, eps, v, flow"):
        P.canonical("score")
