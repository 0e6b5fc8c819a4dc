"""A :class:`Weighting` (order p and regular part g of w_x0 = snr^p g) and :func:`weight`, its
value in any space, with the exact snr -> 0 limits."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import torch

from .. import checks
from ..targets import SPACES, TARGETS

MEASURES = ("per_sample", "per_logsnr")
# how a user names snr_min in each front end (Python, training config, command line)
_CLAMP = "clamp snr from below with snr_min (loss.snr_min in training, --snr-min on the command line)"


class InfiniteWeightError(ValueError):
    """A weight whose limit at snr = 0 is infinite was requested without a clamp."""


def _space(space: str):
    """The :class:`biaskit.targets.Target` of a weighting space: its x0-error factor is
    snr^snr_power / divisor(snr) (e.g. eps: 1 / snr, v: 1 / (snr + 1), flow: 1 / (1 + sqrt(snr))^2)."""
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; valid: {', '.join(SPACES)}")
    return TARGETS[space]


def x0_form(order: float, regular: Callable, space: str) -> tuple[float, Callable]:
    """(order, regular) of w_x0 for a weight snr^order * regular given on the ``space`` error:
    ||x0_hat - x0||^2 = ||out_hat - out||^2 * snr^p / divisor(snr) for the space's snr_power p
    and divisor (:data:`biaskit.targets.TARGETS`), so w_x0 = snr^(order - p) regular divisor."""
    t = _space(space)
    if t.divisor is None:
        return order - t.snr_power, regular
    return order - t.snr_power, lambda s, lam, ctx: regular(s, lam, ctx) * t.divisor(s)


@dataclass(frozen=True)
class Weighting:
    """w_x0(snr) = snr^order * regular(snr, logsnr, ctx); ``ctx`` holds schedule terms (vlb).
    ``measure``: ``per_sample`` or ``per_logsnr`` (see the module docstring).

    ``native``: snr^order * regular is the weight on the MSE of *whichever target is trained*,
    in that target's own space (as a codebase that multiplies one factor onto its loss does),
    so the x0-space weight depends on the target: :meth:`for_target` gives it; :func:`weight`
    in space S evaluates the objective of a run whose target is S."""

    name: str
    order: float
    regular: Callable
    params: dict = field(default_factory=dict)
    label: str = ""
    measure: str = "per_sample"
    native: bool = False

    def for_target(self, target: str) -> "Weighting":
        """The x0-form weighting of this objective when the network predicts ``target``
        (itself unless ``native``)."""
        if not self.native:
            return self
        order, regular = x0_form(self.order, self.regular, target)
        return Weighting(self.name, order, regular, self.params, self.label, self.measure)

    def __post_init__(self):
        if self.measure not in MEASURES:
            raise ValueError(f"unknown measure {self.measure!r}; valid: {', '.join(MEASURES)}")

    @property
    def column(self) -> str:
        """Column name: registry name, plus the parameter values when they differ from defaults."""
        defaults = _defaults(self.name)
        changed = [v for k, v in self.params.items() if defaults.get(k) != v]
        return "_".join([self.name] + [f"{v:g}" if isinstance(v, float) else str(v) for v in changed])

    def __call__(self, snr, space: str = "x0", *, snr_min: float | None = None, ctx: dict | None = None):
        """The weight in ``space`` at each snr, in the weighting's own measure (float64)."""
        return weight(self, snr, space, snr_min=snr_min, ctx=ctx)


def _evaluate(w: Weighting, snr: torch.Tensor, space: str, snr_min, ctx) -> torch.Tensor:
    """snr^power(space) * g(snr) / (the space's factor), without checks (snr float64)."""
    if snr_min is not None:
        snr = snr.clamp(min=snr_min)
    g = w.regular(snr, torch.log(snr), ctx or {})
    t = TARGETS[space]
    lead = torch.pow(snr, w.order + t.snr_power)
    if t.divisor is not None:
        lead = lead / t.divisor(snr)
    return lead * g


def weight(w: Weighting, snr, space: str = "x0", *, snr_min: float | None = None,
           ctx: dict | None = None, what: str = "weighting") -> torch.Tensor:
    """w in ``space`` at each snr, in w's own measure; :class:`InfiniteWeightError` where it is
    not finite, with what would make it finite (another space, the snr_min clamp) if anything."""
    _space(space)
    w = w.for_target(space)
    if snr_min is not None:
        checks.positive("snr_min (loss.snr_min, --snr-min)", snr_min)
    snr = torch.as_tensor(snr, dtype=torch.float64) if not torch.is_tensor(snr) else snr
    out = _evaluate(w, snr, space, snr_min, ctx)
    if not torch.all(torch.isfinite(out)):
        raise InfiniteWeightError(_infinite_message(w, snr, space, snr_min, ctx, out, what))
    return out


def _infinite_message(w, snr, space, snr_min, ctx, out, what) -> str:
    bad = ~torch.isfinite(out)
    at = float(snr[bad].min())
    snr_c = snr if snr_min is None else snr.clamp(min=snr_min)
    regular_ok = bool(torch.isfinite(w.regular(snr_c, torch.log(snr_c), ctx or {})[bad]).all())
    why = " (its limit at snr -> 0 is infinite)" if regular_ok and at == 0 else ""
    spaces = [s for s in SPACES if s != space
              and bool(torch.isfinite(_evaluate(w, snr, s, snr_min, ctx)).all())]
    fixes = [f"evaluate it in {_or(spaces)} space"] if spaces else []
    if snr_min is None and bool(torch.isfinite(_evaluate(w, snr, space, 1e-12, ctx)).all()):
        fixes.append(_CLAMP)
    fix = ", or ".join(fixes) if fixes else (
        "no space makes it finite" + (f" and snr_min={snr_min:g} does not either" if snr_min is not None
                                      else " and clamping snr does not either"))
    return f"{what} {w.column!r} in {space} space is infinite at snr = {at:g}{why}; {fix}"


def _or(items) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


# the named weightings (filled by biaskit.weighting.registry) and their default parameters
_REGISTRY: dict[str, Callable[..., Weighting]] = {}


def _defaults(name):
    fn = _REGISTRY.get(name)
    if fn is None:
        return {}
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}
