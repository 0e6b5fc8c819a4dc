"""Run directories: a damaged checkpoint gives a clear ValueError, saves are atomic, load_run
rebuilds a Denoiser equal to the trained network."""

import json
import os

import pytest
import torch

import biaskit
from biaskit import checkpoint as C
from biaskit.safeload import read_checkpoint
from biaskit.train import Trainer, run_training




def _config(out, steps=4):
    return {"model": {"name": "mlp", "config": {"hidden": 16, "blocks": 1, "emb_dim": 16, "freq_dim": 8}},
            "batch_size": 16, "steps": steps, "ckpt_every": 2, "log_every": 2, "out": str(out),
            "ema": {"decay": 0.5}, "device": "cpu", "keep_checkpoints": 0}


@pytest.fixture
def run(tmp_path):
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 0.5
    trainer = run_training(_config(tmp_path / "run"), data=(x, x[:16]), progress=False)
    return tmp_path / "run", trainer, x


def test_load_run_matches_trained_network(run):
    path, trainer, _ = run
    x_t, t = torch.randn(5, 2), torch.tensor([0, 1, 300, 600, 999])
    for ema, net in ((True, trainer.ema), (False, trainer.net)):
        d = C.load_run(path, ema=ema)
        with torch.no_grad():
            torch.testing.assert_close(d(x_t, t).out, net.eval()(x_t, t), rtol=0, atol=0)
    d = biaskit.load(str(path))  # the dispatcher finds biaskit.json
    assert d.info["step"] == 4 and d.info["weights"] == "ema"
    # the schedule is stored exactly (abar list), not just by name
    torch.testing.assert_close(d.schedule.abar, biaskit.get_schedule("linear", 1000).abar, rtol=0, atol=0)
    assert C.checkpoint_steps(path) == [2, 4]
    assert C.load_run(path, step=2).info["step"] == 2
    with pytest.raises(FileNotFoundError, match="available steps: 2, 4"):
        C.load_run(path, step=3)


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("name", ["model.safetensors", "ema.safetensors"])
def test_truncated_weights_give_clear_error(run, name):
    path, _, _ = run
    file = path / "checkpoints" / "step_0000004" / name
    _truncate(file)
    with pytest.raises(ValueError, match="truncated or corrupt") as e:
        C.load_run(path, ema=name.startswith("ema"))
    assert str(file) in str(e.value)


def test_garbled_weights_and_state_give_clear_errors(run):
    path, _, x = run
    ckpt = path / "checkpoints" / "step_0000004"
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="model.safetensors"):
        C.load_run(path, ema=False)
    _truncate(ckpt / "state.pt", 0.3)
    with pytest.raises(ValueError, match="state.pt"):
        read_checkpoint(ckpt / "state.pt")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        Trainer(_config(path), data=(x, x[:16]), resume=True)


def test_missing_files_and_bad_json(run, tmp_path):
    path, _, _ = run
    os.remove(path / "checkpoints" / "step_0000004" / "ema.safetensors")
    with pytest.raises(FileNotFoundError, match="ema.safetensors"):
        C.load_run(path)
    (path / C.RUN_FILE).write_text("{truncated")
    with pytest.raises(ValueError, match="biaskit.json is corrupt"):
        C.load_run(path)
    (path / C.RUN_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a biaskit run"):
        C.load_run(path)
    with pytest.raises(FileNotFoundError, match="not a biaskit run directory"):
        C.load_run(tmp_path / "nowhere")


def test_weights_of_another_model_are_rejected(run):
    path, _, _ = run
    info = json.loads((path / C.RUN_FILE).read_text())
    info["model"]["config"]["hidden"] = 32
    (path / C.RUN_FILE).write_text(json.dumps(info))
    with pytest.raises(ValueError, match="do not match the model"):
        C.load_run(path)


def test_killed_save_keeps_previous_checkpoint_loadable(run, monkeypatch):
    path, trainer, _ = run
    before = C.load_run(path).net.out.weight.clone()
    # a save that dies after writing part of its files (torch.save raises midway)
    def boom(*a, **k):
        raise KeyboardInterrupt("killed")
    monkeypatch.setattr(C.torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(path, 6, trainer.net.state_dict(), trainer.ema.state_dict(), {"step": 6})
    assert C.checkpoint_steps(path) == [2, 4]
    assert not [p for p in (path / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    torch.testing.assert_close(C.load_run(path).net.out.weight, before)
    # a stale temporary directory from a hard kill is ignored, and a lost 'latest' falls back
    (path / "checkpoints" / ".tmp-step_0000008-x").mkdir()
    os.remove(path / "checkpoints" / "latest")
    assert C.checkpoint_dir(path).name == "step_0000004"


def test_keep_prunes_old_checkpoints(tmp_path):
    state = {"w": torch.zeros(2)}
    for step in (1, 2, 3, 4):
        C.save_checkpoint(tmp_path, step, state, state, {"step": step}, keep=2)
    assert C.checkpoint_steps(tmp_path) == [3, 4]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_0000004"
    assert read_checkpoint(tmp_path / "checkpoints" / "step_0000004" / "state.pt")["step"] == 4
