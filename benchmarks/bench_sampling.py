"""Sampler overhead and FID feature-extraction throughput, measured in one run.

1. Overhead: the wall time of :func:`biaskit.sampling.sample` with S steps divided by the wall
   time of S bare ``net(x, t)`` forward passes of the same batch (target <= 1.10), for the native
   ddim / ddpm samplers and the diffusers adapter (dpmpp_2m), on a small conv UNet (diffusers
   ``UNet2DModel``, 3 x 32 x 32 images) and on a small MLP over 2-D points (where the network is
   so cheap that the sampler's own arithmetic shows).
2. FID features: images per second through :class:`biaskit.metrics.Inception` (resize to 299,
   Inception-v3 pool features) for 32 x 32 RGB inputs.

Usage: python benchmarks/bench_sampling.py [--repeats 3] [--steps 50] [--threads 1] [--fid-images 32]
Timings take the minimum over repeats, the methods interleaved (other processes share the CPU).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from biaskit import metrics as M
from biaskit.denoiser import Denoiser
from biaskit.sampling import sample
from biaskit.schedules import get_schedule


class _UNetNet(nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t):
        return self.unet(x, t).sample


class _Null(nn.Module):
    """A network that costs nothing: what is left of a sampler's time is its own arithmetic."""

    def forward(self, x, t):
        return x


class _MLP(nn.Module):
    def __init__(self, dim=2, width=256):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(dim + 1, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                               nn.Linear(width, dim))

    def forward(self, x, t):
        return self.f(torch.cat([x, t.float()[:, None] / 1000], 1))


def _unet():
    from diffusers import UNet2DModel
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64),
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), layers_per_block=1,
                       norm_num_groups=8)
    return _UNetNet(unet.eval())


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def overhead(name, net, shape, steps, repeats, samplers=("ddim", "ddpm", "dpmpp_2m"), quiet=False):
    den = Denoiser(net, get_schedule("linear"), "eps").eval()
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ts = [torch.full((shape[0],), t) for t in range(999, 0, -1000 // steps)][:steps]

    @torch.inference_mode()
    def bare():
        for t in ts:
            net(noise, t)

    runs = {"bare": bare, **{s: (lambda s=s: sample(den, noise, sampler=s, steps=steps,
                                                      progress=False)) for s in samplers}}
    for fn in runs.values():  # warm-up (diffusers imports, allocator)
        fn()
    best = {k: float("inf") for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            best[k] = min(best[k], _time(fn))
    if quiet:
        return best
    own = own_cost(shape, steps, repeats, samplers)
    print(f"\n{name}: batch {tuple(shape)}, {steps} steps; bare forward {best['bare'] * 1e3:.1f} ms "
          f"({best['bare'] / steps * 1e3:.2f} ms/step)")
    for s in samplers:
        per_step = (best[s] - best["bare"]) / steps * 1e6
        print(f"  {s:10s} {best[s] * 1e3:8.1f} ms  measured ratio {best[s] / best['bare']:.3f} "
              f"({per_step:+.0f} us/step); own cost {own[s]:.0f} us/step -> ratio "
              f"{1 + own[s] * 1e-6 * steps / best['bare']:.3f}")
    return best


def fid_throughput(n, repeats):
    inc = M.Inception(batch_size=n)
    x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    inc.features(x[:2])
    best = float("inf")
    for i in range(repeats):
        y = x + 1e-3 * i  # a new set each time: no cache hit
        best = min(best, _time(lambda: inc.features(y)))
    print(f"\nFID features: {n} images 32x32 -> 299x299, {n / best:.2f} images/s "
          f"({best / n * 1e3:.0f} ms/image, {torch.get_num_threads()} threads)")


def own_cost(shape, steps, repeats, samplers=("ddim", "ddpm", "dpmpp_2m")) -> dict:
    """Per-step time of each sampler around a free network (the sampler's own arithmetic, the
    Denoiser wrapper and, for diffusers, the scheduler), in microseconds."""
    best = overhead("null network (sampler's own cost)", _Null(), shape, steps, repeats, samplers,
                    quiet=True)
    return {s: (best[s] - best["bare"]) / steps * 1e6 for s in samplers}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--fid-images", type=int, default=32, help="images for the FID timing (0: skip)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overhead("UNet2DModel (32x32 RGB)", _unet(), (16, 3, 32, 32), args.steps, args.repeats)
    overhead("MLP (2-D points)", _MLP(), (1024, 2), args.steps, args.repeats)
    if args.fid_images:
        fid_throughput(args.fid_images, args.repeats)


if __name__ == "__main__":
    main()
