"""Status lines while ``biaskit figures`` runs: each running notebook's current cell (read from
the partly executed notebook papermill rewrites at every cell's start and end) and the step of
every model being trained in the cache (its temporary run folder's ``log.csv``), so a long run
is never silent, also when notebooks run in parallel processes."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

HEARTBEAT_S = 20.0  # a status line at least this often while notebooks run


def cell_status(executed) -> str | None:
    """What a running notebook is doing, read from the partly executed notebook papermill
    rewrites at every cell's start and end: ``cell i of n (first source line), s s``; None
    before papermill has written it or when no cell runs."""
    from datetime import datetime
    try:
        cells = json.loads(Path(executed).read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return None  # not written yet, or caught mid-write
    for i, c in enumerate(cells):
        meta = c.get("metadata", {}).get("papermill", {})
        if meta.get("status") == "running":
            source = "".join(c.get("source", "")).strip().splitlines()
            head = source[0][:60] if source else ""
            started = meta.get("start_time")
            age = ""
            if started:
                t0 = datetime.fromisoformat(started.replace("Z", "+00:00"))
                age = f", {(datetime.now(t0.tzinfo) - t0).total_seconds():.0f} s"
            return f"cell {i} of {len(cells)} ({head}){age}"
    return None


def training_status(cache_dir) -> list[str]:
    """``training LABEL: step s of N`` for every run being built in the cache now (its
    temporary folder's log.csv and biaskit.json)."""
    out = []
    root = Path(cache_dir) / "runs"
    for log in sorted([*root.glob(".*/*/log.csv"), *root.glob("*.ddp/*/log.csv")]):
        try:
            rows = log.read_text().strip().splitlines()
            step = rows[-1].split(",")[0] if len(rows) > 1 else "0"
            info = json.loads((log.parent / "biaskit.json").read_text())
            total = (info.get("train_config") or {}).get("steps", "?")
        except (OSError, ValueError):
            continue
        out.append(f"training {log.parent.name}: step {step} of {total}")
    return out


class Heartbeat:
    """A background thread that, every ``every`` seconds, echoes one line naming each running
    notebook's current cell and every model being trained, so a long run is never silent.
    ``running()`` returns {name: executed notebook path} of the notebooks running now."""

    def __init__(self, running, cache_dir, echo, every: float = HEARTBEAT_S):
        self.running, self.cache_dir, self.echo, self.every = running, cache_dir, echo, every
        self.start = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def line(self) -> str:
        parts = [f"{name}: {cell_status(path) or 'starting'}" for name, path in self.running().items()]
        parts += training_status(self.cache_dir)
        return f"[{time.perf_counter() - self.start:.0f} s] " + (" | ".join(parts) or "waiting")

    def _loop(self):
        while not self._stop.wait(self.every):
            self.echo(self.line())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
