"""The figure run's pool: a job starts only after what it needs, ready notebooks go first, and
missing or circular needs are one-line errors."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from biaskit.study.jobpool import Job, run_jobs

LOG: list = []
_lock = threading.Lock()


def _work(args):
    name, seconds = args
    with _lock:
        LOG.append(("start", name))
    time.sleep(seconds)
    with _lock:
        LOG.append(("end", name))
    return name


def _run(jobs, slots=2):
    LOG.clear()
    done = []
    with ThreadPoolExecutor(slots) as ex:
        run_jobs(jobs, ex, lambda j, r: done.append(r), slots)
    return done


def test_a_notebook_starts_once_its_runs_are_done_while_others_train():
    jobs = [Job("train:patches", _work, ("train:patches", 0.2), priority=2),
            Job("train:digits", _work, ("train:digits", 0.3), priority=1),
            Job("train:gmm", _work, ("train:gmm", 0.3), priority=0),
            Job("nb:02", _work, ("nb:02", 0.1), frozenset({"train:patches"}), priority=1e9 + 300),
            Job("nb:01", _work, ("nb:01", 0.1), frozenset({"train:patches", "train:digits", "train:gmm"}),
                priority=1e9 + 30)]
    done = _run(jobs)
    assert sorted(done) == sorted(j.key for j in jobs)
    at = {(kind, name): i for i, (kind, name) in enumerate(LOG)}
    assert at[("start", "nb:02")] > at[("end", "train:patches")]
    assert at[("start", "nb:02")] < at[("end", "train:gmm")]          # did not wait for every run
    assert at[("start", "nb:01")] > max(at[("end", t)] for t in ("train:patches", "train:digits", "train:gmm"))
    assert LOG[:2] == [("start", "train:patches"), ("start", "train:digits")]   # costliest first
    assert max(sum(1 for k, _ in LOG[: i + 1] if k == "start") - sum(1 for k, _ in LOG[: i + 1] if k == "end")
               for i in range(len(LOG))) <= 2                          # never more than the slots


def test_needs_that_nobody_provides_or_that_wait_on_each_other_are_errors():
    with pytest.raises(ValueError, match="train:x, which no job provides"):
        _run([Job("nb", _work, ("nb", 0), frozenset({"train:x"}))])
    with pytest.raises(ValueError, match="wait on each other: a, b"):
        _run([Job("a", _work, ("a", 0), frozenset({"b"})), Job("b", _work, ("b", 0), frozenset({"a"}))])
