"""Fine-tuning a loaded model (init.path, ``biaskit train --init``): zero learning rate changes no
output bit, resume equals an uninterrupted run, the run records where it started, and what the
loaded model cannot be trained with is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import biaskit
from biaskit.checkpoint import read_run_info
from biaskit.cli import main
from biaskit.train import run_training

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / ".." / "shared" / "checkpoints" / "mnist-ddpm-cnn" / "ddpm_mnist_starter.pth"
MNIST_OPTIONS = {"model_spec": f"{ROOT / 'examples' / 'mnist_ddpm_cnn.py'}:factory",
                 "state_dict_prefix": "gt.", "abar_key": "alpha_t", "time_input": "scaled",
                 "time_scale": 0.001, "data_range": [-0.5, 0.5], "trained_timesteps": [1, 999]}
needs_mnist = pytest.mark.skipif(not MNIST.is_file(), reason="../shared MNIST checkpoint absent")


def _cfg(out, **over):
    cfg = {"data": {"name": "gmm", "n_train": 512, "n_test": 64, "options": {"dim": 2, "K": 4}},
           "model": {"name": "mlp", "config": {"hidden": 32, "blocks": 1, "emb_dim": 16, "freq_dim": 16}},
           "batch_size": 32, "steps": 4, "log_every": 1, "ckpt_every": 2, "out": str(out),
           "optim": {"lr": 1e-3}, "ema": {"decay": 0.9, "start": 0}, "device": "cpu", "threads": 1}
    cfg.update(over)
    if "init" in cfg:  # the loaded network is trained as it is
        del cfg["model"]
    return cfg


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A 4-step gmm MLP run (2-D, v target) to fine-tune."""
    out = tmp_path_factory.mktemp("ft") / "base"
    run_training(_cfg(out, loss={"target": "v"}), progress=False)
    return out


def _same_outputs(a, b, shape, ts):
    g = torch.Generator().manual_seed(3)
    x = torch.randn((6,) + shape, generator=g)
    with torch.no_grad():
        for t in ts:
            pa, pb = a(x, torch.full((6,), t)), b(x, torch.full((6,), t))
            if not (torch.equal(pa.out, pb.out) and torch.equal(pa.x0_hat, pb.x0_hat)):
                return False
    return True


def test_zero_lr_finetune_of_a_run_changes_no_output_bit(tmp_path, base_run):
    cfg = _cfg(tmp_path / "ft", init={"path": str(base_run)}, loss={"target": "v", "weighting": "debias"},
               optim={"lr": 0.0})
    trainer = run_training(cfg, progress=False)
    original = biaskit.load(base_run)
    for ema in (True, False):
        tuned = biaskit.load(tmp_path / "ft", online_weights=not ema)
        assert _same_outputs(tuned, original, (2,), [0, 17, 500, 999])
    info = read_run_info(tmp_path / "ft")
    assert info["init"]["path"] == str(base_run) and info["init"]["source"]["format"] == "run"
    assert info["train_config"]["init"]["path"] == str(base_run)
    # and a non-zero learning rate does move it (the comparison above can fail)
    moved = run_training({**cfg, "optim": {"lr": 1e-2}, "out": str(tmp_path / "ft2")}, progress=False)
    assert trainer.step == moved.step == 4
    assert not _same_outputs(biaskit.load(tmp_path / "ft2"), original, (2,), [500])


