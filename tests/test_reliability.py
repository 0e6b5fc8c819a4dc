"""Hostile input, second round (issue 22): parameters out of range, training that turns
non-finite, misbehaving plugins, high-depth images, failing writes, huge requests and signals.

Each CLI case asserts the exit code, one ``error:`` line naming the parameter or file (with its
valid range), no traceback, and that what was written before is intact."""

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from biaskit import checkpoint as C
from biaskit.cli import main
from biaskit.data import load_dataset

ROOT = Path(__file__).resolve().parent.parent
SMALL_GMM = ["--set", "data.n_train=64", "--set", "batch_size=8", "--no-progress"]


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def error(capsys, *argv, rc: int = 2) -> str:
    """The one ``error:`` line of a command that must fail with exit code ``rc``."""
    got, err = cli(capsys, *argv)
    assert got == rc, err
    lines = [l for l in err.splitlines() if "error:" in l]
    assert len(lines) == 1, err
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- 1. parameters checked where they are parsed ---------------------------------------------------
@pytest.mark.parametrize("argv,words", [
    (["--weightings", "min_snr:-5"], ["min_snr", "gamma", "> 0", "-5"]),
    (["--weightings", "min_snr:0"], ["min_snr", "gamma", "> 0"]),
    (["--weightings", "p2:k=1:gamma=-1"], ["p2", "gamma", ">= 0"]),
    (["--weightings", "p2:k=nan"], ["p2", "k", "finite"]),
    (["--weightings", "edm:0"], ["edm", "sigma_data", "> 0"]),
    (["--weightings", "soft_min_snr:-0.5"], ["soft_min_snr", "sigma_data", "> 0"]),
    (["--weightings", "sigmoid:inf"], ["sigmoid", "b", "finite"]),
    (["--weightings", "trunc_snr:-1"], ["trunc_snr", "gamma", "> 0"]),
    (["--weightings", "min_snr:abc"], ["min_snr", "gamma", "a number", "'abc'"]),
    (["--snr-min", "-1"], ["snr_min", "> 0"]),
    (["--snr-min", "nan"], ["snr_min", "> 0"]),
    (["--density", "normal:0:1"], ["--density", "only with --process"]),
    (["--points", "50"], ["--points", "only with --process"]),
    (["--process", "edm", "--density", "normal:0:0"], ["normal", "std", "> 0"]),
    (["--process", "edm", "--density", "normal:0:-1"], ["normal", "std", "> 0"]),
    (["--process", "edm", "--density", "normal:nan:1"], ["normal", "mean", "finite"]),
    (["--process", "flow", "--density", "logit_normal:0:0"], ["logit_normal", " s ", "> 0"]),
    (["--process", "edm", "--density", "lognormal_sigma:inf:1.2"], ["lognormal_sigma", "p_mean", "finite"]),
    (["--process", "flow", "--density", "mode:nan"], ["mode", "scale", "[-1, 1.75"]),
    (["--process", "edm", "--density", "vp_linear:2.5"], ["vp_linear", "T", "integer >= 2"]),
])
def test_weightings_and_densities_are_checked(capsys, argv, words):
    line = error(capsys, "weights", *argv)
    assert all(w in line for w in words), line


