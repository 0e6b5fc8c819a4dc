"""Bad input, interrupted jobs and damaged files: each is one line naming the problem (issue 14).

A CLI case asserts the exit code, that stderr has no traceback, and that it names the problem."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from biaskit import checkpoint as C
from biaskit.study.cache import Cache
from biaskit.cli import main
from biaskit.config import get_preset, load_config
from biaskit.denoiser import Denoiser
from biaskit.schedules import get_schedule
from biaskit.train import run_training

TINY_UNET = ["--set", "model.config.channels=8", "--set", "model.config.channel_mult=[1]",
             "--set", "model.config.mid_attention=false", "--set", "data.n_train=64",
             "--set", "batch_size=8", "--no-progress"]


def cli(capsys, *argv):
    """(exit code, stderr) of ``biaskit ARGV``; never a traceback."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def error(capsys, *argv) -> str:
    rc, err = cli(capsys, *argv)
    assert rc == 2, err
    lines = [l for l in err.splitlines() if "error:" in l]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step digits UNet run (1 x 8 x 8, eps, debias) trained through the CLI."""
    out = tmp_path_factory.mktemp("runs") / "dg"
    assert main(["train", "--preset", "digits-debias", "--out", str(out), "--steps", "2", *TINY_UNET]) == 0
    return out


# --- sample ---------------------------------------------------------------------------------------
def test_sample_of_a_run_reads_the_recorded_shape(run, tmp_path, capsys):
    rc, err = cli(capsys, "sample", run, "--steps", 2, "--n", 3, "--out", tmp_path / "s", "--no-progress")
    assert rc == 0, err
    assert np.load(tmp_path / "s" / "samples.npz")["x0"].shape == (3, 1, 8, 8)


@pytest.mark.parametrize("argv,words", [
    (["--sampler", "dpmpp_2m", "--steps", "5000"], ["steps", "1..1000", "5000"]),
    (["--steps", "1,abc"], ["--steps", "'abc'"]),
    (["--shape", "1,x,8"], ["--shape", "'x'"]),
    (["--shape", "3,8,8"], ["(1, 8, 8)", "(3, 8, 8)"]),
    (["--eta", "-1"], ["--eta", ">= 0"]),
    (["--data-range=1,-1"], ["--data-range", "does not apply", "biaskit run"]),
    (["--schedule", "cosine"], ["--schedule", "does not apply"]),
])
def test_sample_bad_input_is_one_line(run, tmp_path, capsys, argv, words):
    line = error(capsys, "sample", run, *argv, "--out", tmp_path / "s", "--no-progress")
    assert all(w in line for w in words), line
    assert not (tmp_path / "s").exists()


def test_loader_flags_do_not_apply_to_oracles(tmp_path, capsys):
    line = error(capsys, "sample", "oracle:gmm2d", "--abar-key", "a", "--out", tmp_path, "--no-progress")
    assert "--abar-key does not apply to an oracle" in line


def test_nan_chain_exits_nonzero_naming_the_first_step(run, tmp_path, capsys):
    bad = tmp_path / "nan"
    import shutil
    shutil.copytree(run, bad)
    ema = C.checkpoint_dir(bad) / "ema.safetensors"
    from safetensors.torch import load_file, save_file
    save_file({k: torch.full_like(v, float("nan")) for k, v in load_file(str(ema)).items()}, str(ema))
    line = error(capsys, "sample", bad, "--steps", 3, "--n", 2, "--out", tmp_path / "s", "--no-progress")
    assert "non-finite" in line and "model call 0" in line and "t = 999" in line
    assert not (tmp_path / "s").exists()


# --- probe ------------------------------------------------------------------------------------------
def test_probe_bad_lists_and_shapes(run, tmp_path, capsys):
    line = error(capsys, "probe", run, "--data", "digits", "--timesteps", "1,abc", "--out", tmp_path)
    assert "--timesteps" in line and "'abc'" in line
    line = error(capsys, "probe", run, "--data", "gmm", "--out", tmp_path / "p", "--no-progress",
                 "--num-timesteps", 2, "--samples", 8, "--no-plots")
    assert "(1, 8, 8)" in line and "(2,)" in line


def _png_folder(folder: Path, modes, size=16):
    from PIL import Image
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, mode in enumerate(modes):
        c = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
        a = rng.integers(0, 255, (size, size, c), dtype=np.uint8)
        Image.fromarray(a[..., 0] if c == 1 else a, mode).save(folder / f"{i:02d}.png")
    return folder


def test_size_mismatch_is_an_error_unless_asked_for(run, tmp_path, capsys):
    folder = _png_folder(tmp_path / "imgs", ["L"] * 20)
    argv = ["probe", run, "--data", folder, "--data-option", "mode=L", "--data-option", "size=16",
            "--num-timesteps", 2, "--samples", 2, "--no-plots", "--no-progress"]
    line = error(capsys, *argv, "--out", tmp_path / "a")
    assert "(1, 8, 8)" in line and "(1, 16, 16)" in line and "--any-size" in line
    rc, err = cli(capsys, *argv, "--out", tmp_path / "b", "--any-size")
    assert rc == 0, err


def test_mixed_folder_says_what_it_converted(tmp_path):
    from biaskit.data import load_dataset
    folder = _png_folder(tmp_path / "mixed", ["L", "RGB", "RGBA", "RGBA"] * 3)
    with pytest.warns(UserWarning, match=r"converted to mode RGB: 3 L, 6 RGBA"):
        load_dataset(str(folder), size=8)


def test_python_api_shape_errors_name_both_shapes():
    net = torch.nn.Conv2d(1, 1, 1)
    d = Denoiser(lambda x, t: net(x), get_schedule("linear", 10), shape=(1, 8, 8), name="m")
    with pytest.raises(ValueError, match=r"\(1, 8, 8\).*\(3, 8, 8\)"):
        d(torch.zeros(2, 3, 8, 8), 5)
    with pytest.raises(ValueError, match=r"\(1, 8, 8\).*\(1, 16, 16\)"):
        d(torch.zeros(2, 1, 16, 16), 5)
    d.any_size = True
    assert d(torch.zeros(2, 1, 16, 16), 5).x0_hat.shape == (2, 1, 16, 16)
    lin = torch.nn.Linear(2, 2)  # a network of unknown shape: torch's error in one line
    with pytest.raises(ValueError, match=r"failed on data of shape \(3,\): mat1 and mat2"):
        Denoiser(lambda x, t: lin(x), get_schedule("linear", 10), name="u")(torch.zeros(4, 3), 1)


def test_repr_is_one_line(run):
    import biaskit
    r = repr(biaskit.load(run))
    assert "\n" not in r and r == (f"Denoiser(biaskit run, eps, linear T=1000, shape (1, 8, 8), "
                                   f"source {run})")
    assert repr(biaskit.load("oracle:gmm2d")).startswith("Denoiser(oracle, x0, linear T=1000, shape (2,)")


# --- train ------------------------------------------------------------------------------------------
def test_resume_with_another_config_names_the_keys(run, capsys):
    line = error(capsys, "train", "--preset", "digits-constant", "--out", run, "--steps", 3,
                 "--resume", *TINY_UNET, "--set", "optim.lr=1e-3")
    assert "loss.weighting, optim.lr differ" in line
    assert C.read_run_info(run)["train_config"]["loss"]["weighting"] == "debias"  # left as it was
    # steps, logging and device may change
    rc, err = cli(capsys, "train", "--preset", "digits-debias", "--out", run, "--steps", 3, "--resume",
                  *TINY_UNET, "--set", "log_every=1", "--device", "cpu")
    assert rc == 0, err
    assert C.checkpoint_steps(run)[-1] == 3


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_second_trainer_refuses_and_stale_locks_are_taken_over(tmp_path, capsys):
    import socket
    import time
    out = tmp_path / "r"
    first = subprocess.Popen([sys.executable, "-m", "biaskit.cli", "train", "--preset", "gmm-debias",
                              "--out", str(out), "--steps", "1000000", "--no-progress"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "log.csv").is_file() and time.monotonic() < deadline:  # training for real
            time.sleep(0.2)
        line = error(capsys, "train", "--preset", "gmm-debias", "--out", out, "--steps", 2, "--no-progress")
        assert f"pid {first.pid}" in line and socket.gethostname() in line
    finally:
        first.kill()
        first.wait()
    assert C.check_lock(out)["pid"] == first.pid  # killed: its lock is stale now
    (out / "new").mkdir()
    (out / "new" / C.LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    rc, err = cli(capsys, "train", "--preset", "gmm-debias", "--out", out / "new", "--steps", 2,
                  "--no-progress")
    assert rc == 0 and "taking over the stale lock" in err
    assert not (out / "new" / C.LOCK_FILE).exists()  # released at the end


def test_ctrl_c_in_train_names_the_last_checkpoint_and_releases_the_lock(tmp_path, capsys, monkeypatch):
    from biaskit import train as T
    step = T.Trainer.train_step

    def interrupted(self):
        if self.step == 3:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(T.Trainer, "train_step", interrupted)
    out = tmp_path / "r"
    rc, err = cli(capsys, "train", "--preset", "gmm-debias", "--out", out, "--steps", 6,
                  "--set", "ckpt_every=2", "--no-progress")
    assert rc == 130 and "interrupted" in err and "step 2" in err and "--resume" in err
    assert len(err.strip().splitlines()) == 1
    assert not (out / C.LOCK_FILE).exists()


def test_empty_config_and_preset_names(tmp_path, capsys):
    (tmp_path / "empty.yaml").write_text("")
    assert "is empty" in error(capsys, "train", "--config", tmp_path / "empty.yaml")
    assert load_config("gmm-debias") == get_preset("gmm-debias")
    with pytest.raises(FileNotFoundError, match="get_preset"):
        run_training("gmm-nonsense")


@pytest.mark.parametrize("cmd", [["train", "--preset", "gmm-debias", "--steps", "2"],
                                 ["probe", "oracle:gmm2d", "--data", "gmm2d"],
                                 ["sample", "oracle:gmm2d"], ["figures", "--only", "00"]])
def test_out_is_checked_before_any_work(tmp_path, capsys, cmd):
    (tmp_path / "file").write_text("x")
    assert "is an existing file" in error(capsys, *cmd, "--out", tmp_path / "file")
    line = error(capsys, *cmd, "--out", "/proc/biaskit-test/out")  # not writable, even as root
    assert "cannot write in /proc" in line


# --- figures and the cache --------------------------------------------------------------------------
def test_figures_jobs_zero(tmp_path, capsys):
    assert "--jobs must be at least 1, got 0" in error(capsys, "figures", "--jobs", 0, "--out", tmp_path)


def test_ctrl_c_in_figures_says_what_finished(tmp_path, capsys, monkeypatch):
    from biaskit.study import runner as F
    calls = []

    def fake(task):
        calls.append(task[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return F.NotebookResult(task[0], True, 0.1, str(tmp_path / task[0]), task[2])

    monkeypatch.setattr(F, "_run_one", fake)
    rc, err = cli(capsys, "figures", "--profile", "smoke", "--only", "00", "01", "--jobs", 1,
                  "--out", tmp_path / "fig")
    last = err.strip().splitlines()[-1]
    assert rc == 130, err
    assert "00_weighting_atlas finished" in last and "rerun resumes from the cache" in last
    assert list(json.loads((tmp_path / "fig" / "manifest.json").read_text())["notebooks"]) == ["00_weighting_atlas"]


def test_corrupt_cache_entries_are_named_dropped_and_recomputed(tmp_path):
    import pandas as pd
    cache = Cache(tmp_path)
    frame = cache.frame("k", {"a": 1}, lambda: pd.DataFrame({"x": [1.5, 2.5]}))
    entry = cache.path("k", {"a": 1})
    (entry / "frame.csv").write_text("")
    with pytest.warns(UserWarning, match=f"cache entry {entry} is corrupt.*recomputing"):
        again = cache.frame("k", {"a": 1}, lambda: pd.DataFrame({"x": [1.5, 2.5]}))
    pd.testing.assert_frame_equal(again, frame)
    x = torch.arange(1000.0)
    cache.tensors("t", {"b": 2}, lambda: {"x": x})
    f = cache.path("t", {"b": 2}) / "tensors.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.warns(UserWarning, match="corrupt"):
        assert torch.equal(cache.tensors("t", {"b": 2}, lambda: {"x": x})["x"], x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole entry is read without a word
        assert torch.equal(cache.tensors("t", {"b": 2}, lambda: {"x": -x})["x"], x)


def test_corrupt_cached_run_is_retrained(tmp_path):
    cfg = {"model": {"name": "mlp", "config": {"hidden": 8, "blocks": 1, "emb_dim": 8, "freq_dim": 4}},
           "data": {"name": "gmm2d", "n_train": 64, "n_test": 16}, "batch_size": 8, "steps": 2,
           "device": "cpu"}
    cache = Cache(tmp_path)
    path = cache.run(cfg, label="m")
    ema = C.checkpoint_dir(path) / "ema.safetensors"
    ema.write_bytes(ema.read_bytes()[:50])
    with pytest.warns(UserWarning, match="corrupt"):
        path = cache.run(cfg, label="m")
    import biaskit
    assert biaskit.load(path).shape == (2,)


# --- the quick profile asks for what the data has -------------------------------------------------
def test_notebooks_probe_at_most_the_held_out_set():
    """digits holds out 180 images, fewer than the quick profile's n_probe: every probe call of
    the notebooks asks for min(n_probe, held-out size), so the library's warning stays for users."""
    from biaskit.data import load_dataset
    from biaskit.study.profiles import parameters
    assert len(load_dataset("digits").test) < parameters("quick", "01_existence")["n_probe"]
    root = Path(__file__).resolve().parents[1] / "biaskit" / "notebooks"
    calls = 0
    for nb in sorted(root.glob("*.ipynb")):
        src = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"])
        assert "n=n_probe" not in src, nb.name
        calls += src.count("n=min(n_probe, len(")
    assert calls == 7  # 01 (compare, per-t ratios, high and low t over seeds), 03, 04, 05


