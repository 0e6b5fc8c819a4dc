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
    (["process.name=vp_cosine", "process.logsnr_max=nan"], ["process.logsnr_max", "not NaN"]),
    (["process.name=edm", "loss.density=logit_normal:0:-1"], ["loss.density", "s ", "> 0"]),
    (["process.name=flow", "model.time_scale=0"], ["model.time_scale", "non-zero"]),
    (["optim.lr=-1e-3"], ["optim.lr", ">= 0"]),  # 0: a fine-tuning run that changes nothing
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
    ("short", ["shape (1, 2)", "batch included"]),  # whichever batch first calls it
    ("flat", ["returned shape (", ",) for input (", ", 2)"]),
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
    import biaskit.train.objective as O
    import biaskit.train.trainer as T
    if where == "loss":
        original, calls = O.diffusion_loss, []

        def diffusion_loss(*args, **kwargs):
            calls.append(1)
            loss, mse = original(*args, **kwargs)
            return (loss * float("nan") if len(calls) >= step else loss), mse
        monkeypatch.setattr(O, "diffusion_loss", diffusion_loss)  # the discrete objective's loss
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


# --- 4. data: high-depth images, diffusers configs ---------------------------------------------------------
def test_sixteen_bit_png_is_scaled_by_65535(tmp_path):
    """A 16-bit grayscale PNG (PIL mode I;16) reads as value / 65535, not clipped to white: the
    expected pixels come straight from the uint16 array written."""
    from PIL import Image
    rng = np.random.default_rng(0)
    raw = [rng.integers(0, 65536, (8, 8)).astype(np.uint16) for _ in range(3)]
    for i, a in enumerate(raw):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
    assert Image.open(tmp_path / "0.png").mode == "I;16"
    with pytest.warns(UserWarning, match="I;16"):
        ds = load_dataset(str(tmp_path), n_train=0, n_test=3, size=8, mode="L", data_range=(0, 1))
    got = sorted(ds.test[:, 0].numpy(), key=lambda x: float(x.sum()))
    want = sorted((a / 65535.0 for a in raw), key=lambda x: float(x.sum()))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-6)
    assert float(ds.test.max()) < 1.0  # the old reading gave 1.0 almost everywhere
    with pytest.warns(UserWarning):
        rgb = load_dataset(str(tmp_path), n_train=0, n_test=3, size=8, mode="RGB", data_range=(0, 1))
    assert rgb.test.shape == (3, 3, 8, 8) and torch.equal(rgb.test[:, 0], rgb.test[:, 2])


def test_sixteen_bit_constant_images_read_at_their_level(tmp_path):
    from PIL import Image
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), 1000 * (i + 1), np.uint16)).save(folder / f"{i}.png")
    with pytest.warns(UserWarning, match="4 I;16 image"):
        ds = load_dataset(str(folder), n_train=0, n_test=4, size=8, mode="L", data_range=(0, 1))
    np.testing.assert_allclose(sorted(float(v) for v in ds.test.mean((1, 2, 3))),
                               [1000 / 65535, 2000 / 65535, 3000 / 65535, 4000 / 65535], rtol=1e-6)


def _pipeline_folder(tmp_path, **config):
    import json
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, attention_head_dim=8,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    folder = tmp_path / "pipe"
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(folder)
    path = folder / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return folder


@pytest.mark.parametrize("config,words", [
    ({"num_train_timesteps": "many"}, ["num_train_timesteps", "a number", "'many'"]),
    ({"num_train_timesteps": [1000]}, ["num_train_timesteps", "a number"]),
    ({"beta_start": {"v": 1}}, ["beta_start", "a number"]),
    ({"beta_end": 2.0}, ["beta_end", "(0, 1)"]),
    ({"beta_schedule": 3}, ["beta_schedule", "a string"]),
    ({"rescale_betas_zero_snr": "yes"}, ["rescale_betas_zero_snr", "true or false"]),
    ({"trained_betas": "0.1"}, ["trained_betas", "list of numbers"]),
    ({"_class_name": "MySecretScheduler"}, ["MySecretScheduler", "not a scheduler biaskit knows"]),
    ({"_class_name": "ScoreSdeVeScheduler"}, ["ScoreSdeVeScheduler", "not supported"]),
])
def test_diffusers_config_values_and_classes_are_checked(tmp_path, capsys, config, words):
    pytest.importorskip("diffusers")
    folder = _pipeline_folder(tmp_path, **config)
    line = error(capsys, "probe", folder, "--data", "gmm2d", "--out", tmp_path / "o", "--no-progress")
    assert all(w in line for w in words) and "scheduler_config.json" in line, line
    assert not (tmp_path / "o").exists()


