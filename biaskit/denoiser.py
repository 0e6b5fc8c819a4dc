"""The one interface every model in biaskit implements: trained networks, exact oracles and
third-party checkpoints alike.

A :class:`Denoiser` wraps a network ``net(x_in, time_in, **net_kwargs)`` with what is needed to read
its output: the schedule, the parameterization, how t is fed, the data range and channel count.
Called on (x_t, t) with t an integer step of ``schedule`` it returns a :class:`Prediction`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Callable, Mapping

import torch
from torch import nn

from . import checks
from . import parameterization as P
from .processes import DiscreteVP
from .schedules import Schedule, as_schedule, scheduler_config
from .source import Source

TIME_INPUTS = DiscreteVP.TIME_INPUTS  # a discrete schedule's network time inputs, owned by its process


@dataclass(frozen=True)
class Conditioning:
    """How a class-conditional network receives labels: ``net(x, time, **{keyword: y})``, y (B,)
    int64.

    class_label: one class for every sample (else each sample's own label, given per call).
    guidance_scale: classifier-free guidance (Ho & Salimans 2022): with the conditional output
        out_c and the output out_u at ``null_label``, out = out_u + w (out_c - out_u) on the
        prediction channels (a learned-variance half is the conditional one's); x0_hat and
        eps_hat are affine in out, so they are guided alike. w = 1 is out_c itself and w = 0
        out_u itself (one network call each); None: no guidance.
    null_label: the label of the unconditional output (e.g. the extra class a CFG net was
        trained with); required for a guidance scale other than 1.
    """

    keyword: str = "y"
    class_label: int | None = None
    guidance_scale: float | None = None
    null_label: int | None = None

    def __post_init__(self):
        w = self.guidance_scale
        if w is not None and w != 1 and self.null_label is None:
            raise ValueError(f"guidance_scale {w:g} needs the unconditional label: give null_label "
                             "(--null-label K, the label the network was trained on for 'no class')")

    def labels(self, B: int, y, device) -> torch.Tensor:
        """The (B,) labels of one call: class_label for all, else ``y``; a ValueError without."""
        if self.class_label is not None:
            return torch.full((B,), int(self.class_label), dtype=torch.int64, device=device)
        if y is None:
            raise ValueError("the model is class-conditional: probe labelled data (digits, mnist, "
                             "an image folder with one subfolder per class) or give one class "
                             "for all with class_label= / --class-label K")
        y = torch.as_tensor(y, device=device).long()
        return y.expand(B) if y.ndim == 0 else y

    def call(self, net, x, time, y, channels: int | None = None, **kwargs) -> torch.Tensor:
        """The (guided) output of ``net`` at (x, time) for labels ``y`` (see :meth:`labels`)."""
        labels = self.labels(x.shape[0], y, x.device)
        w = self.guidance_scale
        if w is None or w == 1:
            return net(x, time, **kwargs, **{self.keyword: labels})
        null = torch.full_like(labels, int(self.null_label))
        out_u = net(x, time, **kwargs, **{self.keyword: null})
        if w == 0:
            return out_u
        out_c = net(x, time, **kwargs, **{self.keyword: labels})
        C = channels or x.shape[1]
        if out_c.ndim > 1 and out_c.shape[1] == 2 * C:  # learned variance: guide the mean half
            return torch.cat([out_u[:, :C] + w * (out_c[:, :C] - out_u[:, :C]), out_c[:, C:]], 1)
        return out_u + w * (out_c - out_u)

    def describe(self) -> dict:
        return {"label_keyword": self.keyword, "labels": "per sample" if self.class_label is None
                else int(self.class_label), "guidance_scale": self.guidance_scale,
                "null_label": self.null_label}


@dataclass
class Prediction:
    """Per-sample estimates, each shaped like x_t: (B, C, H, W) or (B, D)."""

    x0_hat: torch.Tensor
    eps_hat: torch.Tensor
    out: torch.Tensor            # the network's mean output in its own parameterization
    var_out: torch.Tensor | None = None  # the learned-variance half of a 2C output (ADM learn_sigma)
    alpha: torch.Tensor | None = None
    sigma: torch.Tensor | None = None

    @property
    def v_hat(self) -> torch.Tensor:
        return P.v_from(self.x0_hat, self.eps_hat, self.alpha, self.sigma)


def resolve_device(device=None) -> torch.device:
    """``None`` or ``"auto"`` -> cuda when a GPU is visible, else cpu; other values as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _fmt(shape) -> str:
    return str(tuple(int(s) for s in shape))


def _expand(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return c.reshape(-1, *([1] * (x.ndim - 1)))


def network_output(raw):
    """The tensor a network returned: a tensor as is, a diffusers output's ``.sample``
    (``UNet2DOutput``), or the only element of a one-tuple (diffusers' ``return_dict=False``).
    Anything else (a longer tuple, whose first element need not be the prediction) is returned
    as is for :func:`check_output` to refuse with a one-line error: never guessed."""
    if isinstance(raw, torch.Tensor):
        return raw
    sample = getattr(raw, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    if isinstance(raw, (tuple, list)) and len(raw) == 1 and isinstance(raw[0], torch.Tensor):
        return raw[0]
    return raw


class Denoiser(nn.Module):
    """A network plus everything needed to turn its output into x0_hat and eps_hat.

    Args:
        net: module (or callable) called as ``net(x_in, time_in, **net_kwargs)``; returns C or 2C
            channels as a tensor, a diffusers output (its ``.sample``) or a one-tuple (its item).
        schedule: the (possibly respaced) schedule whose integer steps ``t`` the caller passes: a
            :class:`Schedule`, a schedule name, or a diffusers DDPM-family scheduler object or
            config dict (:func:`~biaskit.schedules.as_schedule`).
        parameterization: ``eps``, ``x0``, ``v`` or ``flow`` (diffusers' spellings accepted);
            default: a diffusers scheduler's ``prediction_type``, else ``eps``.
        time_input: how t reaches the network: ``index`` (the parent-schedule timestep, as ADM and
            diffusers), ``scaled`` (timestep * time_scale; default time_scale = 1 / T_train),
            ``sigma``, ``logsnr``, ``alpha_sigma`` (the tensor [alpha, sigma]), or a callable
            ``f(schedule, t) -> tensor``.
        data_range: (lo, hi) of clean data, used for clipping and clip fractions.
        channels: data channels C (dimension D for vectors).
        input_scale: multiply x_t by this before the network (e.g. 1 / (alpha + sigma) for a flow net)
            — a float, or None.
        clip: clamp x0_hat to data_range (and recompute eps_hat) when True.
        source: where the model came from (:class:`biaskit.source.Source`; loaders set it).
        info: a flat description instead of ``source`` (read by :meth:`Source.from_info`).
        shape: the per-sample shape (C, H, W) or (D,) the model was trained on, when known
            (else the source's, else the network's ``shape`` attribute, else None); it is recorded
            as ``source.shape``. Inputs of another shape are a ValueError naming both, unless
            ``any_size`` allows other H, W.
        any_size: accept images of another height and width than ``shape`` (a convolutional
            network run off its training size); channels must still match.
        conditioning: a :class:`Conditioning` for a class-conditional network (labels per call:
            ``forward(x_t, t, y)``), else None.
    """

    def __init__(self, net: nn.Module, schedule: Schedule, parameterization: str | None = None, *,
                 time_input: str | Callable = "index", time_scale: float | None = None,
                 data_range=(-1.0, 1.0), channels: int | None = None, clip: bool = False,
                 name: str = "model", source: Source | None = None, info: dict | None = None,
                 net_kwargs: dict | None = None, shape=None, any_size: bool = False,
                 conditioning: Conditioning | None = None):
        super().__init__()
        if not callable(net):
            raise TypeError(f"net must be a torch nn.Module or a callable net(x, t), got {type(net).__name__}")
        self.net = net
        self.conditioning = conditioning
        self.schedule = as_schedule(schedule)
        cfg = scheduler_config(schedule) or {}
        self.parameterization = P.canonical(parameterization or cfg.get("prediction_type", "eps"))
        if not callable(time_input) and time_input not in TIME_INPUTS:
            raise ValueError(f"unknown time_input {time_input!r}; valid: {', '.join(TIME_INPUTS)} "
                             "or a callable f(schedule, t)")
        self.time_input = time_input
        self.time_scale = None if time_scale is None else checks.nonzero("time_scale", time_scale)
        self.data_range = tuple(float(v) for v in data_range)
        self.channels = channels
        self.clip = clip
        self.name = name
        if source is not None and info is not None:
            raise ValueError("give source= or info=, not both")
        source = source if source is not None else Source.from_info(info)
        for known in (shape, source.shape, getattr(net, "shape", None)):
            if isinstance(known, (tuple, list, torch.Size)) and len(known):
                if tuple(int(k) for k in known) != source.shape:
                    source = replace(source, shape=known)
                break
        self.source = source
        self.net_kwargs = dict(net_kwargs or {})
        self.any_size = any_size

    @property
    def info(self) -> Mapping:
        """The source as a flat read-only mapping (the keys metadata files carry)."""
        return MappingProxyType(self.source.info)

    @property
    def shape(self) -> tuple[int, ...] | None:
        """Per-sample shape the model was trained on (C, H, W) or (D,); None when unknown."""
        return self.source.shape

    def check_shape(self, shape) -> None:
        """ValueError naming both shapes when per-sample ``shape`` does not fit the model."""
        want, got = self.shape, tuple(int(s) for s in shape)
        if want is None or got == want:
            return
        resizable = len(got) == len(want) == 3 and got[0] == want[0] and self.source.format != "oracle"
        if self.any_size and resizable:
            return
        hint = " (pass any_size=True / --any-size to run it at another image size)" if resizable else ""
        raise ValueError(f"model {self.name!r} expects per-sample shape {_fmt(want)}, the data have "
                         f"{_fmt(got)}{hint}")

    def __repr__(self) -> str:
        """One line: format, parameterization, schedule, shape, source."""
        src = self.source
        fmt = {"run": "biaskit run", "module": src.extras.get("format") or type(self.net).__name__
               }.get(src.format, src.format)
        source = src.path or self.name
        shape = _fmt(self.shape) if self.shape else "unknown"
        return (f"Denoiser({fmt}, {self.parameterization}, {self.schedule.name} T={self.schedule.T}, "
                f"shape {shape}, source {source})")

    @property
    def device(self) -> torch.device:
        """Where the network's parameters (or buffers) live; cpu for a parameter-free network."""
        for p in list(self.parameters()) + list(self.buffers()):
            return p.device
        return torch.device("cpu")

    def time_features(self, t: torch.Tensor) -> torch.Tensor:
        """What the network receives as its time argument, for integer steps t (shape (B,))."""
        s = self.schedule
        if callable(self.time_input):
            return self.time_input(s, t)
        if self.time_input == "index":
            return s.timesteps.to(t.device)[t]
        if self.time_input == "scaled":
            scale = self.time_scale if self.time_scale is not None else 1.0 / s.num_train_timesteps
            return s.timesteps.to(t.device)[t].float() * scale
        if self.time_input == "sigma":
            return s.sigma.to(t.device, torch.float32)[t]
        if self.time_input == "logsnr":
            return s.logsnr.to(t.device, torch.float32)[t]
        alpha, sigma = s.coefficients(t)
        return torch.stack([alpha, sigma], dim=-1)

    @property
    def conditional(self) -> bool:
        """Whether the network takes class labels."""
        return self.conditioning is not None

    def call_net(self, x: torch.Tensor, time: torch.Tensor, y=None) -> torch.Tensor:
        """The network's output at (x, time input); a conditional one gets labels ``y`` (B,) (or
        its one class) and classifier-free guidance (:class:`Conditioning`); others ignore y."""
        if self.conditioning is None:
            return network_output(self.net(x, time, **self.net_kwargs))
        net = lambda *args, **kwargs: network_output(self.net(*args, **kwargs))  # noqa: E731
        return self.conditioning.call(net, x, time, y, self.channels, **self.net_kwargs)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y=None) -> Prediction:
        """x_t: (B, C, H, W) or (B, D); t: (B,) integer steps of ``self.schedule`` (or a scalar);
        y: (B,) class labels for a conditional model (ignored by others)."""
        self.check_shape(x_t.shape[1:])
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        t = t.long()
        alpha, sigma = self.schedule.coefficients(t, dtype=torch.float32)
        alpha, sigma = _expand(alpha, x_t).to(x_t.dtype), _expand(sigma, x_t).to(x_t.dtype)
        try:
            raw = self.call_net(x_t, self.time_features(t), y)
        except (RuntimeError, TypeError, IndexError) as e:
            raise _diagnose(self, x_t, t, e, y) from None
        check_output(self, raw, x_t, learned_variance=True)
        raw = raw.to(x_t.dtype) if raw.dtype != x_t.dtype else raw
        channels = self.channels or x_t.shape[1]
        out, var_out = P.split_learned_variance(raw, channels)
        x0_hat, eps_hat = P.to_x0_eps(self.parameterization, out, x_t, alpha, sigma)
        if self.clip:
            x0_hat, eps_hat = P.clip_estimates(x0_hat, x_t, alpha, sigma, self.data_range)
        return Prediction(x0_hat, eps_hat, out, var_out, alpha, sigma)

    def describe(self) -> dict:
        """JSON-able identity for metadata files."""
        return {"name": self.name, "parameterization": self.parameterization,
                "time_input": self.time_input if isinstance(self.time_input, str) else
                getattr(self.time_input, "__name__", "callable"),
                "time_scale": self.time_scale, "data_range": list(self.data_range),
                "channels": self.channels, "schedule": self.schedule.name, "T": self.schedule.T,
                "clip": self.clip, **self.info,
                **({"conditioning": self.conditioning.describe()} if self.conditioning else {})}


class NetworkOutputError(TypeError, ValueError):
    """A network returned something other than its prediction tensor: a wrong type for Python
    callers (TypeError) and a user error the CLI reports in one line (ValueError)."""


def check_output(d: nn.Module, out, x: torch.Tensor, learned_variance: bool = False) -> None:
    """ValueError unless the network's output ``out`` is a tensor shaped like its input ``x``
    (B, C, ...): the same batch and trailing sizes, and C channels (or 2C with
    ``learned_variance``, ADM's learn_sigma). A wrong batch would otherwise broadcast."""
    name = getattr(d, "name", "model")
    if not torch.is_tensor(out):
        kind = type(out).__name__
        kind = ("an " if kind[:1] in "aeiou" else "a ") + kind + (
            f" of {len(out)}" if isinstance(out, (tuple, list)) else "")
        raise NetworkOutputError(f"model {name!r}: the network returned {kind}, not a tensor: expected a "
                                 "tensor, an output with a .sample tensor (diffusers) or a one-tuple; "
                                 "net(x, time_in) must return the prediction (e.g. out[0] of a tuple)")
    C = x.shape[1]
    ok = (out.ndim == x.ndim and out.shape[0] == x.shape[0] and out.shape[2:] == x.shape[2:]
          and (out.shape[1] == C or (learned_variance and out.shape[1] == 2 * C)))
    if not ok:
        want = _fmt(x.shape) + (f" (or {2 * C} channels)" if learned_variance and x.ndim > 2 else "")
        raise ValueError(f"model {name!r}: the network returned shape {_fmt(out.shape)} for input "
                         f"{_fmt(x.shape)}; expected {want}, batch included")


def _time_desc(d: "Denoiser", t: torch.Tensor) -> str:
    feats = d.time_features(t[:2])
    values = ", ".join(f"{v:.4g}" for v in feats.flatten()[:2].tolist())
    return f"{str(feats.dtype).replace('torch.', '')} of shape {tuple(feats.shape)}, e.g. {values}"


def time_input_error(d: "Denoiser", x_t: torch.Tensor, t: torch.Tensor, error: Exception,
                     y=None) -> Exception:
    """When ``d.net`` failed on (x_t, its time input): a ValueError naming the time inputs the
    network does run with, found by trying each on one sample; ``error`` itself when the time
    input is not the cause (every alternative fails too)."""
    if callable(d.time_input) or isinstance(error, torch.cuda.OutOfMemoryError):
        return error
    working = []
    for ti in (d.time_input, *(ti for ti in TIME_INPUTS if ti != d.time_input)):
        # the current input first: if it runs on one sample, the time input is not the cause
        alt = Denoiser(d.net, d.schedule, d.parameterization, time_input=ti, time_scale=d.time_scale
                       if ti == "scaled" else None, data_range=d.data_range, channels=d.channels,
                       net_kwargs=d.net_kwargs, conditioning=d.conditioning)
        try:
            with torch.no_grad():
                alt.call_net(x_t[:1], alt.time_features(t[:1]),
                             None if y is None else torch.as_tensor(y).reshape(-1)[:1])
        except Exception:  # noqa: BLE001 - any failure means this input does not work either
            continue
        if ti == d.time_input:
            return error
        working.append(f"{ti} ({_time_desc(alt, t)})")
    if not working:
        return error
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ValueError(f"the network rejects time input {d.time_input!r} ({_time_desc(d, t)}): "
                      f"{first}; it runs with --time-input {' or '.join(working)}: pass the time "
                      "convention it was trained with")


def _diagnose(d: "Denoiser", x_t: torch.Tensor, t: torch.Tensor, error: Exception, y=None) -> Exception:
    """One line for a network that failed on (x_t, t): a wrong time input (naming those that
    work), or, for a model of unknown shape, data of the wrong shape; else ``error`` itself."""
    found = time_input_error(d, x_t, t, error, y)
    if found is not error:
        return found
    if isinstance(error, RuntimeError) and (d.shape is None or d.any_size) and \
            not isinstance(error, torch.cuda.OutOfMemoryError) and \
            any(w in str(error) for w in ("shape", "size", "channels")):
        return ValueError(f"model {d.name!r} failed on data of shape {_fmt(x_t.shape[1:])}: "
                          f"{str(error).splitlines()[0]}")
    return error
