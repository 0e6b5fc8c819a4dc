"""biaskit train: train a denoiser from a preset or a YAML/JSON config, with --set overrides."""

from __future__ import annotations

import errno
import sys

from .common import check_out


def add_arguments(p):
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", default=None, help="YAML or JSON config file")
    src.add_argument("--preset", default=None, help="a preset, e.g. digits-debias (see --list)")
    p.add_argument("--size", "--profile", dest="size", default="quick", choices=["quick", "full"],
                   help="preset size: quick (2 CPU cores, minutes) or full (GPU) (default quick; "
                   "--profile is its old name)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=1e-4 --set loss.weighting=min_snr:5")
    p.add_argument("--process", default=None, help="noise process: discrete (the VP schedule, default), "
                   "flow, edm, ve, vp_cosine, vp_linear_logsnr (same as --set process.name=...; its "
                   "keys by --set process.shift=3, loss.target=edm, loss.density=logit_normal:0:1)")
    p.add_argument("--out", default=None, help="run directory (default: config's out)")
    p.add_argument("--steps", type=int, default=None, help="total number of optimizer steps")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config (YAML) and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _resume_hint(run_dir) -> str:
    from ..checkpoint import checkpoint_steps
    steps = checkpoint_steps(run_dir)
    if not steps:
        return f"no checkpoint was written in {run_dir}; rerun the command to start again"
    return (f"the last checkpoint is step {steps[-1]} in {run_dir}; rerun the same command with "
            "--resume to continue from it")


def run(args) -> int:
    from ..config import TrainConfig, apply_overrides, get_preset, load_config, preset_names, to_dict
    if args.list:
        print("\n".join(preset_names()))
        return 0
    if args.preset:
        config = get_preset(args.preset, args.size)
    elif args.config:
        config = load_config(args.config)
    else:
        config = TrainConfig()
    extra = list(args.overrides)
    for key, value in (("process.name", args.process), ("out", args.out), ("steps", args.steps), ("device", args.device)):
        if value is not None:
            extra.append(f"{key}={value}")
    config = apply_overrides(config, extra)
    if args.print_config:
        import yaml
        yaml.safe_dump(to_dict(config), sys.stdout, sort_keys=False)
        return 0
    from ..train import run_training
    from ..train.trainer import NonFiniteTrainingError
    check_out(config.out)
    try:
        trainer = run_training(config, resume=args.resume, progress=not args.no_progress)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_resume_hint(config.out)) from None
    except NonFiniteTrainingError as e:
        print(f"biaskit train: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk or an unwritable run directory, mid-run
        code = errno.errorcode.get(e.errno, "OSError")
        print(f"biaskit train: error: {e.filename or config.out}: {e.strerror or e} ({code}); "
              f"{_resume_hint(config.out)}", file=sys.stderr)
        return 1
    if trainer.rank == 0:
        print(f"trained {trainer.step} steps; run directory {trainer.run_dir} "
              f"(biaskit probe {trainer.run_dir})", file=sys.stderr)
    return 0
