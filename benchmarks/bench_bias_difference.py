"""Coverage of the paired bias-norm difference interval over the regimes of the nuisance, measured.

:func:`biaskit.probe.bias_difference` gives 95% intervals for ||b_B|| - ||b_A|| (x0_bias_l2) and
||b_B||^2 - ||b_A||^2 (x0_bias_sq) from per-sample channel means of two models on the same draws.
Its coverage depends on where the two bias vectors lie (both 0, one 0, equal norms, different
norms) and on how the two models' errors are correlated, so this survey draws Gaussian pairs

    z_A = b_A + e_A,  z_B = b_B + e_B,  e ~ N(0, L L'),  corr(e_A, e_B) = rho per channel,

(rho = 1: the same errors, as for two models that differ by a constant) with L = I for C = 1 and
strongly correlated channels (as RGB errors are) for C = 3, n samples, K seeded repeats, and prints
per case the coverage of both rows, its standard error sqrt(.95 .05 / K) and the median width.

With --known-nuisance the same test runs its nuisance curve through the true mean pair (an oracle
no user has): at delta = truth the nuisance is then the truth, so that interval covers at its
level, and its width is what knowing the nuisance would buy. Comparing the two shows what the
over-coverage where the data cannot place the nuisance costs in width.

Usage: python benchmarks/bench_bias_difference.py [--repeats 2000] [--n 64] [--seed 4] [--C 1 3]
       [--rho 0.5 1] [--cases both0 A0Blarge ...] [--known-nuisance] [--csv out.csv]
About 30-40 s per case at 2000 repeats on one core.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time

import numpy as np

from biaskit.probe import bias_difference, paired_bias

CORRELATED = np.array([[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [0.8, 0.2, 0.1]])
# (b_A, b_B) per channel count; the noise sd of a channel mean is about 1 / sqrt(n) = 0.125 at n = 64
CASES = {
    1: {"both0": ([0.0], [0.0]), "A0Bsmall": ([0.0], [0.2]), "A0Blarge": ([0.0], [0.75]),
        "equal_small": ([0.1], [-0.1]), "equal_large": ([0.25], [-0.25]), "diff_large": ([0.4], [0.75])},
    3: {"both0": ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]), "A0Bsmall": ([0.0, 0.0, 0.0], [0.1, -0.1, 0.05]),
        "A0Blarge": ([0.0, 0.0, 0.0], [0.75, -0.5, 0.375]),
        "equal_small": ([-0.1, 0.1, -0.05], [0.1, -0.1, 0.05]),
        "equal_large": ([-0.25, 0.25, -0.125], [0.25, -0.25, 0.125]),
        "diff_large": ([0.375, 0.0, 0.0], [0.0, 0.625, 0.25])},
}


def gaussian_pairs(rng, K: int, n: int, bA, bB, rho: float, L: np.ndarray):
    """(zA, zB), (K, n, C) each, as in the module docstring."""
    eA = rng.standard_normal((K, n, len(bA))) @ L.T
    eB = eA if rho == 1 else rho * eA + math.sqrt(1 - rho**2) * (rng.standard_normal(eA.shape) @ L.T)
    return np.asarray(bA) + eA, np.asarray(bB) + eB


def known_nuisance(bA, bB):
    """A context in which bias_difference's nuisance curves all start at the true pair (bA, bB)."""
    @contextlib.contextmanager
    def patched():
        curve, truth = paired_bias._nuisance_curve, np.concatenate([bA, bB])
        paired_bias._nuisance_curve = lambda mu0, S, n: curve(np.broadcast_to(truth, mu0.shape).copy(), S, n)
        try:
            yield
        finally:
            paired_bias._nuisance_curve = curve
    return patched()


def survey(repeats: int, n: int, seed: int, Cs, rhos, cases=None, known: bool = False) -> list[dict]:
    rows = []
    for C in Cs:
        L = CORRELATED if C == 3 else np.eye(1)
        for rho in rhos:
            for case, (bA, bB) in CASES[C].items():
                if cases and case not in cases:
                    continue
                zA, zB = gaussian_pairs(np.random.default_rng(seed), repeats, n, bA, bB, rho, L)
                start = time.perf_counter()
                with known_nuisance(bA, bB) if known else contextlib.nullcontext():
                    out = bias_difference(zA, zB)
                seconds = time.perf_counter() - start
                rA, rB = float(np.linalg.norm(bA)), float(np.linalg.norm(bB))
                row = {"C": C, "rho": rho, "case": case, "known_nuisance": known, "seconds": round(seconds, 1)}
                for stat, truth in (("x0_bias_l2", rB - rA), ("x0_bias_sq", rB**2 - rA**2)):
                    _, lo, hi = out[stat]
                    row[f"{stat}_cover"] = float(((lo <= truth) & (truth <= hi)).mean())
                    row[f"{stat}_width"] = float(np.median(hi - lo))
                rows.append(row)
                print(f"C={C} rho={rho:<4} {case:12s} norm {row['x0_bias_l2_cover']:.3f} (width "
                      f"{row['x0_bias_l2_width']:.3f})  square {row['x0_bias_sq_cover']:.3f} (width "
                      f"{row['x0_bias_sq_width']:.4f})  {seconds:.1f} s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2000)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--C", type=int, nargs="+", default=[1, 3], choices=[1, 3])
    ap.add_argument("--rho", type=float, nargs="+", default=[0.5, 1.0])
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES[1]), default=None)
    ap.add_argument("--known-nuisance", action="store_true",
                    help="run the nuisance curve through the true mean pair (an oracle, for comparison)")
    ap.add_argument("--csv", default=None, help="also write the table here")
    args = ap.parse_args()
    if args.repeats < 10 or args.n < 8:
        ap.error("--repeats must be >= 10 and --n >= 8")
    if any(not 0 <= r <= 1 for r in args.rho):
        ap.error("--rho must lie in [0, 1]")
    print(f"95% intervals, {args.repeats} repeats (coverage standard error "
          f"{math.sqrt(0.95 * 0.05 / args.repeats):.4f}), n = {args.n}")
    rows = survey(args.repeats, args.n, args.seed, args.C, args.rho, args.cases, args.known_nuisance)
    if args.csv:
        import pandas as pd
        pd.DataFrame(rows).to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
