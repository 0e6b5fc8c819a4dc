"""``biaskit`` command line: one subcommand per module in :mod:`biaskit.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

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
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError,
            IsADirectoryError, PermissionError) as e:
        # user errors: one clear line, no traceback
        print(f"biaskit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
