"""An ADM UNet (Dhariwal & Nichol 2021; Nichol & Dhariwal 2021) whose state dict matches OpenAI's
guided-diffusion / improved-diffusion checkpoints key for key and shape for shape.

biaskit's own implementation of the published architecture, so that their ``.pt`` files (and
those of forks: P2-weighting, the Debias authors' models) load strictly. Module names are the
checkpoint's key names: ``time_embed``, ``label_emb``, ``input_blocks``, ``middle_block``,
``output_blocks``, ``out``; ResBlock ``in_layers`` / ``emb_layers`` / ``out_layers`` /
``skip_connection``; AttentionBlock ``norm`` / ``qkv`` / ``proj_out`` (1-D convs);
Downsample ``op``, Upsample ``conv``.

:func:`infer_adm_config` reads the constructor arguments back from a state dict
(:mod:`biaskit.models.adm_config`, re-exported here).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .adm_config import (DEFAULT_CHANNEL_MULT, GUIDED_DIFFUSION_FLAGS, NOT_IN_STATE_DICT, _whole,
                         flags_to_config, infer_adm_config)

__all__ = ["ADMUNet", "infer_adm_config", "NOT_IN_STATE_DICT", "timestep_embedding",
           "flags_to_config", "GUIDED_DIFFUSION_FLAGS", "DEFAULT_CHANNEL_MULT"]

# Vaswani et al. 2017 sinusoids as ADM orders them: [cos(t f_k), sin(t f_k)], f_k = P^(-k/half)
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) timesteps (any float values) -> (B, dim) embedding."""
    half = dim // 2
    f = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
                  / half)
    args = t.float()[:, None] * f[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32 groups) computed in float32, as ADM does."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv named ``conv`` when use_conv."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if hasattr(self, "conv") else x


