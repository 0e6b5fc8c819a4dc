"""The training objective under a continuous-time process (flow, VE / EDM, continuous VP).

For a process x_t = alpha(t) x0 + sigma(t) eps (:mod:`biaskit.processes`) and a target
(:data:`biaskit.formulations.TARGETS`):

    t ~ p(t)      the density ``loss.density`` over logsnr, in the process's own time
    eps ~ N(0, I),  x_t = alpha x0 + sigma eps
    L = E[ w_target(snr_t) * mean_elements (net(in_t, time_t) - target_t)^2 ]

with in_t = x_t (EDM: c_in x_t / alpha), time_t the network's time input exactly as
:class:`~biaskit.formulations.ProcessDenoiser` feeds it when the run is loaded back, and the
targets of :class:`~biaskit.formulations.ProcessOracleNet`: eps, x0, v = alpha_vp eps - sigma_vp x0
(VP scale), flow u = eps - x0, edm F = (x0 - c_skip x_e) / c_out (x_e = x_t / alpha).

The weighting is defined once in x0 space: w_target = w_x0(snr) * x0_error_factor(target, snr)
(:func:`biaskit.formulations.target_weight`), so w_target ||out_hat - out||^2 = w_x0
||x0_hat - x0||^2 per sample whatever the target. A weighting defined per unit logsnr is
divided by p_lam, the training density over logsnr, to give a per-sample weight.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from ..densities import TimeSampler
from ..processes import Process, process_from_config
from ..targets import get_target

__all__ = ["build_process", "process_time_input", "TimeSampler", "ProcessObjective",
           "process_inputs", "x0_weight_per_logsnr"]



def build_process(cfg) -> Process:
    """The process of a training config: its ``process:`` (:func:`process_from_config`), the
    :class:`~biaskit.processes.DiscreteVP` of its ``schedule:`` for ``process.name: discrete``."""
    from ..schedules import get_schedule
    sched = cfg.schedule
    return process_from_config(vars(cfg.process), get_schedule(sched.name, sched.T, sched.zero_terminal_snr))


def process_time_input(cfg, process: Process, target: str) -> tuple[str, float]:
    """(time input, time scale) of a process run: ``index`` means the process's default
    (:meth:`~biaskit.processes.Process.default_time_input`); the scale is 1000 for t in [0, 1]."""
    ti = cfg.model.time_input
    ti = process.default_time_input(target) if ti == "index" else ti
    scale = cfg.model.time_scale
    if scale is None:
        scale = 1000.0 if ti == "t" and process.t_max <= 1 else 1.0
    return ti, float(scale)


# --- the loss ------------------------------------------------------------------------------------
def process_inputs(target: str, x0, eps, alpha, sigma, sigma_data: float = 0.5):
    """(network input, regression target) for x_t = alpha x0 + sigma eps; alpha, sigma broadcast
    against x0 (e.g. (B, 1)): :meth:`biaskit.targets.Target.inputs` of ``target``."""
    return get_target(target).inputs(x0, eps, alpha, sigma, sigma_data)


class ProcessObjective:
    """Weights and loss of one process run. ``time_in(t, logsnr)`` is the network's time input
    (:meth:`ProcessDenoiser.time_in`); normalize (``mean`` / ``max``) fixes one constant c on the
    x0-space per-sample weight under the training density, by quadrature on the sampler's grid."""

    def __init__(self, loss_cfg, process: Process, target: str, time_in, sigma_data: float = 0.5,
                 seed: int = 0):
        from .uncertainty import LogVariance
        self.process, self.target, self.time_in, self.sigma_data = process, target, time_in, sigma_data
        # EDM2's learned log-variance (loss.uncertainty), trained with the network
        self.logvar = LogVariance(seed=seed) if loss_cfg.uncertainty else None
        self.w, self.snr_min = loss_cfg.parsed_weighting(), loss_cfg.snr_min
        self.sampler = TimeSampler(process, loss_cfg.time_density())
        self.c = 1.0
        self.c = self._normalization(loss_cfg.normalize)
        self.weights(process.t_of_logsnr(self.sampler.lam))  # raises now for an infinite weight

    gamma = 0.0  # no input perturbation under a process (config refuses it)
    denoise: dict = {}

    @classmethod
    def from_config(cls, cfg, process: Process) -> "ProcessObjective":
        """The objective of a training config under ``process``; its time input and scale
        (:func:`process_time_input`) are those its :class:`ProcessDenoiser` is built with."""
        target = get_target(cfg.loss.target).name
        obj = cls(cfg.loss, process, target, None, cfg.process.sigma_data, seed=cfg.seed)
        ti, scale = process_time_input(cfg, process, target)
        obj.denoise = {"time_input": ti, "time_scale": scale, "sigma_data": cfg.process.sigma_data}
        return obj

    def denoiser(self, net, **kw):
        """``net`` as the run's denoiser: :func:`~biaskit.formulations.denoiser_under` its process
        (a :class:`~biaskit.formulations.ProcessDenoiser`, or for a discrete run's
        :class:`StepObjective` a :class:`~biaskit.denoiser.Denoiser`); ``kw``: its other arguments."""
        from ..formulations import denoiser_under
        return denoiser_under(self.process, net, self.target, **self.denoise, **kw)

    def check_model(self, model_config: dict, name: str) -> None:
        """ValueError for a network config the process cannot train (a learned variance)."""
        if model_config.get("learn_sigma"):
            raise ValueError("model.config.learn_sigma: a learned variance (L_hybrid) is the "
                             f"discrete DDPM's reverse variance; drop it under process.name={name!r}")

    def bind(self, denoiser, x) -> None:
        """Feed the network the online ``denoiser``'s time input (:meth:`ProcessDenoiser.time_in`)."""
        self.time_in = denoiser.time_in

    def draw(self, B: int, device, g: torch.Generator) -> torch.Tensor:
        """B process times (float64) from B uniforms of generator ``g`` (:class:`TimeSampler`)."""
        return self.sampler(torch.rand(B, device=device, generator=g, dtype=torch.float64))

    def quarter(self, t: torch.Tensor) -> torch.Tensor:
        """Which quarter (0..3) of the time range each t falls in (noisiest last)."""
        lo, hi = self.process.t_min, self.process.t_max
        return ((t - lo) / (hi - lo) * 4).long().clamp(0, 3)

    def info(self, denoiser) -> dict:
        """biaskit.json entries of a process run, ``denoiser()`` the run's: it loads back as a
        ProcessDenoiser (schedule: its view)."""
        return {"time_input": self.denoise["time_input"], "schedule": denoiser().schedule.to_dict()}

    def _per_sample(self, lam: torch.Tensor, target: str) -> torch.Tensor:
        from ..formulations import target_weight
        w = target_weight(self.w, lam.exp(), target, sigma_data=self.sigma_data, snr_min=self.snr_min)
        return self.c * (w / self.sampler.pdf(lam) if self.w.measure == "per_logsnr" else w)

    def _normalization(self, mode: str) -> float:
        if mode == "none":
            return 1.0
        lam = self.sampler.lam
        w_x0 = self._per_sample(lam, "x0")
        total = w_x0.max() if mode == "max" else torch.trapezoid(w_x0 * self.sampler.pdf(lam), lam)
        return float(1 / total)

    def x0_weight_per_logsnr(self, lam: torch.Tensor) -> torch.Tensor:
        """W(lam) = c w_x0 p_lam (float64): the x0-MSE weight per unit logsnr this loss trains."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        return self._per_sample(lam, "x0") * self.sampler.pdf(lam)

    def weights(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample weights (B,) float64 on the target's MSE at process times t (B,)."""
        return self._per_sample(self.process.logsnr(t.cpu()), self.target).to(t.device)

    def loss(self, net, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, autocast=None, xi=None):
        """(weighted loss, per-sample target MSE (B,)) for x0, eps (B, ...) at times t (B,)."""
        shape = (-1,) + (1,) * (x0.ndim - 1)
        tc = t.cpu()
        alpha, sigma = (f(tc).to(x0.device, x0.dtype).reshape(shape)
                        for f in (self.process.alpha, self.process.sigma))
        x_in, goal = process_inputs(self.target, x0, eps, alpha, sigma, self.sigma_data)
        lam = self.process.logsnr(tc)
        time = self.time_in(tc, lam).to(x0.device, x0.dtype)
        with autocast or nullcontext():
            out = net(x_in, time)
        mse = (out.to(x0.dtype) - goal).square().flatten(1).mean(1)
        weighted = self._per_sample(lam, self.target).to(x0.device, mse.dtype) * mse
        if self.logvar is not None:
            return self.logvar.loss(weighted, lam.to(x0.device)), mse
        return weighted.mean(), mse


