"""The valid range of every dataset option (:func:`biaskit.data.load_dataset` keywords), in one
table: a bad value is one line naming the option, the dataset and the range, before any data is
built (a negative ``std`` would otherwise be squared into a valid-looking covariance)."""

from __future__ import annotations

from functools import partial

from . import checks

__all__ = ["RULES", "check_data_options"]


def _int(lo):
    return partial(_integer, lo=lo)


def _integer(what, value, lo):
    return checks.integer(what, value, lo=lo)


def _shape(what, value):
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{what} must be a list of positive integers such as [1, 8, 8], got {value!r}")
    return [checks.integer(f"{what}[{i}]", v, lo=1) for i, v in enumerate(value)]


def _fraction(what, value):
    return checks.in_interval(what, value, 0, 1, closed="()")


def _names(what, value):
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{what} must be a non-empty list of names, got {value!r}")
    return list(value)


# option -> check(what, value) returning the value to use (None values keep the builder's default)
RULES = {
    "n_train": _int(0), "n_test": _int(0), "seed": _int(0), "mixture_seed": _int(0),
    "dim": _int(1), "K": _int(1), "modes": _int(1), "cells": _int(1), "size": _int(1),
    "downscale": _int(1), "shape": _shape, "images": _names,
    "std": checks.positive, "std_max": checks.positive, "std_min": checks.positive,
    "radius": checks.positive, "noise": checks.non_negative, "mean_scale": checks.non_negative,
    "test_fraction": _fraction,
}


def check_data_options(name: str, options: dict) -> dict:
    """``options`` with each value checked against :data:`RULES` (``mode`` and ``cov`` are
    checked by their builders); ValueError naming the option and ``name``. Values keep their
    type (the dataset's spec, a cache key, is unchanged), except numbers given as text."""
    out = dict(options)
    for key, value in options.items():
        rule = RULES.get(key)
        if rule is not None and value is not None:
            checked = rule(f"data option {key} (dataset {name})", value)
            out[key] = checked if isinstance(value, str) else value
    return out
