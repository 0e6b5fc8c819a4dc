"""biaskit's training step against a minimal hand-written loop, measured in one run.

For each quick preset (one per family; the weighting does not change the cost) both loops train the
same network (same initial weights), batch size, AdamW settings, gradient clipping and EMA; the
hand-written loop draws (x0, t, eps) with one generator and computes the preset's weight inline
(debias: w_eps = 1 / sqrt(snr)). biaskit's step is measured through the :func:`biaskit.train`
generator (per-quarter loss bookkeeping included, no checkpoints). Blocks of steps of the two loops
alternate and the per-step time is the median over blocks, so that load from other processes
hits both alike. Target: ratio biaskit / hand <= 1.05.

Usage: python benchmarks/bench_train.py [--presets digits-debias,gmm-debias,patches-debias]
       [--blocks 7] [--block-steps 20] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch

from biaskit.config import apply_overrides, get_preset
from biaskit.train import Trainer


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


def bench(name: str, blocks: int, block_steps: int) -> dict:
    cfg = get_preset(name, "quick")
    with tempfile.TemporaryDirectory() as out:
        cfg = apply_overrides(cfg, [f"out={out}", "steps=1000000", "ckpt_every=1000000", "log_every=1000000",
                                    "probe_every=0", "device=cpu", "ema.start=0"])
        trainer = Trainer(cfg)
        hand = hand_loop(trainer)
        ours = trainer.run(progress=False)
        times = {"biaskit": [], "hand": []}
        for _ in range(2):  # warm-up
            hand(), next(ours)
        for _ in range(blocks):
            for label, fn in (("biaskit", lambda: next(ours)), ("hand", hand)):
                t0 = time.perf_counter()
                for _ in range(block_steps):
                    fn()
                times[label].append((time.perf_counter() - t0) / block_steps)
        ours.close()
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"preset": name, "biaskit_ms": ms["biaskit"], "hand_ms": ms["hand"],
            "ratio": ms["biaskit"] / ms["hand"], "steps_per_s": 1e3 / ms["biaskit"],
            "batch": cfg.batch_size, "params": sum(p.numel() for p in trainer.net.parameters())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default="gmm-debias,digits-debias,patches-debias")
    p.add_argument("--blocks", type=int, default=7)
    p.add_argument("--block-steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{'preset':16s} {'params':>8s} {'batch':>5s} {'biaskit ms':>10s} {'hand ms':>8s} {'ratio':>6s} "
          f"{'steps/s':>8s}")
    for name in args.presets.split(","):
        r = bench(name, args.blocks, args.block_steps)
        print(f"{r['preset']:16s} {r['params']:8d} {r['batch']:5d} {r['biaskit_ms']:10.2f} {r['hand_ms']:8.2f} "
              f"{r['ratio']:6.3f} {r['steps_per_s']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
