"""One run's :class:`Trainer`: setup (device, DDP rank, data), the step, EMA, logging, probes
and checkpoints."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .. import checkpoint as C
from ..config import InitConfig, ProcessConfig, TrainConfig, load_config, to_dict
from ..denoiser import Denoiser
from ..distributed import training_device, training_ranks
from ..atomic import append_text
from ..jsonio import write_json
from ..models import build_model
from ..rng import derive_seed
from ..safeload import read_checkpoint
from ..schedules import get_schedule
from .conditional import labelled_model, set_step_labels
from .finetune import check_init, load_init, recorded_init
from .objective import _DROPOUT, _NOISE, _PERTURB, TrainState, batch_indices, build_objective, learning_rate
from .runlog import FOLD_STEPS, RESUMABLE, _Log, config_differences


class NonFiniteTrainingError(RuntimeError):
    """Training turned non-finite (loss, or weights before a save); nothing non-finite was saved."""


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every entry of every tensor is finite, read with one synchronisation."""
    return bool(torch.stack([torch.isfinite(x).all() for x in tensors]).all())


# --- setup ------------------------------------------------------------------------------------
def _dataset(cfg: TrainConfig, data, loaded=None):
    """A :class:`biaskit.data.Dataset`, or a (train, test) pair of tensors, as a Dataset; a
    fine-tuning run reads its data set in the loaded model's data range unless one is given."""
    from ..data import Dataset, load_dataset
    if data is None:
        opts = dict(cfg.data.options)
        if loaded is not None:
            opts.setdefault("data_range", list(loaded.data_range))
        return load_dataset(cfg.data.name, seed=cfg.seed, n_train=cfg.data.n_train, n_test=cfg.data.n_test, **opts)
    if isinstance(data, Dataset):
        return data
    train, test = data
    lo, hi = float(train.min()), float(train.max())
    return Dataset(cfg.data.name, train.float(), test.float(), (lo, hi), None, {"name": cfg.data.name})


def _model_config(cfg: TrainConfig, shape) -> dict:
    """model.config with the data's size filled in (dim of an MLP, in_channels of a UNet)."""
    model_cfg = dict(cfg.model.config)
    if cfg.model.name == "mlp":
        model_cfg.setdefault("dim", int(np.prod(shape)))
    else:
        model_cfg.setdefault("in_channels", shape[0])
    return model_cfg


