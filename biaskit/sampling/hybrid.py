"""Hybrid sampling (Yu et al.'s "reasons" study): model A for the first k model calls of a chain,
model B after, as one Denoiser-like model that any sampler calls."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..denoiser import Denoiser, Prediction
from ..formulations import on_common_logsnr
from .chain import SampleResult
from .run import model_calls, sample
from .wrapped import Wrapped, call


class SwitchAfter(Wrapped):
    """Called as ``model(x_t, t) -> Prediction`` like a :class:`Denoiser`: call i of a chain of
    ``n`` model calls goes to ``den_a`` when i mod n < k, else to ``den_b`` (counting wraps
    after n calls, so one object serves successive chains of n calls).

    Schedule, shape, device and data range are A's (the two must share a schedule, which a
    model of another process is re-viewed on: :func:`~biaskit.formulations.on_common_logsnr`); the
    parameterization is theirs when they share one, else ``eps`` (a diffusers scheduler is then
    fed each model's eps_hat).
    """

    def __init__(self, den_a: Denoiser, den_b: Denoiser, k: int, n: int):
        # a model of another process (ProcessDenoiser) is read at the other's logsnr values
        den_a, den_b = on_common_logsnr({"a": den_a, "b": den_b}).values()
        if not den_b.schedule.same_as(den_a.schedule):
            raise ValueError("hybrid sampling needs denoisers that share one schedule")
        if not 0 <= int(k) <= int(n):
            raise ValueError(f"k must be in 0..{n} (the number of model calls), got {k}")
        super().__init__(den_a, f"{den_a.name} then {den_b.name} after {int(k)}")
        self.den_b, self.k, self.n = den_b, int(k), int(n)
        self.calls = 0
        if den_a.parameterization != den_b.parameterization:
            self.parameterization = "eps"

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, labels=None) -> Prediction:
        den = self.denoiser if self.calls % self.n < self.k else self.den_b
        self.calls += 1
        return call(den, x_t, t, labels)


def hybrid_model(den_a: Denoiser, den_b: Denoiser, k: int, n: int):
    """A for the first ``k`` of ``n`` calls, B after: a :class:`SwitchAfter`, or B itself when
    k = 0 and A itself when k = n (so that the endpoints are exactly the pure chains, with their
    own data range and parameterization)."""
    switch = SwitchAfter(den_a, den_b, k, n)
    return den_b if switch.k == 0 else den_a if switch.k == switch.n else switch


def hybrid_sample(den_a: Denoiser, den_b: Denoiser, k: int, shape_or_noise, *,
                  sampler: str = "ddim", steps: int = 50, spacing: str = "even",
                  scheduler_kwargs: dict | None = None, **kwargs) -> SampleResult:
    """Model A for the first (noisiest) ``k`` model calls, model B for the rest; other keyword
    arguments as :func:`biaskit.sampling.sample`. k = 0 is pure B, k = the number of calls pure A."""
    n = model_calls(sampler, den_a, steps, spacing, scheduler_kwargs)
    return sample(hybrid_model(den_a, den_b, k, n), shape_or_noise, sampler=sampler, steps=steps,
                  spacing=spacing, scheduler_kwargs=scheduler_kwargs, **kwargs)


def hybrid_sweep(den_a: Denoiser, den_b: Denoiser, ks: Sequence[int], metric_fn, shape_or_noise, *,
                 progress: bool = True, **kwargs) -> pd.DataFrame:
    """:func:`hybrid_sample` for each k in ``ks`` (same seed, same x_T), scored by
    ``metric_fn(x0) -> float | dict[str, float]``. One row per (k, metric)."""
    rows = []
    for k in tqdm(list(ks), disable=not progress, desc="hybrid k"):
        x0 = hybrid_sample(den_a, den_b, int(k), shape_or_noise, progress=False, **kwargs).x0
        scores = metric_fn(x0)
        if not isinstance(scores, dict):
            scores = {"value": scores}
        rows += [{"k": int(k), "model_a": den_a.name, "model_b": den_b.name, "metric": name,
                  "value": float(v)} for name, v in scores.items()]
    return pd.DataFrame(rows)
