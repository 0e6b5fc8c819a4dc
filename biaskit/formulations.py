"""Models of any Gaussian process, read as variance-preserving (VP) denoisers on one log-SNR axis.

A network trained under a :class:`~biaskit.processes.Process` (VE / EDM, flow matching,
continuous-time VP) sees x = alpha(t) x0 + sigma(t) eps at its own time t. At the same
logsnr = log(alpha^2 / sigma^2) the VP process has x_vp = alpha_vp x0 + sigma_vp eps with
alpha_vp^2 = sigmoid(logsnr), sigma_vp^2 = sigmoid(-logsnr), and

    x = x_vp * sqrt(alpha^2 + sigma^2),   t = process.t_of_logsnr(logsnr).

So :class:`ProcessDenoiser` *is* a VP :class:`~biaskit.denoiser.Denoiser` on a discrete "view"
schedule (abar_i = sigmoid(logsnr_i) at T logsnr values, by default the process's own time grid):
called at view step i on x_vp (B, ...) it feeds the network x and its own time input, turns the
output into x0_hat, and eps_hat = (x - alpha x0_hat) / sigma (the same eps in every scale). Probe,
compare and every sampler then work unchanged, and their rows carry logsnr.

Targets (what the network outputs, at the process's x): the records of
:data:`biaskit.targets.TARGETS` (x0, eps, v in VP scale, flow, EDM's preconditioned F, score),
each of which says how the network is fed, how its output is read and what the oracle outputs.
A network that outputs the target negated (a flow net predicting x0 - eps, diffusers' EDM under
``v_prediction``) is read with ``target_sign=-1``: out = target_sign * network output.

Time inputs (what the network receives as its time, shape (B,)): ``sigma`` (the process's
sigma(t)), ``c_noise`` (ln(sigma / alpha) / 4 = -logsnr / 8), ``t`` (t * time_scale, e.g. 1000 for
a flow net fed t in [0, 1000]; t in the model's own direction, :meth:`Process.own_time`),
``logsnr``, or a callable ``f(process, t) -> tensor``.

Pairing at equal logsnr: two models are compared on the same draws when they share a schedule, so
:func:`on_common_logsnr` re-views every process model on the schedule of the first VP model
(its ``with_schedule``); :func:`biaskit.probe.compare` does this itself.
"""

from __future__ import annotations

from functools import singledispatch
from typing import Callable, Sequence

import torch
from torch import nn

from . import checks
from . import parameterization as P
from . import targets as TG
from .denoiser import Denoiser, Prediction, _expand, check_output
from .processes import DiscreteVP, Process, get_process, vp_coefficients
from .schedules import Schedule

__all__ = ["ProcessDenoiser", "denoiser_under", "TARGETS", "PROCESS_TIME_INPUTS", "view_schedule",
           "default_time_input", "on_common_logsnr", "ProcessOracleNet", "process_oracle",
           "x0_error_factor", "target_weight"]

TARGETS = tuple(TG.TARGETS)  # the names of biaskit.targets.TARGETS
TARGET_SIGNS = (1, -1)
PROCESS_TIME_INPUTS = Process.TIME_INPUTS


def _target(kind: str) -> str:
    return TG.get_target(kind).name


def default_time_input(process: Process, target: str) -> str:
    """The process's own default (:meth:`~biaskit.processes.Process.default_time_input`): EDM-
    preconditioned nets take c_noise, other VE nets sigma, every other process (VESDE included:
    Song's nets are fed t) its t."""
    return process.default_time_input(target)


def _view_logsnr(process: Process, view, T: int) -> tuple[torch.Tensor, Schedule | None]:
    """(logsnr (T,) float64, least noisy first; the schedule when ``view`` is one)."""
    if isinstance(view, Schedule):
        return view.logsnr, view
    if view is None or isinstance(view, int):
        # the process's sampling grid of T times without its clean end (VE: Karras sigmas)
        times = process.grid(int(view or T))[:-1]
        lam = process.logsnr(times)
    else:
        lam = torch.as_tensor(view, dtype=torch.float64).flatten()
    if torch.isnan(lam).any() or lam.numel() < 1:
        raise ValueError("a view needs at least one logsnr value and none may be nan")
    return torch.sort(lam, descending=True).values, None


