"""The pieces of the training objective, each one formula: per-timestep loss weights, the loss
itself, the learning-rate schedule and the seeded data order; and :func:`build_objective`, the
objective of a run from (process, target, density, weighting): :class:`StepObjective` on a
discrete schedule's integer steps, :class:`~biaskit.train.process_objective.ProcessObjective`
under a continuous process, one interface the trainer calls without knowing which."""

from __future__ import annotations

import functools
import math
from contextlib import nullcontext
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from .. import parameterization as P
from .. import weighting as W
from ..densities import step_probabilities
from ..processes import DiscreteVP, Process, process_from_config
from ..rng import derive_seed
from ..schedules import Schedule
from .process_objective import ProcessObjective


_DATA, _NOISE, _DROPOUT, _PERTURB = 0, 1, 2, 3  # random streams: derive_seed(seed, stream, epoch or step)


@dataclass
class TrainState:
    """After optimizer step ``step`` (1-based): the weighted loss (a 0-d tensor, not synced to the
    host), per-sample unweighted target-space MSE ``mse`` (B_local,), their timesteps ``t``, the lr."""
    step: int
    loss: torch.Tensor
    mse: torch.Tensor
    t: torch.Tensor
    lr: float

    def mse_by_quarter(self, T: int) -> torch.Tensor:
        """Mean target MSE in each quarter of 0..T-1 (4,), NaN where no sample fell."""
        q = _quarter(self.t, T)
        sums = torch.zeros(4, device=self.mse.device).index_add_(0, q, self.mse)
        counts = torch.zeros(4, device=self.mse.device).index_add_(0, q, torch.ones_like(self.mse))
        return sums / counts