class Downsample(nn.Module):
    """A stride-2 3x3 conv (use_conv) or 2x2 average pooling, named ``op``."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else \
            nn.AvgPool2d(2, stride=2)

    def forward(self, x):
        return self.op(x)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, add the time embedding (or FiLM it in: use_scale_shift_norm), again,
    plus a skip; optionally resamples both paths (resblock_updown)."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, *,
                 dropout: float = 0.0, use_scale_shift_norm: bool = False, up: bool = False,
                 down: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        resample = Upsample if up else Downsample
        self.h_upd = resample(channels, False) if self.updown else nn.Identity()
        self.x_upd = resample(channels, False) if self.updown else nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if out_channels == channels else \
            nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        if self.updown:
            h = self.in_layers[:-1](x)
            h, x = self.in_layers[-1](self.h_upd(h)), self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over all positions; heads = num_heads, or channels / num_head_channels."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1,
                 use_new_attention_order: bool = False):
        super().__init__()
        if num_head_channels != -1:
            if channels % num_head_channels:
                raise ValueError(f"attention channels {channels} are not divisible by "
                                 f"num_head_channels {num_head_channels}")
            num_heads = channels // num_head_channels
        if channels % num_heads:
            raise ValueError(f"attention channels {channels} are not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.new_order = use_new_attention_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        n, L, d = self.num_heads, x.shape[-1], c // self.num_heads
        if self.new_order:  # split q, k, v first, then heads
            q, k, v = (z.reshape(b * n, d, L) for z in qkv.chunk(3, dim=1))
        else:  # legacy order: split heads first, then q, k, v within each head
            q, k, v = qkv.reshape(b * n, 3 * d, L).split(d, dim=1)
        # softmax(q^T k / sqrt(d)) applied to v
        w = torch.softmax(torch.einsum("bct,bcs->bts", q, k).float() / math.sqrt(d), dim=-1)
        h = torch.einsum("bts,bcs->bct", w.type(v.dtype), v).reshape(b, c, L)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class _Sequential(nn.Sequential):
    """Children that take the time embedding get it; the others get x only."""

    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ADMUNet(nn.Module):
    """guided-diffusion's UNetModel (2-D), called as ``net(x, timesteps, y=None) -> (B, C_out, H, W)``.

    Args:
        in_channels: image channels C.
        model_channels: base width (guided-diffusion flag ``--num_channels``).
        num_res_blocks: ResBlocks per level.
        attention_resolutions: downsampling factors ds (1, 2, 4, ...) with attention. The
            guided-diffusion *flag* lists resolutions instead; ds = image_size // resolution
            (see :func:`flags_to_config`).
        channel_mult: width multiplier per level.
        learn_sigma: output 2C channels (mean part, then the variance interpolation v).
        num_classes: class-conditional with a label embedding when set (``class_cond``).
        num_heads, num_head_channels, num_heads_upsample, use_new_attention_order: attention
            heads and qkv ordering (not visible in a state dict; see :data:`NOT_IN_STATE_DICT`).
        use_scale_shift_norm: FiLM the time embedding into the second GroupNorm.
        resblock_updown: resample with ResBlocks instead of Downsample / Upsample.
        conv_resample: Downsample / Upsample use a conv (the ADM default).
        image_size: informational only (the network is fully convolutional).
        out_channels: overrides the C or 2C output width.
    """

    def __init__(self, in_channels: int = 3, model_channels: int = 128, num_res_blocks: int = 2,
                 attention_resolutions=(), channel_mult=(1, 2, 2, 2), learn_sigma: bool = False,
                 num_classes: int | None = None, num_heads: int = 1, num_head_channels: int = -1,
                 num_heads_upsample: int = -1, use_scale_shift_norm: bool = False,
                 resblock_updown: bool = False, conv_resample: bool = True,
                 use_new_attention_order: bool = False, dropout: float = 0.0,
                 image_size: int | None = None, out_channels: int | None = None):
        super().__init__()
        channel_mult = [_whole(m) for m in channel_mult]
        attention_resolutions = sorted({int(a) for a in attention_resolutions})
        if out_channels is None:
            out_channels = in_channels * (2 if learn_sigma else 1)
        self.config = dict(in_channels=in_channels, model_channels=model_channels,
                           num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions,
                           channel_mult=channel_mult, learn_sigma=learn_sigma, num_classes=num_classes,
                           num_heads=num_heads, num_head_channels=num_head_channels,
                           num_heads_upsample=num_heads_upsample,
                           use_scale_shift_norm=use_scale_shift_norm, resblock_updown=resblock_updown,
                           conv_resample=conv_resample,
                           use_new_attention_order=use_new_attention_order, dropout=dropout,
                           image_size=image_size, out_channels=out_channels)
        self.model_channels = model_channels
        self.num_classes = num_classes
        heads_up = num_heads if num_heads_upsample == -1 else num_heads_upsample
        emb = 4 * model_channels
        res = dict(dropout=dropout, use_scale_shift_norm=use_scale_shift_norm)

        def attention(ch, heads):
            return AttentionBlock(ch, heads, num_head_channels, use_new_attention_order)

        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb)
        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([_Sequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skips, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, emb, int(mult * model_channels), **res)]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(attention(ch, num_heads))
                self.input_blocks.append(_Sequential(*layers))
                skips.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(_Sequential(
                    ResBlock(ch, emb, ch, down=True, **res) if resblock_updown
                    else Downsample(ch, conv_resample)))
                skips.append(ch)
                ds *= 2
        self.middle_block = _Sequential(ResBlock(ch, emb, **res), attention(ch, num_heads),
                                        ResBlock(ch, emb, **res))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), emb, int(model_channels * mult), **res)]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(attention(ch, heads_up))
                if level and i == num_res_blocks:
                    layers.append(ResBlock(ch, emb, ch, up=True, **res) if resblock_updown
                                  else Upsample(ch, conv_resample))
                    ds //= 2
                self.output_blocks.append(_Sequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(input_ch, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None):
        """x: (B, C, H, W), H and W divisible by 2^(levels-1); timesteps: (B,); y: (B,) labels."""
        if (y is None) != (self.num_classes is None):
            raise ValueError("class labels y are needed if and only if the model is class-conditional "
                             f"(num_classes={self.num_classes})")
        emb = self.time_embed(timestep_embedding(timesteps.reshape(-1).expand(x.shape[0]),
                                                 self.model_channels))
        if y is not None:
            emb = emb + self.label_emb(y.reshape(-1).expand(x.shape[0]).long())
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