class Trainer:
    """Model, EMA, optimizer, data and schedule of one run, built from a :class:`TrainConfig`.

    ``data`` overrides the configured dataset: a :class:`biaskit.data.Dataset` or a (train, test)
    pair of tensors (N, D) / (N, C, H, W).
    """

    def __init__(self, config, *, data=None, resume: bool = False):
        cfg = self.config = load_config(config)
        self.rank, self.world, local, self._owns_group = training_ranks()
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size: {cfg.batch_size} is not divisible by {self.world} processes")
        self.device = training_device(cfg.device, local)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.run_dir = Path(cfg.out)
        if self.rank == 0:
            C.check_lock(self.run_dir)  # refuse early when another trainer holds the run
        self.loaded = load_init(cfg) if cfg.init.path else None
        self.data = _dataset(cfg, data, self.loaded)
        if self.loaded is not None:
            check_init(cfg, self.loaded, self.data)
            self.schedule = self.loaded.schedule  # the loaded model's own steps (trained ones only)
        else:
            self.schedule = get_schedule(cfg.schedule.name, cfg.schedule.T, cfg.schedule.zero_terminal_snr)
        dev = self.device
        # (process, target, density, weighting): the run's one objective (train.objective)
        self.objective = build_objective(cfg, self.schedule, dev, self.loaded)
        self.process, self.target = self.objective.process, self.objective.target

        if self.loaded is not None:
            self.model_config = {}
            self.net = self.loaded.net.to(dev).requires_grad_(True)
        else:
            self.model_config = _model_config(cfg, self.data.shape)
            self.objective.check_model(self.model_config, cfg.process.name)
            torch.manual_seed(cfg.seed)  # weight initialisation
            try:
                self.net = build_model(cfg.model.name, **self.model_config).to(dev)
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
        self.labelled = labelled_model(self)  # a class-conditional run (train/conditional.py)
        self.model = self.model if self.labelled is None else self.labelled
        self.train_x = self.data.train.to(dev)
        self.step = 0
        self.objective.bind(self.denoiser(ema=False), self.train_x[:1])
        # EDM2's learned uncertainty (a process run's loss.uncertainty), trained alongside
        self.logvar = None if self.objective.logvar is None else self.objective.logvar.to(dev)
        o = cfg.optim
        learned = self._params + ([] if self.logvar is None else list(self.logvar.parameters()))
        self.optimizer = torch.optim.AdamW(learned, lr=o.lr, betas=tuple(o.betas),
                                           eps=o.eps, weight_decay=o.weight_decay,
                                           fused=True if dev.type == "cuda" else None)
        self.autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else None)
        self._noise = torch.Generator(dev)
        # first step whose loss was not finite (inf: none yet), kept on the device and folded from
        # the losses of the steps since (_losses) every FOLD_STEPS steps, at each log flush and
        # before each save: the check costs no synchronisation and no tensor work per step
        self._first_bad = torch.full((), float("inf"), device=dev, dtype=torch.float64)
        self._losses: list[torch.Tensor] = []
        self.info = self._run_info()
        if resume:
            self._resume()
        elif C.checkpoint_steps(self.run_dir):
            raise ValueError(f"{self.run_dir} already holds checkpoints: pass resume=True (--resume) "
                             "or choose another out directory")

    # --- run description and checkpoints ---------------------------------------------------
    def _run_info(self) -> dict:
        cfg = self.config
        info = {"format": C.FORMAT, "version": 1, "name": self.run_dir.name,
                "model": {"name": cfg.model.name, "config": self.model_config},
                "parameterization": self.target, "time_input": cfg.model.time_input,
                "schedule": self.schedule.to_dict(), "schedule_config": to_dict(cfg.schedule),
                "data_range": list(self.data.data_range), "channels": self.data.shape[0],
                "shape": list(self.data.shape), "data": self.data.spec, "train_config": to_dict(cfg)}
        if self.loaded is not None:  # loads back through the same loader (checkpoint.load_run)
            info.update(model={"name": "init", "config": {}}, time_input=self.loaded.time_input,
                        time_scale=self.loaded.time_scale,
                        init={**recorded_init(cfg), "source": {"format": self.loaded.source.format, **self.loaded.info}})
        extra = self.objective.info(self.denoiser)
        if extra:  # a process run loads back as a ProcessDenoiser; schedule: its view
            info.update(extra, process={**to_dict(cfg.process),
                                        "time_scale": self.objective.denoise["time_scale"]})
        return info

    def quarter(self, t: torch.Tensor) -> torch.Tensor:
        """Which quarter (0..3) of the time range each t falls in (noisiest last)."""
        return self.objective.quarter(t)

    def _resume(self):
        old = C.read_run_info(self.run_dir)
        coarse = [k for k in ("model", "parameterization", "time_input", "schedule") if old[k] != self.info[k]]
        # a run recorded before ``process`` existed trained the default (discrete) process
        old_cfg = {"process": to_dict(ProcessConfig()), "init": to_dict(InitConfig()),
                   **old.get("train_config", {})}
        differ = config_differences(old_cfg, to_dict(self.config)) if "train_config" in old else []
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
            if self.logvar is not None:
                self.logvar.load_state_dict(state["uncertainty"])
            self.step = int(state["step"])
            torch.set_rng_state(state["rng_cpu"].cpu())
        except (KeyError, ValueError, RuntimeError) as e:
            raise ValueError(f"checkpoint {ckpt / 'state.pt'} is incomplete or incompatible: {e}") from None

    def check_finite(self, weights: bool = False):
        """NonFiniteTrainingError naming the first step whose loss was not finite (or, with
        ``weights``, the current step when a weight is not) and the last checkpoint on disk."""
        self._fold_losses()
        bad = self._first_bad.clone()
        if self.world > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MIN)
        what = None
        if torch.isfinite(bad):
            what = f"the loss turned non-finite at step {int(bad)}"
        elif weights and not _all_finite(self._params + self._ema_params):
            what = f"the weights turned non-finite by step {self.step}"
        if what is None:
            return
        steps = C.checkpoint_steps(self.run_dir)
        last = (f"the last finite checkpoint is step {steps[-1]} in {self.run_dir} (kept)" if steps
                else f"no checkpoint was written in {self.run_dir}")
        raise NonFiniteTrainingError(f"{what}; nothing after it was saved and {last}; lower optim.lr, "
                                     "set optim.grad_clip or check the data and loss.weighting")

    def _fold_losses(self):
        """_first_bad = min(_first_bad, the first step among the pending ones whose loss is not
        finite), on the device; the pending losses are those of steps step - len + 1 .. step."""
        if not self._losses:
            return
        losses = torch.stack(self._losses)
        steps = torch.arange(self.step - len(losses) + 1, self.step + 1, device=losses.device, dtype=torch.float64)
        bad = torch.where(torch.isfinite(losses), float("inf"), steps).min()
        self._first_bad = torch.minimum(self._first_bad, bad)
        self._losses.clear()

    def save(self):
        self.check_finite(weights=True)
        if self.rank != 0:
            return
        state = {"step": self.step, "optimizer": self.optimizer.state_dict(), "rng_cpu": torch.get_rng_state()}
        if self.logvar is not None:
            state["uncertainty"] = self.logvar.state_dict()
        C.save_checkpoint(self.run_dir, self.step, self.net.state_dict(), self.ema.state_dict(), state,
                          keep=self.config.keep_checkpoints)

    def denoiser(self, ema: bool = True) -> Denoiser:
        """The current network (EMA by default) as a :class:`Denoiser` (shares its weights); a
        process run's is a :class:`~biaskit.formulations.ProcessDenoiser` (the objective's)."""
        return self.objective.denoiser(
            self.ema if ema else self.net, data_range=self.data.data_range, channels=self.data.shape[0],
            name=self.run_dir.name, info={"step": self.step, "weights": "ema" if ema else "online",
                                          "weighting": self.config.loss.weighting})

    # --- one step ----------------------------------------------------------------------------
    def indices(self, step: int) -> torch.Tensor:
        """(b,) data indices of this rank's batch at 0-based ``step``: its slice (rank * b, b =
        B / world) of the global batch's positions step * B .. of the data stream
        (:func:`~biaskit.train.objective.batch_indices`)."""
        B = self.config.batch_size
        b = B // self.world
        return batch_indices(self.train_x.shape[0], self.config.seed, step * B + self.rank * b, b, self.device)

    def batch(self, step: int, idx: torch.Tensor | None = None):
        """(x0, t, eps) of this rank for 0-based ``step``: its slice of the global batch;
        ``idx``: the step's :meth:`indices`, when already drawn."""
        cfg, B = self.config, self.config.batch_size
        b = B // self.world
        lo, hi = self.rank * b, (self.rank + 1) * b
        x0 = self.train_x[self.indices(step) if idx is None else idx]
        g = self._noise.manual_seed(derive_seed(cfg.seed, _NOISE, step))
        t = self.objective.draw(B, self.device, g)
        eps = torch.randn((B,) + tuple(x0.shape[1:]), device=self.device, generator=g)
        return x0, t[lo:hi], eps[lo:hi]

    def perturbation(self, step: int, eps: torch.Tensor) -> torch.Tensor:
        """xi of input perturbation for 0-based ``step``, this rank's slice of the global batch
        (its own random stream: a run without it draws exactly what it drew before)."""
        B, b = self.config.batch_size, eps.shape[0]
        g = torch.Generator(device=self.device).manual_seed(derive_seed(self.config.seed, _PERTURB, step))
        xi = torch.randn((B,) + tuple(eps.shape[1:]), device=self.device, generator=g)
        return xi[self.rank * b:(self.rank + 1) * b]

    def train_step(self) -> TrainState:
        cfg = self.config
        lr = learning_rate(cfg.optim, self.step, cfg.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.has_dropout:
            torch.manual_seed(derive_seed(cfg.seed, _DROPOUT, self.step))
        idx = self.indices(self.step)
        x0, t, eps = self.batch(self.step, idx)
        set_step_labels(self, self.step, idx)
        xi = self.perturbation(self.step, eps) if self.objective.gamma else None
        loss, mse = self.objective.loss(self.model, x0, t, eps, self.autocast, xi)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.logvar is not None and self.world > 1:  # outside DDP's module: average by hand
            for p in self.logvar.parameters():
                dist.all_reduce(p.grad)
                p.grad /= self.world
        if cfg.optim.grad_clip:
            nn.utils.clip_grad_norm_(self._params, cfg.optim.grad_clip)
        self.optimizer.step()
        self.step += 1
        self._update_ema()
        loss = loss.detach()
        self._losses.append(loss)
        if len(self._losses) >= FOLD_STEPS:
            self._fold_losses()
        return TrainState(self.step, loss, mse.detach(), t, lr)

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
                self.check_finite()
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
        from ..probe import probe
        was_training = self.ema.training
        self.ema.eval()
        df = probe(self.denoiser(ema=True), self.data, num_timesteps=num_timesteps, n=self.config.probe_n,
                   seed=self.config.seed, progress=False)
        self.ema.train(was_training)
        if self.rank == 0:
            df.insert(0, "step", self.step)
            path = self.run_dir / "probe.csv"
            append_text(path, df.to_csv(header=not path.exists(), index=False))
        return df
