"""Regenerate every figure: run the notebooks under ``biaskit/notebooks/`` (shipped with the
package) with papermill.

Per notebook NAME the runner empties ``OUT/NAME/``, then writes ``OUT/NAME/NAME.ipynb`` (the
executed notebook) and whatever figures the notebook saves there (PNG and PDF, via :func:`biaskit.plots.save`), and records in
``OUT/manifest.json``: the parameters, duration, versions, input hashes, the figure list and the
cache's hits and misses (see :mod:`biaskit.cache`).

Parameters come from a profile (:mod:`biaskit.profiles`: ``smoke``, ``quick``, ``full``) plus
overrides; only the names a notebook declares in its ``parameters`` cell are injected.

Notebooks run in a kernel started from *this* interpreter (``sys.executable``): the runner writes a
private kernelspec and puts it first on ``JUPYTER_PATH``, so a user-level ``python3`` kernelspec
pointing at another Python cannot hijack the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .heartbeat import HEARTBEAT_S, Heartbeat
from .jsonio import write_json
from .safeload import file_sha256
from .training_plan import plan_commands, plan_script, train_all, train_one  # noqa: F401

KERNEL_NAME = "biaskit-python"
NOTEBOOK_DIR = Path(__file__).resolve().parent / "notebooks"  # package data: also when installed
CACHE_LOG = "cache_log.jsonl"  # per-notebook cache events, written by biaskit.cache


@dataclass
class NotebookResult:
    """Outcome of one notebook run (one manifest entry)."""

    name: str
    ok: bool
    duration_s: float
    executed: str
    parameters: dict
    figures: list = field(default_factory=list)
    cache: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    error: dict | None = None

    def summary(self) -> str:
        if self.ok:
            return (f"{self.name}: ok in {self.duration_s:.1f} s, {len(self.figures)} figure files, "
                    f"cache {self.cache.get('hits', 0)} hits / {self.cache.get('misses', 0)} misses")
        e = self.error or {}
        where = f"cell {e['cell_index']}" if e.get("cell_index") is not None else "before execution"
        return (f"{self.name}: FAILED at {where}: {e.get('ename')}: {e.get('evalue')}\n"
                f"  partly executed notebook: {self.executed}")


SUITE_NAME = re.compile(r"\d\d_[a-z0-9_]+")  # 00_weighting_atlas ... (not *.nbconvert, *-copy)


def notebooks(directory=NOTEBOOK_DIR) -> dict[str, Path]:
    """The suite's notebooks in ``directory`` by name (file stem ``NN_name``), in sorted order;
    other ``.ipynb`` files there (``jupyter nbconvert`` output, copies) are not part of it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"notebook directory not found: {directory}")
    return {p.stem: p for p in sorted(directory.glob("*.ipynb")) if SUITE_NAME.fullmatch(p.stem)}


def select(names, directory=NOTEBOOK_DIR) -> dict[str, Path]:
    """Notebooks whose name equals, or starts with, one of ``names`` (e.g. ``00`` or
    ``01_existence``); all of them when ``names`` is empty."""
    available = notebooks(directory)
    if not names:
        return available
    chosen = {}
    for n in names:
        hits = {k: v for k, v in available.items() if k == n or k.startswith(n)}
        if not hits:
            raise ValueError(f"no notebook named {n!r}; available: {', '.join(available)}")
        chosen.update(hits)
    return dict(sorted(chosen.items()))


def ensure_kernel(root=None) -> str:
    """Write a kernelspec that starts ipykernel with this interpreter and put it first on
    JUPYTER_PATH (inherited by the kernels this process starts). Returns the kernel name."""
    root = Path(root or Path(tempfile.gettempdir()) / f"biaskit-jupyter-{os.getuid()}")
    spec = {"argv": [sys.executable, "-m", "biaskit.kernel", "-f", "{connection_file}"],
            "display_name": f"Python ({sys.executable})", "language": "python",
            "metadata": {"debugger": False}}
    write_json(root / "kernels" / KERNEL_NAME / "kernel.json", spec)
    paths = os.environ.get("JUPYTER_PATH", "").split(os.pathsep)
    if str(root) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root)] + [p for p in paths if p])
    return KERNEL_NAME


