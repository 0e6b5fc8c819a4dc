"""biaskit figures: run the notebooks with papermill, write figures/<notebook>/ and a manifest."""

from __future__ import annotations

import sys


def add_arguments(p):
    from ..study.profiles import PROFILES
    p.add_argument("--profile", default="quick", choices=list(PROFILES),
                   help="parameter set: smoke (tiny models, about 1.5 min), quick (2 CPU cores, about "
                        "13 min), full (GPUs), gpu-smoke (the full path in 2-3 min on one GPU)")
    p.add_argument("--only", nargs="+", default=(), metavar="NAME",
                   help="notebooks to run, by name or prefix (e.g. 00 02_impact); default all")
    p.add_argument("--jobs", type=int, default=None,
                   help="notebooks run in parallel processes (default: the profile's; quick: 2)")
    p.add_argument("--out", default="figures", help="output folder (default figures/)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="cache of trained models and probe results (default: .biaskit-cache "
                        "next to the output folder)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per notebook kernel (default: the profile's, else CPUs / jobs)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (default auto)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a notebook parameter; VALUE is read as YAML (e.g. "
                        "--set train_steps=200 --set 'weightings=[constant, debias]')")
    p.add_argument("--notebooks", default=None, metavar="DIR",
                   help="folder holding the notebooks (default: the notebooks shipped in biaskit/notebooks/)")
    p.add_argument("--train-only", action="store_true",
                   help="only train the profile's models into the cache (no notebooks); run it "
                        "under torchrun to train each model with DDP on several GPUs")
    p.add_argument("--progress", action="store_true", help="show papermill's per-cell progress")
    p.add_argument("--plan", nargs="?", const="sh", default=None, choices=("sh", "slurm"),
                   help="print the study plan as independent `biaskit train` commands, one per run, "
                        "each writing its own entry of the cache (--cache): a shell script (sh, the "
                        "default) or a SLURM job array (slurm); nothing is run")


def parse_overrides(items) -> dict:
    import yaml
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {key}: value {value!r} is not valid YAML ({e})") from None
    return out


def run(args) -> int:
    from ..study.runner import NOTEBOOK_DIR, cache_folder, run_all, select, train_all
    from .common import check_out
    if args.plan:
        from ..study.runner import plan_script
        print(plan_script(args.profile, cache_folder(args.out, args.cache), args.device, args.plan,
                          only=list(select(args.only)) if args.only else ()), end="")
        return 0
    check_out(args.out)
    check_out(cache_folder(args.out, args.cache), "--cache")  # a file or read-only: before any work
    if args.train_only:
        cache = cache_folder(args.out, args.cache)
        try:
            train_all(args.profile, cache, args.device, progress=True,
                      echo=lambda s: print(s, file=sys.stderr, flush=True))
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"the runs listed above are in the cache {cache}; a rerun "
                                    "trains only the missing ones") from None
        return 0
    results = run_all(args.only, profile=args.profile, out_dir=args.out, cache_dir=args.cache,
                      jobs=args.jobs, device=args.device, overrides=parse_overrides(args.overrides),
                      notebook_dir=args.notebooks or NOTEBOOK_DIR, threads=args.threads,
                      progress=args.progress,
                      echo=lambda s: print(s, file=sys.stderr, flush=True))
    failed = [r for r in results if not r.ok]
    total = sum(r.duration_s for r in results)
    print(f"{len(results) - len(failed)}/{len(results)} notebooks ok ({total:.0f} s of notebook "
          f"time); manifest: {args.out}/manifest.json", file=sys.stderr)
    if failed:
        print("failed: " + ", ".join(r.name for r in failed), file=sys.stderr)
        return 1
    return 0
