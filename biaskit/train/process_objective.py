"""The training objective under a continuous-time process (flow, VE / EDM, continuous VP), and
the config checks of every run.

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

from ..densities import get_density
from ..processes import PROCESS_KEYS, Process, process_from_config
from ..targets import get_target

__all__ = ["check_config", "build_process", "process_time_input", "TimeSampler", "ProcessObjective",
           "process_inputs", "x0_weight_per_logsnr"]

LAM_CAP = 30.0   # the logsnr grid of a density is clipped to [-LAM_CAP, LAM_CAP]
GRID = 8193      # logsnr grid points for inverse-CDF sampling and normalisation


# --- config checks (one line each) --------------------------------------------------------------
def _check(key: str, fn):
    try:
        return fn()
    except ValueError as e:
        raise ValueError(f"{key}: {e}") from None


def check_config(cfg) -> None:
    """ValueError naming the key for a target, weighting, time input or density that this
    process cannot train (``edm`` target or ``loss.density`` on the discrete schedule, ...)."""
    from ..denoiser import TIME_INPUTS
    from ..formulations import PROCESS_TIME_INPUTS
    from ..weighting import get_weighting
    name, loss = cfg.process.name, cfg.loss
    w = _check("loss.weighting", lambda: get_weighting(loss.weighting))
    if name != "discrete" and w.native:
        raise ValueError(f"loss.weighting: {w.name} is defined on the discrete VP targets' own MSE "
                         f"(eps, x0, v); under process {name!r} use debias (its x0-space form)")
    target = _check("loss.target", lambda: get_target(loss.target))
    if name == "discrete":
        if not target.space:
            raise ValueError(f"loss.target: {target.name} ({target.label}) needs a continuous process "
                             "(process.name: edm, flow, vp_cosine, ...)")
        if cfg.model.time_input not in TIME_INPUTS:
            raise ValueError(f"model.time_input: {cfg.model.time_input!r} is not one of {', '.join(TIME_INPUTS)}")
        if loss.uncertainty:
            raise ValueError("loss.uncertainty (EDM2's learned log-variance) needs a continuous process "
                             "(process.name: edm, flow, vp_cosine, ...)")
        if loss.density != "uniform":
            raise ValueError("loss.density applies to continuous processes (process.name: flow, edm, "
                             "...); the discrete schedule draws steps by loss.t_sampling")
        return
    if name not in PROCESS_KEYS:
        raise ValueError(f"process.name: {name!r} is not one of discrete, {', '.join(PROCESS_KEYS)}")
    if cfg.model.time_input not in ("index",) + PROCESS_TIME_INPUTS:
        raise ValueError(f"model.time_input: {cfg.model.time_input!r} is not a process time input "
                         f"({', '.join(PROCESS_TIME_INPUTS)}, or index for the process's default)")
    if loss.t_sampling != "uniform":
        raise ValueError(f"loss.t_sampling: {loss.t_sampling!r} is for the discrete schedule; under "
                         f"process {name} give the training density as loss.density")
    if loss.uncertainty and loss.normalize != "none":
        raise ValueError("loss.uncertainty: the learned log-variance sets each level's scale itself; "
                         "use loss.normalize: none")
    if w.name == "vlb":
        raise ValueError("loss.weighting: vlb needs a discrete schedule's steps (process.name: discrete)")
    _check("loss.density", lambda: get_density(loss.density))
    _check("process", lambda: process_from_config(vars(cfg.process)))


def build_process(cfg) -> Process | None:
    """The config's continuous process, or None for the discrete schedule."""
    return None if cfg.process.name == "discrete" else process_from_config(vars(cfg.process))


def process_time_input(cfg, process: Process, target: str) -> tuple[str, float]:
    """(time input, time scale) of a process run: ``index`` means the process's default
    (:func:`biaskit.formulations.default_time_input`); the scale is 1000 for t in [0, 1]."""
    from ..formulations import default_time_input
    ti = cfg.model.time_input
    ti = default_time_input(process, target) if ti == "index" else ti
    scale = cfg.model.time_scale
    if scale is None:
        scale = 1000.0 if ti == "t" and process.t_max <= 1 else 1.0
    return ti, float(scale)


