"""MLP denoiser for vector data (B, D): a sinusoidal embedding of the time input, residual blocks."""

from __future__ import annotations

import torch
from torch import nn

from .adm import timestep_embedding
from .labels import LabelEmbedding, add_labels


class TimeEmbedding(nn.Module):
    """Sinusoids of the time input, then a 2-layer MLP: (B,) -> (B, dim).

    ``time_scale`` multiplies the time input first (e.g. 100 for a logsnr input of order 10)."""

    def __init__(self, dim: int, freq_dim: int = 64, time_scale: float = 1.0):
        super().__init__()
        self.freq_dim, self.time_scale = freq_dim, time_scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, time_in: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(time_in.reshape(-1) * self.time_scale, self.freq_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class ResidualBlock(nn.Module):
    def __init__(self, hidden: int, emb_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(emb_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(self.act(self.fc1(self.act(self.norm(h))) + self.emb(emb)))


class MLP(nn.Module):
    """net(x, time_in): x (B, dim) (or any (B, ...) with dim elements each), time_in (B,) -> shaped
    like x (or (B, out_dim) when out_dim differs from dim). ``learn_sigma``: out_dim = 2 dim,
    the mean then ADM's variance interpolation v (trained by L_hybrid, :mod:`biaskit.train.hybrid`).
    ``num_classes`` > 0: class-conditional, net(x, time_in, y) with labels y (B,)
    (:mod:`biaskit.models.labels`; y None or the label num_classes: unconditional)."""

    def __init__(self, dim: int = 2, hidden: int = 256, blocks: int = 3, emb_dim: int = 128,
                 freq_dim: int = 64, time_scale: float = 1.0, out_dim: int | None = None,
                 learn_sigma: bool = False, num_classes: int = 0):
        super().__init__()
        if learn_sigma:
            if out_dim not in (None, 2 * dim):
                raise ValueError(f"learn_sigma needs out_dim = 2 dim = {2 * dim}, got {out_dim}")
            out_dim = 2 * dim
        self.time = TimeEmbedding(emb_dim, freq_dim, time_scale)
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(ResidualBlock(hidden, emb_dim) for _ in range(blocks))
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, out_dim or dim)
        # after every other layer: the same seed initialises those as in the unconditional net
        self.label = LabelEmbedding(num_classes, emb_dim) if num_classes else None

    def forward(self, x: torch.Tensor, time_in: torch.Tensor, y=None) -> torch.Tensor:
        emb = add_labels(self.label, self.time(time_in), y)
        h = self.inp(x.reshape(x.shape[0], -1))
        for block in self.blocks:
            h = block(h, emb)
        out = self.out(torch.nn.functional.silu(self.norm(h)))
        return out.reshape(x.shape) if out.shape[1] == x[0].numel() else out
