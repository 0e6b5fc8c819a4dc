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

All randomness is a function of (seed, step): the data order (one permutation per epoch), t and eps
are drawn for the *global* batch from generators seeded by (seed, stream, step) and each DDP rank
takes its slice, so ``--resume`` reproduces an uninterrupted run and 2 ranks x batch B equal
1 rank x batch 2B.

:func:`train` is a generator yielding a :class:`TrainState` after every optimizer step (it also
logs, probes and checkpoints); :func:`run_training` consumes it.
"""

from __future__ import annotations

import copy
import csv
import functools
import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import checkpoint as C
from . import parameterization as P
from . import weighting as W
from .config import TrainConfig, load_config, to_dict
from .denoiser import Denoiser, resolve_device
from .distributed import init_process_group, launched
from .jsonio import write_json
from .models import build_model
from .rng import derive_seed
from .safeload import read_checkpoint
from .schedules import Schedule, get_schedule

__all__ = ["TrainState", "Trainer", "train", "run_training", "loss_weights", "timestep_probabilities",
           "diffusion_loss", "learning_rate", "batch_indices", "epoch_permutation"]

_DATA, _NOISE, _DROPOUT = 0, 1, 2  # random streams: derive_seed(seed, stream, epoch or step)


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
    return W.per_sample_weights(loss_cfg.weighting, schedule, P.canonical(loss_cfg.target),
                                snr_min=loss_cfg.snr_min, p_t=p_t, normalize=loss_cfg.normalize)


def timestep_probabilities(spec: str, schedule: Schedule) -> np.ndarray | None:
    """p(t): None for ``uniform``; ``lognormal:MEAN:STD`` puts logsnr ~ N(MEAN, STD^2) (EDM-style)."""
    name, *args = spec.split(":")
    if name == "uniform" and not args:
        return None
    if name == "lognormal" and len(args) == 2:
        mean, std = (float(a) for a in args)
        return W.timestep_probabilities(lambda lam: np.exp(-0.5 * ((lam - mean) / std) ** 2), schedule)
    raise ValueError(f"loss.t_sampling: {spec!r} is not 'uniform' or 'lognormal:MEAN:STD'")


def diffusion_loss(net, time_in, x0, t, eps, alpha_t, sigma_t, target: str, w_t, autocast=None):
    """(weighted loss, per-sample target MSE (B,)) for one batch; alpha_t, sigma_t, w_t are
    (T,) tables gathered at t (B,), time_in the network's time input table (T, ...)."""
    shape = (-1,) + (1,) * (x0.ndim - 1)
    alpha, sigma = alpha_t[t].reshape(shape), sigma_t[t].reshape(shape)
    x_t = P.noisy(x0, eps, alpha, sigma)
    with autocast or nullcontext():
        out = net(x_t, time_in[t])
    mse = (out.to(x0.dtype) - P.target(target, x0, eps, alpha, sigma)).square().flatten(1).mean(1)
    return (w_t[t] * mse).mean(), mse


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


@functools.lru_cache(maxsize=2)
def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of one epoch: a permutation of range(n) seeded by (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, _DATA, epoch)))


def batch_indices(n: int, seed: int, start: int, size: int) -> torch.Tensor:
    """Positions start..start+size-1 of the data stream, the epochs' permutations end to end."""
    out, pos = [], start
    while pos < start + size:
        epoch, offset = divmod(pos, n)
        take = min(n - offset, start + size - pos)
        out.append(epoch_permutation(n, seed, epoch)[offset:offset + take])
        pos += take
    return torch.cat(out)


# --- setup ------------------------------------------------------------------------------------
def _distributed() -> tuple[int, int, int, bool]:
    """(rank, world_size, local_rank, whether we created the process group) under torchrun."""
    rank, world, local = launched()
    return rank, world, local, world > 1 and init_process_group()