# --- drawing t ----------------------------------------------------------------------------------
def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of (xp, fp) at x (xp increasing), clamped at the ends."""
    j = torch.searchsorted(xp, x.clamp(xp[0], xp[-1])).clamp(1, xp.numel() - 1)
    w = (x - xp[j - 1]) / (xp[j] - xp[j - 1])
    return fp[j - 1] + w.clamp(0, 1) * (fp[j] - fp[j - 1])


class TimeSampler:
    """Training times of ``process`` under ``density`` (over logsnr), from uniforms u (B,).

    ``uniform``: t = t_min + (t_max - t_min) u. Otherwise the inverse CDF of p_lam truncated to
    the process's logsnr range (clipped to +-LAM_CAP) on a grid of GRID points:
    lam = CDF^-1(u), t = process.t_of_logsnr(lam). :meth:`pdf` is the (truncated) p_lam,
    renormalised by its quadrature mass on the range unless its ``support`` lies inside it.
    """

    def __init__(self, process: Process, density):
        self.process, self.density = process, get_density(density)
        self.uniform = self.density.name == "uniform"
        ends = process.logsnr(torch.tensor([process.t_max, process.t_min], dtype=torch.float64))
        lo, hi = (float(v.clamp(-LAM_CAP, LAM_CAP)) for v in ends)
        self.lam = torch.linspace(lo, hi, GRID, dtype=torch.float64)
        p = self.density(self.lam, process)
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64),
                         torch.cumsum((p[1:] + p[:-1]) / 2 * self.lam.diff(), 0)])
        if not (torch.isfinite(cdf[-1]) and cdf[-1] > 0):
            raise ValueError(f"loss.density: {self.density.column} puts no mass on the logsnr range "
                             f"[{lo:.3g}, {hi:.3g}] of process {process.name}")
        # a density with all its mass inside the range needs no quadrature (exact W)
        sup = self.density.support
        whole = sup is not None and lo <= sup[0] and sup[1] <= hi
        self.mass, self.cdf = 1.0 if whole else float(cdf[-1]), cdf / cdf[-1]

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """t (B,) float64 for u (B,) uniform in [0, 1)."""
        pr = self.process
        if self.uniform:
            return pr.t_min + (pr.t_max - pr.t_min) * u
        return pr.t_of_logsnr(_interp(u, self.cdf.to(u.device), self.lam.to(u.device)).cpu()).to(u.device)

    def pdf(self, lam: torch.Tensor) -> torch.Tensor:
        """p_lam at lam (float64): uniform is exact, other densities renormalised on the range."""
        return self.density(lam, self.process) / (1.0 if self.uniform else self.mass)


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
        from ..weighting import get_weighting
        from .uncertainty import LogVariance
        self.process, self.target, self.time_in, self.sigma_data = process, target, time_in, sigma_data
        # EDM2's learned log-variance (loss.uncertainty), trained with the network
        self.logvar = LogVariance(seed=seed) if loss_cfg.uncertainty else None
        self.w, self.snr_min = get_weighting(loss_cfg.weighting), loss_cfg.snr_min
        self.sampler = TimeSampler(process, loss_cfg.density)
        self.c = 1.0
        self.c = self._normalization(loss_cfg.normalize)
        self.weights(process.t_of_logsnr(self.sampler.lam))  # raises now for an infinite weight

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

    def loss(self, net, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, autocast=None):
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
    from ..schedules import get_schedule
    from ..weighting import per_sample_weights
    loss = cfg.loss
    lam = torch.as_tensor(lam, dtype=torch.float64)
    if cfg.process.name != "discrete":
        return ProcessObjective(loss, build_process(cfg), "x0", None,
                                cfg.process.sigma_data).x0_weight_per_logsnr(lam)
    if loss.t_sampling != "uniform":
        raise ValueError(f"loss.t_sampling: {loss.t_sampling!r}: W of a discrete run is given for uniform steps")
    sched = get_schedule(cfg.schedule.name, cfg.schedule.T, cfg.schedule.zero_terminal_snr)
    w = [per_sample_weights(loss.weighting, sched, "x0", snr_min=loss.snr_min, normalize=n)[0]
         for n in (loss.normalize, "none")]
    inside = (lam >= sched.logsnr[-1]) & (lam <= sched.logsnr[0])
    return inside * w[0] / w[1] * effective_x0_weight(loss.weighting, "uniform", DiscreteVP(sched),
                                                      lam, snr_min=loss.snr_min)
