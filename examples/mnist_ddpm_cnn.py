"""The network of a third-party MNIST DDPM (Yichizz/hot_vs_cold_diffusion, ``ddpm_mnist_starter.pth``),
written for biaskit from the layout described in ../shared/checkpoints/mnist-ddpm-cnn/NOTES.md.

It is the kind of file a user writes to probe a checkpoint whose code is not a library: a small
module plus a ``factory()``. Probe it with

    biaskit probe ../shared/checkpoints/mnist-ddpm-cnn/ddpm_mnist_starter.pth \\
        --model-spec examples/mnist_ddpm_cnn.py:factory --state-dict-prefix gt. \\
        --abar-key alpha_t --time-input scaled --time-scale 0.001 --data-range=-0.5,0.5 \\
        --trained-timesteps 1:999 --data mnist --out runs/mnist-ddpm-cnn

Network: four conv blocks Conv2d(7x7) -> LayerNorm over (C, 28, 28) -> GELU with channels
1 -> 16 -> 32 -> 32 -> 16 and a 3x3 conv 16 -> 1. The time t / 1000 (a float in [0, 1]) is encoded
as concat(sin(t f), cos(t f) - 1) with 16 frequencies f = [0, 2 pi 1.5^0, ..., 2 pi 1.5^14], mapped
by an MLP to 16 channels and added to block 0's output. It predicts eps on images in [-0.5, 0.5].
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Conv2d(k=7) -> LayerNorm over (C, H, W) -> GELU; parameters under ``net.0`` / ``net.1``."""

    def __init__(self, c_in: int, c_out: int, size: int = 28):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c_in, c_out, 7, padding=3),
                                 nn.LayerNorm((c_out, size, size)), nn.GELU())

    def forward(self, x):
        return self.net(x)


class MnistDDPMCNN(nn.Module):
    """eps_hat = net(x_t, t / 1000); x_t: (B, 1, 28, 28), t: (B,) floats in [0, 1]."""

    def __init__(self, channels=(16, 32, 32, 16), n_freq: int = 16, hidden: int = 128):
        super().__init__()
        widths = (1, *channels)
        self.blocks = nn.ModuleList([ConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:])]
                                    + [nn.Conv2d(channels[-1], 1, 3, padding=1)])
        # f_0 = 0 and f_k = 2 pi 1.5^(k-1), k = 1..n_freq-1 (stored in the checkpoint too)
        f = torch.cat([torch.zeros(1), 2 * math.pi * 1.5 ** torch.arange(n_freq - 1.0)])
        self.register_buffer("frequencies", f)
        self.time_embed = nn.Sequential(nn.Linear(2 * n_freq, hidden), nn.GELU(),
                                        nn.Linear(hidden, hidden), nn.GELU(),
                                        nn.Linear(hidden, hidden), nn.GELU(),
                                        nn.Linear(hidden, channels[0]))

    def time_encoding(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) -> (B, 2 n_freq): [sin(t f), cos(t f) - 1], zero at t = 0."""
        tf = t.float().reshape(-1, 1) * self.frequencies
        return torch.cat([torch.sin(tf), torch.cos(tf) - 1], dim=-1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        h = self.blocks[0](x) + self.time_embed(self.time_encoding(t))[:, :, None, None]
        for block in self.blocks[1:]:
            h = block(h)
        return h


def factory() -> MnistDDPMCNN:
    """For ``--model-spec examples/mnist_ddpm_cnn.py:factory``."""
    return MnistDDPMCNN()