def x0_weight_per_logsnr(cfg, lam) -> torch.Tensor:
    """W(lam) (float64, shape of lam) of a training config: the x0-MSE weight per unit logsnr
    that its loss puts at each lam (:func:`biaskit.densities.effective_x0_weight`), two configs
    with the same W training the same objective. A discrete run draws integer steps uniformly,
    read as t uniform on [0, T - 1] of :class:`~biaskit.processes.DiscreteVP` (times its
    ``normalize`` constant); a process run uses its training density truncated to the process's
    range, as :class:`TimeSampler` draws it. W is 0 outside the range a run trains on."""
    from ..densities import effective_x0_weight
    from ..processes import DiscreteVP
    from ..weighting import per_sample_weights
    loss = cfg.loss
    lam = torch.as_tensor(lam, dtype=torch.float64)
    process = build_process(cfg)
    # the two objectives differ: integer steps normalised on the step table vs a density in t
    if not isinstance(process, DiscreteVP):
        return ProcessObjective(loss, process, "x0", None,
                                cfg.process.sigma_data).x0_weight_per_logsnr(lam)
    if loss.time_density() != "uniform":
        raise ValueError(f"loss.density: {loss.time_density()!r}: W of a discrete run is given for uniform steps")
    sched = process.schedule
    w = [per_sample_weights(loss.weighting, sched, "x0", snr_min=loss.snr_min, normalize=n)[0]
         for n in (loss.normalize, "none")]
    inside = (lam >= sched.logsnr[-1]) & (lam <= sched.logsnr[0])
    return inside * w[0] / w[1] * effective_x0_weight(loss.weighting, "uniform", process,
                                                      lam, snr_min=loss.snr_min)
