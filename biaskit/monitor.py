"""The probe inside a training loop: per-timestep validation error at fixed timesteps, fixed
held-out samples and fixed noise, recorded every N steps.

A training loss averages over random timesteps whose errors differ by orders of magnitude, so its
noise is dominated by which t were drawn; a :class:`Monitor` evaluates the same (t, x0, eps)
triples at every record instead: x_t = alpha_t x0_i + sigma_t eps_{t,i} with eps_{t,i} the probe's
draws (:mod:`biaskit.probe.draws`, seeded by (seed, t, i)). Each record is exactly
``biaskit.probe(denoiser, data, timesteps=..., n=..., seed=...)`` of the weights at that step (the
same code: :func:`biaskit.probe.api._evaluate`), so its numbers equal ``biaskit probe`` of the
saved weights; and, because every record sees the same draws, the change since the previous
record is a paired difference (per-sample differences, :func:`biaskit.probe.compare`'s rule),
whose interval excludes the draw noise that two independent validation losses would carry.

Cost of a record: K n forward passes of the network (K timesteps, n samples), batched as
ceil(K n / batch_size) calls, plus as many of the exact oracle when the data set has one
(``Monitor.cost``). The network is evaluated in eval mode under ``torch.inference_mode`` and its
training mode is restored afterwards; the optimizer and the random state of the loop are not
touched (the draws use their own generators).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .denoiser import Denoiser
from .formulations import ProcessDenoiser, on_common_logsnr
from .probe.api import Evaluation, ProbeOptions, _evaluate
from .probe.draws import select_samples, timestep_grid
from .results import _jsonable

__all__ = ["Monitor", "SCALARS"]

# statistics written as TensorBoard scalars, per t (every statistic goes to the CSV)
SCALARS = ("eps_mse", "x0_mse", "x0_bias_l2", "excess_mse")


def _grid(d: Denoiser, timesteps, num_timesteps, logsnr) -> tuple[Denoiser, list[int]]:
    """(denoiser, the model timesteps to record): given timesteps, K evenly spaced steps, or the
    steps at given logsnr values (a process model is re-viewed at exactly those values; a
    discrete schedule takes its step of nearest logsnr, and the records carry the logsnr used)."""
    if sum(v is not None for v in (timesteps, num_timesteps, logsnr)) > 1:
        raise ValueError("give one of timesteps=, num_timesteps= or logsnr=")
    if logsnr is not None:
        lam = torch.as_tensor(np.ravel(logsnr), dtype=torch.float64)
        if isinstance(d, ProcessDenoiser):
            d = d.with_schedule(lam.sort(descending=True).values)
            return d, d.schedule.timesteps.tolist()
        k = (d.schedule.logsnr[None, :] - lam[:, None]).abs().argmin(1)
        return d, sorted(set(d.schedule.timesteps[k].tolist()))
    if timesteps is not None:
        return d, [int(t) for t in np.ravel(timesteps)]
    ks = timestep_grid(d.schedule.T, num_timesteps=num_timesteps or min(d.schedule.T, 10))
    return d, d.schedule.timesteps[torch.as_tensor(ks)].tolist()


class Monitor:
    """Records the probe's per-t statistics of a network under training every ``every`` steps.

    Args:
        net: the network being trained, called as ``net(x_t, time_in)`` (an nn.Module, a
            diffusers ``UNet2DModel`` (its ``.sample`` is read), a callable), or a Denoiser.
        data: held-out data: a :class:`biaskit.data.Dataset` (its test split; a known mixture
            adds the oracle and excess error) or a tensor (N, C, H, W) / (N, D) of x0.
        schedule / scheduler / process, target, time_input, data_range, ...: what
            :func:`biaskit.load` needs to read ``net`` (``target`` is its parameterization: eps,
            x0, v, flow, edm); ignored (and refused) when ``net`` is a Denoiser.
        timesteps: the model's timesteps to record; or num_timesteps K evenly spaced (default
            min(T, 10)); or logsnr values.
        n: held-out samples per t (fixed: the first n of a permutation seeded by ``seed``).
        seed: samples and noise. every: record when ``step % every == 0``.
        out: a folder for ``monitor.csv`` (written anew by the first record of this monitor,
            appended by the others) and ``metadata.json``; with
            ``tensorboard`` installed also TensorBoard scalars in ``out/tensorboard``.
        writer: any object with ``add_scalar(tag, value, step)`` (e.g. a SummaryWriter), instead.
        batch_size, device, amp, bands: as :class:`biaskit.probe.ProbeOptions`.

    ``step(step)`` returns the record (a DataFrame, below) or None between records; ``frame()``
    all records. Rows: one per (record, t): ``step``, ``kind`` ("model"), then the probe's columns
    (model, t, schedule_index, snr, logsnr, n, each statistic with ``_lo`` / ``_hi``); from the
    second record on also ``kind == "difference"`` rows: this record minus the previous one
    (``reference_step``), with paired intervals.
    """

    def __init__(self, net, data, *, timesteps=None, num_timesteps=None, logsnr=None, n: int = 64,
                 seed: int = 0, every: int = 1, out=None, writer=None, batch_size: int = 256,
                 device=None, amp: bool | None = None, bands: int = 4, target: str | None = None,
                 name: str | None = None, **load_options):
        if isinstance(net, Denoiser):
            if load_options or target is not None:
                given = [*load_options] + (["target"] if target is not None else [])
                raise ValueError(f"net is already a Denoiser: drop {', '.join(given)}")
            d = net
        else:
            from .loaders.memory import load_module
            d = load_module(net, parameterization=target, name=name, **load_options)
        if int(every) < 1:
            raise ValueError(f"every must be a positive number of steps, got {every}")
        self.name = name or d.name
        d, ts = _grid(d, timesteps, num_timesteps, logsnr)
        self.denoiser = list(on_common_logsnr({self.name: d}).values())[0]
        self.data, self.every = data, int(every)
        self.options = ProbeOptions(timesteps=ts, n=n, seed=seed, batch_size=batch_size, device=device,
                                    progress=False, amp=amp, bands=bands)
        x0, _ = select_samples(data, n, seed)
        self.cost = {"forward_passes_per_record": len(ts) * x0.shape[0],
                     "batched_calls_per_record": math.ceil(len(ts) * x0.shape[0] / int(batch_size)),
                     "timesteps": len(ts), "samples": int(x0.shape[0])}
        self.out = None if out is None else Path(out)
        self.writer = writer if writer is not None else self._tensorboard()
        self.records: list[pd.DataFrame] = []
        self._previous: tuple[int, np.ndarray] | None = None

    def _tensorboard(self):
        if self.out is None or importlib.util.find_spec("tensorboard") is None:
            return None
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(str(self.out / "tensorboard"))

    def step(self, step: int, force: bool = False) -> pd.DataFrame | None:
        """Record at training step ``step`` when ``step % every == 0`` (or ``force``)."""
        step = int(step)
        if not force and step % self.every:
            return None
        modes = [(m, m.training) for m in self.denoiser.modules()]
        try:
            ev = _evaluate({self.name: self.denoiser}, self.data, self.options)
        finally:  # the loop's own train/eval state of every submodule, as it was
            for m, mode in modes:
                m.training = mode
        frames = [ev.frame(self.name, ev.summary(0)).assign(kind="model", reference_step=-1)]
        if self._previous is not None:
            prev_step, prev_Z = self._previous
            pair = Evaluation([self.name, self.name], np.concatenate([ev.Z, prev_Z]), ev.ts, ev.n,
                              ev.schedule, ev.setup, ev.W, ev.metadata)
            frames.append(pair.frame(f"{self.name}@{step} - {self.name}@{prev_step}", pair.summary(0, 1))
                          .assign(kind="difference", reference_step=prev_step))
        record = pd.concat(frames, ignore_index=True)
        record.insert(0, "step", step)
        lead = ["step", "kind", "reference_step"]
        record = record[lead + [c for c in record.columns if c not in lead]]
        record.attrs["metadata"] = {**ev.metadata, "monitor": {**self.cost, "every": self.every}}
        self._previous = (step, ev.Z)
        self.records.append(record)
        self._write(record, step)
        return record

    def _write(self, record: pd.DataFrame, step: int) -> None:
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            first = len(self.records) == 1  # a new monitor starts a new file
            record.to_csv(self.out / "monitor.csv", mode="w" if first else "a", header=first, index=False)
            if len(self.records) == 1:
                (self.out / "metadata.json").write_text(json.dumps(_jsonable(record.attrs["metadata"]), indent=2))
        if self.writer is not None:
            for row in record.itertuples(index=False):
                suffix = "" if row.kind == "model" else "_change"
                for stat in SCALARS:
                    if hasattr(row, stat):
                        self.writer.add_scalar(f"biaskit/{stat}{suffix}/t={row.t}", float(getattr(row, stat)), step)

    def frame(self) -> pd.DataFrame:
        """Every record so far, one row per (record, kind, t)."""
        if not self.records:
            return pd.DataFrame()
        out = pd.concat(self.records, ignore_index=True)
        out.attrs["metadata"] = self.records[-1].attrs["metadata"]
        return out