def test_ctrl_c_in_probe_and_sample_is_one_line(tmp_path, capsys, monkeypatch):
    from biaskit.commands import probe as probe_cmd
    from biaskit import sampling

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(probe_cmd, "probe", interrupt)
    monkeypatch.setattr(sampling, "sample", interrupt)
    for argv in (["probe", "oracle:gmm2d", "--data", "gmm2d"], ["sample", "oracle:gmm2d"]):
        rc, err = cli(capsys, *argv, "--out", tmp_path / argv[0], "--no-progress")
        assert rc == 130 and err.strip().splitlines() == [
            f"biaskit {argv[0]}: interrupted: nothing was written; rerun the command to start again"]
        assert not (tmp_path / argv[0]).exists()


def test_figures_threads_zero(tmp_path, capsys):
    assert "--threads must be at least 1, got 0" in error(capsys, "figures", "--threads", 0, "--out", tmp_path)



@pytest.mark.parametrize("flag,words", [("--data-range=-0.5,abc", ["--data-range", "'abc'", "not a number"]),
                                        ("--data-range=1,-1", ["--data-range", "LO < HI", "'1,-1'"]),
                                        ("--trained-timesteps=1:x", ["--trained-timesteps", "'x'"])])
def test_list_valued_loader_flags_name_flag_and_item(tmp_path, capsys, flag, words):
    model = tmp_path / "m.pt"
    model.write_bytes(b"not read: the flags are checked first")
    line = error(capsys, "probe", model, "--model-spec", "x.py:f", flag, "--data", "gmm", "--out", tmp_path / "o")
    assert all(w in line for w in words), line


