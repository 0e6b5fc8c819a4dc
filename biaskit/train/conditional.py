"""Class-conditional training: each sample's label fed to the network, dropped to the null class
with probability ``loss.label_dropout`` (classifier-free guidance, Ho & Salimans 2022).

A run is conditional when ``model.config.num_classes`` = K > 0 (:mod:`biaskit.models.labels`:
labels 0..K-1, null class K); its data set must carry labels (``train_labels``: digits, MNIST,
an image folder with one subfolder per class, ``--data FILE`` with labels). At 0-based step s
the labels are those of the samples the trainer drew for the rank's batch (its indices
:meth:`~biaskit.train.trainer.Trainer.indices`, given here: x0 and y stay paired), and sample
i's label is replaced by K when u_i < p, with u drawn for the global batch B from its own
random stream ``derive_seed(seed, LABEL_STREAM, s)`` (rank r keeps u[r b:(r + 1) b]): the data
order, t, eps, dropout and input-perturbation streams are those of the same run without labels,
and a run without ``num_classes`` never reaches this module (its numbers do not change by a bit).

:class:`Labelled` wraps the trainer's model so that the loss code calls ``net(x, time)`` as for
any run; before each step :func:`set_step_labels` gives it that step's labels.
"""

from __future__ import annotations

import torch
from torch import nn

from ..rng import derive_seed

__all__ = ["LABEL_STREAM", "Labelled", "labelled_model", "step_labels", "set_step_labels",
           "num_classes"]

LABEL_STREAM = 4  # after objective's data, noise, dropout and input-perturbation streams (0..3)


def num_classes(model_config: dict) -> int:
    """K of a conditional model config (0: unconditional)."""
    return int(model_config.get("num_classes") or 0)


class Labelled(nn.Module):
    """``net(x, time)`` -> ``inner(x, time, y=labels)`` with the labels of the current step."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.labels: torch.Tensor | None = None

    def forward(self, x, time, **kwargs):
        if self.labels is None or self.labels.shape[0] != x.shape[0]:
            raise RuntimeError("a conditional run's network was called without this step's labels")
        return self.inner(x, time, y=self.labels, **kwargs)


def labelled_model(trainer) -> Labelled | None:
    """The trainer's model wrapped to receive labels (None for an unconditional run), after
    checking that the data carry labels in 0..K-1 and that 0 <= label_dropout < 1."""
    K = num_classes(trainer.model_config)
    p = float(trainer.config.loss.label_dropout)
    if not K:
        if p:
            raise ValueError(f"loss.label_dropout {p:g} needs a class-conditional model: set "
                             "model.config.num_classes")
        return None
    if not 0.0 <= p < 1.0:
        raise ValueError(f"loss.label_dropout must lie in [0, 1), got {p:g}")
    y = getattr(trainer.data, "train_labels", None)
    if y is None:
        raise ValueError(f"model.config.num_classes {K}: the data set {trainer.data.name!r} carries "
                         "no labels (use digits, mnist, an image folder with one subfolder per "
                         "class, or a labelled --data file)")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= K:
        raise ValueError(f"model.config.num_classes {K}: the data's labels run {lo}..{hi}; they "
                         f"must lie in 0..{K - 1} (label {K} is the null class)")
    trainer.train_y = torch.as_tensor(y, dtype=torch.int64).to(trainer.device)
    return Labelled(trainer.model)


def step_labels(trainer, step: int, idx: torch.Tensor) -> torch.Tensor:
    """(b,) labels of this rank's batch at 0-based ``step`` (``idx``: its (b,) data indices, as
    the trainer drew them), each replaced by the null class K with probability
    loss.label_dropout (see the module)."""
    y = trainer.train_y[idx]
    p = float(trainer.config.loss.label_dropout)
    if p:
        cfg, b = trainer.config, idx.shape[0]
        lo = trainer.rank * b
        g = torch.Generator(device=trainer.device).manual_seed(derive_seed(cfg.seed, LABEL_STREAM, step))
        u = torch.rand(cfg.batch_size, device=trainer.device, generator=g)[lo:lo + b]
        y = torch.where(u < p, torch.full_like(y, num_classes(trainer.model_config)), y)
    return y


def set_step_labels(trainer, step: int, idx: torch.Tensor) -> None:
    """Give a conditional run's model the labels of 0-based ``step``, whose batch holds the data
    indices ``idx`` (nothing for another run)."""
    if getattr(trainer, "labelled", None) is not None:
        trainer.labelled.labels = step_labels(trainer, step, idx)
