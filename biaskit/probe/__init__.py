"""Per-timestep probe: error, per-channel bias, variance, clipping and frequency split of the x0
estimate of any :class:`~biaskit.denoiser.Denoiser` on held-out data, with 95% intervals.

``biaskit.probe`` is this package; ``biaskit.probe.probe(denoiser, data)`` probes one model and
``biaskit.probe.compare(models, data)`` (also ``biaskit.compare``) several on the same draws.

Timesteps. ``t`` is always the model's own timestep, the one it was trained with and is fed: for
a model trained on timesteps 1..999 of a 1000-step schedule (a schedule of 999 steps whose
``timesteps`` are 1..999) t = 999 is its noisiest step. Asked-for timesteps are such t; the grid of
``num_timesteps`` is evenly spaced over the schedule's steps; ``schedule_index`` is the position k
of t among the schedule's steps (what a :class:`Denoiser` is called with).

Modules: :mod:`.draws` (grid, samples, noise: common random numbers), :mod:`.statistics` (one
entry per statistic), :mod:`.bias_norm` (the colour-bias norm), :mod:`.paired_bias` (its paired
difference), :mod:`.evaluate` (batches, DDP shards and their gathering), :mod:`.api` (:class:`ProbeOptions`, :func:`compare`, :func:`probe`);
intervals come from :mod:`biaskit.intervals`.

The statistics and their intervals: :mod:`biaskit.probe.statistics`.
"""

import sys

from ..results import load_results, save_results
from .api import METHODS, ProbeOptions, compare, model_identity, probe
from .ratio import compare_ratio
from .bias_norm import bias_l2, bias_l2_interval, bias_sq, hotelling_p
from .draws import chunk_rows, draw_noise, schedule_indices, select_samples, timestep_grid
from .paired_bias import bias_difference
from .statistics import CLIP_TOL, STATISTICS, band_matrix, outside_range

__all__ = ["probe", "compare", "compare_ratio", "ProbeOptions", "timestep_grid", "schedule_indices", "draw_noise",
           "select_samples", "save_results", "load_results", "METHODS", "chunk_rows", "CLIP_TOL",
           "outside_range", "STATISTICS", "band_matrix", "model_identity", "bias_sq", "bias_l2",
           "hotelling_p", "bias_l2_interval", "bias_difference"]


class _CallableModule(type(sys.modules[__name__])):
    """``biaskit.probe(denoiser, data, **settings)`` is :func:`probe`; the package stays a module."""

    def __call__(self, denoiser, data, **settings):
        return probe(denoiser, data, **settings)


sys.modules[__name__].__class__ = _CallableModule
