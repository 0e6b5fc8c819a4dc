"""The Denoiser interface: time conventions, parameterizations and respaced views."""

import dataclasses

import pytest
import torch
from torch import nn

from biaskit import Denoiser
from biaskit.schedules import linear, respace
from biaskit.source import Source


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
    d = Denoiser(Echo(), respace(s, 10), "x0", time_input="scaled", time_scale=1 / 1000)
    out = d(torch.zeros(2, 1), torch.tensor([1, 9])).out[:, 0]
    torch.testing.assert_close(out, torch.tensor([0.111, 0.999]))


def test_source_is_typed_and_info_is_its_flat_read_only_view():
    s = linear(10)
    src = Source("adm", path="/m.pt", sha256="ab", shape=[3, 8, 8], name="m", extras={"config": {}})
    d = Denoiser(Echo(), s, source=src)
    assert d.source is src and d.shape == (3, 8, 8) and src.shape == (3, 8, 8)
    assert dict(d.info) == {"name": "m", "format": "adm", "path": "/m.pt", "sha256": "ab", "config": {}}
    assert d.describe()["sha256"] == "ab" and "Denoiser(adm, " in repr(d)
    with pytest.raises(TypeError):
        d.info["x"] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        src.path = "/other"
    assert src.with_extras(z=1).info["z"] == 1 and "z" not in src.info
    with pytest.raises(ValueError, match="unknown source format"):
        Source("onnx")
    # a flat description (info=) reads as the format it spells, keeping its keys and values
    for info in ({"run_dir": "/r", "step": 3, "weights": "ema"}, {"oracle": True, "K": 2},
                 {"name": "u", "format": "diffusers", "path": "/f", "sha256": {"a": "b"}, "x": 1},
                 {"step": 3, "weights": "ema"}, {"format": "adm"}, {}):
        d = Denoiser(Echo(), s, info=info)
        assert dict(d.info) == info and d.describe().items() >= info.items()
    assert Denoiser(Echo(), s, info={"run_dir": "/r", "step": 3}).source.format == "run"
    assert Denoiser(Echo(), s, info={"format": "adm"}).source.format == "module"  # no path: as given
    assert Denoiser(Echo(), s, info={"shape": [2]}).shape == (2,)
    assert Denoiser(Echo(), s, shape=(1, 4, 4)).source.shape == (1, 4, 4)
    with pytest.raises(ValueError, match="not both"):
        Denoiser(Echo(), s, source=src, info={})


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
