"""Running the models over the probe's draws: batches of (t, sample) pairs, shards under
torch.distributed and their gathering, and the check that every value is finite."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import parameterization as P
from ..denoiser import Denoiser
from ..distributed import rank_world
from .draws import NoiseCache
from .statistics import Batch, Setup, band_matrix, columns, per_sample

def gather(Z: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate every rank's Z (M, sizes[r], S) along dim 1, on every rank."""
    d = torch.distributed
    comm_device = Z.device if d.get_backend() == "nccl" else torch.device("cpu")
    width = max(sizes)
    pad = torch.zeros(Z.shape[0], width, Z.shape[2], dtype=Z.dtype, device=comm_device)
    pad[:, :Z.shape[1]] = Z.to(comm_device)
    parts = [torch.empty_like(pad) for _ in sizes]
    d.all_gather(parts, pad)
    return torch.cat([p[:, :s] for p, s in zip(parts, sizes)], 1)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """torch.cat of the pieces of a batch; one piece (a batch within one t) as it is, no copy."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class Inputs(NamedTuple):
    """One batch of (t, sample) pairs [p0, p1): its pieces (k, i0, i1), one per t position k it
    touches, and x0, eps, t (B,), alpha, sigma (broadcastable), x_t and the labels (or None)."""

    p1: int
    pieces: list
    x0: torch.Tensor
    eps: torch.Tensor
    t: torch.Tensor
    alpha: torch.Tensor
    sigma: torch.Tensor
    x_t: torch.Tensor
    y: torch.Tensor | None


def evaluate(models: list[Denoiser], oracle, x0, ts, *, seed, batch_size, device, amp, channels_last,
              setup: Setup, progress, labels=None, worker=None) -> np.ndarray:
    """Per-sample statistics of every model, (M, K, n, S) float64: the (t, sample) pairs are walked
    t-major in batches of ``batch_size`` with a per-sample t (one forward per model and batch);
    under torch.distributed each rank takes a contiguous shard of the pairs. ``labels`` (n,):
    each sample's class, passed to the models (conditional ones use it). ``worker`` (one process
    only; a :class:`~.pipeline.Summaries`): computes each batch's per-sample statistics on its
    thread while the next forwards run (the same numbers), and is told after each batch which t
    positions are final (``worker.ready(Z, done)``: Z (M, K n, S) on the device, positions
    0 .. done - 1 final), whose summaries it then computes, converting the rows to float64 as it
    goes (the Z returned is then the worker's). With a worker, the next batch's draws and x_t are
    made on a second thread while this batch's forwards run (two batches' inputs are alive at once)."""
    n, K = x0.shape[0], len(ts)
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # the draws' thread then uses this GPU too
        device = torch.device("cuda", torch.cuda.current_device())
    rank, world = rank_world()
    sizes = [(K * n * (r + 1)) // world - (K * n * r) // world for r in range(world)]
    start = (K * n * rank) // world
    stop = start + sizes[rank]
    x0 = x0.to(device)
    labels = None if labels is None else labels.to(device)
    ts_dev = torch.as_tensor(ts, device=device)
    noise_t = models[0].schedule.timesteps[torch.as_tensor(ts)].tolist()  # draws follow the model's t
    alpha_ts, sigma_ts = models[0].schedule.coefficients(ts_dev)  # (K,), gathered once
    noise = NoiseCache(seed, x0.shape[1:], device, n=n)
    M = band_matrix(*x0.shape[-2:], setup.bands, device) if setup.bands else None
    width = columns(setup)["width"]
    Z = torch.empty(len(models), stop - start, width, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()
    per_row = (-1,) + (1,) * (x0.ndim - 1)
    bar = tqdm(total=stop - start, desc="probe", unit="pair", disable=not progress or rank != 0)
    worker = worker if world == 1 else None

    def fill(m: int, a: int, b: int, batch: Batch) -> None:
        with torch.inference_mode():
            Z[m, a:b] = per_sample(batch, setup)

    def run_models(p0: int, b: Inputs, x_in, o_hat) -> None:
        """Every model's forward on batch [p0, b.p1), and its per-sample statistics (here or on
        the worker)."""
        for m, model in enumerate(models):
            with autocast:
                # a conditioned model (biaskit.loaders.latent) is told each sample's row
                if getattr(model, "takes_rows", False):
                    rows_b = _cat([torch.arange(i0, i1, device=device) for _, i0, i1 in b.pieces])
                    pred = model(x_in, b.t, rows=rows_b)
                else:
                    pred = model(x_in, b.t) if b.y is None else model(x_in, b.t, b.y)
            batch = Batch(b.x0, b.eps, b.alpha, b.sigma, pred.x0_hat.float(), pred.eps_hat.float(), o_hat,
                          model.data_range, M)
            if worker is None:
                fill(m, p0 - start, b.p1 - start, batch)
            else:
                worker.submit(fill, m, p0 - start, b.p1 - start, batch)

    # the draws' thread works on the caller's CUDA stream (a thread's current stream is its own)
    stream = torch.cuda.current_stream(device) if device.type == "cuda" else None

    def inputs(p0: int) -> Inputs:
        with torch.inference_mode(), (torch.cuda.stream(stream) if stream is not None else nullcontext()):
            return batch_inputs(p0)

    def batch_inputs(p0: int) -> Inputs:
        """Batch [p0, p1)'s :class:`Inputs`."""
        p1 = min(p0 + batch_size, stop)
        pieces, p = [], p0
        while p < p1:
            k, i0 = divmod(p, n)
            i1 = min(n, i0 + p1 - p)
            pieces.append((k, i0, i1))
            p += i1 - i0
        x0_b = _cat([x0[i0:i1] for _, i0, i1 in pieces])
        eps_b = _cat([noise(noise_t[k], i0, i1) for k, i0, i1 in pieces])
        t_b = torch.cat([ts_dev[k].expand(i1 - i0) for k, i0, i1 in pieces])  # models get a real (B,) t
        alpha = _cat([alpha_ts[k].expand(i1 - i0) for k, i0, i1 in pieces]).reshape(per_row)
        sigma = _cat([sigma_ts[k].expand(i1 - i0) for k, i0, i1 in pieces]).reshape(per_row)
        x_t = P.noisy(x0_b, eps_b, alpha, sigma)
        y_b = None if labels is None else _cat([labels[i0:i1] for _, i0, i1 in pieces])
        return Inputs(p1, pieces, x0_b, eps_b, t_b, alpha, sigma, x_t, y_b)

    # with a worker, the next batch's draws are made on a thread of their own while this one's
    # forwards run (the noise cache is then used by that thread alone: the same draws; two
    # batches' inputs are then alive at once)
    ahead = None if worker is None else ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="biaskit-draws", initializer=torch.set_num_threads,
        initargs=(torch.get_num_threads(),))
    upcoming = ahead.submit(inputs, start) if ahead is not None and start < stop else None
    try:
        for p0 in range(start, stop, batch_size):
            b = inputs(p0) if ahead is None else upcoming.result()
            if ahead is not None and b.p1 < stop:
                upcoming = ahead.submit(inputs, b.p1)
            with torch.inference_mode():
                o_hat = oracle(b.x_t, b.t).x0_hat if oracle is not None else None
                x_in = b.x_t.contiguous(memory_format=torch.channels_last) if channels_last else b.x_t
                run_models(p0, b, x_in, o_hat)
            bar.update(b.p1 - p0)
            if worker is not None:
                worker.ready(Z, b.p1 // n)
    finally:
        if ahead is not None:
            ahead.shutdown(wait=True, cancel_futures=True)
    if worker is not None:
        worker.drain()  # every batch's rows are written
    bar.close()
    if world > 1:
        Z = gather(Z, sizes)
    if worker is not None and worker.complete():  # converted group by group on the worker
        return worker.values()[0]
    return Z.double().cpu().numpy().reshape(len(models), K, n, width)


def check_finite(Z: np.ndarray, ts, names: list[str], schedule, finite: np.ndarray | None = None):
    """Raise naming the first t at which a model's per-sample statistics Z (M, K, n, S) hold NaN or
    inf; ``finite`` (M, K): whether each (model, t) is finite, when already known."""
    finite = np.isfinite(Z).all(axis=(2, 3)) if finite is None else finite
    for m, ok in enumerate(finite):
        bad = ~ok
        if bad.any():
            k = int(ts[np.argmax(bad)])
            hint = " (alpha = 0 there: an eps-model's x0_hat = (x_t - sigma eps_hat) / alpha is undefined)" \
                if float(schedule.abar[k]) == 0 else ""
            raise ValueError(f"model {names[m]!r} returned NaN or inf at t={int(schedule.timesteps[k])} "
                             f"(snr {float(schedule.snr[k]):.4g}){hint}")