# --- the pieces, each one formula ------------------------------------------------------------
def _quarter(t: torch.Tensor, T: int) -> torch.Tensor:
    """Which quarter (0..3) of 0..T-1 each timestep falls in (guided-diffusion's q0..q3)."""
    return (t * 4 // T).clamp(max=3)


def loss_weights(loss_cfg, schedule: Schedule, p_t=None) -> torch.Tensor:
    """w(t) for t = 0..T-1 (float64) in the target's space, clamped by snr_min, normalised on the
    x0-space weight (:func:`biaskit.weighting.per_sample_weights`)."""
    return W.per_sample_weights(loss_cfg.parsed_weighting(), schedule, P.canonical(loss_cfg.target),
                                snr_min=loss_cfg.snr_min, p_t=p_t, normalize=loss_cfg.normalize)


def diffusion_loss(net, time_in, x0, t, eps, alpha_t, sigma_t, target: str, w_t, autocast=None,
                   gamma: float = 0.0, xi=None, vlb=None):
    """(loss, per-sample target MSE (B,)) for one batch; alpha_t, sigma_t, w_t are (T,) tables
    gathered at t (B,), time_in the network's time input table (T, ...). The loss is
    mean_B w(t) mse, plus the variance bound ``vlb(mean, v, x0, x_t, t)`` (a
    :class:`~biaskit.train.hybrid.VarianceBound`) for a 2C network (L_hybrid).
    ``gamma`` > 0: input perturbation with noise ``xi`` (like eps), see :func:`perturbed`."""
    shape = (-1,) + (1,) * (x0.ndim - 1)
    alpha, sigma = alpha_t[t].reshape(shape), sigma_t[t].reshape(shape)
    x_t = P.noisy(x0, eps, alpha, sigma)
    x_in = perturbed(x_t, sigma, gamma, xi) if gamma else x_t
    with autocast or nullcontext():
        out = net(x_in, time_in[t])
    out = out.to(x0.dtype)
    mean, var = (out, None) if vlb is None else P.split_learned_variance(out, x0.shape[1])
    mse = (mean - P.target(target, x0, eps, alpha, sigma)).square().flatten(1).mean(1)
    per_sample = w_t[t] * mse
    if vlb is not None:
        per_sample = per_sample + vlb(mean, var, x0, x_t, t)
    return per_sample.mean(), mse


# Ning et al. 2023 ("Input perturbation reduces exposure bias"), Eq. 9: the network sees
# sqrt(abar) x0 + sqrt(1 - abar) (eps + gamma xi) and is still asked for the target of x_t
def perturbed(x_t: torch.Tensor, sigma, gamma: float, xi: torch.Tensor) -> torch.Tensor:
    """x_t + gamma sigma_t xi, xi ~ N(0, I) independent of eps."""
    return x_t + gamma * sigma * xi


def learning_rate(optim_cfg, step: int, total: int) -> float:
    """lr for 0-based step: linear warm-up, then constant or cosine decay to min_lr_ratio * lr."""
    lr = optim_cfg.lr
    if step < optim_cfg.warmup_steps:
        return lr * (step + 1) / optim_cfg.warmup_steps
    if optim_cfg.lr_schedule == "cosine":
        progress = (step - optim_cfg.warmup_steps) / max(1, total - optim_cfg.warmup_steps)
        r = optim_cfg.min_lr_ratio
        return lr * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
    return lr


@functools.lru_cache(maxsize=4)
def epoch_permutation(n: int, seed: int, epoch: int, device=None) -> torch.Tensor:
    """The data order of one epoch: a permutation of range(n) seeded by (seed, epoch), drawn on
    the CPU and kept on ``device`` (one copy per epoch, not one per batch)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, _DATA, epoch)))
    return perm if device is None else perm.to(device)


def batch_indices(n: int, seed: int, start: int, size: int, device=None) -> torch.Tensor:
    """Positions start..start+size-1 of the data stream, the epochs' permutations end to end
    (on ``device``)."""
    out, pos = [], start
    while pos < start + size:
        epoch, offset = divmod(pos, n)
        take = min(n - offset, start + size - pos)
        out.append(epoch_permutation(n, seed, epoch, device)[offset:offset + take])
        pos += take
    return out[0] if len(out) == 1 else torch.cat(out)


# --- the objective of a run ---------------------------------------------------------------------
class StepObjective:
    """The objective of a discrete run: :class:`~biaskit.processes.DiscreteVP` of ``schedule`` at
    integer steps t drawn from ``loss.density`` (:func:`biaskit.densities.step_probabilities`),
    the weights ``loss_weights`` table (T,), :func:`diffusion_loss` on the schedule's own
    float32 coefficients. ``denoise`` holds the time_input / time_scale / net_kwargs of the
    run's :class:`~biaskit.denoiser.Denoiser`; :meth:`bind` reads its time features."""

    logvar = None

    def __init__(self, loss_cfg, schedule: Schedule, device, denoise: dict):
        self.process, self.schedule, self.denoise = DiscreteVP(schedule), schedule, denoise
        self.target, self.gamma = P.canonical(loss_cfg.target), loss_cfg.input_perturbation
        p_t = step_probabilities(loss_cfg.time_density(), schedule)
        self.w_t = loss_weights(loss_cfg, schedule, p_t).to(device, torch.float32)
        self.alpha_t = schedule.alpha.to(device, torch.float32)
        self.sigma_t = schedule.sigma.to(device, torch.float32)
        self.p_t = None if p_t is None else torch.as_tensor(p_t, device=device)
        self.time_in, self.vlb = None, None

    denoiser = ProcessObjective.denoiser  # denoiser_under(its DiscreteVP, ...): a Denoiser

    def check_model(self, model_config: dict, name: str) -> None:
        """Every network config trains on the discrete schedule (a learned variance too)."""

    def bind(self, denoiser, x) -> None:
        """Read the network's time input table (T, ...) from the online ``denoiser``, and whether it
        returns a learned variance (L_hybrid's :class:`~biaskit.train.hybrid.VarianceBound`),
        from one forward at step 0 on ``x`` (1, ...)."""
        from .hybrid import VarianceBound
        dev = x.device
        self.time_in = denoiser.time_features(torch.arange(self.schedule.T, device=dev))
        with torch.no_grad():
            pred = denoiser(x, torch.zeros(1, dtype=torch.long, device=dev))
        if pred.var_out is not None:
            self.vlb = VarianceBound(self.schedule, self.target, denoiser.data_range)

    def draw(self, B: int, device, g: torch.Generator) -> torch.Tensor:
        """B integer steps (uniform, or multinomial under p(t)) from generator ``g``."""
        if self.p_t is None:
            return torch.randint(self.schedule.T, (B,), device=device, generator=g)
        return torch.multinomial(self.p_t, B, replacement=True, generator=g)

    def quarter(self, t: torch.Tensor) -> torch.Tensor:
        return _quarter(t, self.schedule.T)

    def loss(self, net, x0, t, eps, autocast=None, xi=None):
        """(weighted loss, per-sample target MSE (B,)): :func:`diffusion_loss` with input
        perturbation noise ``xi`` when ``loss.input_perturbation`` is set."""
        return diffusion_loss(net, self.time_in, x0, t, eps, self.alpha_t, self.sigma_t, self.target,
                              self.w_t, autocast, gamma=self.gamma, xi=xi, vlb=self.vlb)

    def info(self, denoiser) -> dict:
        """What biaskit.json records beyond a discrete run's entries: nothing."""
        return {}


def build_objective(cfg, schedule: Schedule, device, loaded=None):
    """The objective of a :class:`~biaskit.config.TrainConfig` on ``schedule`` (the discrete run's,
    or a fine-tuned model's own): its process (``process_from_config``), target, time density
    and weighting. ``loaded``: the fine-tuned model, whose time input the run keeps."""
    process: Process = process_from_config(dataclasses.asdict(cfg.process), schedule)
    if isinstance(process, DiscreteVP):
        denoise = ({"time_input": cfg.model.time_input} if loaded is None else
                   {"time_input": loaded.time_input, "time_scale": loaded.time_scale,
                    "net_kwargs": loaded.net_kwargs})
        return StepObjective(cfg.loss, schedule, device, denoise)
    return ProcessObjective.from_config(cfg, process)
