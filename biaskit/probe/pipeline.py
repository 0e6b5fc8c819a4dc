"""The probe's statistics computed while its forward passes run.

:func:`~.evaluate.evaluate` walks the (t, sample) pairs t-major, so the rows of the first t
positions are final long before the last forward pass. One worker thread (:class:`Summaries`)
takes, in order, each batch's per-sample statistics (the rows of Z, from the batch's x0, eps and
the models' x0_hat, eps_hat) and each group of finished t positions (:func:`group_bounds`), of
which it converts the rows to float64 (the evaluation's Z), records which (model, t) are finite and
computes every summary the probe reports (each model's, and each model minus the reference), while
the main thread goes on with the network (and a second thread, in :func:`~.evaluate.evaluate`,
makes the next batch's draws). The statistics of a t depend on that t's rows alone, so the result
is the same, bit for bit, as summarising all of Z afterwards (:func:`~.statistics.summarise`); only
the time is hidden: on a GPU the summaries (numpy on the CPU) run beside the device's forwards, on
a CPU beside a network that leaves a core free. A group with a value that is not finite is skipped
(the caller's :func:`~.evaluate.check_finite` names the t and raises).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from ..intervals import LEVEL
from .statistics import GROUP, Sample, Setup, join, summarise_samples

Job = tuple[int, "int | None"]  # (model, reference model or None): one summary of the probe
PENDING = 4  # per-batch jobs that may wait for the worker


def group_bounds(K: int) -> list[tuple[int, int]]:
    """The groups of t positions [k0, k1) summarised together: GROUP at a time, and the last
    ones halving (8 -> 4, 2, 1, 1), so that what is left to summarise once the last forward is
    done is one position, while the worker keeps up with groups of about the forwards' pace."""
    bounds, k0 = [], 0
    while K - k0 > GROUP:
        bounds.append((k0, k0 + GROUP))
        k0 += GROUP
    while k0 < K:
        size = max(1, (K - k0) // 2)
        bounds.append((k0, k0 + size))
        k0 += size
    return bounds


class Summaries:
    """Per-batch statistics (:meth:`submit`) and summaries of models (and of differences),
    group by group of t (:meth:`ready`), computed in order on one worker thread.

    Args:
        jobs: the summaries wanted, each (m, None) for model m or (m, r) for m minus r.
        K, n: t positions and samples per t; the rows of position k are k n .. (k + 1) n - 1.
        setup, W, seed, level: as :func:`~.statistics.summarise`.
    Call :meth:`ready` with the evaluation's Z (M, K n, S) whenever positions 0 .. done - 1 are
    final; :meth:`results` then returns {job: summary} once every group is done.
    """

    def __init__(self, jobs: list[Job], K: int, n: int, setup: Setup, W: np.ndarray | None, seed: int,
                 level: float = LEVEL):
        self.jobs, self.K, self.n = list(jobs), int(K), int(n)
        self.setup, self.W, self.seed, self.level = setup, W, int(seed), level
        # the worker's torch ops use as many threads as the caller's
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="biaskit-summaries",
                                       initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),))
        self.futures: list[Future] = []
        self.jobs_pending: list[Future] = []  # per-batch jobs (:meth:`submit`) not yet drained
        self.bounds = group_bounds(self.K)
        self.submitted = 0  # groups handed to the worker
        self.Z: np.ndarray | None = None       # (M, K, n, S) float64, filled group by group
        self.finite: np.ndarray | None = None  # (M, K): whether every value of (model, t) is finite

    def submit(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the worker, before any group handed over later (one thread, in
        order): the evaluation's per-batch statistics. At most :data:`PENDING` wait at a time, so
        the batches they hold do not pile up when the worker is the slower."""
        self.jobs_pending.append(self.pool.submit(fn, *args))
        while len(self.jobs_pending) > PENDING:
            self.jobs_pending.pop(0).result()

    def drain(self) -> None:
        """Wait for every job of :meth:`submit` (its error is raised here)."""
        while self.jobs_pending:
            self.jobs_pending.pop(0).result()

    def ready(self, Z: torch.Tensor, done: int) -> None:
        """Hand every group of positions below ``done`` to the worker (none without jobs)."""
        while self.jobs and self.submitted < len(self.bounds) and self.bounds[self.submitted][1] <= done:
            if self.Z is None:
                self.Z = np.empty((Z.shape[0], self.K, self.n, Z.shape[-1]))
                self.finite = np.zeros((Z.shape[0], self.K), dtype=bool)
            k0, k1 = self.bounds[self.submitted]
            rows = Z[:, k0 * self.n:k1 * self.n]
            self.futures.append(self.pool.submit(self._group, rows, k0, k1))
            self.submitted += 1

    def _group(self, rows: torch.Tensor, k0: int, k1: int) -> dict | None:
        """The group's rows as float64 into :attr:`Z` and their finiteness into :attr:`finite`,
        then its summaries (None when a value is not finite)."""
        Zg = self.Z[:, k0:k1]  # each model's (k, n, S) block contiguous, as a whole Z's would be
        Zg[...] = rows.cpu().numpy().reshape(Zg.shape)
        self.finite[:, k0:k1] = np.isfinite(Zg).all(axis=(2, 3))
        if not self.finite[:, k0:k1].all():
            return None
        samples = [Sample(Zg[m], self.W) for m in range(Zg.shape[0])]  # each model's, shared by its jobs
        return {(m, r): summarise_samples([samples[m]] if r is None else [samples[m], samples[r]],
                                          [1.0] if r is None else [1.0, -1.0], self.setup, self.seed,
                                          self.level)
                for m, r in self.jobs}

    def complete(self) -> bool:
        """Whether every group was handed over (then :meth:`values` holds all of Z)."""
        return bool(self.jobs) and self.Z is not None and self.submitted == len(self.bounds)

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """(Z (M, K, n, S) float64, finite (M, K)) once every group is done (waits for the worker),
        the same values as converting the evaluation's Z whole; call when :meth:`complete`."""
        for f in self.futures:
            f.result()
        return self.Z, self.finite

    def results(self) -> dict:
        """{job: summary} over all K positions (waits for the worker; its error is raised here)."""
        parts = [f.result() for f in self.futures]
        if not self.complete() or any(p is None for p in parts):
            raise RuntimeError("summaries are incomplete: not every t position was handed over or "
                               "some rows were not finite")
        return {job: join([p[job] for p in parts]) for job in self.jobs}

    def close(self) -> None:
        """Stop the worker (pending groups are dropped)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
