"""Probe speed and the forward passes that pairing saves, measured in one run.

1. Speed, on a small conv UNet (diffusers ``UNet2DModel``, 16x16 one-channel images) and on a
   small MLP (2-D points), each at one batch size B: the wall time of :func:`biaskit.probe.probe`
   over K timesteps x n samples, divided by the wall time of the same number of bare
   ``net(x, t)`` forward passes of batch B (target <= 1.10); and its speed-up over a loop that
   probes one t at a time with a fixed image batch (guided-diffusion's ``calc_bpd_loop``
   pattern), for image batches of 16 and of B. Process CPU time is printed beside wall time.
2. Pairing: two real trained models (the ``gmm-constant`` and ``gmm-debias`` presets, trained here
   for ``--train-steps`` steps) compared on common random numbers. For each t, the variance of
   an unpaired difference (two independent probes) over the variance of the paired one,
   (s_a^2 + s_b^2) / s_d^2, is the factor of forward passes pairing saves at equal interval width.

Usage: python benchmarks/bench_probe.py [--repeats 3] [--train-steps 1500] [--skip-pairing] [--threads 1]
Timings take the minimum over repeats, the methods interleaved (other processes share the CPU).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import numpy as np
import torch
from torch import nn

from biaskit.denoiser import Denoiser
from biaskit.probe import compare, probe, timestep_grid
from biaskit.schedules import get_schedule


class DiffusersNet(nn.Module):
    """net(x, t) of a tiny diffusers UNet2DModel (eps prediction)."""

    def __init__(self, size: int = 16):
        super().__init__()
        from diffusers import UNet2DModel
        self.unet = UNet2DModel(sample_size=size, in_channels=1, out_channels=1, layers_per_block=1,
                                block_out_channels=(32, 64), norm_num_groups=8,
                                down_block_types=("DownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "UpBlock2D"))

    def forward(self, x, t):
        return self.unet(x, t).sample


class Clock:
    """Wall and process-CPU seconds of a block (CPU time is steadier on a shared machine)."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        _sync(self.device)
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        _sync(self.device)
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare(net, x, t, B, device) -> Clock:
    with Clock(device) as c, torch.inference_mode():
        for i in range(0, x.shape[0], B):
            net(x[i:i + B], t[i:i + B])
    return c


def loop_per_t(model: Denoiser, x0, ts, b, device) -> Clock:
    """calc_bpd_loop: for each image batch of size b, walk the timesteps one by one."""
    out = []
    with Clock(device) as c, torch.inference_mode():
        for i in range(0, x0.shape[0], b):
            x = x0[i:i + b]
            dims = tuple(range(1, x.ndim))
            shape = (-1,) + (1,) * (x.ndim - 1)
            for t in ts:
                tt = torch.full((x.shape[0],), int(t), device=device)
                eps = torch.randn_like(x)
                alpha, sigma = model.schedule.coefficients(tt)
                x_t = alpha.view(shape) * x + sigma.view(shape) * eps
                pred = model(x_t, tt)
                out.append(torch.stack([((pred.x0_hat - x) ** 2).mean(dims),
                                        ((pred.eps_hat - eps) ** 2).mean(dims)]).cpu())
    return c


