"""A plain PyTorch training loop with a biaskit Monitor: per-timestep validation error at fixed
timesteps, fixed held-out samples and fixed noise, every N steps.

    python examples/monitor_pytorch_loop.py --steps 2000 --every 200 --out runs/monitor-pytorch

A small MLP learns eps on the 2-D Gaussian mixture ``gmm2d`` under DDPM's linear schedule. The
monitor writes ``monitor.csv`` (one row per (record, t), plus the paired change since the
previous record) and says what a record costs. Each record equals ``biaskit probe`` of the saved
weights (``--save``; ``factory`` below is the network for ``--model-spec``):

    biaskit probe runs/monitor-pytorch/model.safetensors --model-spec examples/monitor_pytorch_loop.py:factory \\
        --noise-schedule linear --diffusion-steps 1000 --data gmm2d --timesteps 10,100,300,600,900,999 \\
        --samples 256 --out runs/monitor-pytorch/probe
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

import biaskit

T = 1000
TIMESTEPS = (10, 100, 300, 600, 900, 999)


class MLP(nn.Module):
    """eps_hat(x_t, t) for 2-D data: x_t and sin/cos features of t / T through a 3-layer MLP."""

    def __init__(self, dim: int = 2, width: int = 128, freqs: int = 8):
        super().__init__()
        self.register_buffer("f", math.pi * 2.0 ** torch.arange(freqs), persistent=False)
        self.net = nn.Sequential(nn.Linear(dim + 2 * freqs, width), nn.SiLU(), nn.Linear(width, width),
                                 nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x, t):
        phase = (t.float() / T)[:, None] * self.f
        return self.net(torch.cat([x, phase.sin(), phase.cos()], 1))


def factory(**kwargs) -> nn.Module:
    return MLP(**kwargs)


def main(steps: int = 2000, every: int = 200, out=None, n: int = 256, batch: int = 256, lr: float = 2e-3,
         seed: int = 0, save=None, width: int = 128) -> biaskit.Monitor:
    torch.manual_seed(seed)
    data = biaskit.data.load_dataset("gmm2d", seed=seed)
    schedule = biaskit.schedules.linear(T)
    net = factory(width=width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    monitor = biaskit.Monitor(net, data, schedule=schedule, target="eps", timesteps=TIMESTEPS, n=n,
                              every=every, out=out, seed=seed)
    print(f"monitor: {monitor.cost['forward_passes_per_record']} forward passes per record")
    abar = schedule.abar.float()
    for step in range(1, steps + 1):
        x0 = data.train[torch.randint(len(data.train), (batch,))]
        t = torch.randint(T, (batch,))
        eps = torch.randn_like(x0)
        a = abar[t][:, None]
        loss = (net(a.sqrt() * x0 + (1 - a).sqrt() * eps, t) - eps).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        record = monitor.step(step)
        if record is not None:
            row = record[(record.kind == "model") & (record.t == TIMESTEPS[-1])].iloc[0]
            print(f"step {step}: loss {loss.item():.4f}, x0-MSE at t={TIMESTEPS[-1]} {row.x0_mse:.4f} "
                  f"[{row.x0_mse_lo:.4f}, {row.x0_mse_hi:.4f}]")
    if save is not None:
        from safetensors.torch import save_file
        save_file(net.state_dict(), str(save))
    return monitor


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--out", default="runs/monitor-pytorch")
    p.add_argument("--save", default=None, help="safetensors file for the final weights")
    a = p.parse_args()
    main(a.steps, a.every, a.out, save=a.save)
