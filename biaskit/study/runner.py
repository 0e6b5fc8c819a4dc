"""Regenerate every figure: ``biaskit figures`` runs the study's notebooks
(:mod:`biaskit.study.notebooks`), one at a time or with the trainings of the study plan in one
pool (:mod:`biaskit.study.jobpool`), and records the run.

Per notebook NAME the run writes ``OUT/NAME/`` (:func:`biaskit.study.notebooks.run_notebook`)
and records in ``OUT/manifest.json``: the parameters, duration, versions, input hashes, the
figure list and the cache's hits and misses (see :mod:`biaskit.study.cache`); at the end it
rebuilds the replication table (:mod:`biaskit.study.replication`).

Parameters come from a profile (:mod:`biaskit.study.profiles`: ``smoke``, ``quick``, ``full``)
plus overrides; only the names a notebook declares in its ``parameters`` cell are injected.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

from .heartbeat import HEARTBEAT_S, Heartbeat
from .notebooks import (NOTEBOOK_DIR, NotebookResult, accepted_parameters, declared_parameters,
                        notebook_parameters, run_notebook, select)
from .plan import plan_commands, plan_script, train_all, train_one  # noqa: F401


def git_commit() -> str | None:
    """The git commit of biaskit's source (with ``-dirty`` when files differ from it), or None
    outside a git checkout."""
    import subprocess
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def versions() -> dict:
    import importlib.metadata as md
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("biaskit", "torch", "numpy", "pandas", "matplotlib", "seaborn", "diffusers",
                "papermill", "ipykernel", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def cache_folder(out_dir, cache_dir=None) -> Path:
    """``cache_dir``, else ``.biaskit-cache`` next to the output folder, as an absolute path."""
    return Path(cache_dir or Path(out_dir).resolve().parent / ".biaskit-cache").expanduser().resolve()


def _run_one(args):
    name, path, params, out_dir, threads, progress = args
    return run_notebook(name, path, params, out_dir, threads=threads, progress=progress)


def run_all(names=(), profile: str = "quick", out_dir="figures", cache_dir=None,
            jobs: int | None = None, device: str = "auto", overrides: dict | None = None, notebook_dir=NOTEBOOK_DIR,
            threads: int | None = None, progress: bool = False, echo=print,
            heartbeat_s: float = HEARTBEAT_S) -> list[NotebookResult]:
    """Run the selected notebooks (all by default), ``jobs`` at a time in separate processes
    (default: the profile's ``jobs``, else 1), and merge their entries into
    ``out_dir/manifest.json``. Returns one result per notebook.

    ``threads``: CPU threads per kernel (OMP_NUM_THREADS); default: the profile's ``threads``,
    else the CPU count divided by ``jobs``. Small models train faster on one thread, and
    oversubscribed cores slow torch down many times over.

    Every ``heartbeat_s`` seconds ``echo`` gets one line: each running notebook's current cell
    and the training step of every model being trained (:class:`Heartbeat`)."""
    from .profiles import PROFILES, resolve_device, runner_settings
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    runner = runner_settings(profile)
    for flag, value in (("--jobs", jobs), ("--threads", threads)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    jobs = jobs if jobs is not None else runner.get("jobs", 1)
    chosen = select(names, notebook_dir)
    if not chosen:
        raise FileNotFoundError(f"no notebooks in {notebook_dir}")
    out_dir = Path(out_dir).resolve()
    cache_dir = cache_folder(out_dir, cache_dir)
    device = resolve_device(device)
    _check_overrides(overrides or {}, chosen)
    params = {n: notebook_parameters(n, p, profile, out_dir, cache_dir, device, overrides)
              for n, p in chosen.items()}
    threads = threads or runner.get("threads") or max(1, (os.cpu_count() or 1) // jobs)
    tasks = [(n, chosen[n], params[n], out_dir, threads, progress and jobs == 1) for n in chosen]
    results = []
    start = time.perf_counter()
    wall_start = time.time()

    def running():  # started in this run (papermill wrote the output notebook) and not finished
        done = {r.name for r in results}
        paths = {t[0]: out_dir / t[0] / f"{t[0]}.ipynb" for t in tasks if t[0] not in done}
        return {n: p for n, p in paths.items() if p.is_file() and p.stat().st_mtime >= wall_start}

    try:
        with Heartbeat(running, cache_dir, echo, heartbeat_s):
            training = []
            if jobs == 1:   # one at a time: the notebooks train on demand
                _execute(tasks, profile, results, echo)
            else:
                _execute_pool(tasks, jobs, profile, cache_dir, device, threads, out_dir, results, training, echo)
    except KeyboardInterrupt:
        if results:
            write_manifest(out_dir, sorted(results, key=lambda r: r.name), profile=profile,
                           device=device, cache_dir=cache_dir, jobs=jobs, threads=threads,
                           wall_s=time.perf_counter() - start, interrupted=True)
        done = ", ".join(sorted(r.name for r in results)) or "no notebook"
        raise KeyboardInterrupt(f"{done} finished; a rerun resumes from the cache {cache_dir} "
                                "(models and results built so far are kept)") from None
    results.sort(key=lambda r: r.name)
    write_manifest(out_dir, results, profile=profile, device=device, cache_dir=cache_dir,
                   jobs=jobs, threads=threads, wall_s=time.perf_counter() - start,
                   training=training, commit=git_commit())
    from .replication import write as write_replication
    table = write_replication(out_dir)     # reads the manifest's profile and commit
    echo(f"replication table: {table}" if table else
         "replication table: not written (none of the claims' figures are in this folder)")
    return results


def _execute(tasks, profile: str, results: list, echo):
    """Run ``tasks`` one after another, appending to ``results`` as each finishes."""
    for t in tasks:
        echo(f"running {t[0]} ({profile}) ...")
        results.append(_run_one(t))
        echo(results[-1].summary())


def _execute_pool(tasks, jobs: int, profile: str, cache_dir, device: str, threads: int, out_dir,
                  results: list, training: list, echo):
    """Train the runs the notebooks need and run the notebooks, ``jobs`` at a time in one pool
    (:mod:`biaskit.study.jobpool`): each notebook starts once its runs are cached. Appends notebook
    results to ``results`` and one dict per run (run, folder, event, seconds) to ``training``,
    as each finishes, so that an interrupted run still knows what finished."""
    import multiprocessing as mp

    from .jobpool import Job, QuietPool, run_jobs
    from .profiles import DATASETS, planned_runs
    last = _last_durations(out_dir)
    key = lambda r: f"train:{r[0]}-{r[1]}:{r[2]}"     # noqa: E731
    jobs_ = [Job(key(r), train_one, (profile, *r, str(cache_dir), device, threads),
                 priority=DATASETS.index(r[0])) for r in planned_runs(profile, [t[0] for t in tasks])]
    jobs_ += [Job(f"notebook:{t[0]}", _run_one, t, frozenset(key(r) for r in planned_runs(profile, [t[0]])),
                  priority=1e9 + last.get(t[0], 0.0)) for t in tasks]
    if len(jobs_) > len(tasks):
        echo(f"training {len(jobs_) - len(tasks)} runs of profile {profile!r} and running {len(tasks)} "
             f"notebooks, {jobs} at a time (each notebook once its runs are trained) ...")

    def done(job, result):
        if job.key.startswith("train:"):
            training.append(result)
            echo(f"{result['run']} seed {result.get('seed', 0)}: {result['event']} "
                 f"({result['seconds']:.0f} s) -> {result['folder']}")
        else:
            results.append(result)
            echo(result.summary())

    pool = QuietPool(jobs, mp.get_context("spawn"))
    try:
        run_jobs(jobs_, pool, done, jobs)
    except KeyboardInterrupt:  # the workers ignore Ctrl-C: drop the queued jobs, end the running
        pool.stop()
        raise
    pool.shutdown()


def _last_durations(out_dir) -> dict[str, float]:
    """{notebook: seconds} of the last run recorded in ``out_dir/manifest.json`` (empty if none)."""
    path = Path(out_dir) / "manifest.json"
    try:
        entries = json.loads(path.read_text()).get("notebooks", {})
        return {n: float(e.get("duration_s", 0.0)) for n, e in entries.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _check_overrides(overrides: dict, chosen: dict):
    declared = set()
    for p in chosen.values():
        declared |= accepted_parameters(declared_parameters(p))
    unknown = sorted(set(overrides) - declared)
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {', '.join(unknown)}; the selected "
                         f"notebooks declare: {', '.join(sorted(declared))}")


def write_manifest(out_dir, results, **run_info) -> Path:
    """Merge ``results`` into ``out_dir/manifest.json`` (entries of notebooks not run are kept)."""
    path = Path(out_dir) / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.is_file() else {}
    entries = old.get("notebooks", {})
    for r in results:
        d = asdict(r)
        d["executed"] = os.path.relpath(r.executed, out_dir)
        entries[r.name] = d
    manifest = {"biaskit_figures": 1, "last_run": {**run_info, "notebooks": [r.name for r in results],
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                "versions": versions(), "notebooks": dict(sorted(entries.items()))}
    from ..atomic import write_text
    return write_text(path, json.dumps(manifest, indent=1, default=str))


