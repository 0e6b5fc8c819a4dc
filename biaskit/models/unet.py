"""A compact UNet for small images (8x8 to 64x64), in the layout of ADM (Dhariwal & Nichol 2021):
residual blocks with GroupNorm and SiLU, the time embedding added inside every block, optional
self-attention at chosen levels, skip connections from every encoder block.

Odd sizes (28 -> 14 -> 7) work: upsampling goes back to the skip's exact size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .labels import LabelEmbedding, add_labels
from .mlp import TimeEmbedding


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, ch), ch)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in, groups), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.drop = _norm(c_out, groups), nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual."""

    def __init__(self, ch: int, groups: int, heads: int):
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm, self.qkv = _norm(ch, groups), nn.Conv2d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor, emb=None) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


class UNet(nn.Module):
    """net(x, time_in): x (B, in_channels, H, W), time_in (B,) -> (B, out_channels, H, W).

    Args:
        channels: base width; level i has channels * channel_mult[i].
        num_res_blocks: residual blocks per level (the decoder has one more, as ADM).
        attention_levels: indices into channel_mult where self-attention follows each block.
        out_channels: defaults to in_channels.
        learn_sigma: 2 * in_channels outputs, the mean then ADM's variance interpolation v
            (trained by L_hybrid, :mod:`biaskit.train.hybrid`).
        num_classes: > 0 for a class-conditional net, net(x, time_in, y) with labels y (B,)
            (:mod:`biaskit.models.labels`; y None or the label num_classes: unconditional).
    """

    def __init__(self, in_channels: int = 1, channels: int = 32, channel_mult=(1, 2),
                 num_res_blocks: int = 1, attention_levels=(), heads: int = 4, dropout: float = 0.0,
                 groups: int = 8, emb_dim: int | None = None, time_scale: float = 1.0,
                 out_channels: int | None = None, mid_attention: bool = True, learn_sigma: bool = False,
                 num_classes: int = 0):
        super().__init__()
        if learn_sigma:
            if out_channels not in (None, 2 * in_channels):
                raise ValueError(f"learn_sigma needs out_channels = {2 * in_channels}, got {out_channels}")
            out_channels = 2 * in_channels
        emb_dim = emb_dim or 4 * channels
        self.time = TimeEmbedding(emb_dim, channels, time_scale)
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)
        widths = [channels * m for m in channel_mult]
        self.down, skips, ch = nn.ModuleList(), [channels], channels
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, width, emb_dim, groups, dropout)]
                if level in attention_levels:
                    layers.append(Attention(width, groups, heads))
                self.down.append(nn.ModuleList(layers))
                ch = width
                skips.append(ch)
            if level < len(widths) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, groups, dropout)]
                                 + ([Attention(ch, groups, heads)] if mid_attention else [])
                                 + [ResBlock(ch, ch, emb_dim, groups, dropout)])
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), width, emb_dim, groups, dropout)]
                if level in attention_levels:
                    layers.append(Attention(width, groups, heads))
                ch = width
                if level > 0 and i == num_res_blocks:
                    layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    layers.append(nn.Conv2d(ch, ch, 3, padding=1))
                self.up.append(nn.ModuleList(layers))
        self.out = nn.Sequential(_norm(ch, groups), nn.SiLU(),
                                 _zero(nn.Conv2d(ch, out_channels or in_channels, 3, padding=1)))
        # after every other layer: the same seed initialises those as in the unconditional net
        self.label = LabelEmbedding(num_classes, emb_dim) if num_classes else None

    @staticmethod
    def _run_layers(layers, h, emb, size=None):
        for layer in layers:
            if isinstance(layer, (ResBlock, Attention)):
                h = layer(h, emb)
            elif isinstance(layer, nn.Upsample):
                h = F.interpolate(h, size=size, mode="nearest")
            else:
                h = layer(h)
        return h

    def forward(self, x: torch.Tensor, time_in: torch.Tensor, y=None) -> torch.Tensor:
        emb = add_labels(self.label, self.time(time_in), y)
        h = self.inp(x)
        hs = [h]
        for layers in self.down:
            h = self._run_layers(layers, h, emb)
            hs.append(h)
        h = self._run_layers(self.mid, h, emb)
        for layers in self.up:
            h = torch.cat([h, hs.pop()], dim=1)
            # an upsampling layer goes back to the next skip's exact size
            h = self._run_layers(layers, h, emb, size=hs[-1].shape[-2:] if hs else None)
        return self.out(h)
