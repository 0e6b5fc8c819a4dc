"""EDM2's learned uncertainty weighting (Karras et al. 2024, "Analyzing and Improving the Training
Dynamics of Diffusion Models", Sec. 5): a learned log-variance u(lam) of the per-sample loss,

    L = E_t [ w(t) mse(t) / exp(u(lam_t)) + u(lam_t) ],

trained jointly with the network. For fixed mse the minimiser is exp(u*) = w(t) E[mse | t]: the
loss of every noise level is rescaled to one, so the effective per-sample weight
w / exp(u) = 1 / E[mse | t] equalises the levels' contributions. u is a linear function of fixed
random Fourier features of c = lam / 8 (EDM's c_noise = ln(sigma) / 4 = -lam / 8 up to sign),
initialised to u = 0 (the loss starts as the unweighted one). It does not enter the denoiser:
sampling and probing are unchanged, and :meth:`LogVariance.weight` reads off the weighting it learned.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LogVariance", "learned_weight"]


class LogVariance(nn.Module):
    """u(lam) = a . [cos(2 pi (f c + p)), sin(2 pi (f c + p))] / sqrt(features) + b, c = lam / 8,
    f ~ N(0, 1) and p ~ U(0, 1) fixed (seeded), a and b learned (zero at start). lam (B,) -> (B,)."""

    def __init__(self, features: int = 64, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("freq", torch.randn(features, generator=g, dtype=torch.float64))
        self.register_buffer("phase", torch.rand(features, generator=g, dtype=torch.float64))
        self.linear = nn.Linear(2 * features, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, lam: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * (lam.to(self.freq.device, torch.float64)[:, None] / 8 * self.freq + self.phase)
        feats = torch.cat([arg.cos(), arg.sin()], 1) / math.sqrt(self.freq.numel())
        return self.linear(feats.to(self.linear.weight.dtype))[:, 0]

    def loss(self, weighted_mse: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """mean_b [ weighted_mse_b / exp(u_b) + u_b ] for per-sample w * mse (B,) at logsnr lam (B,)."""
        u = self(lam).to(weighted_mse.dtype)
        return (weighted_mse * torch.exp(-u) + u).mean()

    @torch.no_grad()
    def weight(self, lam) -> torch.Tensor:
        """exp(-u(lam)) (float64): the factor the learned uncertainty puts on each level's loss."""
        return torch.exp(-self(torch.as_tensor(lam, dtype=torch.float64)).double())


def learned_weight(run_dir, lam) -> torch.Tensor:
    """exp(-u(lam)) (float64) of a run trained with ``loss.uncertainty``, from its latest
    checkpoint's state.pt (read with weights_only): the learned factor on each level's loss."""
    from ..checkpoint import checkpoint_dir
    from ..safeload import read_checkpoint
    state = read_checkpoint(checkpoint_dir(run_dir) / "state.pt")
    if not isinstance(state, dict) or "uncertainty" not in state:
        raise ValueError(f"{run_dir}: no learned uncertainty in its checkpoint (trained without loss.uncertainty)")
    lv = LogVariance(features=state["uncertainty"]["freq"].numel())
    lv.load_state_dict(state["uncertainty"])   # the run's own Fourier features and weights
    return lv.weight(lam)
