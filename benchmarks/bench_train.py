"""biaskit's training step against a minimal hand-written loop, measured in one run.

For each quick preset (one per family; the weighting does not change the cost) both loops train the
same network (same initial weights), batch size, AdamW settings, gradient clipping and EMA; the
hand-written loop draws (x0, t, eps) with one generator and computes the preset's weight inline
(debias: w_eps = 1 / sqrt(snr)). biaskit's step is measured through the :func:`biaskit.train`
generator (per-quarter loss bookkeeping included, no checkpoints). Blocks of steps of the loops
alternate, in a rotating order, and the per-step time is the median over blocks of wall and
process-CPU time (CPU time is the steadier on a shared machine; the ratios are read from it), so
that load from other processes hits all alike. Target: ratio biaskit / hand <= 1.05.

``--baseline DIR`` also times the package in DIR/biaskit (e.g. ``git archive BASE biaskit | tar -x
-C DIR``), imported as ``biaskit_base``, its trainer on the same preset interleaved with the two
loops: before and after in one run (column ``base/hand``, and ``now/base``).

Usage: python benchmarks/bench_train.py [--presets digits-debias,gmm-debias,patches-debias]
       [--blocks 7] [--block-steps 20] [--threads N] [--baseline DIR] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch

import biaskit


def hand_loop(trainer: Trainer):
    """A minimal DDPM loop on the trainer's data and a copy of its initial network: returns step()."""
    cfg = trainer.config
    net = copy.deepcopy(trainer.net)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                            eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay)
    x, T, B = trainer.train_x, trainer.schedule.T, cfg.batch_size
    abar = trainer.schedule.abar.float()
    alpha, sigma, snr = abar.sqrt(), (1 - abar).sqrt(), abar / (1 - abar)
    w = snr.rsqrt()  # debias, eps space
    g = torch.Generator().manual_seed(0)
    view = (-1,) + (1,) * (x.ndim - 1)

    def step():
        x0 = x[torch.randint(x.shape[0], (B,), generator=g)]
        t = torch.randint(T, (B,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        x_t = alpha[t].view(view) * x0 + sigma[t].view(view) * eps
        loss = (w[t] * (net(x_t, t) - eps).square().flatten(1).mean(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - cfg.ema.decay)
    return step


def baseline(root: str) -> ModuleType:
    """The biaskit package in ROOT/biaskit, imported as ``biaskit_base`` beside this one."""
    spec = importlib.util.spec_from_file_location("biaskit_base", Path(root) / "biaskit" / "__init__.py")
    sys.modules["biaskit_base"] = module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # its pandas accessor replaces this one's: the same name
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    return module


def trainer(package: ModuleType, name: str, out: str, overrides: list[str] = ()):
    """``package``'s Trainer of preset ``name`` (quick size, then ``overrides``) on the CPU, never
    logging or saving."""
    config, train = (importlib.import_module(f"{package.__name__}.{m}") for m in ("config", "train"))
    cfg = config.apply_overrides(config.get_preset(name, "quick"), [*overrides,
        f"out={out}", "steps=1000000", "ckpt_every=1000000", "log_every=1000000", "probe_every=0",
        "device=cpu", "ema.start=0"])
    return train.Trainer(cfg)


def bench(name: str, blocks: int, block_steps: int, base: ModuleType | None = None,
          overrides: list[str] = ()) -> dict:
    """Median wall / CPU ms per step of each loop (biaskit, hand, and base with ``base``)."""
    with tempfile.TemporaryDirectory() as out:
        ours = trainer(biaskit, name, f"{out}/now", overrides)
        loops = {"biaskit": ours.run(progress=False)}
        if base is not None:
            loops["base"] = trainer(base, name, f"{out}/base", overrides).run(progress=False)
        steps = {k: (lambda run=run: next(run)) for k, run in loops.items()}
        steps["hand"] = hand_loop(ours)
        wall, cpu = {k: [] for k in steps}, {k: [] for k in steps}
        for step in steps.values():  # warm-up
            step(), step()
        order = list(steps)
        for i in range(blocks):  # each block in another order: no loop always runs after the same one
            for label in order[i % len(order):] + order[:i % len(order)]:
                step = steps[label]
                w, c = time.perf_counter(), time.process_time()
                for _ in range(block_steps):
                    step()
                wall[label].append((time.perf_counter() - w) / block_steps * 1e3)
                cpu[label].append((time.process_time() - c) / block_steps * 1e3)
        for run in loops.values():
            run.close()
    wall_ms, cpu_ms = ({k: statistics.median(v) for k, v in d.items()} for d in (wall, cpu))
    return {"preset": name, "wall_ms": wall_ms, "cpu_ms": cpu_ms, "batch": ours.config.batch_size,
            "params": sum(p.numel() for p in ours.net.parameters())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default="gmm-debias,digits-debias,patches-debias")
    p.add_argument("--blocks", type=int, default=7)
    p.add_argument("--block-steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--baseline", default=None, help="a directory holding another biaskit/ to time alongside")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of every preset (a smaller model shows the step's own cost)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = baseline(args.baseline) if args.baseline else None
    labels = ["biaskit", "hand"] + (["base"] if base else [])
    print(f"{'preset':16s} {'params':>8s} {'batch':>5s} " + " ".join(f"{k + ' cpu ms':>14s}" for k in labels)
          + f" {'ratio':>6s}" + (f" {'base/hand':>9s} {'now/base':>8s}" if base else "")
          + f" {'wall ratio':>10s} {'steps/s':>8s}")
    for name in args.presets.split(","):
        r = bench(name, args.blocks, args.block_steps, base, args.set)
        cpu, wall = r["cpu_ms"], r["wall_ms"]
        print(f"{r['preset']:16s} {r['params']:8d} {r['batch']:5d} " + " ".join(f"{cpu[k]:14.3f}" for k in labels)
              + f" {cpu['biaskit'] / cpu['hand']:6.3f}"
              + (f" {cpu['base'] / cpu['hand']:9.3f} {cpu['biaskit'] / cpu['base']:8.3f}" if base else "")
              + f" {wall['biaskit'] / wall['hand']:10.3f} {1e3 / wall['biaskit']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
