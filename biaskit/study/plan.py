"""Training the study plan (:func:`biaskit.study.profiles.planned_runs`) into the cache: in this
process (:func:`train_all`, also under torchrun), one run per pool job (:func:`train_one`, for
``biaskit figures``), or as independent ``biaskit train --study`` commands to run anywhere that
sees the cache (:func:`plan_commands`, :func:`plan_script`)."""

from __future__ import annotations

import os
import time


def train_one(args):
    """One planned run (profile, dataset, variant, seed, cache folder, device, threads) trained
    into the cache in a pool worker: {run, seed, folder, event (hit or miss), seconds}."""
    profile, dataset, variant, seed, cache_dir, device, threads = args
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    from .cache import Cache
    from .profiles import train_runs
    start = time.perf_counter()
    cache = Cache(cache_dir)
    run = train_runs(cache, profile, dataset, [variant], seed=seed, device=device)[variant]
    return {"run": f"{dataset}-{variant}", "seed": int(seed), "folder": str(run), "event": cache.events[-1]["event"],
            "seconds": round(time.perf_counter() - start, 1)}


def plan_commands(profile: str, cache_dir, device: str = "auto", only=()) -> list[str]:
    """One ``biaskit train --study ...`` command per run of the study plan
    (:func:`biaskit.study.profiles.planned_runs` of the notebooks ``only`` names in full, all by default), each
    training one run into ``cache_dir`` (the entry the notebooks look up), in any order or
    on any machine that sees the cache."""
    import shlex

    from .profiles import planned_runs
    names = list(only) if only else None
    return [" ".join(["biaskit", "train", "--study", profile, "--dataset", f, "--variant", shlex.quote(w),
                      "--seed", str(s), "--cache", shlex.quote(str(cache_dir)), "--device", device,
                      "--no-progress"])
            for f, w, s in planned_runs(profile, names)]


def plan_script(profile: str, cache_dir, device: str = "auto", fmt: str = "sh", only=()) -> str:
    """:func:`plan_commands` as a POSIX shell script (``sh``: one after another, stopping at the
    first failure) or a SLURM job array (``slurm``: task i runs command i), ending with the
    ``biaskit figures`` call that then trains nothing."""
    import shlex
    cmds = plan_commands(profile, cache_dir, device, only)
    then = (f"# then: biaskit figures --profile {profile} --cache {shlex.quote(str(cache_dir))}"
            f" (finds every run above in the cache)\n")
    head = f"# biaskit study plan: profile {profile}, {len(cmds)} independent training runs\n"
    if fmt == "sh":
        return "#!/bin/sh\nset -e\n" + head + "".join(c + "\n" for c in cmds) + then
    if fmt == "slurm":
        body = "".join(f"  {shlex.quote(c)}\n" for c in cmds)
        return (f"#!/bin/bash\n#SBATCH --job-name=biaskit-{profile}\n#SBATCH --array=0-{len(cmds) - 1}\n"
                f"#SBATCH --gres=gpu:1\n{head}# submit: sbatch THIS_FILE\nset -e\ncommands=(\n{body})\n"
                f'eval "${{commands[$SLURM_ARRAY_TASK_ID]}}"\n' + then)
    raise ValueError(f"--plan must be sh or slurm, got {fmt!r}")


def train_all(profile: str, cache_dir, device: str = "auto", progress: bool = True,
              echo=print) -> list[dict]:
    """Train every run of :func:`biaskit.study.profiles.planned_runs` into the cache (skipping cached
    ones); under ``torchrun`` each run is trained with DDP on all processes. Returns one dict per
    run: dataset, variant, run (folder), event (``hit`` or ``miss``), seconds."""
    from .cache import Cache
    from ..distributed import launched
    from .profiles import planned_runs, resolve_device, train_runs
    device = resolve_device(device)
    cache = Cache(cache_dir)
    out = []
    rank = launched()[0]
    for dataset, w, seed in planned_runs(profile):
        run = train_runs(cache, profile, dataset, [w], seed=seed, device=device,
                         progress=progress and rank == 0)[w]
        e = cache.events[-1]
        if rank == 0:
            echo(f"{dataset}-{w}: {e['event']} ({e['seconds']:.0f} s) -> {run}")
        out.append({"dataset": dataset, "variant": w, "run": str(run), "event": e["event"],
                    "seconds": e["seconds"]})
    return out
