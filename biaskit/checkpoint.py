"""Run directories: everything needed to rebuild a trained denoiser, and to resume its training.

Layout::

    RUN_DIR/biaskit.json                       model, schedule, parameterization, time input,
                                               data range/spec, training config
    RUN_DIR/log.csv                            training log (see biaskit.train)
    RUN_DIR/checkpoints/latest                 name of the newest complete checkpoint
    RUN_DIR/checkpoints/step_0001000/model.safetensors   online weights
                                     ema.safetensors     EMA weights
                                     state.pt            optimizer, step, RNG states (tensors)

Every write is atomic: files go to a temporary name (a checkpoint to a temporary directory) and
are renamed into place, so a run killed during a save keeps its previous checkpoint loadable.
Files are read back by :func:`biaskit.safeload.read_checkpoint`: damaged ones raise ``ValueError``
naming the file, never a traceback from deep inside torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from .atomic import write_text

RUN_FILE = "biaskit.json"
FORMAT = "biaskit.run"
_STEP_DIR = re.compile(r"^step_(\d+)$")

__all__ = ["RUN_FILE", "LOCK_FILE", "read_run_info", "save_checkpoint",
           "checkpoint_steps", "checkpoint_dir", "build_net", "load_run", "acquire_lock",
           "release_lock", "check_lock"]

LOCK_FILE = "train.lock"


def _fsync(path: Path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def read_run_info(run_dir) -> dict:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a biaskit run directory")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is corrupt (not valid JSON: {e})") from None
    missing = [k for k in ("model", "schedule", "parameterization", "time_input") if k not in info]
    if info.get("format") != FORMAT or missing:
        raise ValueError(f"{path} is not a biaskit run description (format {info.get('format')!r}, "
                         f"missing {missing})")
    return info


# --- one trainer per run directory ------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def check_lock(run_dir) -> dict | None:
    """None when no live trainer holds ``run_dir``; the lock's {pid, host, started} when a lock
    of a dead process on this host is found (stale: it may be taken over). ValueError naming the
    holder when another live process (or one on another host) holds it."""
    import socket
    path = Path(run_dir) / LOCK_FILE
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        holder = {}
    pid, host = holder.get("pid"), holder.get("host")
    if pid == os.getpid() and host == socket.gethostname():
        return None  # ours (a second Trainer in the same process)
    if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
        return holder
    raise ValueError(f"{run_dir} is being trained by pid {pid} on host {host} since "
                     f"{holder.get('started')} (lock {path}); wait for it to finish, or delete "
                     "the lock file if that process is gone")


def acquire_lock(run_dir, warn=None) -> Path:
    """Write ``RUN_DIR/train.lock`` with this process's pid and host; a stale lock of a dead pid
    on this host is taken over (``warn`` is told so). ValueError when a live process holds it."""
    import socket
    import time
    path = Path(run_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(2):
        stale = check_lock(run_dir)
        if stale is not None:
            if warn:
                warn(f"taking over the stale lock {path} of pid {stale.get('pid')} (no longer running)")
            path.unlink(missing_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue  # taken meanwhile (or ours already): check the holder again
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
        except OSError:  # a full disk: no empty lock left behind
            path.unlink(missing_ok=True)
            raise
        return path
    check_lock(run_dir)  # raises naming the holder
    return path


def release_lock(run_dir):
    """Remove this process's lock of ``run_dir`` (a lock of another process is left alone)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (FileNotFoundError, json.JSONDecodeError):
        pass


# --- saving -----------------------------------------------------------------------------------
def _save_tensors(tensors: dict, path: Path):
    from safetensors import SafetensorError
    from safetensors.torch import save_file
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))
    except SafetensorError as e:  # its I/O errors as the OSError they are (full disk ...)
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        n = int(code.group(1))
        raise OSError(n, os.strerror(n), str(path)) from None
    _fsync(path)


def save_checkpoint(run_dir, step: int, model_state: dict, ema_state: dict, state: dict,
                    keep: int = 0) -> Path:
    """Write checkpoints/step_{step:07d}/ atomically, point ``latest`` at it, keep the newest ``keep``
    (0 = all). ``state`` may hold only what ``torch.load(weights_only=True)`` reads back."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{final.name}-"))
    try:
        _save_tensors(model_state, tmp / "model.safetensors")
        _save_tensors(ema_state, tmp / "ema.safetensors")
        with open(tmp / "state.pt", "wb") as f:
            torch.save(state, f)
        _fsync(tmp / "state.pt")
        if final.exists():  # a re-save of the same step: move the old one aside first
            old = root / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except OSError as e:  # name the checkpoint, not its temporary folder
        raise OSError(e.errno, e.strerror, str(final)) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    write_text(root / "latest", final.name + "\n")
    if keep > 0:
        for s in checkpoint_steps(run_dir)[:-keep]:
            shutil.rmtree(root / f"step_{s:07d}", ignore_errors=True)
    return final


# --- loading ----------------------------------------------------------------------------------
def checkpoint_steps(run_dir) -> list[int]:
    """Steps of the complete checkpoints present, ascending."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir())


