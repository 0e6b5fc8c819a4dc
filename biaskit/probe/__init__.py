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
entry per statistic), :mod:`.bias_norm` (the colour-bias norm), :mod:`.evaluate` (batches, DDP
shards and their gathering), :mod:`.api` (:class:`ProbeOptions`, :func:`compare`, :func:`probe`);
intervals come from :mod:`biaskit.intervals`.

Statistics, one row per (model, t). Every error is a per-element mean (over C, H, W for images,
over D for vectors), never a sum; d = C H W or D:
  eps_mse          mean_i ||eps_hat - eps||^2 / d
  x0_mse           mean_i ||x0_hat - x0||^2 / d          (= eps_mse / snr for every model)
  v_mse            mean_i ||v_hat - v||^2 / d
  x0_bias_c{k}     b_k: mean of x0_hat - x0 over samples and the pixels of channel k (RGB: colour bias)
  x0_bias_sq       unbiased ||b||^2 = ||b_hat||^2 - tr(S) / n (S the covariance of the per-sample
                   channel means; the plug-in ||b_hat||^2 is too large by tr(Sigma) / n on average)
  x0_bias_l2       sqrt(max(0, x0_bias_sq)), the Euclidean norm of (b_0, .., b_{C-1})
  x0_bias_p        p-value of "no colour bias" (b = 0), Hotelling's T^2 (no interval columns);
                   in difference rows, of "the same colour bias" (paired)
  x0_var           x0_mse - x0_bias_sq / C: what is left of x0_mse once the channel bias is removed
  clip_frac        fraction of x0_hat elements outside the model's data range [lo, hi] by more than
                   CLIP_TOL (hi - lo): values on the edge (an MNIST background) are not outside
  x0_err_band{j}   the share of x0_mse in radial spatial-frequency band j (images only): the bands
                   split x0_mse exactly (Parseval), so they sum to it. Band j holds the frequencies
                   of radius [j, j + 1) * 0.5 / bands cycles per pixel; the last band also takes the
                   corners beyond the Nyquist radius 0.5.
  oracle_mse       mean_i ||E[x0 | x_t] - x0||^2 / d: the irreducible error (with an oracle)
  excess_mse       mean_i ||x0_hat - E[x0 | x_t]||^2 / d: the model's estimation error

Intervals (columns ``_lo``, ``_hi``): 95%. Means of per-sample values get the t-interval
mean +- t_{0.975, n-1} s / sqrt(n) (CLT over samples). x0_var: the delta method (the same
interval on its per-sample influence values), or, with ``bootstrap=B``, percentile intervals
from B resamples of the n samples. x0_bias_l2: test inversion (:func:`bias_l2_interval`), which
covers whether the bias is 0 or not; x0_bias_sq: its square. Paired differences
(:func:`compare`) use the same rules on per-sample differences, and :func:`bias_difference`
for the bias norm. ``METHODS`` describes this in the metadata.
"""

from ..results import load_results, save_results
from .api import METHODS, ProbeOptions, compare, model_identity, probe
from .bias_norm import bias_difference, bias_l2, bias_l2_interval, bias_sq, hotelling_p
from .draws import chunk_rows, draw_noise, schedule_indices, select_samples, timestep_grid
from .statistics import CLIP_TOL, STATISTICS, band_matrix, outside_range

__all__ = ["probe", "compare", "ProbeOptions", "timestep_grid", "schedule_indices", "draw_noise",
           "select_samples", "save_results", "load_results", "METHODS", "chunk_rows", "CLIP_TOL",
           "outside_range", "STATISTICS", "band_matrix", "model_identity", "bias_sq", "bias_l2",
           "hotelling_p", "bias_l2_interval", "bias_difference"]
