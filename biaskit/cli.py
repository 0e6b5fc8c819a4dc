"""``biaskit`` command line: one subcommand per module in :mod:`biaskit.commands`."""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import signal
import sys
import threading
import warnings

# subcommand -> module in biaskit.commands defining add_arguments(parser) and run(args) -> int
COMMANDS = {
    "weights": "Tabulate and plot loss weightings per timestep in eps, x0, v or flow space.",
    "probe": "Per-timestep x0/eps error, bias and variance of a model on data.",
    "train": "Train a denoiser with any loss weighting (presets, YAML/JSON config).",
    "sample": "Sample from a model with DDPM/DDIM/diffusers schedulers.",
    "figures": "Regenerate every figure by running the notebooks with papermill.",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biaskit", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_ in COMMANDS.items():
        try:
            mod = importlib.import_module(f"biaskit.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"biaskit.commands.{name}":
                raise
            continue
        p = sub.add_parser(name, help=help_, description=help_)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    terminated = []
    try:
        with _one_line_warnings(args.command), _sigterm_as_sigint() as terminated:
            return int(args._run(args) or 0)
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except KeyboardInterrupt as e:
        # Ctrl-C or SIGTERM: what finished and how to go on, from the command (e.args), else a
        # generic line; exit 128 + the signal's number, as the shell reports a signal
        said = str(e.args[0]) if e.args else "nothing was written; rerun the command to start again"
        how = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"biaskit {args.command}: {how}: {said}", file=sys.stderr)
        return 128 + int(signal.SIGTERM if terminated else signal.SIGINT)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError,
            IsADirectoryError, PermissionError) as e:
        # user errors: one clear line, no traceback
        print(f"biaskit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # the machine, not the input: a full disk, a read-only or unwritable place (outputs are
        # written atomically, so what was there before is intact)
        what = errno.errorcode.get(e.errno, "OSError")
        where = f"{e.filename}: " if e.filename else ""
        print(f"biaskit {args.command}: error: {where}{e.strerror or e} ({what})",
              file=sys.stderr)
        return 1


@contextlib.contextmanager
def _sigterm_as_sigint():
    """SIGTERM (``kill``, a batch system's time limit) raises KeyboardInterrupt like Ctrl-C, so
    a command stops the same way: outputs written atomically, locks released, and one line of
    what finished. Yields a list that holds True once SIGTERM arrived."""
    got = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def handler(signum, frame):
        got.append(True)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Warnings print as one line ``biaskit CMD: warning: ...`` (not file:line plus source)."""
    old = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"biaskit {command}: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = old


if __name__ == "__main__":
    sys.exit(main())
