"""Conventions of third-party checkpoints as loader options: a named linear-family schedule with
other beta bounds (--beta-start / --beta-end), state-dict key renames (--rename-keys), and the
warning when a schedule ends far from SNR 0 and sampling starts from N(0, I)."""

import warnings

import numpy as np
import pytest
import torch

import biaskit
from biaskit.sampling import sample

PLUGIN = '''
import torch
from torch import nn

class Const(nn.Module):
    """eps_hat = c everywhere."""
    def __init__(self):
        super().__init__()
        self.c = nn.Parameter(torch.zeros(1))
    def forward(self, x, t):
        return torch.zeros_like(x) + self.c

def make():
    return Const()
'''


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "const.py").write_text(PLUGIN)
    return f"{tmp_path / 'const.py'}:make"


def _load(spec, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return biaskit.load(spec, **kw)


@pytest.mark.parametrize("name,T,lo,hi", [("linear", 50, 1e-4, 0.02), ("linear", 300, 5e-4, 0.03),
                                          ("scaled_linear", 50, 1e-4, 0.02)])
def test_beta_bounds_give_the_restated_schedule(spec, name, T, lo, hi):
    # linear: betas evenly spaced from lo to hi; scaled_linear: their square roots evenly spaced
    betas = np.linspace(lo, hi, T) if name == "linear" else np.linspace(lo ** 0.5, hi ** 0.5, T) ** 2
    abar = np.cumprod(1 - betas)
    d = _load(spec, noise_schedule=name, diffusion_steps=T, beta_start=lo, beta_end=hi)
    assert d.schedule.T == T and np.allclose(d.schedule.abar.numpy(), abar, rtol=1e-12)
    assert f"beta_start {lo:g}" in d.info["schedule_source"]


def test_beta_bounds_from_the_command_line_and_their_errors(spec, tmp_path, capsys):
    from biaskit.cli import build_parser, main
    from biaskit.commands.common import loader_kwargs
    args = build_parser().parse_args(["probe", spec, "--data", "gmm", "--out", "o", "--noise-schedule",
                                      "scaled_linear", "--diffusion-steps", "50", "--beta-start",
                                      "0.0001", "--beta-end", "0.02"])
    kw = loader_kwargs(args, "cpu")
    assert (kw["beta_start"], kw["beta_end"]) == (1e-4, 0.02)
    for bad, words in [(dict(noise_schedule="cosine", beta_end=0.02), "not 'cosine'"),
                       (dict(noise_schedule="linear", beta_start=0.03), "0 < start < end < 1"),
                       (dict(abar_key="a", beta_end=0.02), "drop --abar-key")]:
        with pytest.raises(ValueError, match=words):
            _load(spec, **bad)
    rc = main(["probe", spec, "--data", "gmm", "--out", str(tmp_path / "o"), "--noise-schedule",
               "cosine", "--beta-start", "0.001"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--beta-start" in err[0] and "Traceback" not in err[0]


def test_rename_keys_map_a_foreign_layout_onto_the_network(spec, tmp_path):
    f = tmp_path / "w.pt"
    torch.save({"model.const_value": torch.tensor([0.25]), "model.step": torch.tensor(3.0)}, f)
    d = _load(f, model_spec=spec, state_dict_prefix="model.", rename_keys="const_value=c,step=",
              strict=False, noise_schedule="linear")
    assert float(d.net.c) == 0.25
    assert d.info["rename_keys"] == [["const_value", "c"], ["step", ""]]  # into metadata
    x = torch.zeros(2, 1, 4, 4)
    assert torch.equal(d(x, torch.tensor([3, 7])).eps_hat, torch.full_like(x, 0.25))
    with pytest.raises(ValueError, match=r"--rename-keys nothing=c: no key of w.pt contains"):
        _load(f, model_spec=spec, rename_keys="nothing=c", noise_schedule="linear")
    with pytest.raises(ValueError, match="makes two keys of w.pt one"):
        _load(f, model_spec=spec, rename_keys="model.const_value=k,model.step=k",
              noise_schedule="linear")
    with pytest.raises(ValueError, match="OLD not empty"):
        _load(f, model_spec=spec, rename_keys="=c", noise_schedule="linear")


def test_sampling_from_noise_warns_when_the_schedule_ends_far_from_snr_zero(spec):
    # DDPM's linear betas at T = 50: abar_T = prod(1 - beta) restated here
    abar_T = float(np.prod(1 - np.linspace(1e-4, 0.02, 50)))
    assert 0.60 < abar_T < 0.61
    short = _load(spec, noise_schedule="linear", diffusion_steps=50)
    with pytest.warns(UserWarning, match=rf"abar_T = {abar_T:.3g} \(SNR {abar_T / (1 - abar_T):.3g}"):
        sample(short, (2, 1, 4, 4), steps=2, progress=False)
    full = _load(spec, noise_schedule="linear", diffusion_steps=1000)  # abar_T = 4.0e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample(full, (2, 1, 4, 4), steps=2, progress=False)
        sample(short, torch.zeros(2, 1, 4, 4), steps=2, progress=False)  # noise given: the caller's
