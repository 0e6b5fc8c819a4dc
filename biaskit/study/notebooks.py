"""One notebook of the figure study executed with papermill: the suite's notebooks (shipped with
the package under ``biaskit/notebooks/``), their declared parameters and the ones a profile injects
(:mod:`biaskit.study.profiles`), and :func:`run_notebook`, which writes ``OUT/NAME/NAME.ipynb`` and
the figures the notebook saves and reports the cache's hits and misses (:mod:`biaskit.study.cache`).

Notebooks run in a kernel started from *this* interpreter (``sys.executable``): :func:`ensure_kernel`
writes a private kernelspec and puts it first on ``JUPYTER_PATH``, so a user-level ``python3``
kernelspec pointing at another Python cannot hijack the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..jsonio import write_json
from ..safeload import file_sha256
from .cache import package_digest
from .profiles import RENAMED_KEYS

KERNEL_NAME = "biaskit-python"
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"  # package data: also when installed
CACHE_LOG = "cache_log.jsonl"  # per-notebook cache events, written by biaskit.study.cache


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
    spec = {"argv": [sys.executable, "-m", "biaskit.study.kernel", "-f", "{connection_file}"],
            "display_name": f"Python ({sys.executable})", "language": "python",
            "metadata": {"debugger": False}}
    write_json(root / "kernels" / KERNEL_NAME / "kernel.json", spec)
    paths = os.environ.get("JUPYTER_PATH", "").split(os.pathsep)
    if str(root) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root)] + [p for p in paths if p])
    return KERNEL_NAME


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def declared_parameters(path) -> dict:
    """Names and default values (as source text) of a notebook's ``parameters`` cell."""
    import papermill as pm
    return {k: v.get("default") for k, v in pm.inspect_notebook(str(path)).items()}


# notebook parameters renamed: new name -> its former name, still accepted as an override
# (05_formulations' list of preset variants was called ``weightings``; the profile keys renamed,
# :data:`biaskit.study.profiles.RENAMED_KEYS`, are also read in a profile)
RENAMED_PARAMETERS = {"variants": "weightings", **{new: old for old, new in RENAMED_KEYS.items()}}


def accepted_parameters(declared) -> set[str]:
    """The names an override may use for a notebook declaring ``declared``: those, and the
    former names of renamed ones (:data:`RENAMED_PARAMETERS`)."""
    return set(declared) | {old for new, old in RENAMED_PARAMETERS.items() if new in declared}


def notebook_parameters(name: str, path, profile: str, out_dir, cache_dir, device: str,
                        overrides: dict | None = None) -> dict:
    """The parameters injected into one notebook: profile values, the run's folders and device,
    then ``overrides`` (a renamed parameter's former name sets it, :data:`RENAMED_PARAMETERS`),
    restricted to the names the notebook declares."""
    from .profiles import parameters
    params = parameters(profile, name)
    params.update(profile=profile, out_dir=str(Path(out_dir).resolve() / name),
                  cache_dir=str(Path(cache_dir).resolve()), device=device)
    overrides = overrides or {}
    params.update(overrides)
    declared = declared_parameters(path)
    for new, old in RENAMED_PARAMETERS.items():
        if new in declared and old not in declared and old in overrides and new not in overrides:
            params[new] = overrides[old]
    return {k: v for k, v in params.items() if k in declared}


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
              "biaskit_source_sha256": package_digest()}
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