def _device(name: str, local_rank: int) -> torch.device:
    if name in (None, "auto"):
        name = resolve_device(name).type
    if name == "cuda" and torch.cuda.device_count() > 1:
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: {name!r} is not a torch device (cpu, cuda, cuda:1, auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda requested but no CUDA device is available")
    return device


def _dataset(cfg: TrainConfig, data):
    """A :class:`biaskit.data.Dataset`, or a (train, test) pair of tensors, as a Dataset."""
    from .data import Dataset, load_dataset
    if data is None:
        opts = dict(cfg.data.options)
        return load_dataset(cfg.data.name, seed=cfg.seed, n_train=cfg.data.n_train, n_test=cfg.data.n_test, **opts)
    if isinstance(data, Dataset):
        return data
    train, test = data
    lo, hi = float(train.min()), float(train.max())
    return Dataset(cfg.data.name, train.float(), test.float(), (lo, hi), None, {"name": cfg.data.name})


class Trainer:
    """Model, EMA, optimizer, data and schedule of one run, built from a :class:`TrainConfig`.

    ``data`` overrides the configured dataset: a :class:`biaskit.data.Dataset` or a (train, test)
    pair of tensors (N, D) / (N, C, H, W).
    """

    def __init__(self, config, *, data=None, resume: bool = False):
        cfg = self.config = load_config(config)
        self.rank, self.world, local, self._owns_group = _distributed()
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size: {cfg.batch_size} is not divisible by {self.world} processes")
        self.device = _device(cfg.device, local)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.run_dir = Path(cfg.out)
        if self.rank == 0:
            C.check_lock(self.run_dir)  # refuse early when another trainer holds the run
        self.data = _dataset(cfg, data)
        self.schedule = get_schedule(cfg.schedule.name, cfg.schedule.T, cfg.schedule.zero_terminal_snr)
        self.target = P.canonical(cfg.loss.target)
        p_t = timestep_probabilities(cfg.loss.t_sampling, self.schedule)
        dev, T = self.device, self.schedule.T
        self.w_t = loss_weights(cfg.loss, self.schedule, p_t).to(dev, torch.float32)
        self.alpha_t = self.schedule.alpha.to(dev, torch.float32)
        self.sigma_t = self.schedule.sigma.to(dev, torch.float32)
        self.p_t = None if p_t is None else torch.as_tensor(p_t, device=dev)

        model_cfg = dict(cfg.model.config)
        shape = self.data.shape
        if cfg.model.name == "mlp":
            model_cfg.setdefault("dim", int(np.prod(shape)))
        else:
            model_cfg.setdefault("in_channels", shape[0])
        if model_cfg.get("learn_sigma"):
            raise ValueError("model.config.learn_sigma: training a learned variance (ADM's hybrid loss) "
                             "is not supported; train the mean only (learn_sigma: false)")
        self.model_config = model_cfg
        torch.manual_seed(cfg.seed)  # weight initialisation
        try:
            self.net = build_model(cfg.model.name, **model_cfg).to(dev)
        except TypeError as e:  # an unknown constructor argument
            raise ValueError(f"model.config: {e}") from None
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        # parameter lists cached once: walking the module tree every step costs more than the EMA
        self._params, self._ema_params = list(self.net.parameters()), list(self.ema.parameters())
        self._buffers_pairs = list(zip(self.ema.buffers(), self.net.buffers()))
        self.has_dropout = any(isinstance(m, nn.Dropout) and m.p > 0 for m in self.net.modules())
        self.model = self.net
        if self.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[dev.index] if dev.type == "cuda" else None)
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(self._params, lr=o.lr, betas=tuple(o.betas),
                                           eps=o.eps, weight_decay=o.weight_decay,
                                           fused=True if dev.type == "cuda" else None)
        self.train_x = self.data.train.to(dev)
        self.step = 0
        self.time_in = self.denoiser(ema=False).time_features(torch.arange(T, device=dev))
        self.autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else None)
        self._noise = torch.Generator(dev)
        self.info = self._run_info()
        if resume:
            self._resume()
        elif C.checkpoint_steps(self.run_dir):
            raise ValueError(f"{self.run_dir} already holds checkpoints: pass resume=True (--resume) "
                             "or choose another out directory")

    # --- run description and checkpoints ---------------------------------------------------
    def _run_info(self) -> dict:
        cfg = self.config
        return {"format": C.FORMAT, "version": 1, "name": self.run_dir.name,
                "model": {"name": cfg.model.name, "config": self.model_config},
                "parameterization": self.target, "time_input": cfg.model.time_input,
                "schedule": self.schedule.to_dict(), "schedule_config": to_dict(cfg.schedule),
                "data_range": list(self.data.data_range), "channels": self.data.shape[0],
                "shape": list(self.data.shape), "data": self.data.spec, "train_config": to_dict(cfg)}

    def _resume(self):
        old = C.read_run_info(self.run_dir)
        coarse = [k for k in ("model", "parameterization", "time_input", "schedule") if old[k] != self.info[k]]
        differ = config_differences(old.get("train_config", {}), to_dict(self.config)) \
            if "train_config" in old else []
        differ = differ or coarse  # the dotted keys when the run recorded its config
        if differ:
            raise ValueError(f"cannot resume {self.run_dir} with another config: {', '.join(differ)} "
                             f"differ{'s' if len(differ) == 1 else ''} from its biaskit.json (only "
                             f"{', '.join(RESUMABLE)} may change on --resume)")
        ckpt = C.checkpoint_dir(self.run_dir)
        self.net.load_state_dict(read_checkpoint(ckpt / "model.safetensors", self.device))
        self.ema.load_state_dict(read_checkpoint(ckpt / "ema.safetensors", self.device))
        state = read_checkpoint(ckpt / "state.pt", self.device)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = int(state["step"])
            torch.set_rng_state(state["rng_cpu"].cpu())
        except (KeyError, ValueError, RuntimeError) as e:
            raise ValueError(f"checkpoint {ckpt / 'state.pt'} is incomplete or incompatible: {e}") from None

    def save(self):
        if self.rank != 0:
            return
        state = {"step": self.step, "optimizer": self.optimizer.state_dict(), "rng_cpu": torch.get_rng_state()}
        C.save_checkpoint(self.run_dir, self.step, self.net.state_dict(), self.ema.state_dict(), state,
                          keep=self.config.keep_checkpoints)

    def denoiser(self, ema: bool = True) -> Denoiser:
        """The current network (EMA by default) as a :class:`Denoiser` (shares its weights)."""
        return Denoiser(self.ema if ema else self.net, self.schedule, self.target,
                        time_input=self.config.model.time_input, data_range=self.data.data_range,
                        channels=self.data.shape[0], name=self.run_dir.name,
                        info={"step": self.step, "weights": "ema" if ema else "online",
                              "weighting": self.config.loss.weighting})

    # --- one step ----------------------------------------------------------------------------
    def batch(self, step: int):
        """(x0, t, eps) of this rank for 0-based ``step``: its slice of the global batch."""
        cfg, B = self.config, self.config.batch_size
        b = B // self.world
        lo, hi = self.rank * b, (self.rank + 1) * b
        idx = batch_indices(self.train_x.shape[0], cfg.seed, step * B + lo, b)
        x0 = self.train_x[idx.to(self.device)]
        g = self._noise.manual_seed(derive_seed(cfg.seed, _NOISE, step))
        T = self.schedule.T
        if self.p_t is None:
            t = torch.randint(T, (B,), device=self.device, generator=g)
        else:
            t = torch.multinomial(self.p_t, B, replacement=True, generator=g)
        eps = torch.randn((B,) + tuple(x0.shape[1:]), device=self.device, generator=g)
        return x0, t[lo:hi], eps[lo:hi]

    def train_step(self) -> TrainState:
        cfg = self.config
        lr = learning_rate(cfg.optim, self.step, cfg.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.has_dropout:
            torch.manual_seed(derive_seed(cfg.seed, _DROPOUT, self.step))
        x0, t, eps = self.batch(self.step)
        loss, mse = diffusion_loss(self.model, self.time_in, x0, t, eps, self.alpha_t, self.sigma_t,
                                   self.target, self.w_t, self.autocast)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip:
            nn.utils.clip_grad_norm_(self._params, cfg.optim.grad_clip)
        self.optimizer.step()
        self.step += 1
        self._update_ema()
        return TrainState(self.step, loss.detach(), mse.detach(), t, lr)

    @torch.no_grad()
    def _update_ema(self):
        # before ema.start the EMA follows the online weights (decay 0)
        decay = self.config.ema.decay if self.step > self.config.ema.start else 0.0
        torch._foreach_lerp_(self._ema_params, self._params, 1.0 - decay)
        for b_ema, b in self._buffers_pairs:
            b_ema.copy_(b)

    # --- the loop ----------------------------------------------------------------------------
    def run(self, progress: bool = True, stop_at: int | None = None) -> Iterator[TrainState]:
        """Train up to ``config.steps`` (or until ``stop_at``), yielding after every step."""
        if self.rank == 0:
            C.acquire_lock(self.run_dir, warn=lambda m: warnings.warn(m, stacklevel=2))
        try:
            yield from self._run(progress, stop_at)
        finally:
            if self.rank == 0:
                C.release_lock(self.run_dir)

    def _run(self, progress: bool, stop_at: int | None) -> Iterator[TrainState]:
        cfg = self.config
        last = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
        log = _Log(self, enabled=self.rank == 0)
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / C.RUN_FILE, self.info)
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not progress or self.rank != 0,
                   desc=self.run_dir.name, dynamic_ncols=True)
        self.net.train()
        while self.step < last:
            state = self.train_step()
            log.add(state)
            if self.step % cfg.log_every == 0 or self.step == last:
                row = log.flush()
                if row:
                    bar.set_postfix(loss=f"{row['loss']:.4g}", lr=f"{row['lr']:.2g}")
            if cfg.probe_every and self.step % cfg.probe_every == 0:
                self.probe()
            if self.step % cfg.ckpt_every == 0 or self.step == last:
                self.save()
            bar.update(1)
            yield state
        bar.close()
        if self.world > 1:
            dist.barrier()
            if self._owns_group:
                dist.destroy_process_group()

    def probe(self, num_timesteps: int = 20):
        """Per-timestep x0_mse (and excess_mse over the oracle when the data's distribution is
        known) of the EMA model on held-out data, appended to RUN_DIR/probe.csv. Every rank
        calls it (the probe shards its work under DDP); rank 0 writes."""
        from .probe import probe
        was_training = self.ema.training
        self.ema.eval()
        df = probe(self.denoiser(ema=True), self.data, num_timesteps=num_timesteps, n=self.config.probe_n,
                   seed=self.config.seed, progress=False)
        self.ema.train(was_training)
        if self.rank == 0:
            df.insert(0, "step", self.step)
            path = self.run_dir / "probe.csv"
            df.to_csv(path, mode="a", header=not path.exists(), index=False)
        return df


