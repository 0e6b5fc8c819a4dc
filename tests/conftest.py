"""Shared test settings.

Tests use tiny networks, for which torch's intra-op threads cost more than they save (on a loaded
2-core machine a tiny conv ran 36x slower with 2 threads than with 1), and subprocess tests
(torchrun/gloo) run two workers side by side.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
