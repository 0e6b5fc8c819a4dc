"""Safe checkpoint reading: code-carrying pickles are refused before they run, and every broken
input (missing, truncated, wrong keys, wrong shapes) is a one-line error naming the problem."""

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import biaskit
from biaskit import safeload
from biaskit.cli import main

MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "checkpoints" / "mnist-ddpm-cnn" / \
    "ddpm_mnist_starter.pth"


class _Payload:
    """Unpickling this creates the file ``target``: the side effect that must not happen."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))




def _evil_files(tmp_path):
    target = tmp_path / "PWNED"
    sd = {"weight": torch.zeros(3), "payload": _Payload(target)}
    zip_file, legacy, raw = tmp_path / "evil.pt", tmp_path / "evil_legacy.pth", tmp_path / "evil.ckpt"
    torch.save(sd, zip_file)
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    with open(raw, "wb") as f:
        pickle.dump(sd, f)
    assert not target.exists()
    return target, [zip_file, legacy, raw]


def test_code_carrying_pickles_are_refused_and_do_not_run(tmp_path):
    target, files = _evil_files(tmp_path)
    for f in files:
        with pytest.raises(ValueError) as err:
            safeload.read_state_dict(f)
        msg = str(err.value)
        assert "refusing" in msg and "safetensors" in msg and "arbitrary code" in msg, msg
        assert not target.exists(), f"loading {f.name} ran its payload"
    with pytest.raises(ValueError, match="refusing"):
        biaskit.load(files[0])
    assert not target.exists()


def test_refusal_names_the_offending_global_and_cli_prints_one_line(tmp_path, capsys):
    target, files = _evil_files(tmp_path)
    with pytest.raises(ValueError, match=r"GLOBAL (io|builtins)\.open"):
        safeload.read_state_dict(files[0])
    rc = main(["probe", str(files[0]), "--data", "mnist", "--out", str(tmp_path / "out"),
               "--no-progress", "--no-plots"])
    err = capsys.readouterr().err
    assert rc == 2 and "refusing to load" in err and "Traceback" not in err
    assert not target.exists()


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        safeload.read_state_dict(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        biaskit.load(tmp_path / "nope.pt")
    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match=r"\.safetensors.*\.pt.*\.pth.*\.bin.*\.ckpt"):
        safeload.read_state_dict(odd)


@pytest.mark.parametrize("suffix,legacy", [(".pt", False), (".pth", True), (".safetensors", False)])
def test_truncated_files_are_named(tmp_path, suffix, legacy):
    sd = {"a": torch.arange(4096.0), "b": torch.ones(64, 64)}
    good = tmp_path / f"good{suffix}"
    if suffix == ".safetensors":
        save_file(sd, good)
    else:
        torch.save(sd, good, _use_new_zipfile_serialization=not legacy)
    assert torch.equal(safeload.read_state_dict(good)["b"], sd["b"])
    data = good.read_bytes()
    for cut in (len(data) // 2, 0):
        bad = tmp_path / f"bad{suffix}"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="bad" + suffix.replace(".", r"\.") + ".*(truncated|corrupt)"):
            safeload.read_state_dict(bad)


def test_wrapped_state_dicts_and_prefixes(tmp_path):
    inner = {"net.w": torch.ones(2), "net.b": torch.zeros(1)}
    f = tmp_path / "lightning.ckpt"
    torch.save({"epoch": 3, "state_dict": inner, "hparams": {"lr": 0.1}}, f)
    sd = safeload.read_state_dict(f)
    assert set(sd) == {"net.w", "net.b"}
    assert set(safeload.strip_prefix(sd, "net.")) == {"w", "b"}
    with pytest.raises(ValueError, match=r"prefix 'gt\.'.*net\.\* \(2\)"):
        safeload.strip_prefix(sd, "gt.")
    g = tmp_path / "config.pt"
    torch.save({"lr": 0.1, "name": "x"}, g)
    with pytest.raises(ValueError, match="not a state dict"):
        safeload.read_state_dict(g)


def test_wrong_keys_and_shapes_are_reported_by_name():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    good = {k: v.clone() for k, v in net.state_dict().items()}
    safeload.load_into(net, good)

    missing = {k: v for k, v in good.items() if k != "2.bias"}
    with pytest.raises(ValueError, match=r"1 key\(s\) missing.*2\.bias"):
        safeload.load_into(net, missing)
    extra = {**good, "head.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected key\(s\).*head\.weight"):
        safeload.load_into(net, extra)
    shaped = {**good, "0.weight": torch.zeros(5, 3)}
    with pytest.raises(ValueError, match=r"0\.weight: checkpoint \(5, 3\) vs model \(4, 3\)"):
        safeload.load_into(net, shaped)
    # strict=False forgives missing / unexpected keys but never a shape mismatch
    safeload.load_into(net, missing, strict=False)
    with pytest.raises(ValueError, match="shape mismatch"):
        safeload.load_into(net, shaped, strict=False)


def test_sha256_matches_hashlib_of_known_bytes(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    # the sha256 of b"abc" (FIPS 180-2 test vector)
    assert safeload.file_sha256(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.skipif(not MNIST.is_file(), reason=f"third-party checkpoint not present at {MNIST}")
def test_gpu_saved_checkpoint_loads_on_cpu():
    # NOTES.md: the file's tensors were saved on a CUDA device
    sd = safeload.read_state_dict(MNIST, map_location="cpu")
    assert all(v.device.type == "cpu" for v in sd.values())
    assert sd["alpha_t"].shape == (1001,) and sd["gt.blocks.4.weight"].shape == (1, 16, 3, 3)
    beta = 1e-4 + (0.02 - 1e-4) * torch.arange(1001, dtype=torch.float64) / 1000
    assert torch.allclose(sd["alpha_t"].double(), torch.cumprod(1 - beta, 0), rtol=1e-4)