def view_schedule(process: Process, view=None, T: int = 1000) -> tuple[Schedule, torch.Tensor]:
    """The discrete VP schedule a process model is read through, and its logsnr (T,) float64.

    ``view``: None (the process's own grid of ``T`` times: ``process.grid(T)`` without its
    final clean time), an int (that many grid times), a sequence of logsnr values, or a
    :class:`Schedule` (used as is: the model is then read at that schedule's logsnr, e.g. a VP
    model's, to be compared with it). abar_i = sigmoid(logsnr_i), i = 0 the least noisy; the
    schedule keeps logsnr_i itself (``exact_logsnr``), so logsnr, alpha and sigma read back exactly.
    """
    lam, given = _view_logsnr(process, view, T)
    if given is not None:
        return given, lam
    return Schedule(torch.sigmoid(lam), name=f"{process.name}_view", exact_logsnr=lam), lam


def _rows(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return _expand(c.to(x.device, x.dtype), x)


class ProcessDenoiser(Denoiser):
    """A network trained under ``process`` with ``target``, as a VP denoiser on a view schedule.

    Args:
        net: called as ``net(x_in, time_in, **net_kwargs)`` with x_in in the process's scale
            (EDM: c_in x / alpha) and time_in (B,) as ``time_input`` says.
        process: a :class:`Process` or its name (``ve``/``edm``, ``flow``, ``vp_cosine``, ...).
        target: one of :data:`TARGETS`.
        time_input: one of :data:`PROCESS_TIME_INPUTS` or ``f(process, t)``; default
            :func:`default_time_input`. time_scale: multiplies t for ``time_input="t"``.
        sigma_data: EDM's sigma_data (``edm`` target only).
        target_sign: 1, or -1 for a network that outputs the target negated.
        view, T: the view schedule (:func:`view_schedule`).
    Other arguments as :class:`Denoiser`. ``forward(x_vp, i)`` takes integer view steps i (B,).
    """

    def __init__(self, net: nn.Module, process, target: str = "x0", *,
                 time_input: str | Callable | None = None, time_scale: float = 1.0,
                 sigma_data: float = 0.5, target_sign: int = 1, view=None, T: int = 1000,
                 data_range=(-1.0, 1.0), channels: int | None = None, clip: bool = False,
                 name: str = "model", info: dict | None = None, net_kwargs: dict | None = None,
                 shape=None, any_size: bool = False, source=None, conditioning=None):
        process = get_process(process)
        target = _target(target)
        time_input = time_input or default_time_input(process, target)
        if not callable(time_input) and time_input not in PROCESS_TIME_INPUTS:
            raise ValueError(f"unknown process time input {time_input!r}; valid: "
                             f"{', '.join(PROCESS_TIME_INPUTS)} or a callable f(process, t)")
        if target_sign not in TARGET_SIGNS:
            raise ValueError(f"target_sign must be 1 or -1, got {target_sign!r}")
        schedule, lam = view_schedule(process, view, T)
        super().__init__(net, schedule, "x0", data_range=data_range, channels=channels, clip=clip,
                         name=name, info=info, net_kwargs=net_kwargs, shape=shape, any_size=any_size,
                         source=source, conditioning=conditioning)
        self.process, self.target = process, target  # after Denoiser's parameterization = "x0"
        self.sigma_data = checks.positive("sigma_data", sigma_data)
        self.time_input, self.time_scale = time_input, checks.nonzero("time_scale", time_scale)
        self.target_sign = int(target_sign)
        self.view_logsnr = lam
        self._lam_on: dict = {}

    @property
    def parameterization(self) -> str:
        """The target (one of :data:`TARGETS`): what :attr:`Prediction.out` holds, the network's
        output times ``target_sign`` (v in VP scale, the others in the process's scale)."""
        return self.target

    @parameterization.setter
    def parameterization(self, kind: str) -> None:
        self.target = _target(kind)

    def _options(self) -> dict:
        return dict(time_input=self.time_input, time_scale=self.time_scale, sigma_data=self.sigma_data,
                    target_sign=self.target_sign, data_range=self.data_range, channels=self.channels,
                    clip=self.clip, name=self.name, conditioning=self.conditioning,
                    source=self.source, net_kwargs=self.net_kwargs, shape=self.shape,
                    any_size=self.any_size)

    def with_schedule(self, schedule) -> "ProcessDenoiser":
        """The same network read at another view: a Schedule (e.g. a VP model's, to pair with
        it at equal logsnr), logsnr values, or a number of process grid times."""
        return ProcessDenoiser(self.net, self.process, self.target, view=schedule, **self._options())

    def on_process_grid(self, steps: int, spacing: str = "even") -> "ProcessDenoiser":
        """The view of the process's own sampling grid of ``steps`` times (VE: Karras sigmas;
        flow: uniform t after the shift, or ``spacing="flow_match"``: diffusers'
        FlowMatchEulerDiscreteScheduler's), which the ``heun`` and ``flow_euler`` samplers walk."""
        if spacing == "even":
            return self.with_schedule(int(steps))
        return self.with_schedule(self.process.logsnr(self.process.grid(int(steps), spacing)[:-1]))

    def logsnr_at(self, i: torch.Tensor) -> torch.Tensor:
        """logsnr (float64) of view steps ``i``, on i's device."""
        if i.device not in self._lam_on:
            self._lam_on[i.device] = self.view_logsnr.to(i.device)
        return self._lam_on[i.device][i]

    def process_time(self, logsnr: torch.Tensor) -> torch.Tensor:
        return self.process.t_of_logsnr(logsnr)

    def own_time(self, logsnr: torch.Tensor) -> torch.Tensor:
        """The process time at ``logsnr`` in the model's own time convention (float64): the
        ``process_t`` column of a probe."""
        return self.process.own_time(self.process_time(logsnr))

    def time_in(self, t: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """The network's time input at process times t (B,), float64."""
        if callable(self.time_input):
            return self.time_input(self.process, t)
        if self.time_input == "sigma":
            return self.process.sigma(t)
        if self.time_input == "c_noise":
            return -logsnr / 8  # ln(sigma / alpha) / 4
        if self.time_input == "t":
            return self.process.own_time(t) * self.time_scale
        return logsnr

    def time_features(self, i: torch.Tensor) -> torch.Tensor:
        lam = self.logsnr_at(torch.as_tensor(i).long())
        return self.time_in(self.process_time(lam), lam)

    def predict(self, x_vp: torch.Tensor, logsnr: torch.Tensor, y=None) -> Prediction:
        """The prediction at x_vp (B, ...) and any logsnr (B,) float64 (not only view steps);
        y: (B,) labels of a conditional model."""
        t = self.process_time(logsnr)
        alpha, sigma = self.process.alpha(t), self.process.sigma(t)
        a_vp, s_vp = vp_coefficients(logsnr)
        x = x_vp * _rows((alpha**2 + sigma**2).sqrt(), x_vp)  # the process's own x_t
        a, s = _rows(alpha, x), _rows(sigma, x)
        time = self.time_in(t, logsnr).to(x.device, x.dtype)
        record = TG.TARGETS[self.target]
        c = record.coefficients(alpha, sigma, self.sigma_data, x)
        out = self.call_net(record.net_input(x, a, c), time, y)
        check_output(self, out, x)
        out = self.target_sign * out.to(x.dtype)
        a_vp, s_vp = _rows(a_vp, x_vp), _rows(s_vp, x_vp)
        x0_hat, eps_hat = record.read_process(out, x, a, s, x_vp, a_vp, s_vp, c)
        if self.clip:
            x0_hat, eps_hat = P.clip_estimates(x0_hat, x_vp, a_vp, s_vp, self.data_range)
        return Prediction(x0_hat, eps_hat, out, None, a_vp, s_vp)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y=None) -> Prediction:
        """x_t: (B, ...) in VP scale at view steps t (B,) (or a scalar step); y: (B,) labels."""
        self.check_shape(x_t.shape[1:])
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        return self.predict(x_t, self.logsnr_at(t.long()), y)

    def describe(self) -> dict:
        lam = self.view_logsnr
        return {**super().describe(), **self.process.describe(), "target": self.target,
                "time_input": self.time_input if isinstance(self.time_input, str) else
                getattr(self.time_input, "__name__", "callable"), "time_scale": self.time_scale,
                "sigma_data": self.sigma_data, "target_sign": self.target_sign,
                "view": {"T": int(lam.numel()), "logsnr_max": float(lam[0]), "logsnr_min": float(lam[-1])}}

    def __repr__(self) -> str:
        return (f"ProcessDenoiser({self.process!r}, target {self.target}, time input "
                f"{self.describe()['time_input']}, view T={self.schedule.T}, source {self.name})")


@singledispatch
def denoiser_under(process: Process, net, target: str | None = None, *, time_input=None,
                   time_scale: float | None = None, target_sign: int | None = None,
                   sigma_data: float = 0.5, **common) -> Denoiser:
    """The denoiser of ``net``, a network trained under ``process``, keyed by the process's class:
    a :class:`~biaskit.processes.DiscreteVP` gives a :class:`~biaskit.denoiser.Denoiser` on its
    schedule, every other process a :class:`ProcessDenoiser` (a new Process subclass included).

    ``target``: what the network predicts (None: ``process.default_target``); ``time_input``,
    ``time_scale`` (None: each class's default), ``target_sign`` (None: 1), ``sigma_data``:
    as :class:`ProcessDenoiser`; ``common``: the other keywords of :class:`Denoiser` (data_range,
    channels, name, source, conditioning, any_size, ...)."""
    return ProcessDenoiser(net, process, target or process.default_target, time_input=time_input,
                           time_scale=1.0 if time_scale is None else time_scale,
                           target_sign=target_sign or 1, sigma_data=sigma_data, **common)


@denoiser_under.register
def _(process: DiscreteVP, net, target: str | None = None, *, time_input=None,
      time_scale: float | None = None, target_sign: int | None = None, sigma_data: float = 0.5,
      view=None, **common) -> Denoiser:
    # a discrete network is read at its schedule's integer steps (its view is its schedule);
    # sigma_data has no use there
    if target_sign not in (None, 1):
        raise ValueError(f"target_sign={target_sign!r} applies to a continuous process's network, "
                         f"not to one on the discrete schedule {process.schedule.name}")
    if view is not None and not (isinstance(view, Schedule) and view.same_as(process.schedule)):
        raise ValueError(f"a network on the discrete schedule {process.schedule.name} is read on "
                         "that schedule; view= applies to a continuous process's network")
    return Denoiser(net, process.schedule, target or process.default_target,
                    time_input=time_input or "index", time_scale=time_scale, **common)


def on_common_logsnr(models: dict[str, Denoiser]) -> dict[str, Denoiser]:
    """The models with every :class:`ProcessDenoiser` re-viewed on one schedule: that of the first
    model that is not one (else the first model's), so that all are probed at the same logsnr
    values on the same draws. A process model read outside its own time range is extrapolated
    (e.g. a VE net with sigma_max = 80 at a linear VP schedule's sigma_999 = 157)."""
    values: Sequence[Denoiser] = list(models.values())
    if not values:
        return dict(models)
    ref = next((d for d in values if not isinstance(d, ProcessDenoiser)), values[0]).schedule
    return {k: d.with_schedule(ref) if isinstance(d, ProcessDenoiser) and not d.schedule.same_as(ref)
            else d for k, d in models.items()}


class ProcessOracleNet(nn.Module):
    """The exact network of ``target`` under ``process`` for data from ``mixture``, called as
    ``net(x, t)`` with x (B, ...) in the process's scale and t (B,) its times.

    With D = E[x0 | x] (:func:`biaskit.oracle.posterior_mean` at alpha(t), sigma(t)):
    x0 -> D, eps -> (x - alpha D) / sigma, flow -> eps - D, v -> alpha_vp eps - sigma_vp D,
    score -> -eps / sigma, edm -> F = (D - c_skip x_e) / c_out, where the input is c_in x_e,
    x_e = x / alpha (EDM's preconditioning inverted).
    """

    def __init__(self, mixture, process, target: str = "x0", shape=None, sigma_data: float = 0.5):
        super().__init__()
        from .oracle import OracleNet
        self.inner = OracleNet(mixture, shape)
        self.shape = self.inner.shape
        self.process, self.target, self.sigma_data = get_process(process), _target(target), sigma_data

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.process.alpha(t), self.process.sigma(t)
        a, s = _rows(alpha, x), _rows(sigma, x)
        record = TG.TARGETS[self.target]
        c = record.coefficients(alpha, sigma, self.sigma_data, x)
        return record.oracle_output(x, a, s, lambda x_t: self._d(x_t, alpha, sigma), c)

    def _d(self, x, alpha, sigma):
        return self.inner(x, torch.stack([alpha, sigma], -1).to(x.device))


def process_time(process: Process, t: torch.Tensor) -> torch.Tensor:
    """The time input that is the process's own time t (float64)."""
    return t


def process_oracle(mixture, process, target: str = "x0", *, shape=None, view=None, T: int = 1000,
                   data_range=(-1.0, 1.0), name: str = "oracle") -> ProcessDenoiser:
    """The exact denoiser of ``mixture`` as a network of ``target`` under ``process`` (fed its
    own time t), read as a :class:`ProcessDenoiser`: the oracle of every formulation."""
    net = ProcessOracleNet(mixture, process, target, shape)
    return ProcessDenoiser(net, process, target, time_input=process_time, view=view, T=T,
                           data_range=data_range, channels=net.shape[0], name=name,
                           info={"oracle": True, "K": mixture.K, "dim": mixture.dim})


def x0_error_factor(target: str, snr, sigma_data: float = 0.5) -> torch.Tensor:
    """|d x0_hat / d out|^2 of a :class:`ProcessDenoiser` of ``target`` at ``snr`` (float64): the
    factor by which a squared error of the network's output becomes a squared x0 error, the same
    in every process (:meth:`biaskit.targets.Target.x0_error_factor`, derived there)."""
    snr = torch.as_tensor(snr, dtype=torch.float64)
    return TG.get_target(target).x0_error_factor(snr, sigma_data)


def target_weight(weighting, snr, target: str, *, sigma_data: float = 0.5,
                  snr_min: float | None = None) -> torch.Tensor:
    """The weight on the MSE of ``target``'s output that equals ``weighting`` (defined in x0
    space, :mod:`biaskit.weighting`) at ``snr``: w_target = w_x0 * :func:`x0_error_factor`, so
    w_target ||out_hat - out||^2 = w_x0 ||x0_hat - x0||^2 per sample, in any process. x0, eps, v
    and flow are :func:`biaskit.weighting.weight`'s own spaces (its snr = 0 limits and errors);
    edm is w_x0 sd^2 / (1 + sd^2 snr) (finite wherever w_x0 is)."""
    from .weighting import get_weighting, weight
    w = get_weighting(weighting)
    snr = torch.as_tensor(snr, dtype=torch.float64)
    record = TG.get_target(target)
    if record.space:
        return weight(w, snr, record.name, snr_min=snr_min)
    if w.native:
        raise ValueError(f"weighting {w.name!r} is defined on the {', '.join(TG.SPACES[:-1])} or "
                         f"{TG.SPACES[-1]} target's own "
                         f"MSE, not on {record.label}; use debias (its x0-space form)")
    snr_c = snr if snr_min is None else snr.clamp(min=snr_min)
    return weight(w, snr, "x0", snr_min=snr_min) * record.x0_error_factor(snr_c, sigma_data)
