"""Range checks of user-given numbers, one line each: ``what`` names the parameter (``weighting
min_snr: gamma``, ``process.sigma_data``, ``--time-scale``) and the message gives its valid range.

Every parse site (weighting and density registries, processes, the training config, loader
options, data options) calls these once, so a bad value is refused before any work starts."""

from __future__ import annotations

import math
import numbers

__all__ = ["number", "not_nan", "finite", "positive", "non_negative", "nonzero", "integer", "in_interval",
           "keyed"]


def keyed(key: str, fn):
    """``fn()``, its ValueError prefixed by the config ``key`` it concerns (``loss.density: ...``)."""
    try:
        return fn()
    except ValueError as e:
        raise ValueError(f"{key}: {e}") from None


def number(what: str, value) -> float:
    """``value`` as a float; ValueError naming ``what`` for a string, a bool, None or a list."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {value!r}") from None


def _require(ok: bool, what: str, valid: str, value) -> None:
    if not ok:
        raise ValueError(f"{what} must be {valid}, got {value!r}")


def not_nan(what: str, value) -> float:
    """``value`` a number, +-inf allowed (an open end), NaN not."""
    v = number(what, value)
    _require(not math.isnan(v), what, "a number (not NaN)", value)
    return v


def finite(what: str, value) -> float:
    v = number(what, value)
    _require(math.isfinite(v), what, "a finite number", value)
    return v


def positive(what: str, value) -> float:
    """``value`` > 0 and finite."""
    v = number(what, value)
    _require(math.isfinite(v) and v > 0, what, "a finite number > 0", value)
    return v


def non_negative(what: str, value) -> float:
    v = number(what, value)
    _require(math.isfinite(v) and v >= 0, what, "a finite number >= 0", value)
    return v


def nonzero(what: str, value) -> float:
    v = number(what, value)
    _require(math.isfinite(v) and v != 0, what, "a finite non-zero number", value)
    return v


def integer(what: str, value, lo: int | None = None) -> int:
    """``value`` as an int (an integral float such as 8.0 is accepted), at least ``lo``."""
    v = number(what, value)
    valid = "an integer" + ("" if lo is None else f" >= {lo}")
    _require(math.isfinite(v) and v == int(v) and (lo is None or v >= lo), what, valid, value)
    return int(v)


def in_interval(what: str, value, lo: float, hi: float, *, closed: str = "[)") -> float:
    """``value`` in the interval from ``lo`` to ``hi``; ``closed`` its brackets, e.g. ``"[]"``."""
    v = number(what, value)
    left = v >= lo if closed[0] == "[" else v > lo
    right = v <= hi if closed[1] == "]" else v < hi
    _require(math.isfinite(v) and left and right, what, f"in {closed[0]}{lo:g}, {hi:g}{closed[1]}", value)
    return v