# --- 5. outputs written atomically; a full disk or an unwritable place is one line -------------------
@pytest.fixture()
def small_disk(tmp_path):
    """A 16 MiB tmpfs (needs root and mount); skipped where it cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("mount is not available")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=20)


def _fill(disk: Path, leave: int = 0) -> None:
    """Fill ``disk`` to the last byte, or to ``leave`` bytes (whole 4 KiB pages) from it."""
    if leave:
        (disk / "slack").write_bytes(b"\0" * leave)
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    if leave:
        (disk / "slack").unlink()


def _snapshot(folder: Path) -> dict:
    return {p.name: digest(p) for p in sorted(folder.iterdir()) if p.is_file()}


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp" in p.name]


def test_sample_on_a_full_disk_keeps_the_previous_samples(small_disk, capsys):
    out = small_disk / "s"
    argv = ["sample", "oracle:gmm2d", "--steps", 3, "--n", 64, "--out", out, "--no-progress"]
    assert cli(capsys, *argv)[0] == 0
    before = _snapshot(out)
    _fill(small_disk)
    line = error(capsys, *argv, "--seed", 1, rc=1)
    assert "samples.npz" in line and "No space left" in line and "ENOSPC" in line, line
    assert _snapshot(out) == before and _no_temporaries(out)
    assert np.load(out / "samples.npz")["x0"].shape == (64, 2)


def test_probe_on_a_full_disk_keeps_table_and_metadata_together(small_disk, capsys):
    out = small_disk / "p"
    argv = ["probe", "oracle:gmm2d", "--data", "gmm2d", "--samples", 16, "--num-timesteps", 3,
            "--no-plots", "--no-progress", "--out", out]
    assert cli(capsys, *argv)[0] == 0
    before = _snapshot(out)
    _fill(small_disk)
    line = error(capsys, *argv[:-1], out, "--seed", 1, rc=1)
    assert "per_timestep.csv" in line and "metadata.json" in line and "ENOSPC" in line, line
    assert _snapshot(out) == before and _no_temporaries(out)


def test_train_on_a_full_disk_keeps_the_last_checkpoint(small_disk, capsys):
    out = small_disk / "run"
    argv = ["train", "--preset", "gmm-debias", "--out", out, *SMALL_GMM, "--set", "ckpt_every=2"]
    assert cli(capsys, *argv, "--steps", 2)[0] == 0
    ckpt = C.checkpoint_dir(out)
    before = _snapshot(ckpt)
    _fill(small_disk, leave=4 * 4096)  # room for the lock and the run's json, not a checkpoint
    rc, err = cli(capsys, *argv, "--steps", 4, "--resume")
    lines = [l for l in err.splitlines() if "error:" in l]
    assert rc == 1 and len(lines) == 1 and "ENOSPC" in lines[0], err
    assert C.checkpoint_steps(out) == [2] and _snapshot(ckpt) == before and _no_temporaries(out)
    assert not (out / C.LOCK_FILE).exists()


@pytest.fixture()
def read_only_dir(tmp_path):
    """A folder nothing can be written in: a read-only tmpfs as root, else mode 0555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "old.txt").write_text("kept")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("root, and cannot mount a read-only tmpfs to test an unwritable folder")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.parametrize("cmd", [["sample", "oracle:gmm2d", "--steps", 3, "--n", 8],
                                 ["probe", "oracle:gmm2d", "--data", "gmm2d", "--samples", 8],
                                 ["train", "--preset", "gmm-debias", "--steps", 2, *SMALL_GMM]])
def test_an_unwritable_out_is_one_line_before_any_work(read_only_dir, capsys, cmd):
    line = error(capsys, *cmd, "--out", read_only_dir / "o")
    assert str(read_only_dir) in line and "cannot write" in line, line