def checkpoint_dir(run_dir, step: int | None = None) -> Path:
    """The checkpoint of ``step``, or the latest one (the ``latest`` pointer, else the highest step)."""
    root = Path(run_dir) / "checkpoints"
    steps = checkpoint_steps(run_dir)
    if step is not None:
        if step not in steps:
            raise FileNotFoundError(f"no checkpoint for step {step} in {root}; available steps: "
                                    f"{', '.join(map(str, steps)) or 'none'}")
        return root / f"step_{step:07d}"
    pointer = root / "latest"
    if pointer.is_file():
        path = root / pointer.read_text().strip()
        if _STEP_DIR.match(path.name) and path.is_dir():
            return path
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {root}")
    return root / f"step_{steps[-1]:07d}"


def build_net(info: dict, state_dict: dict | None = None, source="weights"):
    """The network of a run description, with ``state_dict`` loaded (strict)."""
    from .models import build_model
    net = build_model(info["model"]["name"], **info["model"].get("config", {}))
    if state_dict is not None:
        try:
            net.load_state_dict(state_dict)
        except RuntimeError as e:
            raise ValueError(f"{source} do not match the model in {RUN_FILE}: "
                             f"{str(e).splitlines()[0]}") from None
    return net


def load_run(run_dir, ema: bool = True, step: int | None = None, device=None):
    """A run's :class:`biaskit.Denoiser` (EMA weights by default) at its latest or a given step:
    :func:`~biaskit.formulations.denoiser_under` its process (biaskit.json ``process``, a
    :class:`~biaskit.formulations.ProcessDenoiser` of its target and time input; none: the
    schedule's :class:`~biaskit.processes.DiscreteVP`, a Denoiser)."""
    from .formulations import denoiser_under
    from .processes import DiscreteVP, process_from_config
    from .models.labels import run_conditioning
    from .safeload import read_checkpoint
    from .schedules import Schedule
    from .source import Source
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    ckpt = checkpoint_dir(run_dir, step)
    file = ckpt / ("ema.safetensors" if ema else "model.safetensors")
    if "init" in info:  # fine-tuned: the loaded model's own network, schedule and time input
        return _fine_tuned(info, read_checkpoint(file), file, run_dir, ckpt, ema, device)
    net = build_net(info, read_checkpoint(file), source=str(file))
    net.eval().requires_grad_(False)
    if device is not None:
        net.to(device)
    schedule = Schedule.from_dict(info["schedule"])
    loss = info.get("train_config", {}).get("loss", {})
    common = dict(data_range=tuple(info.get("data_range", (-1.0, 1.0))), channels=info.get("channels"),
                  name=info.get("name", run_dir.name),
                  source=Source("run", path=str(run_dir), step=int(ckpt.name.split("_")[1]),
                                shape=info.get("shape"),
                                extras={"weights": "ema" if ema else "online",
                                        "weighting": loss.get("weighting"), "data": info.get("data")}),
                  conditioning=run_conditioning(info["model"]))
    # a continuous-time run records its process (read on its recorded view schedule); a
    # discrete run none: its process is the schedule's DiscreteVP, read on that schedule
    pr = info.get("process", {"name": DiscreteVP.key})
    return denoiser_under(process_from_config(pr, schedule), net, info["parameterization"],
                          time_input=info["time_input"], time_scale=pr.get("time_scale"),
                          sigma_data=pr.get("sigma_data", 0.5), view=schedule, **common)


def _fine_tuned(info: dict, state_dict: dict, file: Path, run_dir: Path, ckpt: Path, ema: bool, device):
    """A fine-tuned run's Denoiser: the model of ``info["init"]`` loaded as it was for training,
    its weights replaced by the checkpoint's."""
    from dataclasses import replace
    from .loaders.formats import detect_format
    from .loaders.options import check_options
    from .loaders.third_party import load_third_party
    from .schedules import Schedule
    init, options = info["init"], dict(info["init"].get("options", {}))
    fmt = detect_format(init["path"], options.get("model_spec"), options.get("weights"))
    if fmt == "run":  # fine-tuned from a biaskit run: that run's network
        o = check_options(options, "run")
        den = load_run(init["path"], ema=bool(o.ema) and not o.online_weights, step=o.step)
    else:
        den = load_third_party(init["path"], fmt, **options)
    if not Schedule.from_dict(info["schedule"]).same_as(den.schedule):
        raise ValueError(f"{run_dir}: {init['path']} now loads with another schedule than the one "
                         f"the run was fine-tuned on ({RUN_FILE}); the file or its options changed")
    try:
        den.net.load_state_dict(state_dict)
    except RuntimeError as e:
        raise ValueError(f"{file} does not match the network of {init['path']}: "
                         f"{str(e).splitlines()[0]}") from None
    den.net.eval().requires_grad_(False)
    if device is not None:
        den.to(device)
    den.name = info.get("name", run_dir.name)
    loss = info.get("train_config", {}).get("loss", {})
    den.source = replace(den.source, format="run", path=str(run_dir), sha256=None,
                         step=int(ckpt.name.split("_")[1]),
                         extras={**den.source.extras, "weights": "ema" if ema else "online",
                                 "weighting": loss.get("weighting"), "data": info.get("data"),
                                 "init": init["path"]})
    return den