def test_the_checked_values_still_give_the_closed_forms():
    """The checks let valid parameters through unchanged: min_snr:5 is min(snr, 5) on x0, and
    normal:1:2 is the N(1, 2^2) density (restated here from their definitions)."""
    from biaskit.densities import get_density
    from biaskit.weighting import get_weighting
    snr = torch.tensor([0.1, 1.0, 5.0, 50.0], dtype=torch.float64)
    np.testing.assert_allclose(get_weighting("min_snr:5")(snr, "x0").numpy(), [0.1, 1.0, 5.0, 5.0])
    lam = torch.tensor([-1.0, 1.0, 3.0], dtype=torch.float64)
    want = np.exp(-((lam.numpy() - 1) / 2) ** 2 / 2) / (2 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(get_density("normal:1:2")(lam).numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("sets,words", [
    (["loss.weighting=min_snr:-5"], ["loss.weighting", "min_snr", "gamma", "> 0"]),
    (["process.name=edm", "process.sigma_data=0"], ["process.sigma_data", "> 0"]),
    (["process.name=edm", "process.rho=0"], ["process.rho", "> 0"]),
    (["process.name=edm", "process.sigma_min=5", "process.sigma_max=1"], ["sigma_min < sigma_max"]),
    (["process.name=edm", "process.sigma_max=inf"], ["process.sigma_max", "finite"]),
    (["process.name=flow", "process.shift=nan"], ["process.shift", "> 0"]),
    (["process.name=vp_cosine", "process.logsnr_max=nan"], ["process.logsnr_max", "finite"]),
    (["process.name=edm", "loss.density=logit_normal:0:-1"], ["loss.density", "s ", "> 0"]),
    (["process.name=flow", "model.time_scale=0"], ["model.time_scale", "non-zero"]),
    (["optim.lr=-1e-3"], ["optim.lr", "> 0"]),
    (["optim.betas=[0.9,1.5]"], ["optim.betas[1]", "[0, 1)"]),
    (["loss.snr_min=0"], ["loss.snr_min", "> 0"]),
    (["data.options.std=-1"], ["std", "dataset gmm", "> 0"]),
    (["data.options.std=.nan"], ["std", "dataset gmm", "> 0"]),
    (["data.options.K=0"], ["K", "integer >= 1"]),
])
def test_training_parameters_are_checked_before_any_work(tmp_path, capsys, sets, words):
    out = tmp_path / "run"
    argv = ["train", "--preset", "gmm-debias", "--steps", 2, "--out", out, *SMALL_GMM]
    line = error(capsys, *argv, *(a for s in sets for a in ("--set", s)))
    assert all(w in line for w in words), line
    assert not out.exists()


PLUGIN = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, mode="ok"):
        super().__init__()
        self.mode, self.w = mode, nn.Parameter(torch.zeros(1))

    def forward(self, x, t):
        out = x * self.w
        if self.mode == "tuple":
            return out, out
        if self.mode == "batch":
            return out[:1]
        if self.mode == "flat":
            return out.flatten()
        return out

def ok():
    return Net()

def pair():
    return Net("tuple")

def short():
    return Net("batch")

def flat():
    return Net("flat")

def needs(width):
    return Net()

def raises():
    raise RuntimeError("no GPU here")
'''


@pytest.fixture()
def plugin(tmp_path) -> Path:
    (tmp_path / "plug.py").write_text(PLUGIN)
    return tmp_path / "plug.py"


def _probe_plugin(capsys, plugin, factory, out, *extra, rc=2):
    return error(capsys, "probe", f"{plugin}:{factory}", "--data", "gmm2d", "--noise-schedule", "linear",
                 "--samples", 8, "--num-timesteps", 2, "--no-plots", "--no-progress", "--out", out, *extra,
                 rc=rc)


@pytest.mark.parametrize("flag,value,words", [
    ("--time-scale", "0", ["--time-scale", "non-zero", "0.0"]),
    ("--time-scale", "nan", ["--time-scale", "finite"]),
    ("--diffusion-steps", "0", ["--diffusion-steps", "integer >= 1"]),
    ("--data-option", "std=-1", ["data option std", "gmm2d", "> 0"]),
    ("--data-option", "n_test=-5", ["data option n_test", ">= 0"]),
    ("--data-option", "radius=NaN", ["data option radius", "> 0"]),
])
def test_loader_and_data_options_are_checked(capsys, plugin, tmp_path, flag, value, words):
    line = _probe_plugin(capsys, plugin, "ok", tmp_path / "o", flag, value)
    assert all(w in line for w in words), line
    assert not (tmp_path / "o").exists()


# --- 3. plugins ------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory,words", [
    ("pair", ["returned a tuple of 2", "not a tensor"]),
    ("short", ["shape (1, 2)", "(16, 2)", "batch included"]),
    ("flat", ["shape (32,)", "(16, 2)"]),
    ("needs", ["cannot be called with no arguments", "width"]),
    ("raises", ["factory raised RuntimeError: no GPU here"]),
])
def test_plugin_output_and_factory_errors_are_one_line(capsys, plugin, tmp_path, factory, words):
    line = _probe_plugin(capsys, plugin, factory, tmp_path / "o")
    assert all(w in line for w in words), line
    assert "plug.py" in line or "plug" in line


def test_plugin_module_that_fails_to_import_is_one_line(capsys, tmp_path):
    (tmp_path / "bad.py").write_text("import torch\nraise ImportError('needs apex')\n")
    line = _probe_plugin(capsys, tmp_path / "bad.py", "f", tmp_path / "o")
    assert "bad.py" in line and "ImportError: needs apex" in line


def test_a_wrong_batch_is_refused_in_the_process_path_too(plugin):
    import biaskit
    d = biaskit.load(f"{plugin}:short", process="flow")
    with pytest.raises(ValueError, match=r"shape \(1, 2\).*\(3, 2\)"):
        d(torch.zeros(3, 2), torch.tensor([1, 2, 3]))


# --- 2. training that turns non-finite -----------------------------------------------------------------
def test_diverging_training_exits_nonzero_naming_the_step(tmp_path, capsys):
    out = tmp_path / "run"
    line = error(capsys, "train", "--preset", "gmm-debias", "--steps", 20, "--out", out, *SMALL_GMM,
                 "--set", "optim.lr=1e12", "--set", "optim.grad_clip=0", "--set", "ckpt_every=5", rc=1)
    assert "non-finite at step" in line and "no checkpoint was written" in line and str(out) in line
    assert not C.checkpoint_steps(out)


def _nan_after(monkeypatch, step: int, where: str):
    """Make the loss NaN from ``step`` on (``where="loss"``: the real loss, times NaN), or one EMA
    weight NaN at ``step`` (``"weights"``: the online loss stays finite, so only the check before
    saving sees it)."""
    import biaskit.train.trainer as T
    if where == "loss":
        original, calls = T.diffusion_loss, []

        def diffusion_loss(*args, **kwargs):
            calls.append(1)
            loss, mse = original(*args, **kwargs)
            return (loss * float("nan") if len(calls) >= step else loss), mse
        monkeypatch.setattr(T, "diffusion_loss", diffusion_loss)
        return
    original_step = T.Trainer.train_step

    def train_step(self):
        state = original_step(self)
        if self.step == step:
            with torch.no_grad():
                self._ema_params[0].view(-1)[0] = float("nan")
        return state
    monkeypatch.setattr(T.Trainer, "train_step", train_step)


@pytest.mark.parametrize("where,said", [("loss", "the loss turned non-finite at step 7"),
                                        ("weights", "the weights turned non-finite by step 10")])
def test_non_finite_training_keeps_the_last_finite_checkpoint(tmp_path, capsys, monkeypatch, where, said):
    out = tmp_path / "run"
    argv = ["train", "--preset", "gmm-debias", "--steps", 20, "--out", out, *SMALL_GMM,
            "--set", "ckpt_every=5", "--set", "log_every=100"]
    _nan_after(monkeypatch, 7 if where == "loss" else 8, where)
    line = error(capsys, *argv, rc=1)
    assert said in line and f"last finite checkpoint is step 5 in {out}" in line, line
    assert C.checkpoint_steps(out) == [5]
    for name in ("model.safetensors", "ema.safetensors"):
        from safetensors.torch import load_file
        assert all(torch.isfinite(v).all() for v in load_file(str(C.checkpoint_dir(out) / name)).values())
    assert not (out / C.LOCK_FILE).exists()
