"""Every metric's result, :class:`Estimate`, and the one bootstrap that makes its interval."""

from __future__ import annotations

import math
from dataclasses import dataclass, asdict
from typing import Callable

import numpy as np
import torch

from ..intervals import bias_corrected_levels


N_BOOT = 400          # resamples per interval (each tail of a 95% interval rests on 10 of them)
BC = "bias-corrected percentile bootstrap (Efron 1981)"
BIAS_CORRECTED = ("bias-corrected: value = v - b, interval = percentile bootstrap interval - 2 b, "
                  "b = mean of the resamples - v (the bootstrap estimate of the bias)")


@dataclass
class Estimate:
    """A metric value with a bootstrap interval [lo, hi] at level ``ci`` (see :func:`bootstrap`).
    ``plugin`` is the uncorrected estimate v; ``method`` says how value and interval were made."""

    metric: str
    value: float
    lo: float
    hi: float
    n_boot: int
    ci: float
    method: str = BC
    plugin: float = math.nan

    def row(self, **labels) -> dict:
        return {**labels, **asdict(self)}


def _flat(x) -> torch.Tensor:
    x = torch.as_tensor(x).detach()
    return x.reshape(x.shape[0], -1).double()


def bootstrap(stat: Callable, sizes: tuple[int, ...], metric: str, n_boot: int = N_BOOT, seed: int = 0,
              ci: float = 0.95, biased: bool = False, chunk: int = 50) -> Estimate:
    """``stat(*index_tensors) -> (B,)``: the statistic of B index sets at once, each index tensor
    (B, n_k) (rows of set k); v = stat at the identity indices, and ``n_boot`` resamples with
    replacement of every set, drawn by a generator seeded by ``seed``.

    Interval: the bias-corrected (BC) percentile bootstrap, the quantiles of the resampled
    values v* at levels Phi(2 z0 + z_{(1 -+ ci) / 2}), z0 = Phi^-1(P*(v* < v)): z0 measures the
    median bias of v* against v, which stands in for that of v against the truth, so the
    interval moves back by it and keeps the skew of the estimator's law (plain percentile when
    z0 = 0). ``biased`` (FID, SWD: plug-in distances, biased upwards by more than their spread,
    beyond what z0 can express with finitely many resamples): with b = mean(v*) - v, the
    bootstrap estimate of the bias, the value is v - b and the interval the percentile interval
    of v* moved down by 2 b (v* sits b above v as v sits b above the truth); ``plugin`` keeps v.
    """
    value = float(stat(*(torch.arange(n)[None] for n in sizes))[0])
    if n_boot <= 0:
        return Estimate(metric, value, math.nan, math.nan, 0, ci, "plug-in, no interval", value)
    g = torch.Generator().manual_seed(int(seed))
    reps = []
    for b0 in range(0, int(n_boot), chunk):
        B = min(chunk, int(n_boot) - b0)
        reps.append(torch.as_tensor(stat(*(torch.randint(n, (B, n), generator=g) for n in sizes))).double())
    reps = torch.cat(reps).numpy()
    if biased:
        b = float(reps.mean()) - value
        q_lo, q_hi = np.quantile(reps, [(1 - ci) / 2, (1 + ci) / 2])
        return Estimate(metric, value - b, float(q_lo - 2 * b), float(q_hi - 2 * b), int(n_boot), ci,
                        BIAS_CORRECTED, value)
    q_lo, q_hi = np.quantile(reps, bias_corrected_levels(reps, value, ci))
    return Estimate(metric, value, float(q_lo), float(q_hi), int(n_boot), ci, BC, value)