def test_weights_plot_into_an_unwritable_place_is_one_line(read_only_dir, capsys):
    line = error(capsys, "weights", "--weightings", "debias", "--plot", read_only_dir / "w.png", rc=1)
    assert "w.png" in line and ("EROFS" in line or "EACCES" in line), line


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    """Writers that fail half-way (the disk fills during np.savez, pandas, savefig) leave the old
    outputs byte for byte and no temporary file."""
    import pandas as pd
    from biaskit.atomic import atomic_paths, write_csv
    from biaskit.results import save_results
    old = pd.DataFrame({"t": [1, 2], "x0_mse": [0.5, 0.25]})
    save_results(old, tmp_path, {"a": 1})
    before = _snapshot(tmp_path)

    def to_csv(self, path, *args, **kwargs):
        Path(path).write_text("t,x0_mse\n1,")  # half a table, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    with pytest.raises(OSError) as e:
        save_results(old.assign(x0_mse=[9.0, 9.0]), tmp_path, {"a": 2})
    assert e.value.errno == errno.ENOSPC and "per_timestep.csv" in e.value.filename
    with pytest.raises(OSError):
        write_csv(old, tmp_path / "per_timestep.csv")
    assert _snapshot(tmp_path) == before and _no_temporaries(tmp_path)
    with pytest.raises(KeyboardInterrupt):  # an interrupt mid-write too
        with atomic_paths(tmp_path / "metadata.json") as (tmp,):
            tmp.write_text("{")
            raise KeyboardInterrupt
    assert _snapshot(tmp_path) == before and _no_temporaries(tmp_path)


def test_atomic_outputs_keep_the_usual_permissions(tmp_path):
    from biaskit.atomic import write_text
    write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    (tmp_path / "a.txt").chmod(0o640)
    write_text(tmp_path / "a.txt", "y")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640


# --- 6. resources ----------------------------------------------------------------------------------------
def test_sample_n_that_cannot_fit_is_refused_with_the_estimate(tmp_path, capsys):
    # 10^12 samples x 2 values x 4 bytes x 9 copies = 72 TB before the network's share: more
    # than any machine has, and it is refused before anything is allocated
    import re
    line = error(capsys, "sample", "oracle:gmm2d", "--n", 10**12, "--steps", 3, "--out", tmp_path / "s",
                 "--no-progress")
    assert "--n 1000000000000" in line and "9 copies" in line and "available on cpu" in line, line
    need = float(re.search(r"needs about ([0-9.e+]+) GiB", line).group(1))
    assert need >= 10**12 * 2 * 4 * 9 / 2**30 * 0.999, line
    assert not (tmp_path / "s").exists()


def test_network_memory_per_sample_is_measured():
    """A network that allocates 1000 copies of its input per call: 4000 bytes per value, plus the
    few input-sized tensors of the denoiser itself."""
    from torch import nn
    from biaskit.denoiser import Denoiser
    from biaskit.resources import model_bytes_per_sample
    from biaskit.schedules import get_schedule

    class Wide(nn.Module):
        def forward(self, x, t):
            return x.repeat(1, 1000)[:, : x.shape[1]] * 0

    D = 50
    got = model_bytes_per_sample(Denoiser(Wide(), get_schedule("linear", 100), "eps"), (D,), "cpu")
    assert 4000 * D <= got <= 4000 * D + 4 * D * 16, got


def test_memory_estimate_reads_the_host(monkeypatch):
    from biaskit import resources
    have = resources.available_bytes("cpu")
    assert have is None or 0 < have <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    monkeypatch.setattr(resources, "available_bytes", lambda device: 2**30)
    resources.check_fits("x", 2**29, "cpu", "a", "b")
    with pytest.raises(ValueError, match=r"x needs about 2 GiB \(a\), more than the 1 GiB available on cpu; b"):
        resources.check_fits("x", 2**31, "cpu", "a", "b")


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_figures_cache_is_checked_before_any_work(tmp_path, capsys, monkeypatch, kind, request):
    from biaskit.study import runner as F
    monkeypatch.setattr(F, "_run_one", lambda task: pytest.fail("a notebook ran"))
    if kind == "file":
        cache = tmp_path / "cache"
        cache.write_text("not a folder")
    else:
        cache = request.getfixturevalue("read_only_dir") / "cache"
    line = error(capsys, "figures", "--profile", "smoke", "--only", "00", "--out", tmp_path / "fig",
                 "--cache", cache)
    assert "--cache" in line and str(cache) in line or str(cache.parent) in line, line
    assert not (tmp_path / "fig" / "manifest.json").exists()


