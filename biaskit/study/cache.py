"""Content-addressed cache of expensive results: trained runs, probe results, sample metrics.

An entry is a folder ``ROOT/KIND/KEY/`` where

    KEY = sha256(canonical JSON of {"kind": KIND, "config": CONFIG, "source": SOURCE(KIND)})

(canonical: sorted keys, no whitespace, tuples as lists) and SOURCE(KIND) is the sha256 of the
source files whose code computes an entry of that kind (:func:`source_digest`): the modules named
by :data:`SOURCES` and every biaskit module they import, read as bytes once per process. So a
result is recomputed exactly when its config or the code that computes it changes (a changed
statistic is not served stale from the cache); a change elsewhere (a plot, the replication
table) keeps every entry. ``entry.json`` in the folder holds the kind, the config and the key.
Entries are built in a temporary folder and renamed into place (atomic on one file system),
under a per-key lock, so parallel notebooks that need the same model build it once and a killed
build leaves no half-written entry.

Every lookup is logged as a ``hit`` or ``miss`` (in memory, and appended to the JSON-lines file
named by the ``BIASKIT_CACHE_LOG`` environment variable when set: ``biaskit figures`` sets it and
copies the counts into ``manifest.json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..distributed import launched
from ..jsonio import canonical

if TYPE_CHECKING:
    import pandas as pd

ENTRY = "entry.json"


PACKAGE = Path(__file__).resolve().parent.parent  # the biaskit package folder

# kind -> the modules whose code computes its entries (with every biaskit module they import);
# kinds not named here are the study's analyses of trained runs (probes, samples, metrics)
ANALYSES = ("biaskit.train", "biaskit.probe", "biaskit.sampling", "biaskit.metrics",
            "biaskit.study.recipes", "biaskit.study.samples", "biaskit.study.formulations",
            "biaskit.study.sampling_bias")
SOURCES = {"runs": ("biaskit.train",), "latents": ("biaskit.latent",)}

_DIGESTS: dict[tuple, str] = {}  # roots -> digest, once per process (the source does not change)
_IMPORTS: dict[tuple, set] = {}   # (module, file, size, mtime) -> the package modules it imports


def _module_files(root: Path = None) -> dict[str, Path]:
    """{dotted module name: file} of every Python file of the package."""
    root = root or PACKAGE
    out = {}
    for p in sorted(root.rglob("*.py")):
        parts = p.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imported(name: str, path: Path, modules: dict) -> set[str]:
    """The package modules ``path`` imports (function-level imports included), read from its AST."""
    import ast
    stat = path.stat()
    memo = (name, str(path), stat.st_size, stat.st_mtime_ns)
    if memo in _IMPORTS:
        return _IMPORTS[memo]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{a.name}" for a in node.names] + ([target] if node.module else [])
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    _IMPORTS[memo] = found
    return found


def source_files(roots, root: Path = None) -> list[Path]:
    """The files of the modules ``roots`` and of every package module they import, transitively.
    A library sub-package (``biaskit.models``, ``biaskit.sampling``, ...) counts as one unit: its
    registries import their entries by name (``"module:Class"``), which no import statement shows.
    The package's ``__init__`` (lazy re-exports only) and the study's own modules outside the
    closure are left out."""
    modules = _module_files(root)
    unknown = [r for r in roots if r not in modules]
    if unknown:
        raise ValueError(f"no module {', '.join(unknown)} in {root or PACKAGE}")
    top = (root or PACKAGE).name  # the package itself
    seen, todo = set(), list(roots)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [n for n in _imported(m, modules[m], modules) if n != top and n not in seen]
        parts = m.split(".")
        if len(parts) > 1 and parts[1] != "study" and (len(parts) > 2 or modules[m].name == "__init__.py"):
            unit = f"{top}.{parts[1]}"
            todo += [n for n in modules if (n == unit or n.startswith(unit + ".")) and n not in seen]
    return sorted(modules[m] for m in seen)


def source_digest(kind: str, root: Path = None) -> str:
    """sha256 of the paths (relative to the package) and bytes of the source files that compute
    entries of ``kind`` (:data:`SOURCES`, else :data:`ANALYSES`), computed once per process."""
    roots = SOURCES.get(kind, ANALYSES)
    memo = (tuple(roots), str(root or PACKAGE))
    if memo not in _DIGESTS:
        h = hashlib.sha256()
        for p in source_files(roots, root):
            h.update(str(p.relative_to((root or PACKAGE).parent)).encode() + b"\0" + p.read_bytes() + b"\0")
        _DIGESTS[memo] = h.hexdigest()
    return _DIGESTS[memo]


def package_digest() -> str:
    """One sha256 over every Python source of biaskit (path and content), to tell code versions
    apart (recorded in a figure run's manifest)."""
    h = hashlib.sha256()
    for p in _module_files().values():
        h.update(str(p.relative_to(PACKAGE)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def cache_key(kind: str, config, source: str | None = None) -> str:
    """sha256 hex digest of the canonical JSON of (kind, config, source digest of the kind's code,
    :func:`source_digest` unless given)."""
    if source is None:
        source = source_digest(kind)
    text = json.dumps({"kind": kind, "config": canonical(config), "source": source},
                      sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def run_key(run_dir) -> str:
    """The cache key of a run folder made by :meth:`Cache.run` (its parent folder's name)."""
    return Path(run_dir).parent.name


def tensor_digest(x) -> str:
    """sha256 of a tensor's values and shape (a cache key for data sets and schedules)."""
    t = x.detach().cpu().contiguous()
    return hashlib.sha256(str(tuple(t.shape)).encode() + t.numpy().tobytes()).hexdigest()


@contextlib.contextmanager
def _lock(path: Path):
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): the atomic rename still keeps entries whole
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _publish(folder: Path, final: Path, kind: str, config, label: str | None):
    """Write ``entry.json`` into a built ``folder`` and rename it to ``final``."""
    (folder / ENTRY).write_text(json.dumps(
        {"kind": kind, "key": cache_key(kind, config), "label": label, "config": canonical(config),
         "source": source_digest(kind)},
        indent=1, sort_keys=True))
    if final.exists():  # a stale entry without entry.json (killed build)
        shutil.rmtree(final)
    os.replace(folder, final)


RUN_SETTINGS_NOT_KEYED = ("out", "device", "threads", "log_every")


# settings added after runs were cached, keyed only away from their default (which trains
# exactly as before), so that the runs cached before them are still found
RUN_DEFAULTS_NOT_KEYED = {("loss", "input_perturbation"): 0.0, ("loss", "label_dropout"): 0.0}


def run_key_config(config) -> dict:
    """What a trained run's cache entry is keyed on: its config minus
    :data:`RUN_SETTINGS_NOT_KEYED` and the settings of :data:`RUN_DEFAULTS_NOT_KEYED` at their default."""
    from ..config import to_dict
    key = to_dict(config)
    for k in RUN_SETTINGS_NOT_KEYED:
        key.pop(k, None)
    for (section, k), default in RUN_DEFAULTS_NOT_KEYED.items():
        if key.get(section, {}).get(k) == default:
            key[section].pop(k)
    return key


def _check_run(run_dir: Path) -> Path:
    """``run_dir`` when its description and every checkpoint's weights can be read (safetensors
    headers are checked against the file size), else the reading error."""
    from safetensors import safe_open

    from ..checkpoint import checkpoint_dir, checkpoint_steps, read_run_info
    read_run_info(run_dir)
    for step in checkpoint_steps(run_dir) or [None]:
        ckpt = checkpoint_dir(run_dir, step)
        for name in ("model.safetensors", "ema.safetensors"):
            with safe_open(str(ckpt / name), "pt") as f:
                f.keys()
    return run_dir


class Cache:
    """Cache rooted at ``root``. ``events`` lists every lookup as a dict (event, kind, key, ...)."""

    def __init__(self, root, log: str | os.PathLike | None = None):
        self.root = Path(root).expanduser()
        log = log if log is not None else os.environ.get("BIASKIT_CACHE_LOG")
        self.log = Path(log) if log else None
        self.events: list[dict] = []

    @property
    def hits(self) -> int:
        return sum(e["event"] == "hit" for e in self.events)

    @property
    def misses(self) -> int:
        return sum(e["event"] == "miss" for e in self.events)

    def path(self, kind: str, config) -> Path:
        if not kind or "/" in kind or kind.startswith("."):
            raise ValueError(f"cache kind must be a plain folder name, got {kind!r}")
        return self.root / kind / cache_key(kind, config)[:24]

    def contains(self, kind: str, config) -> bool:
        return (self.path(kind, config) / ENTRY).is_file()

    def _record(self, event: str, kind: str, path: Path, seconds: float, label: str | None):
        e = {"event": event, "kind": kind, "key": path.name, "label": label,
             "seconds": round(seconds, 3), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.events.append(e)
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a") as f:
                f.write(json.dumps(e) + "\n")

    def _hit(self, kind: str, final: Path, start: float, label: str | None) -> bool:
        if not (final / ENTRY).is_file():
            return False
        self._record("hit", kind, final, time.perf_counter() - start, label)
        return True

    def get(self, kind: str, config, build: Callable[[Path], Any], label: str | None = None) -> Path:
        """The entry folder for (kind, config); on a miss ``build(folder)`` fills a fresh folder
        first. ``label`` is a human name for the log (e.g. the preset)."""
        final = self.path(kind, config)
        start = time.perf_counter()
        if self._hit(kind, final, start, label):
            return final
        with _lock(final.with_name(final.name + ".lock")):
            if self._hit(kind, final, start, label):  # built by another process while we waited
                return final
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
            try:
                build(tmp)
                _publish(tmp, final, kind, config, label)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        self._record("miss", kind, final, time.perf_counter() - start, label)
        return final

    def _read(self, kind: str, config, build: Callable[[Path], Any], read: Callable[[Path], Any],
              label: str | None):
        """``read(entry folder)``; an entry that cannot be read (truncated tensors, empty CSV) is
        named in a warning, dropped and rebuilt once."""
        folder = self.get(kind, config, build, label)
        try:
            return read(folder)
        except Exception as e:  # noqa: BLE001 - any failure to read means a damaged entry
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            warnings.warn(f"cache entry {folder} is corrupt ({reason}); dropping it and recomputing")
            self.drop(folder)
        return read(self.get(kind, config, build, label))

    def drop(self, folder: Path):
        """Remove one entry folder (under its lock, so no reader sees it half removed)."""
        folder = Path(folder)
        with _lock(folder.with_name(folder.name + ".lock")):
            shutil.rmtree(folder, ignore_errors=True)

    def frame(self, kind: str, config, compute: Callable[[], pd.DataFrame],
              label: str | None = None) -> pd.DataFrame:
        """A DataFrame computed by ``compute()`` once per config, stored as CSV (floats round-trip)."""
        import pandas as pd
        return self._read(kind, config, lambda d: compute().to_csv(d / "frame.csv", index=False),
                          lambda d: pd.read_csv(d / "frame.csv"), label)

    def tensors(self, kind: str, config, compute: Callable[[], dict], label: str | None = None) -> dict:
        """A dict of tensors (e.g. samples) computed once per config, stored as safetensors."""
        from safetensors.torch import load_file, save_file
        return self._read(kind, config, lambda d: save_file(
            {k: v.detach().cpu().contiguous() for k, v in compute().items()},
            str(d / "tensors.safetensors")), lambda d: load_file(str(d / "tensors.safetensors")), label)

    def results(self, kind: str, config, compute: Callable[[], pd.DataFrame],
                label: str | None = None) -> pd.DataFrame:
        """A probe / compare frame computed once per config, stored with
        :func:`biaskit.results.save_results` (metadata kept in ``df.attrs["metadata"]``)."""
        from ..results import load_results, save_results
        return self._read(kind, config, lambda d: save_results(compute(), d / "results"),
                          lambda d: load_results(d / "results")[0], label)

    def run(self, config, label: str = "run", progress: bool = False, data=None) -> Path:
        """The run folder of :func:`biaskit.train.run_training` for ``config`` (a TrainConfig,
        dict or YAML/JSON path), trained only on a miss. The key is the whole config except
        ``out``; load the model with :func:`biaskit.checkpoint.load_run`. ``data`` overrides the
        configured dataset and must then be keyed by the caller (it is not part of the key).

        The key is the config without the settings that do not change the trained weights:
        where the run is written or runs (``out``, ``device``, ``threads``) and how often it logs
        (``log_every``), so a model trained on a GPU is found from a CPU session and vice versa,
        and the digest of the training code (:func:`source_digest` of ``runs``), so a run trained
        by other code is trained again."""
        import copy
        from ..config import load_config
        cfg = load_config(config)
        key = run_key_config(cfg)

        def build(folder: Path):
            from ..train import run_training
            c = copy.deepcopy(cfg)
            c.out = str(folder / label)
            run_training(c, data=data, progress=progress)

        if launched()[1] > 1:
            return self._run_distributed(key, build, label)
        return self._read("runs", key, build, lambda d: _check_run(d / label), label)

    def _run_distributed(self, key: dict, build: Callable[[Path], Any], label: str) -> Path:
        """Under torchrun every rank trains (DDP) into one shared folder; rank 0 (the only
        writer of checkpoints) then publishes it. Needs a cache folder all ranks can see."""
        import torch.distributed as dist

        from ..distributed import init_process_group
        init_process_group()  # ours, so that it outlives each run's trainer
        final = self.path("runs", key)
        start = time.perf_counter()
        if self._hit("runs", final, start, label):
            return final / label
        rank = launched()[0]
        work = final.with_name(final.name + ".ddp")
        if rank == 0 and work.exists():  # left over by a killed run
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        dist.barrier()  # the folder is clean before any rank writes
        build(work)
        if rank == 0:
            _publish(work, final, "runs", key, label)
        dist.barrier()
        self._record("miss", "runs", final, time.perf_counter() - start, label)
        return final / label