def test_finetune_resume_equals_uninterrupted(tmp_path, base_run):
    cfg = lambda out: _cfg(out, init={"path": str(base_run)}, loss={"target": "v", "weighting": "debias"},  # noqa: E731
                           steps=6, optim={"lr": 1e-3})
    full = run_training(cfg(tmp_path / "a"), progress=False)
    run_training(cfg(tmp_path / "b"), progress=False, stop_at=2)
    resumed = run_training(cfg(tmp_path / "b"), progress=False, resume=True)
    assert resumed.step == 6
    for a, b in ((full.net, resumed.net), (full.ema, resumed.ema)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(full.net.out.weight, biaskit.load(base_run).net.out.weight)


def test_finetune_refuses_another_target_or_data_range(tmp_path, base_run):
    with pytest.raises(ValueError, match="loss.target: the loaded model predicts 'v'"):
        run_training(_cfg(tmp_path / "x", init={"path": str(base_run)}, loss={"target": "eps"}), progress=False)
    data = {"name": "gmm", "n_train": 64, "n_test": 8, "options": {"dim": 2, "K": 4, "data_range": [0, 1]}}
    with pytest.raises(ValueError, match="data.options.data_range"):
        run_training(_cfg(tmp_path / "y", init={"path": str(base_run)}, loss={"target": "v"}, data=data),
                     progress=False)


@needs_mnist
def test_zero_lr_finetune_of_the_mnist_plugin_through_the_cli(tmp_path, capsys):
    out = tmp_path / "mnist-ft"
    flags = ["--model-spec", MNIST_OPTIONS["model_spec"], "--state-dict-prefix", "gt.", "--abar-key", "alpha_t",
             "--time-input", "scaled", "--time-scale", "0.001", "--data-range=-0.5,0.5",
             "--trained-timesteps", "1:999"]
    rc = main(["train", "--init", str(MNIST), *flags, "--set", "data.name=mnist", "--set", "data.n_train=64",
               "--set", "data.n_test=16", "--set", "optim.lr=0", "--set", "loss.weighting=debias",
               "--set", "batch_size=8", "--set", "threads=1", "--steps", "2", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    info = read_run_info(out)
    assert info["parameterization"] == "eps" and info["time_input"] == "scaled" and info["time_scale"] == 0.001
    assert info["init"]["source"]["sha256"].startswith("ce47bd2d")
    assert info["data"]["data_range"] == [-0.5, 0.5]
    original = biaskit.load(MNIST, **MNIST_OPTIONS)
    tuned = biaskit.load(out)
    assert tuned.schedule.same_as(original.schedule) and tuned.data_range == (-0.5, 0.5)
    assert _same_outputs(tuned, original, (1, 28, 28), [0, 500, 998])


def test_loader_flags_without_init_are_one_line_errors(capsys):
    rc = main(["train", "--abar-key", "alpha_t", "--print-config"])
    err = capsys.readouterr().err
    assert rc == 2 and "need --init PATH" in err and "Traceback" not in err


@pytest.mark.slow
@needs_mnist
def test_worked_study_script_runs_small(tmp_path):
    import importlib.util
    import pandas as pd
    spec = importlib.util.spec_from_file_location("finetune_mnist", ROOT / "examples" / "finetune_mnist.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    study.main(["--checkpoint", str(MNIST), "--out", str(tmp_path / "s"), "--steps", "2", "--batch-size", "4",
                "--n", "16", "--num-timesteps", "4", "--samples", "4", "--sample-steps", "2"])
    df = pd.read_csv(tmp_path / "s" / "compare.csv")
    summary = pd.read_csv(tmp_path / "s" / "summary.csv")
    assert set(summary.model) == {"constant - original", "debias - original", "debias - constant"}
    assert (tmp_path / "s" / "samples.png").is_file()
    # paired differences on common draws: (debias - constant) = (debias - orig) - (constant - orig)
    d = df[df.kind == "difference"].set_index(["model", "t"]).x0_mse
    for t in df.t.unique():  # compare.csv holds 6 significant digits
        a, b, c = d["debias - constant", t], d["debias - original", t], d["constant - original", t]
        assert abs(a - (b - c)) <= 1e-5 * max(abs(b), abs(c)) + 1e-15
    assert read_run_info(tmp_path / "s" / "debias")["train_config"]["loss"]["weighting"] == "debias"


@needs_mnist
def test_init_with_another_target_is_a_one_line_error(tmp_path, capsys):
    rc = main(["train", "--init", str(MNIST), "--model-spec", MNIST_OPTIONS["model_spec"], "--state-dict-prefix",
               "gt.", "--abar-key", "alpha_t", "--time-input", "scaled", "--time-scale", "0.001",
               "--data-range=-0.5,0.5", "--set", "data.name=mnist", "--set", "loss.target=v",
               "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if "error:" in line][0].count("loss.target") == 2


@pytest.mark.slow
def test_adm_study_script_reads_its_guided_diffusion_file_back_and_fine_tunes_it(tmp_path):
    """The learned-sigma ADM study: the base run saved as a plain guided-diffusion state dict reads
    back through the ADM loader to the same outputs (the script refuses otherwise), both tuned runs
    keep the 2C-output network (L_hybrid) and the paired differences are consistent."""
    import importlib.util
    import pandas as pd
    import biaskit
    spec = importlib.util.spec_from_file_location("finetune_adm", ROOT / "examples" / "finetune_adm.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    study.main(["--out", str(tmp_path / "s"), "--base-steps", "3", "--steps", "2", "--batch-size", "4",
                "--n", "8", "--num-timesteps", "3", "--samples", "4", "--sample-steps", "2"])
    sd = torch.load(tmp_path / "s" / "base" / "model.pt", weights_only=True)
    assert sd["out.2.weight"].shape[0] == 6  # learned variance: 2C outputs, guided-diffusion's key
    tuned = biaskit.load(tmp_path / "s" / "debias")
    assert read_run_info(tmp_path / "s" / "debias")["train_config"]["loss"]["weighting"] == "debias"
    assert tuned.net.out[2].weight.shape[0] == 6
    df = pd.read_csv(tmp_path / "s" / "compare.csv")
    d = df[df.kind == "difference"].set_index(["model", "t"]).x0_mse
    for t in df.t.unique():
        a, b, c = d["debias - constant", t], d["debias - original", t], d["constant - original", t]
        assert abs(a - (b - c)) <= 1e-5 * max(abs(b), abs(c)) + 1e-15
