"""Cost of the settings check as a fraction of a default probe, on the real MNIST DDPM.

The check (:func:`biaskit.settings_check.check_settings`, default n = 32 samples at 4 timesteps,
one row per candidate, plus 4 n passes at the ends of the schedule when --trained-timesteps is
not given) runs before every probe of a third-party model with --data. This measures, on
``../shared/checkpoints/mnist-ddpm-cnn/``, with the README's flags:

- the wall time of the check, with and without --trained-timesteps (ends checked or not), and
  its forward passes (recorded in metadata.json as settings_check.forward_passes);
- the wall time of a default probe (512 samples x min(T, 50) timesteps, --batch-size 256);
- their ratio, the check's cost as a fraction of the probe's.

Usage: python benchmarks/bench_settings_check.py [--repeats 2] [--threads 1] [--samples 512]
Timings take the minimum over repeats (other processes share the CPU).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch

import biaskit
from biaskit.data import load_dataset
from biaskit.probe import probe
from biaskit.settings_check import check_settings

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / ".." / "shared" / "checkpoints" / "mnist-ddpm-cnn" / "ddpm_mnist_starter.pth"
SPEC = f"{ROOT / 'examples' / 'mnist_ddpm_cnn.py'}:factory"
FLAGS = dict(state_dict_prefix="gt.", abar_key="alpha_t", time_input="scaled", time_scale=1e-3,
             data_range=(-0.5, 0.5))


def _timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=512, help="probe samples per t (default 512)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained = biaskit.load(MNIST, model_spec=SPEC, trained_timesteps="1:999", **FLAGS)
        untrained = biaskit.load(MNIST, model_spec=SPEC, **FLAGS)
    data = load_dataset("mnist", data_range=(-0.5, 0.5))

    def check(d):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_settings(d, data.test, mode="warn")

    t_check = _timed(lambda: check(trained), args.repeats)
    passes = trained.info["settings_check"]["forward_passes"]
    t_ends = _timed(lambda: check(untrained), args.repeats)
    passes_ends = untrained.info["settings_check"]["forward_passes"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the held-out set has 500 < 512: all 500 are used
        t_probe = _timed(lambda: probe(trained, data, n=args.samples, progress=False,
                                       batch_size=256), max(1, args.repeats - 1))
    K, n = min(trained.schedule.T, 50), min(args.samples, len(data.test))
    print(f"MNIST DDPM (CPU, {args.threads} thread(s)); probe: {n} samples x {K} t")
    print(f"settings check, --trained-timesteps given: {t_check:.2f} s, {passes} forward passes "
          f"({passes / (n * K):.1%} of the probe's {n * K})")
    print(f"settings check, ends checked too:          {t_ends:.2f} s, {passes_ends} forward passes")
    print(f"default probe:                             {t_probe:.2f} s")
    print(f"check / probe wall time: {t_check / t_probe:.1%} (with the ends: {t_ends / t_probe:.1%})")


if __name__ == "__main__":
    main()