def test_weightings_list_goes_through_the_same_parser(capsys):
    assert "--weightings is empty" in error(capsys, "weights", "--timesteps", 10, "--weightings=,")


def test_python_probe_and_sample_of_the_wrong_shape(run):
    import biaskit
    from biaskit.data import load_dataset
    from biaskit.sampling import sample
    den = biaskit.load(run)
    with pytest.raises(ValueError, match=r"expects per-sample shape \(1, 8, 8\), the data have \(2,\)"):
        biaskit.probe.probe(den, load_dataset("gmm2d", n_train=16, n_test=16), num_timesteps=2, n=8, progress=False)
    with pytest.raises(ValueError, match=r"\(1, 8, 8\).*\(3, 8, 8\)"):
        sample(den, (2, 3, 8, 8), steps=2, progress=False)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        sample(den, (2, 1, 8, 8), steps=2, eta=-1, progress=False)


def test_ctrl_c_with_parallel_notebooks_keeps_what_finished(tmp_path, capsys, monkeypatch):
    """jobs > 1: the finished notebook is kept in the manifest, the queued ones are dropped."""
    from concurrent.futures import ThreadPoolExecutor

    from biaskit.study import runner as F

    def fake(task):
        if task[0] != "00_weighting_atlas":
            raise KeyboardInterrupt
        return F.NotebookResult(task[0], True, 0.1, str(tmp_path / task[0]), task[2])

    monkeypatch.setattr(F, "_run_one", fake)
    from biaskit.study import jobpool

    class Threads(jobpool.QuietPool):
        def __init__(self, max_workers, mp_context):
            self.pool, self._workers = ThreadPoolExecutor(1), {}
    monkeypatch.setattr(jobpool, "QuietPool", Threads)
    rc, err = cli(capsys, "figures", "--profile", "smoke", "--only", "00", "01", "02", "--jobs", 2,
                  "--out", tmp_path / "fig")
    assert rc == 130, err
    assert "interrupted: 00_weighting_atlas finished; a rerun resumes from the cache" in err
    assert list(json.loads((tmp_path / "fig" / "manifest.json").read_text())["notebooks"]) == ["00_weighting_atlas"]
