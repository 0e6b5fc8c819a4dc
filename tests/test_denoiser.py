"""The Denoiser interface: time conventions, parameterizations and respaced views."""

import pytest
import torch
from torch import nn

from biaskit import Denoiser
from biaskit.schedules import linear, respace


class Echo(nn.Module):
    """Returns the time input broadcast over x, so tests can read what the network was fed."""

    def forward(self, x, t):
        return t.float().reshape(-1, *([1] * (x.ndim - 1))).expand_as(x).clone()


def test_time_inputs():
    s = linear(1000)
    x = torch.zeros(3, 2)
    t = torch.tensor([0, 10, 999])
    assert Denoiser(Echo(), s, "x0")(x, t).out[:, 0].tolist() == [0, 10, 999]
    scaled = Denoiser(Echo(), s, "x0", time_input="scaled")(x, t).out[:, 0]
    torch.testing.assert_close(scaled, torch.tensor([0, 0.01, 0.999]))
    sig = Denoiser(Echo(), s, "x0", time_input="sigma")(x, t).out[:, 0]
    torch.testing.assert_close(sig, s.sigma[t].float())


def test_respaced_view_feeds_parent_timesteps():
    s = linear(1000)
    d = Denoiser(Echo(), s, "x0", time_input="scaled").with_schedule(respace(s, 10))
    out = d(torch.zeros(2, 1), torch.tensor([1, 9])).out[:, 0]
    torch.testing.assert_close(out, torch.tensor([0.111, 0.999]))


def test_eps_zero_network_gives_x_t_over_alpha():
    s = linear(1000)
    d = Denoiser(lambda x, t: torch.zeros_like(x), s, "eps")
    x = torch.randn(4, 3)
    p = d(x, torch.tensor(500))
    torch.testing.assert_close(p.x0_hat, x / s.alpha[500].float())
    torch.testing.assert_close(p.v_hat, s.alpha[500].float() * 0 - s.sigma[500].float() * p.x0_hat)


def test_clip_recomputes_eps():
    s = linear(1000)
    d = Denoiser(lambda x, t: 5 * torch.ones_like(x), s, "x0", clip=True)
    x = torch.randn(2, 3)
    p = d(x, torch.tensor([100, 100]))
    assert p.x0_hat.max() == 1.0
    a, sg = s.alpha[100].float(), s.sigma[100].float()
    torch.testing.assert_close(p.eps_hat, (x - a * 1.0) / sg)


def test_bad_time_input():
    with pytest.raises(ValueError, match="valid: index"):
        Denoiser(Echo(), linear(10), time_input="minutes")


def test_device_and_resolve_device():
    from biaskit.denoiser import resolve_device
    assert Denoiser(Echo(), linear(10)).device == torch.device("cpu")  # no parameters: cpu
    assert Denoiser(nn.Linear(2, 2), linear(10)).device == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected and resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