def git_commit() -> str | None:
    """The git commit of biaskit's source (with ``-dirty`` when files differ from it), or None
    outside a git checkout."""
    import subprocess
    root = Path(__file__).resolve().parent
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


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def source_hash() -> str:
    """One sha256 over biaskit's Python sources (path and content), to tell code versions apart."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


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


def declared_parameters(path) -> dict:
    """Names and default values (as source text) of a notebook's ``parameters`` cell."""
    import papermill as pm
    return {k: v.get("default") for k, v in pm.inspect_notebook(str(path)).items()}


def notebook_parameters(name: str, path, profile: str, out_dir, cache_dir, device: str,
                        overrides: dict | None = None) -> dict:
    """The parameters injected into one notebook: profile values, the run's folders and device,
    then ``overrides``, restricted to the names the notebook declares."""
    from .profiles import parameters
    params = parameters(profile, name)
    params.update(profile=profile, out_dir=str(Path(out_dir).resolve() / name),
                  cache_dir=str(Path(cache_dir).resolve()), device=device)
    params.update(overrides or {})
    declared = declared_parameters(path)
    return {k: v for k, v in params.items() if k in declared}


def cache_folder(out_dir, cache_dir=None) -> Path:
    """``cache_dir``, else ``.biaskit-cache`` next to the output folder, as an absolute path."""
    return Path(cache_dir or Path(out_dir).resolve().parent / ".biaskit-cache").expanduser().resolve()


def _figure_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder.parent)) for p in folder.rglob("*")
                  if p.suffix in (".png", ".pdf", ".svg") and p.is_file())


def _cache_summary(log: Path) -> dict:
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] \
        if log.is_file() else []
    return {"hits": sum(e["event"] == "hit" for e in events),
            "misses": sum(e["event"] == "miss" for e in events), "events": events}


def run_notebook(name: str, path, parameters: dict, out_dir, *, threads: int | None = None,
                 progress: bool = False, timeout_s: float | None = None) -> NotebookResult:
    """Execute one notebook with papermill into ``out_dir/name/``, emptied first (a previous
    run's figures would otherwise be listed as this run's: only what this run writes is there);
    never raises for a failure inside the notebook (the result carries the failing cell)."""
    import shutil

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    folder = Path(out_dir).resolve() / name
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    executed = folder / f"{name}.ipynb"
    log = folder / CACHE_LOG
    kernel = ensure_kernel()
    env = {"BIASKIT_CACHE_LOG": str(log)}
    if threads:  # torch reads these when the kernel imports it
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    inputs = {"notebook_sha256": file_sha256(path), "parameters_sha256": sha256_json(parameters),
              "biaskit_source_sha256": source_hash()}
    error = None
    start = time.perf_counter()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        pm.execute_notebook(str(path), str(executed), parameters=parameters, kernel_name=kernel,
                            progress_bar=progress, cwd=str(Path(path).parent),
                            execution_timeout=timeout_s, start_timeout=120)
    except PapermillExecutionError as e:
        error = {"cell_index": e.cell_index, "exec_count": e.exec_count, "ename": e.ename,
                 "evalue": e.evalue, "source": e.source}
    except Exception as e:  # kernel died, timeout, bad notebook: still a per-notebook failure
        error = {"cell_index": None, "exec_count": None, "ename": type(e).__name__,
                 "evalue": str(e), "source": None}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    duration = time.perf_counter() - start
    return NotebookResult(name, error is None, round(duration, 2), str(executed), parameters,
                          _figure_files(folder), _cache_summary(log), inputs, error)


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
    (:mod:`biaskit.jobpool`): each notebook starts once its runs are cached. Appends notebook
    results to ``results`` and one dict per run (run, folder, event, seconds) to ``training``,
    as each finishes, so that an interrupted run still knows what finished."""
    import multiprocessing as mp

    from .jobpool import Job, QuietPool, run_jobs
    from .profiles import FAMILIES, planned_runs
    last = _last_durations(out_dir)
    key = lambda r: f"train:{r[0]}-{r[1]}:{r[2]}"     # noqa: E731
    jobs_ = [Job(key(r), train_one, (profile, *r, str(cache_dir), device, threads),
                 priority=FAMILIES.index(r[0])) for r in planned_runs(profile, [t[0] for t in tasks])]
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
        declared |= set(declared_parameters(p))
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
    from .atomic import write_text
    return write_text(path, json.dumps(manifest, indent=1, default=str))


