"""biaskit train: train a denoiser from a preset or a YAML/JSON config, with --set overrides."""

from __future__ import annotations

import errno
import sys

from ..loaders.options import add_loader_arguments
from .common import _given, check_model_flags, check_out, loader_kwargs


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
    g = p.add_argument_group(
        "fine-tuning", "--init PATH continues training a loaded model (a biaskit run, a diffusers "
        "folder, an ADM file, a plugin's weights with --model-spec) on its own schedule and time "
        "input, with the config's weighting, data and optimizer; the loader flags as in biaskit probe")
    g.add_argument("--init", default=None, metavar="PATH", help="the model to fine-tune (same as "
                   "--set init.path=PATH; loss.target defaults to the model's parameterization)")
    add_loader_arguments(g, section="model", exclude=("schedule",))
    add_loader_arguments(g, exclude=("process",))
    g = p.add_argument_group("one run of a figure study (the commands of `biaskit figures --plan`)")
    g.add_argument("--study", default=None, metavar="PROFILE",
                   help="train the run of study PROFILE (smoke, quick, full ...) named by --dataset, "
                        "--variant and --seed into the cache --cache, where `biaskit figures` finds it")
    g.add_argument("--dataset", "--family", dest="dataset", default=None,
                   help="with --study: gmm, digits or patches (--family: its former name)")
    g.add_argument("--variant", "--weighting", dest="variant", default=None,
                   help="with --study: a variant of the dataset's presets, e.g. debias "
                        "(--weighting: its former name)")
    g.add_argument("--seed", type=int, default=0, help="with --study: the training seed (default 0)")
    g.add_argument("--cache", default=None, metavar="DIR", help="with --study: the cache folder")


def _resume_hint(run_dir) -> str:
    from ..checkpoint import checkpoint_steps
    steps = checkpoint_steps(run_dir)
    if not steps:
        return f"no checkpoint was written in {run_dir}; rerun the command to start again"
    return (f"the last checkpoint is step {steps[-1]} in {run_dir}; rerun the same command with "
            "--resume to continue from it")


def _loader_flags(args) -> dict:
    """The loader flags given, without ``--process``, which is also train's own flag (the run's
    noise process, ``process.name``)."""
    return {k: v for k, v in _given(args).items() if k != "process"}


def _with_init(config, args):
    """config with init.path / init.options from --init and the loader flags; loss.target set to
    the loaded model's parameterization unless --set loss.target=... was given."""
    import argparse
    from ..loaders import load
    if args.init is None:
        raise ValueError(f"loader flags ({', '.join(sorted(_loader_flags(args)))}) need --init PATH (the model "
                         "to fine-tune)")
    margs = argparse.Namespace(**{**vars(args), "model": args.init})
    check_model_flags(margs)
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in loader_kwargs(margs, None).items()
               if k != "device"}
    config.init.path, config.init.options = str(args.init), options
    if not any(o.strip().startswith("loss.target=") for o in args.overrides):
        config.loss.target = load(config.init.path, **options).parameterization
    return config
def _study_run(args) -> int:
    """Train one run of a study profile into the cache (the same config and cache key as the
    notebooks' :func:`biaskit.study.profiles.train_runs`)."""
    from ..study.cache import Cache
    from ..study.profiles import PROFILES, planned_runs, train_runs
    if args.preset or args.config or args.overrides or args.process or args.out or args.steps or args.resume \
            or args.init:
        raise ValueError("--study trains the study plan's run as planned: drop --preset, --config, "
                         "--set, --process, --out, --steps, --resume and --init")
    if args.study not in PROFILES:
        raise ValueError(f"--study must be one of {', '.join(PROFILES)}, got {args.study!r}")
    for flag_, value in (("--dataset", args.dataset), ("--variant", args.variant), ("--cache", args.cache)):
        if value is None:
            raise ValueError(f"--study needs {flag_}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if (args.dataset, args.variant, args.seed) not in planned_runs(args.study):
        raise ValueError(f"--dataset {args.dataset} --variant {args.variant} --seed {args.seed}: study "
                         f"{args.study!r} trains no such run (see biaskit figures --profile {args.study} --plan)")
    cache = Cache(args.cache)
    run = train_runs(cache, args.study, args.dataset, [args.variant], seed=args.seed,
                     device=args.device or "auto", progress=not args.no_progress)[args.variant]
    e = cache.events[-1]
    print(f"{args.dataset}-{args.variant} seed {args.seed}: {e['event']} ({e['seconds']:.0f} s) -> {run}",
          file=sys.stderr)
    return 0


def run(args) -> int:
    from ..config import TrainConfig, apply_overrides, get_preset, load_config, preset_names, to_dict
    if args.study:
        return _study_run(args)
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
    if args.init is not None or _loader_flags(args):
        config = _with_init(config, args)
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
