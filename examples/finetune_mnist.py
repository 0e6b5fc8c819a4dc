"""A worked fine-tuning study: the real third-party MNIST DDPM (../shared/checkpoints/mnist-ddpm-cnn/,
eps target, trained with the usual constant weighting) fine-tuned on MNIST with constant and with
debias weighting for the same number of steps, probed before and after on common random numbers
(what is measured and written: ``finetune_study.py``). Samples: DDIM, x0_hat clipped (the paper's
protocol), from the same x_T for the three models.

Run from the repository root (about 3 minutes on one CPU thread with the defaults):

    python examples/finetune_mnist.py --out runs/mnist-finetune
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from finetune_study import Original, add_arguments, run  # noqa: E402

CHECKPOINT = HERE.parent / ".." / "shared" / "checkpoints" / "mnist-ddpm-cnn" / "ddpm_mnist_starter.pth"
# how the checkpoint is read (examples/mnist_ddpm_cnn.py says why)
LOADER = {"model_spec": f"{HERE / 'mnist_ddpm_cnn.py'}:factory", "state_dict_prefix": "gt.",
          "abar_key": "alpha_t", "time_input": "scaled", "time_scale": 0.001,
          "data_range": [-0.5, 0.5], "trained_timesteps": [1, 999]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    p.add_argument("--out", type=Path, default=Path("runs/mnist-finetune"))
    args = add_arguments(p).parse_args(argv)
    if not args.checkpoint.is_file():
        raise SystemExit(f"error: --checkpoint: {args.checkpoint} not found (the MNIST DDPM of "
                         "../shared/checkpoints/mnist-ddpm-cnn/)")
    original = Original(args.checkpoint, LOADER, {"name": "mnist", "n_train": 4000, "n_test": 1000},
                        target="eps", sampling={"sampler": "ddim", "clip": True})
    return run(original, args)


if __name__ == "__main__":
    main()