# --- 7. signals ------------------------------------------------------------------------------------------
def test_sigterm_is_handled_as_ctrl_c_and_keeps_earlier_outputs(tmp_path, capsys, monkeypatch):
    from biaskit import sampling
    from biaskit.commands import probe as probe_cmd
    argv = {"probe": ["probe", "oracle:gmm2d", "--data", "gmm2d", "--samples", 16, "--num-timesteps", 3,
                      "--no-plots"],
            "sample": ["sample", "oracle:gmm2d", "--steps", 3, "--n", 16]}
    for cmd in argv:
        assert cli(capsys, *argv[cmd], "--out", tmp_path / cmd, "--no-progress")[0] == 0
    before = {cmd: _snapshot(tmp_path / cmd) for cmd in argv}

    def terminate(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")
    monkeypatch.setattr(probe_cmd, "probe", terminate)
    monkeypatch.setattr(sampling, "sample", terminate)
    for cmd in argv:
        rc, err = cli(capsys, *argv[cmd], "--seed", 1, "--out", tmp_path / cmd, "--no-progress")
        assert rc == 143 and err.strip().splitlines()[-1] == (
            f"biaskit {cmd}: terminated (SIGTERM): nothing was written; rerun the command to start again"), err
        assert _snapshot(tmp_path / cmd) == before[cmd] and _no_temporaries(tmp_path / cmd)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored after the command


def _python(code_or_args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *map(str, code_or_args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_sigterm_stops_training_at_a_checkpoint_with_one_line(tmp_path):
    out = tmp_path / "run"
    p = _python(["-m", "biaskit.cli", "train", "--preset", "gmm-debias", "--steps", 10**7, "--out", out,
                 "--set", "ckpt_every=20", *SMALL_GMM])
    try:
        for _ in range(600):
            if C.checkpoint_steps(out):
                break
            assert p.poll() is None, p.communicate()
            import time
            time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143 and "Traceback" not in err, err
    last = C.checkpoint_steps(out)[-1]
    assert err.strip().splitlines()[-1] == (
        f"biaskit train: terminated (SIGTERM): the last checkpoint is step {last} in {out}; rerun the "
        "same command with --resume to continue from it")
    assert not (out / C.LOCK_FILE).exists()
    C.load_run(out)  # the kept checkpoint loads


POOL_SCRIPT = '''
import multiprocessing as mp
import os
import signal
import sys
import time

from biaskit.study.jobpool import QuietPool

if __name__ == "__main__":
    pool = QuietPool(2, mp.get_context("spawn"))
    futures = [pool.submit(time.sleep, 120) for _ in range(2)]
    workers = list(pool.pool._processes.values())
    time.sleep(float(sys.argv[1]))
    try:
        os.killpg(os.getpgrp(), signal.SIGINT)  # what Ctrl-C at a terminal does: the whole group
        time.sleep(30)
        print("not interrupted")
    except KeyboardInterrupt:
        pool.stop()
    for w in workers:
        w.join(10)

    def running(pid):  # by the OS, not by the Process object (its poll can race the pool's own thread)
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except FileNotFoundError:
            return False
    time.sleep(1)
    print("alive:", [w.pid for w in workers if running(w.pid)])
'''


@pytest.mark.parametrize("delay", [0.0, 3.0])  # while the workers import, and while they work
def test_ctrl_c_reaches_the_pool_parent_only_and_stops_the_workers(tmp_path, delay):
    (tmp_path / "pool.py").write_text(POOL_SCRIPT)
    p = _python([str(tmp_path / "pool.py"), str(delay)], start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out, err = p.communicate(timeout=120)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert out.strip().splitlines()[-1] == "alive: []", (out, err)
