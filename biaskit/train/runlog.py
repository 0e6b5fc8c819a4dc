"""What a run writes and checks besides its weights: the training log (log.csv) and the config
differences that ``--resume`` refuses."""

from __future__ import annotations

import csv
import io
import time

import torch
import torch.distributed as dist

from ..atomic import append_text, write_text
from .objective import TrainState


# steps whose loss (and log entries) wait on the device before they are folded into the running
# sums: the per-step bookkeeping is a list append, its tensor work one batch per FOLD_STEPS steps
FOLD_STEPS = 64

# keys that only say how long to train, where, and how often to log/probe/checkpoint: a resumed
# run may change them; every other key changes what is learned, so resuming refuses
RESUMABLE = ("steps", "out", "device", "threads", "log_every", "ckpt_every", "keep_checkpoints",
             "probe_every", "probe_n")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k != "options":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def config_differences(old: dict, new: dict) -> list[str]:
    """Dotted keys (``loss.weighting``) whose values differ between two training configs
    (plain dicts), leaving out :data:`RESUMABLE`."""
    a, b = _flatten(old), _flatten(new)
    return [k for k in sorted(set(a) | set(b)) if k not in RESUMABLE and a.get(k) != b.get(k)]


class _Log:
    """Window averages of the loss and of the target MSE per quarter of the t range
    (guided-diffusion's mse_q0..q3), written to RUN_DIR/log.csv every ``log_every`` steps.

    The steps' (loss, mse, t) wait in ``pending`` and are added to the float64 sums (3, 4) in
    step order every :data:`FOLD_STEPS` steps and at each flush: the same additions in the same
    order as one add per step, so the same numbers, without per-step tensor work."""

    FIELDS = ["step", "loss", "mse", "mse_q0", "mse_q1", "mse_q2", "mse_q3", "lr", "steps_per_s", "time_s"]

    def __init__(self, trainer, enabled: bool):  # trainer: the run's Trainer
        self.trainer, self.enabled = trainer, enabled
        self.path = trainer.run_dir / "log.csv"
        dev = trainer.device
        self.sums = torch.zeros(3, 4, device=dev, dtype=torch.float64)  # loss sum, mse sum, count
        self.pending: list[TrainState] = []
        self.n, self.lr, self.t0, self.start = 0, 0.0, time.perf_counter(), time.perf_counter()
        if enabled:
            self._truncate(trainer.step)

    def _truncate(self, step: int):
        """Drop rows past the step we start from (a killed run may have logged beyond its checkpoint)."""
        if not self.path.exists():
            return
        with open(self.path) as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
        text = io.StringIO()
        csv.writer(text).writerows(kept)
        write_text(self.path, text.getvalue())

    def add(self, s: TrainState):
        self.pending.append(s)
        self.n, self.lr = self.n + 1, s.lr
        if len(self.pending) >= FOLD_STEPS:
            self._fold()

    def _fold(self):
        """Add the pending steps to the sums in step order: on the CPU index_add_ and cumsum add
        one term after another, as one add per step did (bit for bit; on CUDA the float64 sums
        may differ in their last bits, index_add_ there was already unordered)."""
        if not self.pending:
            return
        q = self.trainer.quarter(torch.cat([s.t for s in self.pending]))
        self.sums[1].index_add_(0, q, torch.cat([s.mse for s in self.pending]).double())
        self.sums[2].index_add_(0, q, torch.ones(q.shape, device=q.device, dtype=torch.float64))  # counts
        losses = torch.stack([s.loss for s in self.pending]).double()
        self.sums[0, :1] = torch.cat([self.sums[0, :1], losses]).cumsum(0)[-1:]
        self.pending.clear()

    def flush(self) -> dict | None:
        tr = self.trainer
        self._fold()
        if tr.world > 1:
            dist.all_reduce(self.sums)
            self.sums[0, 0] /= tr.world
        if self.n == 0:
            return None
        sums = self.sums.cpu()
        now = time.perf_counter()
        row = {"step": tr.step, "loss": float(sums[0, 0]) / self.n,
               "mse": float(sums[1].sum() / sums[2].sum())}
        for q in range(4):
            row[f"mse_q{q}"] = float(sums[1, q] / sums[2, q]) if sums[2, q] > 0 else float("nan")
        row.update(lr=self.lr, steps_per_s=self.n / (now - self.t0), time_s=now - self.start)
        self.sums.zero_()
        self.n, self.t0 = 0, now
        if self.enabled:
            text = io.StringIO()
            w = csv.DictWriter(text, self.FIELDS)
            if not self.path.exists():
                w.writeheader()
            w.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in row.items()})
            append_text(self.path, text.getvalue())
        return row
