"""Classifier-free guidance over a conditional network with a table of conditions
(:class:`GuidedNet`), and the latent denoisers whose network is told each sample's row of that
table (:class:`ConditionedDenoiser`, :class:`ConditionedProcessDenoiser`). Guidance at scale w:

    out_w = out(x, null) + w (out(x, c) - out(x, null)),

computed as exactly out(x, c) at w = 1 and out(x, null) at w = 0 (one forward)."""

from __future__ import annotations

import torch
from torch import nn

from ..denoiser import Denoiser
from ..formulations import ProcessDenoiser

__all__ = ["GuidedNet", "ConditionedDenoiser", "ConditionedProcessDenoiser"]


class GuidedNet(nn.Module):
    """A conditional network (UNet2DConditionModel, SD3Transformer2DModel, DiTTransformer2DModel)
    called as ``net(x, t, rows=None)``: row i of the batch is conditioned on the distinct
    condition ``prompt_of[rows[i]]`` (rows default 0..B-1), mixed with the null condition at
    guidance scale ``scale`` (module docstring). ``cond``: a tuple, one tensor (P, ...) per keyword
    of ``keywords`` (text embeddings (P, L, D), pooled embeddings (P, D'), class labels (P,));
    ``null``: the same with P = 1. With a learned variance (2C outputs for C channels) only the
    mean half is guided and the variance is the conditional one, as diffusers' DiT pipeline does."""

    def __init__(self, unet: nn.Module, cond: tuple, null: tuple, prompt_of: torch.Tensor,
                 scale: float = 1.0, keywords: tuple = ("encoder_hidden_states",),
                 channels: int | None = None):
        super().__init__()
        self.unet, self.scale, self.keywords, self.channels = unet, float(scale), tuple(keywords), channels
        self.set_conditions(cond, null, prompt_of)

    def set_conditions(self, cond: tuple, null: tuple, prompt_of: torch.Tensor) -> None:
        for j, (c, u) in enumerate(zip(cond, null)):
            self.register_buffer(f"cond_{j}", c, persistent=False)
            self.register_buffer(f"null_{j}", u, persistent=False)
        self.register_buffer("prompt_of", prompt_of.long(), persistent=False)

    @property
    def cond(self) -> tuple:
        return tuple(getattr(self, f"cond_{j}") for j in range(len(self.keywords)))

    @property
    def null(self) -> tuple:
        return tuple(getattr(self, f"null_{j}") for j in range(len(self.keywords)))

    def _out(self, x, t, conds):
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        return self.unet(x, timestep=t, **dict(zip(self.keywords, conds))).sample

    def forward(self, x, t, rows=None):
        B = x.shape[0]
        rows = torch.arange(B, device=x.device) if rows is None else rows.to(x.device)
        null = [u.expand(B, *u.shape[1:]) for u in self.null]
        if self.scale == 0:
            return self._out(x, t, null)
        c = [v[self.prompt_of[rows]] for v in self.cond]
        if self.scale == 1:
            return self._out(x, t, c)
        t2 = t.expand(B) if t.ndim == 0 else t
        u, c = self._out(torch.cat([x, x]), torch.cat([t2, t2]),
                         [torch.cat([a, b]) for a, b in zip(null, c)]).chunk(2)
        C = self.channels or x.shape[1]
        guided = u[:, :C] + self.scale * (c[:, :C] - u[:, :C])
        return torch.cat([guided, c[:, C:]], 1) if c.shape[1] > C else guided


class _Rows:
    """``forward(x_t, t, rows=None)``: ``rows`` (B,) name each sample's row of the network's
    condition table (the probe passes its sample indices; None: 0..B-1)."""

    takes_rows = True

    def forward(self, x_t, t, rows=None):
        saved = self.net_kwargs
        self.net_kwargs = {**saved, "rows": rows}
        try:
            return super().forward(x_t, t)
        finally:
            self.net_kwargs = saved


class ConditionedDenoiser(_Rows, Denoiser):
    """A latent VP Denoiser whose network takes per-sample conditions (:class:`_Rows`)."""


class ConditionedProcessDenoiser(_Rows, ProcessDenoiser):
    """A latent flow-matching (SD3) ProcessDenoiser whose network takes per-sample conditions."""
