"""Every output file written atomically, in one place: the bytes go to a temporary file in the
target's own folder (same file system, so the rename is atomic), are flushed to disk (fsync), and
only then replace the target with ``os.replace``. An existing output therefore stays whole until
its successor is complete; a write that fails (full disk, read-only place) removes its temporary
file and leaves the old output as it was.

:func:`atomic_paths` yields temporary paths for a group of files (a probe's table and its
metadata) and renames them only once every one is written, so a failure leaves none of the new
group behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_paths", "atomic_path", "write_text", "write_bytes", "write_csv", "write_savefig",
           "append_text"]


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


_UMASK = _umask()


def _mode(target: Path) -> int:
    """The permissions the output gets: the replaced file's, else what open() would give (mkstemp
    makes its files private, 0600)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make the renames themselves durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_paths(*paths) -> Iterator[list[Path]]:
    """Temporary paths next to ``paths`` (same suffix, so writers that go by the extension, such
    as savefig or np.savez, write the right format); on leaving the block each is fsynced and
    renamed onto its target. On any error the temporaries are removed and the targets untouched;
    an OSError (ENOSPC, EACCES, EROFS ...) is re-raised with the targets as its filename."""
    targets = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for p in targets:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=f".tmp{p.suffix}")
            tmps.append(Path(tmp))
            try:
                os.fchmod(fd, _mode(p))
            finally:
                os.close(fd)
        yield tmps
        for tmp in tmps:
            _fsync(tmp)
        for tmp, p in zip(tmps, targets):
            os.replace(tmp, p)
        for folder in {p.parent for p in targets}:
            _fsync_dir(folder)
    except BaseException as e:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(e, OSError):  # name the outputs, not the temporary names
            raise OSError(e.errno, e.strerror or str(e), ", ".join(map(str, targets))) from None
        raise


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """:func:`atomic_paths` for one file."""
    with atomic_paths(path) as (tmp,):
        yield tmp


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def append_text(path, text: str) -> None:
    """Append ``text`` to a log file (log.csv, probe.csv), which grows row by row: a failed
    write (full disk) truncates the file back to its old length, so no half row is left."""
    path = Path(path)
    with open(path, "a", newline="") as f:
        size = f.tell()
        try:
            f.write(text)
            f.flush()
        except OSError:
            with contextlib.suppress(OSError):
                f.truncate(size)
            raise


def write_csv(df, path, **kwargs) -> Path:
    """``df.to_csv(path, **kwargs)`` atomically (usable as ``df.pipe(write_csv, path, ...)``).
    A ``.gz`` target is gzipped with the target's name and mtime 0 in its header (not the
    temporary name), so the same frame gives the same bytes."""
    import gzip
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".gz" and kwargs.get("compression", "infer") in ("infer", "gzip"):
            kwargs.pop("compression", None)
            with open(tmp, "wb") as raw, gzip.GzipFile(path.name[:-3], "wb", fileobj=raw, mtime=0) as gz:
                gz.write(df.to_csv(**kwargs).encode())
        else:
            df.to_csv(tmp, **kwargs)
    return path


def write_savefig(fig, path, **kwargs) -> Path:
    """``fig.savefig(path, **kwargs)`` atomically (the format from ``path``'s suffix)."""
    import matplotlib
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".") or matplotlib.rcParams["savefig.format"])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path
