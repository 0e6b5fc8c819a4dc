"""What the probe draws: the timestep grid, the held-out samples and the noise.

Draws (common random numbers). For every timestep t of the grid the same n held-out samples x0_i
are noised as x_t = alpha_t x0_i + sigma_t eps_{t,i}, with eps_{t,i} drawn from a generator seeded
by (seed, t, i // r), r = :func:`chunk_rows` (at least 64 samples and 2^12 numbers per generator).
A draw therefore depends on nothing but (seed, t, i) and the sample shape: not on the batch size,
the number of processes, the t grid or the other models, so every model compared on the same
draws gives paired per-sample differences.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch

from ..rng import derive_seed

def timestep_grid(T: int, timesteps=None, num_timesteps: int | None = None, stratified: bool = False,
                  seed: int = 0) -> np.ndarray:
    """The probed steps (sorted, unique, in 0..T-1): ``timesteps`` as given, else K =
    ``num_timesteps`` (default min(T, 50)) evenly spaced from 0 to T-1, or with ``stratified`` one
    uniform step in each of K equal strata of 0..T-1 (drawn with ``seed``)."""
    if timesteps is not None:
        ts = np.unique(np.asarray([int(t) for t in np.ravel(timesteps)], dtype=np.int64))
        if ts.size == 0:
            raise ValueError("timesteps is empty")
        if ts[0] < 0 or ts[-1] >= T:
            raise ValueError(f"timesteps must lie in 0..{T - 1} (the model's schedule has T = {T}); "
                             f"got {ts[0]}..{ts[-1]}")
        return ts
    K = min(T, 50) if num_timesteps is None else int(num_timesteps)
    if not 1 <= K <= T:
        raise ValueError(f"num_timesteps must be in 1..{T}, got {K}")
    if stratified:
        edges = np.linspace(0, T, K + 1).round().astype(np.int64)
        u = np.random.default_rng(seed).random(K)
        return np.unique(edges[:-1] + np.floor(u * (edges[1:] - edges[:-1])).astype(np.int64))
    return np.unique(np.linspace(0, T - 1, K).round().astype(np.int64))


def schedule_indices(schedule, timesteps) -> np.ndarray:
    """Positions k (sorted, unique) of the model's timesteps ``timesteps`` among the schedule's
    steps, ``schedule.timesteps[k] == t``; a timestep the schedule does not hold is an error naming
    the ones it does (a model trained on 1..999 of 1000 has no t = 0)."""
    ts = np.unique(np.asarray([int(t) for t in np.ravel(timesteps)], dtype=np.int64))
    if ts.size == 0:
        raise ValueError("timesteps is empty")
    known = schedule.timesteps.numpy()
    k = np.searchsorted(known, ts).clip(max=known.size - 1)  # timesteps increase with k
    bad = ts[known[k] != ts]
    if bad.size:
        held = f"{known[0]}..{known[-1]}" if known[-1] - known[0] + 1 == known.size else \
            f"{known.size} timesteps from {known[0]} to {known[-1]}"
        raise ValueError(f"timestep(s) {', '.join(map(str, bad[:5].tolist()))} not in the model's "
                         f"schedule: it has t = {held} (T = {known.size} steps)")
    return k


def chunk_rows(shape) -> int:
    """Samples per noise generator for per-sample ``shape``: part of the definition of the draws
    (large enough that seeding a generator costs little next to filling it)."""
    return max(64, 1 << max(0, math.ceil(math.log2(2**12 / max(math.prod(shape), 1)))))


def _noise_chunk(seed: int, t: int, chunk: int, shape, device, rows: int | None = None) -> torch.Tensor:
    """The chunk's first ``rows`` samples (default all :func:`chunk_rows`): the same numbers as
    those rows of the whole chunk (drawn whole unless :func:`_prefix_exact` says a shorter draw is
    its prefix)."""
    device = torch.device(device)
    full = chunk_rows(shape)
    rows = full if rows is None or not _prefix_exact(device, tuple(shape), rows) else rows
    on_device = device.type in ("cpu", "cuda")
    g = torch.Generator(device=device if on_device else "cpu").manual_seed(derive_seed(seed, t, chunk))
    eps = torch.randn((rows, *shape), generator=g, device=device if on_device else "cpu")
    return eps if on_device else eps.to(device)


@functools.lru_cache(maxsize=64)
def _prefix_exact(device: torch.device, shape: tuple, rows: int) -> bool:
    """Whether ``rows`` samples drawn from a seeded generator are the first ``rows`` of a whole
    chunk from the same seed. CPU torch fills a float32 normal tensor of at least 16 numbers 16 at
    a time from a uniform stream drawn first (Box-Muller in blocks), so a draw of a multiple of 16
    numbers is the prefix of a longer one; that is an implementation fact, so it is checked on this
    build once per (shape, rows) before it is used, and a chunk is drawn whole otherwise (and on
    other devices: CUDA's draws depend on the tensor's size)."""
    full, size = chunk_rows(shape), rows * math.prod(shape)
    if device.type != "cpu" or rows >= full or size < 16 or size % 16:
        return False
    whole = torch.randn((full, *shape), generator=torch.Generator().manual_seed(0x5EED))
    part = torch.randn((rows, *shape), generator=torch.Generator().manual_seed(0x5EED))
    return bool(torch.equal(whole[:rows], part))


class NoiseCache:
    """:func:`draw_noise` with the last few chunks cached: batches walk t-major through (t, i).
    ``n``: the number of samples ever asked for (i < n), when known: a chunk's rows past n are
    then not drawn where the draw of the rows before is the same without them (:func:`_noise_chunk`)."""

    def __init__(self, seed, shape, device, keep: int = 8, n: int | None = None):
        self.seed, self.shape, self.device, self.keep, self.cache = seed, tuple(shape), device, keep, {}
        self.rows, self.n = chunk_rows(shape), n

    def __call__(self, t: int, i0: int, i1: int) -> torch.Tensor:
        parts = []
        R = self.rows
        if self.n is not None and i1 > self.n:
            raise ValueError(f"samples {i0}..{i1 - 1} asked of a noise cache for {self.n} samples")
        for c in range(i0 // R, (i1 - 1) // R + 1):
            if (t, c) not in self.cache:
                if len(self.cache) >= self.keep:
                    self.cache.pop(next(iter(self.cache)))
                need = None if self.n is None else min(R, self.n - c * R)
                self.cache[(t, c)] = _noise_chunk(self.seed, t, c, self.shape, self.device, need)
            lo, hi = max(i0 - c * R, 0), min(i1 - c * R, R)
            parts.append(self.cache[(t, c)][lo:hi])
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def draw_noise(seed: int, t: int, i0: int, i1: int, shape, device="cpu") -> torch.Tensor:
    """eps_{t,i} for samples i0 <= i < i1, shape (i1 - i0, *shape): the probe's noise at step t."""
    return NoiseCache(seed, shape, device, n=i1)(t, i0, i1)