def speed(label: str, net: nn.Module, x0: torch.Tensor, K: int, B: int, loop_batches, repeats: int, device):
    """Time bare forwards, probe() and the per-t loops (interleaved; min over repeats)."""
    schedule = get_schedule("linear", 1000)
    model = Denoiser(net.eval().to(device), schedule, "eps", name=label)
    x0 = x0.to(device)
    n = x0.shape[0]
    ts = timestep_grid(schedule.T, num_timesteps=K)
    pairs = K * n
    xb = torch.randn(pairs, *x0.shape[1:], device=device)
    tb = torch.as_tensor(np.repeat(ts, n), device=device)
    bare(model.net, xb[:B], tb[:B], B, device)  # warm-up
    probe(model, x0[:2], timesteps=ts[:1], n=2, progress=False, oracle=False, device=device)
    times = {"bare": [], "probe": [], **{f"loop{b}": [] for b in loop_batches}}
    for _ in range(repeats):
        times["bare"].append(bare(model.net, xb, tb, B, device))
        with Clock(device) as c:
            probe(model, x0, timesteps=ts, n=n, batch_size=B, progress=False, oracle=False, device=device)
        times["probe"].append(c)
        for b in loop_batches:
            times[f"loop{b}"].append(loop_per_t(model, x0, ts, b, device))
    best = {k: min(c.wall for c in v) for k, v in times.items()}
    cpu = {k: min(c.cpu for c in v) for k, v in times.items()}
    print(f"\n## speed: {label}, K={K} t x n={n} samples = {pairs} pairs, batch {B} "
          f"({math.ceil(pairs / B)} forwards), {device}, {torch.get_num_threads()} threads, min of {repeats}")
    print(f"{'method':<30}{'wall s':>8}{'ratio':>8}{'cpu s':>8}{'ratio':>8}")
    row = lambda name, k, r, r_cpu, note: print(  # noqa: E731
        f"{name:<30}{best[k]:>8.3f}{r:>8.3f}{cpu[k]:>8.3f}{r_cpu:>8.3f}   {note}")
    row("bare forwards", "bare", 1.0, 1.0, "(reference)")
    row("probe()", "probe", best["probe"] / best["bare"], cpu["probe"] / cpu["bare"],
        "probe / bare (target <= 1.10)")
    for b in loop_batches:
        k = f"loop{b}"
        row(f"per-t loop, image batch {b}", k, best[k] / best["probe"], cpu[k] / cpu["probe"],
            "speed-up of probe() over it")
    return best, cpu


def pairing(train_steps: int, n: int, K: int):
    from biaskit.config import apply_overrides, get_preset
    from biaskit.data import load_dataset
    from biaskit.train import run_training
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("constant", "debias"):
            cfg = apply_overrides(get_preset(f"gmm-{variant}"), [
                f"steps={train_steps}", f"out={tmp}/{variant}", "device=cpu", f"ckpt_every={train_steps}",
                f"log_every={train_steps}"])
            start = time.perf_counter()
            models[variant] = run_training(cfg, progress=False).denoiser()
            print(f"trained gmm-{variant} for {train_steps} steps in {time.perf_counter() - start:.1f} s")
        ds = load_dataset(cfg.data.name, n_test=n, **cfg.data.options)
        df = compare(models, ds, reference="constant", num_timesteps=K, n=n, progress=False)
    a = df[df["model"] == "debias"].reset_index(drop=True)
    r = df[df["model"] == "constant"].reset_index(drop=True)
    d = df[df["kind"] == "difference"].reset_index(drop=True)
    print(f"\n## pairing: gmm-debias - gmm-constant (trained {train_steps} steps), n={n}, K={K} t")
    print("factor = (var unpaired) / (var paired) = forward passes saved at equal CI width")
    print(f"{'statistic':<14}{'median':>9}{'min':>9}{'max':>9}   diff at t with the largest factor")
    out = {}
    for stat in ("x0_mse", "eps_mse", "excess_mse", "x0_bias_c0", "x0_bias_c1"):
        half = lambda f: (f[f"{stat}_hi"] - f[f"{stat}_lo"]).to_numpy() / 2  # noqa: E731
        factor = (half(a) ** 2 + half(r) ** 2) / np.maximum(half(d) ** 2, 1e-300)
        k = int(np.argmax(factor))
        print(f"{stat:<14}{np.median(factor):>9.1f}{factor.min():>9.1f}{factor.max():>9.1f}   "
              f"t={int(d['t'][k])}: {d[stat][k]:.3g} [{d[f'{stat}_lo'][k]:.3g}, {d[f'{stat}_hi'][k]:.3g}]")
        out[stat] = factor
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--num-timesteps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=1500)
    p.add_argument("--pair-samples", type=int, default=2000)
    p.add_argument("--skip-pairing", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: steadier timings on a shared CPU)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n, B = args.samples, args.batch_size
    speed("diffusers UNet2DModel (32/64 ch) on 16x16x1 images", DiffusersNet(16),
          torch.rand(n, 1, 16, 16, generator=g) * 2 - 1, args.num_timesteps, B, (16, B), args.repeats, device)
    from biaskit.models.mlp import MLP
    speed("biaskit MLP (128 hidden, 3 blocks) on 2-D points", MLP(dim=2, hidden=128, blocks=3),
          torch.rand(512, 2, generator=g) * 2 - 1, 50, 4096, (512,), args.repeats, device)
    if not args.skip_pairing:
        pairing(args.train_steps, args.pair_samples, 20)


if __name__ == "__main__":
    main()
