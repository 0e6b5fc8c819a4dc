"""The class-label embedding of biaskit's class-conditional MLP and UNet.

A network built with ``num_classes = K > 0`` adds e(y) (an ``nn.Embedding`` of K + 1 rows) to its
time embedding: labels 0..K-1 are the classes and K is the null class, the "no label" of
classifier-free guidance (Ho & Salimans 2022), which training feeds with probability
``loss.label_dropout`` (:mod:`biaskit.train.conditional`). Called without labels (y None) such
a network is its unconditional model, the null class for every sample. ``num_classes = 0`` (the
default) adds nothing: no parameter, no operation, the unconditional network bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LabelEmbedding", "add_labels", "run_conditioning"]


class LabelEmbedding(nn.Module):
    """e(y) (B, dim) for labels y (B,) int in 0..num_classes (num_classes: the null class)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"model.config.num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.table = nn.Embedding(self.num_classes + 1, dim)

    def forward(self, y, batch: int, device) -> torch.Tensor:
        if y is None:
            y = torch.full((batch,), self.num_classes, dtype=torch.int64, device=device)
        y = torch.as_tensor(y, device=device).long()
        if y.shape != (batch,):
            raise ValueError(f"labels: expected shape ({batch},), got {tuple(y.shape)}")
        if bool(((y < 0) | (y > self.num_classes)).any()):
            raise ValueError(f"labels must lie in 0..{self.num_classes} ({self.num_classes}: the "
                             f"null class), got {int(y.min())}..{int(y.max())}")
        return self.table(y)


def add_labels(label: LabelEmbedding | None, emb: torch.Tensor, y) -> torch.Tensor:
    """emb + e(y) for a conditional network; emb itself (the same tensor) for another, which
    must not be given labels."""
    if label is None:
        if y is not None:
            raise ValueError("this network is not class-conditional (model.config.num_classes "
                             "is 0): it takes no labels")
        return emb
    return emb + label(y, emb.shape[0], emb.device).to(emb.dtype)


def run_conditioning(model_info: dict):
    """The :class:`~biaskit.denoiser.Conditioning` of a biaskit run's model (biaskit.json
    ``model``): each sample's own label as ``y``, null label num_classes; None when the model
    is not class-conditional."""
    K = int(model_info.get("config", {}).get("num_classes") or 0)
    if not K:
        return None
    from ..denoiser import Conditioning
    return Conditioning("y", null_label=K)