# keys that only say how long to train, where, and how often to log/probe/checkpoint: a resumed
# run may change them; every other key changes what is learned, so resuming refuses
RESUMABLE = ("steps", "out", "device", "threads", "log_every", "ckpt_every", "keep_checkpoints",
             "probe_every", "probe_n")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k != "options":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def config_differences(old: dict, new: dict) -> list[str]:
    """Dotted keys (``loss.weighting``) whose values differ between two training configs
    (plain dicts), leaving out :data:`RESUMABLE`."""
    a, b = _flatten(old), _flatten(new)
    return [k for k in sorted(set(a) | set(b)) if k not in RESUMABLE and a.get(k) != b.get(k)]


class _Log:
    """Window averages of the loss and of the target MSE per quarter of the t range
    (guided-diffusion's mse_q0..q3), written to RUN_DIR/log.csv every ``log_every`` steps."""

    FIELDS = ["step", "loss", "mse", "mse_q0", "mse_q1", "mse_q2", "mse_q3", "lr", "steps_per_s", "time_s"]

    def __init__(self, trainer: Trainer, enabled: bool):
        self.trainer, self.enabled = trainer, enabled
        self.path = trainer.run_dir / "log.csv"
        dev = trainer.device
        self.sums = torch.zeros(3, 4, device=dev, dtype=torch.float64)  # loss sum, mse sum, count
        self.ones = torch.ones(trainer.config.batch_size // trainer.world, device=dev, dtype=torch.float64)
        self.n, self.lr, self.t0, self.start = 0, 0.0, time.perf_counter(), time.perf_counter()
        if enabled:
            self._truncate(trainer.step)

    def _truncate(self, step: int):
        """Drop rows past the step we start from (a killed run may have logged beyond its checkpoint)."""
        if not self.path.exists():
            return
        with open(self.path) as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
        with open(self.path, "w", newline="") as f:
            csv.writer(f).writerows(kept)

    def add(self, s: TrainState):
        q = _quarter(s.t, self.trainer.schedule.T)
        self.sums[1].index_add_(0, q, s.mse.double())
        self.sums[2].index_add_(0, q, self.ones)
        self.sums[0, :1].add_(s.loss)
        self.n, self.lr = self.n + 1, s.lr

    def flush(self) -> dict | None:
        tr = self.trainer
        if tr.world > 1:
            dist.all_reduce(self.sums)
            self.sums[0, 0] /= tr.world
        if self.n == 0:
            return None
        sums = self.sums.cpu()
        now = time.perf_counter()
        row = {"step": tr.step, "loss": float(sums[0, 0]) / self.n,
               "mse": float(sums[1].sum() / sums[2].sum())}
        for q in range(4):
            row[f"mse_q{q}"] = float(sums[1, q] / sums[2, q]) if sums[2, q] > 0 else float("nan")
        row.update(lr=self.lr, steps_per_s=self.n / (now - self.t0), time_s=now - self.start)
        self.sums.zero_()
        self.n, self.t0 = 0, now
        if self.enabled:
            new = not self.path.exists()
            with open(self.path, "a", newline="") as f:
                w = csv.DictWriter(f, self.FIELDS)
                if new:
                    w.writeheader()
                w.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in row.items()})
        return row


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
