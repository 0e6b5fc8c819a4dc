"""Shared pieces of the golden computations: one thread, the CLI, the tiny training sizes."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
THIRD_PARTY = REPO.parent / "shared" / "checkpoints" / "mnist-ddpm-cnn"


# torch threads of every computation: 1; BIASKIT_GOLDEN_THREADS=2 checks that no golden depends on it
THREADS = int(os.environ.get("BIASKIT_GOLDEN_THREADS", "1"))


def deterministic():
    """THREADS CPU threads (1), fixed seed: the goldens must not depend on the machine's core count."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and raw bytes (bit-exact fingerprint)."""
    a = t.detach().cpu().contiguous().numpy()
    h = hashlib.sha256(f"{a.dtype}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def cli(argv: list[str]) -> str:
    """stdout of ``biaskit.cli.main(argv)``; raises when it exits non-zero."""
    from biaskit.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    if rc != 0:
        raise RuntimeError(f"biaskit {' '.join(argv)} exited {rc}: {err.getvalue()}")
    return out.getvalue()


# --- the tiny training settings (of every artefact that trains) ---------------------------------
STEPS = 3
# tiny sizes per preset family (the preset's quick size, overridden so that 3 steps take < 1 s)
TINY = {
    "gmm": ["batch_size=16", "data.n_train=256", "data.n_test=64", "model.config.hidden=32",
            "model.config.blocks=1"],
    "digits": ["batch_size=8", "data.n_train=64", "data.n_test=16", "model.config.channels=8",
               "model.config.channel_mult=[1]"],
    "patches": ["batch_size=8", "data.n_train=64", "data.n_test=16", "model.config.channels=8",
                "model.config.channel_mult=[1]"],
    "celebahq": ["batch_size=4", "data.n_train=32", "data.n_test=8", "model.config.model_channels=32",
                 "model.config.channel_mult=[1]", "model.config.attention_resolutions=[]",
                 "model.config.num_heads=1", "data.options.size=8", "model.config.image_size=8"],
}
COMMON = [f"steps={STEPS}", "log_every=1", "ckpt_every=1000", "probe_every=0", "device=cpu", f"threads={THREADS}",
          "optim.warmup_steps=1", "ema.start=0"]