def select_samples(data, n: int, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """The n held-out x0 the probe uses, (n, *shape) float32, and a JSON-able description.

    ``data``: a :class:`biaskit.data.Dataset` (its ``test`` split) or a tensor (N, ...) of held-out
    samples. With n < N the samples are the first n of a permutation seeded by ``seed``, so a
    larger n extends a smaller one. :func:`select_labelled` also returns their labels.
    """
    x0, _, spec = select_labelled(data, n, seed)
    return x0, spec


def held_out(data) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """(held-out x (N, ...), their labels (N,) int64 or None, description) of ``data``: a
    Dataset (``test``, ``test_labels``), a tensor, or a pair (tensor, labels)."""
    y = None
    if hasattr(data, "test"):
        x, spec = data.test, {"dataset": getattr(data, "spec", None) or getattr(data, "name", None),
                              "split": "test"}
        y = getattr(data, "test_labels", None)
    elif isinstance(data, tuple) and len(data) == 2:
        x, y = torch.as_tensor(data[0]), data[1]
        spec = {"dataset": "tensor", "split": "given"}
    elif isinstance(data, (torch.Tensor, np.ndarray)):
        x, spec = torch.as_tensor(data), {"dataset": "tensor", "split": "given"}
    else:
        raise ValueError("data must be a biaskit Dataset, a tensor of held-out x0 or a pair "
                         f"(x0, labels), got {type(data).__name__}")
    if y is not None:
        y = torch.as_tensor(y).long().reshape(-1)
        if y.numel() != x.shape[0]:
            raise ValueError(f"{y.numel()} labels for {x.shape[0]} held-out samples")
    return x, y, spec


def select_labelled(data, n: int, seed: int = 0):
    """(x0 (n, ...) float32, labels (n,) int64 or None, description): :func:`select_samples`
    with each sample's label, when the data carry labels."""
    x, y, spec = held_out(data)
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"held-out data must have shape (N, ...) with N >= 2, got {tuple(x.shape)}")
    N = x.shape[0]
    if int(n) < 2:
        raise ValueError(f"n must be at least 2 (intervals need a spread), got {n}")
    if n > N:
        warnings.warn(f"asked for n={n} samples but the held-out set has {N}; using all {N}")
    n = min(int(n), N)
    idx = np.arange(N) if n == N else np.sort(np.random.default_rng(seed).permutation(N)[:n])
    x0 = x[torch.as_tensor(idx)].to(torch.float32).contiguous()
    labels = None if y is None else y[torch.as_tensor(idx)].contiguous()
    spec = {**spec, "N": int(N), "n": n, "shape": list(x0.shape[1:])}
    if labels is not None:
        spec["labels"] = {str(int(c)): int(k) for c, k in zip(*torch.unique(labels, return_counts=True))}
    return x0, labels, spec
