"""One pool for a figure run's trainings and notebooks, in dependency order.

A notebook starts as soon as the runs it uses (:func:`biaskit.study.profiles.planned_runs`) are in the
cache, while other runs still train in the other slots: with two slots, the patch notebooks start
when the patch models are done instead of after every model of the study. Among the jobs that are
ready, notebooks go first (longest first, by the durations the last manifest recorded), then
trainings (costliest dataset first). The results do not depend on the order: every job is seeded.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Job:
    """One unit of work: ``fn(args)`` in a worker once every key of ``needs`` has finished;
    higher ``priority`` first among ready jobs."""

    key: str
    fn: Callable
    args: tuple
    needs: frozenset = field(default_factory=frozenset)
    priority: float = 0.0


def run_jobs(jobs: list[Job], executor, on_done: Callable, slots: int) -> None:
    """Run ``jobs`` on ``executor`` (a concurrent.futures executor with ``slots`` workers), at
    most ``slots`` at a time, each when its ``needs`` are met; ``on_done(job, result)`` as each
    finishes (an exception in a job propagates). A need that no job provides is an error."""
    keys = {j.key for j in jobs}
    missing = sorted({n for j in jobs for n in j.needs} - keys)
    if missing:
        raise ValueError(f"jobs need {', '.join(missing)}, which no job provides")
    pending, running, finished = list(jobs), {}, set()
    while pending or running:
        ready = sorted((j for j in pending if j.needs <= finished), key=lambda j: -j.priority)
        for j in ready[: max(0, slots - len(running))]:
            pending.remove(j)
            running[executor.submit(j.fn, j.args)] = j
        if not running:
            raise ValueError(f"jobs wait on each other: {', '.join(j.key for j in pending)}")
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in done:
            job = running.pop(fut)
            result = fut.result()
            finished.add(job.key)
            on_done(job, result)


class QuietPool:
    """A ProcessPoolExecutor whose workers ignore SIGINT: a Ctrl-C at the terminal reaches the
    whole process group, and workers would each print a KeyboardInterrupt traceback (during their
    imports, before any initializer could help). The parent alone handles it, then :meth:`stop`
    ends the workers (SIGTERM, silent) instead of waiting for their jobs."""

    def __init__(self, max_workers: int, mp_context):
        from concurrent.futures import ProcessPoolExecutor
        self.pool = ProcessPoolExecutor(max_workers=max_workers, mp_context=mp_context)
        self._workers: dict = {}  # pid -> process, every worker submit started (stop ends them all)

    def submit(self, fn, *args):
        # workers are started inside submit; they inherit SIG_IGN through exec (a Python handler
        # would not be inherited), so ignore SIGINT only while they are made
        import signal
        import threading
        if threading.current_thread() is not threading.main_thread():
            future = self.pool.submit(fn, *args)
        else:
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                future = self.pool.submit(fn, *args)
            finally:
                signal.signal(signal.SIGINT, old)
        self._workers.update(getattr(self.pool, "_processes", None) or {})
        return future

    def stop(self) -> None:
        """Drop queued jobs and end running ones now: SIGTERM, then SIGKILL for a worker still
        alive after 5 s (one that inherited an ignored SIGTERM, or is busy starting)."""
        workers = {**self._workers, **(getattr(self.pool, "_processes", None) or {})}  # gone after shutdown
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in workers.values():
            p.terminate()
        for p in workers.values():
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)

    def shutdown(self) -> None:
        self.pool.shutdown()
