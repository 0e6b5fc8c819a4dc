"""Training a denoiser with any loss weighting, on one CPU or many GPUs (DDP under torchrun).

The loss (Ho et al. 2020, with a per-timestep weight):

    t ~ p(t), eps ~ N(0, I), x_t = alpha_t x0 + sigma_t eps
    L = E[ w(t) * mean_elements (net(x_t, t) - target)^2 ]

where target is eps, x0, v or u (:func:`biaskit.parameterization.target`) and
w(t) = :func:`biaskit.weighting.per_sample_weights` of the configured weighting *in the target's
space* (a per-logsnr weighting gets |dlogsnr/dt| / (T p(t)); ``normalize`` uses one constant, fixed
on the x0-space weight, for every target), so a
weighting means the same thing whatever the network predicts (``debias`` is 1/sqrt(snr) on the eps
error, i.e. sqrt(snr) on the x0 error and sqrt(snr)/(snr+1) on the v error).

A network with 2C outputs (``learn_sigma``) trains by L_hybrid: the weighted MSE on its mean half
plus guided-diffusion's (T/1000)-rescaled variational bound on its variance half, the mean stopped
(:mod:`.hybrid`). ``init.path`` fine-tunes a loaded model instead of building one (:mod:`.finetune`).
``debias_fork`` is the paper code's weighting (1/sqrt(snr) on the trained target's own MSE).

All randomness is a function of (seed, step): the data order (one permutation per epoch), t and eps
are drawn for the *global* batch from generators seeded by (seed, stream, step) and each DDP rank
takes its slice, so ``--resume`` reproduces an uninterrupted run and 2 ranks x batch B equal
1 rank x batch 2B.

:func:`train` is a generator yielding a :class:`TrainState` after every optimizer step (it also
logs, probes and checkpoints); :func:`run_training` consumes it. The pieces: the objective's
formulas (:mod:`.objective`), the run's :class:`Trainer` (:mod:`.trainer`), its log and the
resume check (:mod:`.runlog`), L_hybrid's variance bound (:mod:`.hybrid`), fine-tuning (:mod:`.finetune`).
"""

from typing import Iterator

from .objective import (StepObjective, TrainState, batch_indices, build_objective, diffusion_loss,
                        epoch_permutation, learning_rate, loss_weights)
from . import uncertainty  # noqa: F401 - biaskit.train.uncertainty after `import biaskit`
from .runlog import RESUMABLE, config_differences
from .trainer import Trainer

__all__ = ["TrainState", "Trainer", "train", "run_training", "loss_weights", "build_objective", "StepObjective",
           "diffusion_loss", "learning_rate", "batch_indices", "epoch_permutation", "RESUMABLE",
           "config_differences"]


def train(config, *, data=None, resume: bool = False, progress: bool = True,
          stop_at: int | None = None) -> Iterator[TrainState]:
    """Generator: build a :class:`Trainer` and yield a :class:`TrainState` after every step."""
    trainer = Trainer(config, data=data, resume=resume)
    yield from trainer.run(progress=progress, stop_at=stop_at)


def run_training(config, *, data=None, resume: bool = False, progress: bool = True,
                 stop_at: int | None = None) -> Trainer:
    """Train to the end (or ``stop_at``); return the :class:`Trainer` (``.denoiser()``, ``.run_dir``)."""
    trainer = Trainer(config, data=data, resume=resume)
    steps = trainer.run(progress=progress, stop_at=stop_at)
    try:
        for _ in steps:
            pass
    finally:
        steps.close()  # releases the run's lock at once, also on Ctrl-C
    return trainer
