"""Flux pipeline folders (``transformer`` FluxTransformer2DModel, ``text_encoder`` CLIP,
``text_encoder_2`` T5, FlowMatchEulerDiscreteScheduler) as diffusers' FluxPipeline runs them.

Flux's transformer takes *packed* latents: the latent z (B, C, h, w) cut into 2 x 2 patches, one
token of 4C features per patch,

    pack(z)[b, (i w/2 + j), c 4 + 2 di + dj] = z[b, c, 2 i + di, 2 j + dj],

with position ids (0, i, j) per image token and (0, 0, 0) per text token. :class:`FluxNet` packs,
calls the transformer at time s = t / 1000 (t = s N the scheduler's timestep) and unpacks, so
biaskit sees an ordinary (B, C, h, w) velocity network of the flow process x = (1 - s) x0 + s eps.

Two guidances, kept apart: the *guidance embedding* g of a guidance-distilled Flux (an input of
the network, ``--guidance-embed``, diffusers' ``guidance_scale``, default 3.5), and classifier-free
guidance w mixing conditional and null (empty prompt) outputs (``--guidance-scale``, diffusers'
``true_cfg_scale`` with ``negative_prompt=""``).

The sampling schedule is diffusers': sigmas linspace(1, 1/steps, steps), time-shifted by
mu = calculate_shift(h w / 4) (linear in the image-token count from ``base_shift`` at
``base_image_seq_len`` tokens to ``max_shift`` at ``max_image_seq_len``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["FluxNet", "FLUX_T5_TOKENS", "FLUX_GUIDANCE", "flux_shift_mu", "flux_set_timesteps",
           "pack", "unpack"]

FLUX_T5_TOKENS = 512  # diffusers' FluxPipeline max_sequence_length default
FLUX_GUIDANCE = 3.5  # diffusers' FluxPipeline guidance_scale default (the embedding)


def pack(z: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h w / 4, 4 C), the module docstring's patch order."""
    B, C, h, w = z.shape
    return z.reshape(B, C, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w // 4, 4 * C)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`pack`: (B, h w / 4, 4 C) -> (B, C, h, w)."""
    B, _, F = tokens.shape
    return tokens.reshape(B, h // 2, w // 2, F // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(B, F // 4, h, w)


class _Out:
    def __init__(self, sample):
        self.sample = sample


class FluxNet(nn.Module):
    """A FluxTransformer2DModel on unpacked latents: ``net(x (B, C, h, w), timestep=t (B,),
    encoder_hidden_states (B, L, D), pooled_projections (B, D'))`` -> ``.sample`` (B, C, h, w), the
    velocity; ``guidance`` is the guidance embedding's value (None for a model without one).
    ``sample_size``: the default latent side (diffusers' 128, 1024 px through an 8x VAE)."""

    def __init__(self, transformer: nn.Module, guidance: float | None = FLUX_GUIDANCE,
                 sample_size: int = 128):
        super().__init__()
        self.transformer, self.sample_size = transformer, int(sample_size)
        self.guidance = guidance if transformer.config.guidance_embeds else None

    @property
    def config(self):
        return self.transformer.config

    def forward(self, x, timestep=None, encoder_hidden_states=None, pooled_projections=None):
        B, C, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"Flux latents need an even side (2 x 2 patches); got {h} x {w}")
        ids = torch.zeros(h // 2, w // 2, 3, device=x.device, dtype=x.dtype)
        ids[..., 1] += torch.arange(h // 2, device=x.device)[:, None]
        ids[..., 2] += torch.arange(w // 2, device=x.device)[None, :]
        txt_ids = torch.zeros(encoder_hidden_states.shape[1], 3, device=x.device, dtype=x.dtype)
        g = None if self.guidance is None else torch.full([B], float(self.guidance), device=x.device,
                                                          dtype=torch.float32)
        t = timestep.expand(B) if timestep.ndim == 0 else timestep
        out = self.transformer(hidden_states=pack(x), timestep=t.to(x.dtype) / 1000, guidance=g,
                               pooled_projections=pooled_projections,
                               encoder_hidden_states=encoder_hidden_states, txt_ids=txt_ids,
                               img_ids=ids.reshape(-1, 3), return_dict=False)[0]
        return _Out(unpack(out, h, w))


def flux_shift_mu(config: dict, h: int, w: int) -> float:
    """diffusers' calculate_shift for an h x w latent (h w / 4 image tokens)."""
    n0, n1 = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    s0, s1 = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    m = (s1 - s0) / (n1 - n0)
    return (h // 2) * (w // 2) * m + (s0 - m * n0)


def flux_set_timesteps(scheduler, steps: int, h: int, w: int, device) -> None:
    """FluxPipeline's schedule (module docstring) set on ``scheduler``."""
    sigmas = np.linspace(1.0, 1 / steps, steps)
    if getattr(scheduler.config, "use_flow_sigmas", False):
        sigmas = None
    scheduler.set_timesteps(steps if sigmas is None else None, device=device, sigmas=sigmas,
                            mu=flux_shift_mu(dict(scheduler.config), h, w))
    scheduler.set_begin_index(0)
