"""Loss weightings, each defined once, in x0 space, and derived in every other space.

Every weighting is written as

    w_x0(snr) = snr^p * g(snr)                                     (one definition)

with an order p and a regular part g that is finite and positive at snr = 0. The other spaces
follow from ||x0_hat - x0||^2 = ||eps_hat - eps||^2 / snr, ||v_hat - v||^2 = (snr + 1) / snr
||eps_hat - eps||^2 and ||u_hat - u||^2 = (1 + snr^-1/2)^2 ||eps_hat - eps||^2:

    w_eps  = snr^(p-1) g
    w_v    = snr^p g / (snr + 1)
    w_flow = snr^p g / (1 + sqrt(snr))^2

so the snr -> 0 limit (zero terminal SNR) is exact in every space: 0^0 = 1, 0^q = 0 for q > 0,
and an infinite limit (q < 0) raises :class:`InfiniteWeightError` unless the caller asks for the
documented clamp ``snr_min`` (snr is raised to snr_min before evaluating).

Each weighting also carries its *measure* (:data:`MEASURES`), the measure it is defined under:

    per_sample   a weight per sampled step: the loss is E_t[w(t) ||.||^2] with t drawn from the
                 time density of the run (uniform over t unless stated). P2, Min-SNR, debias, ...
    per_logsnr   a density over logsnr: the loss is  ∫ w(logsnr) ||.||^2 d logsnr  (Kingma & Gao
                 2023). With t ~ p(t) the per-sample weight is w(logsnr_t) |d logsnr/dt| / (T p(t)).

:func:`per_sample_weights` is the one place that turns either into the weight each sampled t gets
(and normalises it); :func:`per_logsnr_density` goes the other way.

Homes: the definition and its limits (:mod:`.core`), the named weightings (:mod:`.registry`), what
each sampled timestep gets (:mod:`.timesteps`); every name is importable from ``biaskit.weighting``.
"""

from .core import MEASURES, SPACES, InfiniteWeightError, Weighting, weight
from .registry import (constant, debias, edm, from_callable, get_weighting, max_snr, min_snr, names,
                       p2, register, sigmoid, snr, soft_min_snr, trunc_snr, vlb)
from .timesteps import (amplification, logsnr_jacobian, measures, normalization_constant,
                        normalize_weights, per_logsnr_density, per_sample_weights, schedule_context,
                        share_by_quarter, table_column, timestep_probabilities, weights_table)

__all__ = ["MEASURES", "SPACES", "InfiniteWeightError", "Weighting", "weight",
           "constant", "debias", "edm", "from_callable", "get_weighting", "max_snr", "min_snr",
           "names", "p2", "register", "sigmoid", "snr", "soft_min_snr", "trunc_snr", "vlb",
           "amplification", "logsnr_jacobian", "measures", "normalization_constant",
           "normalize_weights", "per_logsnr_density", "per_sample_weights", "schedule_context",
           "share_by_quarter", "table_column", "timestep_probabilities", "weights_table"]
