"""Seeds derived from tuples of integers, so that a random draw is a function of what it is for
(seed, step, t, chunk, ...) and not of how many draws came before it."""

from __future__ import annotations

import numpy as np


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed for torch.Generator.manual_seed, from integer keys (SeedSequence)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> 1)
