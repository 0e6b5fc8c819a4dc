"""What every dataset builder returns and how each splits a fixed set: a raw (train, test, source
range, mixture, labels) tuple, the train / test sizes, and the seeded permutation that cuts them."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .mixture import GaussianMixture

__all__ = ["Raw", "sizes", "split"]


class Raw(NamedTuple):
    train: np.ndarray | torch.Tensor
    test: np.ndarray | torch.Tensor
    src: tuple[float, float] | None  # None: a file's values, taken as they are (checked)
    mixture: GaussianMixture | None = None
    labels: tuple | None = None  # (train labels, test labels, class names)


def sizes(n_train, n_test, default_train, default_test, total=None, min_train=1):
    n_test = default_test if n_test is None else int(n_test)
    n_train = (default_train if total is None else total - n_test) if n_train is None else int(n_train)
    if n_train < min_train or n_test < 0:
        raise ValueError(f"need n_train >= {min_train} and n_test >= 0, got n_train={n_train}, n_test={n_test}")
    if total is not None and n_train + n_test > total:
        raise ValueError(f"n_train + n_test = {n_train + n_test} exceeds the {total} available samples")
    return n_train, n_test


def split(x, seed, n_train, n_test):
    """A seeded permutation of a fixed set, cut into disjoint (train, test) parts."""
    idx = np.random.default_rng(seed).permutation(len(x))
    return x[idx[:n_train]], x[idx[n_train:n_train + n_test]]
