"""The cost of biaskit's one model call above the bare network, measured as ratios in one run.

For an MLP over 2-D points and a small diffusers ``UNet2DModel`` (random weights, built here) on
3 x 32 x 32 images, every method below makes the same number F of forward passes of the same
batch B, so each wall time divided by that of F bare ``net(x, time_in)`` calls is the price of
the call path around the network:

  bare       F bare forwards, the time input prepared beforehand (the reference, ratio 1)
  denoiser   F ``Denoiser.forward(x_t, t)`` calls (time features, coefficients, x0_hat / eps_hat)
  sample     ``biaskit.sampling.sample`` with ddim over F kept steps (one model call per step)
  evaluate   the probe's model loop (:func:`biaskit.probe.evaluate.evaluate`): draws, x_t, the
             forwards and every per-sample statistic, over K timesteps x n samples, n = B, F = K
  probe      :func:`biaskit.probe.probe` (evaluate, and the summaries and intervals per t; the
             per-sample statistics and the summaries on a worker thread while the forwards run)
  probe_serial  the same with ``overlap=False``: the statistics after each forward, in this thread
  evaluate_overlap  the probe loop with its per-batch statistics on the probe's worker thread
  probe_draws  the probe loop without its statistics (a worker that drops them): the probe's draws
             (on their own thread), x_t and model calls: the call path of the probe
  naive      a hand-written loop over t: noise, x_t, the denoiser and the errors x0 / eps MSE

Timings: one torch (and BLAS) thread. Each call of a method is paired with a call of the bare
forwards of the same count right before or after it (alternating), and a method's ratio is the
median of its per-pair ratios, with a distribution-free 95% interval (order statistics): this
machine's speed drifts by up to 2x over minutes, which the ratio of two adjacent calls cancels
and a ratio of two medians does not. Three clocks: wall time; process CPU time (every thread: the
probe's worker included); and the calling thread's CPU time (``main``: the work the caller waits
for when the worker's runs on a free core or beside a GPU; ``evaluate_overlap``'s main thread is
the probe's draws, x_t and model calls alone). Each method is also run around a network that costs
nothing (``Null``: returns its input): its CPU time per forward is the call path's own cost, and
``own`` = 1 + own cost / bare CPU time per forward (``own main``: the calling thread's) is the ratio
the 3% goal is read from, steadier than any wall time here. The table is printed and written to
``benchmarks/results/bench_call[-LABEL].json``.

``--baseline DIR`` also times the package in DIR/biaskit (e.g. ``git archive BASE biaskit | tar -x
-C DIR``), imported as ``biaskit_base``, interleaved with this one on the same nets and inputs:
before and after in one run.

Usage: python benchmarks/bench_call.py [--repeats 9] [--label after] [--only mlp|unet] [--baseline DIR]
"""

from __future__ import annotations

import os

# one thread for numpy's BLAS too (torch's is set in main): a multi-threaded BLAS call leaves its
# threads spinning for a while afterwards, which takes the core from whichever method runs next
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses
import importlib
import importlib.util
import json
import platform
import statistics
import time
import warnings
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from biaskit.denoiser import Denoiser
from biaskit.probe import probe
from biaskit.probe.draws import timestep_grid
from biaskit.probe.evaluate import evaluate
from biaskit.probe.statistics import Setup
from biaskit.sampling import sample

RESULTS = Path(__file__).resolve().parent / "results"


class UNetNet(nn.Module):
    """net(x, t) of a tiny diffusers UNet2DModel (eps prediction): its ``.sample`` tensor."""

    def __init__(self, size: int = 32, channels: int = 3):
        super().__init__()
        from diffusers import UNet2DModel
        self.unet = UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels,
                                layers_per_block=1, block_out_channels=(32, 64), norm_num_groups=8,
                                down_block_types=("DownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "UpBlock2D"))

    def forward(self, x, t):
        return self.unet(x, t).sample


class Null(nn.Module):
    """A network that costs nothing: what is left of a method's time is its own."""

    def forward(self, x, t):
        return x


def library(root: str | None = None) -> SimpleNamespace:
    """The functions timed, from this biaskit or (``root``) from ROOT/biaskit as ``biaskit_base``."""
    if root is None:
        from biaskit.probe.pipeline import Summaries
        return SimpleNamespace(probe=probe, timestep_grid=timestep_grid, evaluate=evaluate, Setup=Setup,
                               sample=sample, Denoiser=Denoiser, probe_options=_fields("biaskit"),
                               Summaries=Summaries)
    spec = importlib.util.spec_from_file_location("biaskit_base", Path(root) / "biaskit" / "__init__.py")
    sys.modules["biaskit_base"] = module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # its pandas accessor replaces this one's: the same name
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    get = lambda name: importlib.import_module(f"biaskit_base.{name}")  # noqa: E731
    return SimpleNamespace(probe=get("probe").probe, timestep_grid=get("probe.draws").timestep_grid,
                           evaluate=get("probe.evaluate").evaluate, Setup=get("probe.statistics").Setup,
                           sample=get("sampling").sample, Denoiser=get("denoiser").Denoiser,
                           probe_options=_fields("biaskit_base"))


def _fields(package: str) -> tuple:
    """The field names of ``package``'s ProbeOptions (the settings its probe() takes)."""
    return tuple(f.name for f in dataclasses.fields(importlib.import_module(f"{package}.probe.api").ProbeOptions))


def methods(model, x0: torch.Tensor, K: int, steps: int, lib: SimpleNamespace | None = None) -> dict:
    """The timed callables, each making the same number of forwards of batch B = len(x0)
    (``steps`` for bare / denoiser / sample; K for the probe's and the naive loop's); ``lib``:
    the functions to time (:func:`library`, default this biaskit's)."""
    lib = lib or library()
    timestep_grid, Setup, sample, evaluate, probe = lib.timestep_grid, lib.Setup, lib.sample, lib.evaluate, lib.probe
    s, B = model.schedule, x0.shape[0]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(x0.shape, generator=g)
    kept = list(range(s.T - 1, -1, -(s.T // steps)))[:steps]
    ts = [torch.full((B,), k, dtype=torch.long) for k in kept]
    time_in = [model.time_features(t) for t in ts]
    ts_probe = timestep_grid(s.T, num_timesteps=K)
    setup = Setup(C=x0.shape[1], bands=4 if x0.ndim == 4 else 0, oracle=False)
    dims = tuple(range(1, x0.ndim))
    shape = (-1,) + (1,) * (x0.ndim - 1)

    @torch.inference_mode()
    def bare(n=steps):
        for i in range(n):
            model.net(x, time_in[i % steps])

    @torch.inference_mode()
    def denoiser():
        for t in ts:
            model(x, t)

    def chain():
        sample(model, x, sampler="ddim", steps=steps, progress=False)

    def ev():
        evaluate([model], None, x0, ts_probe, seed=0, batch_size=B, device=torch.device("cpu"), amp=False,
                 channels_last=False, setup=setup, progress=False)

    def pr(**kw):
        probe(model, x0, timesteps=s.timesteps[ts_probe].tolist(), n=B, batch_size=B, progress=False,
              oracle=False, device="cpu", **kw)

    overlap = "overlap" in lib.probe_options

    def ev_overlap():  # the loop's per-batch statistics on the probe's worker thread
        worker = lib.Summaries([], len(ts_probe), B, setup, None, 0)
        try:
            evaluate([model], None, x0, ts_probe, seed=0, batch_size=B, device=torch.device("cpu"),
                     amp=False, channels_last=False, setup=setup, progress=False, worker=worker)
        finally:
            worker.close()

    class Drop:  # a worker that takes the per-sample statistics and drops them
        def submit(self, fn, *args):
            pass

        def ready(self, Z, done):
            pass

        def drain(self):
            pass

        def complete(self):
            return False

    def draws():  # the probe loop without its statistics: draws (on their thread), x_t, model calls
        evaluate([model], None, x0, ts_probe, seed=0, batch_size=B, device=torch.device("cpu"), amp=False,
                 channels_last=False, setup=setup, progress=False, worker=Drop())

    @torch.inference_mode()
    def naive():
        out = []
        for k in ts_probe:
            t = torch.full((B,), int(k), dtype=torch.long)
            eps = torch.randn(x0.shape, generator=g)
            alpha, sigma = s.coefficients(t)
            x_t = alpha.view(shape) * x0 + sigma.view(shape) * eps
            pred = model(x_t, t)
            out.append(torch.stack([((pred.x0_hat - x0) ** 2).mean(dims),
                                    ((pred.eps_hat - eps) ** 2).mean(dims)]))
        return torch.stack(out).numpy()

    runs = {"bare": (bare, steps), "denoiser": (denoiser, steps), "sample": (chain, steps),
            "bare_K": (lambda: bare(K), K), "evaluate": (ev, K), "probe": (pr, K), "naive": (naive, K)}
    if overlap:  # the statistics after the forwards, in the calling thread
        runs["probe_serial"] = (lambda: pr(overlap=False), K)
    if getattr(lib, "Summaries", None) is not None:  # this tree's evaluate, which takes a worker
        runs["evaluate_overlap"] = (ev_overlap, K)
        runs["probe_draws"] = (draws, K)
    return runs


def _clock(fn) -> tuple[float, float, float]:
    """Wall, process-CPU (every thread) and calling-thread CPU seconds of one call of ``fn``."""
    wall, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - main


def _reference(name: str) -> str:
    """The bare forwards a method is compared with: as many as it makes."""
    return "bare" if name.split(":")[-1] in ("bare", "denoiser", "sample") else "bare_K"


def _times(runs: dict, repeats: int) -> dict:
    """Each method's ``repeats`` calls, each paired with a call of its bare forwards right before
    or after it (alternating), so that the machine's drift (its speed moves by up to 2x over
    minutes) cancels in the ratio of a pair. Returns {method: {"wall", "cpu", "main": lists of
    seconds; "wall_ratio", "cpu_ratio", "main_ratio": lists of per-pair ratios}}; the bare
    methods' ratios are 1. One warm-up call each first (imports, allocator, first-call paths)."""
    for fn, _ in runs.values():
        fn()
    out = {k: {q: [] for q in ("wall", "cpu", "main", "wall_ratio", "cpu_ratio", "main_ratio")} for k in runs}
    for r in range(repeats):
        for k, (fn, _) in runs.items():
            ref = runs[_reference(k)][0]
            first, second = (ref, fn) if r % 2 == 0 else (fn, ref)
            a, b = _clock(first), _clock(second)
            mine, bare = (b, a) if r % 2 == 0 else (a, b)
            for q, i in (("wall", 0), ("cpu", 1), ("main", 2)):
                out[k][q].append(mine[i])
                out[k][q + "_ratio"].append(mine[i] / bare[i])
    return out


def median_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Median of ``values`` and its distribution-free interval: the order statistics
    (x_(j), x_(m - j + 1)) with the largest j such that P(Bin(m, 1/2) < j) <= (1 - level) / 2
    (coverage >= level for any continuous law; the whole range when m is too small for level)."""
    from scipy.stats import binom
    x, m = np.sort(values), len(values)
    j = max(1, int(binom.ppf((1 - level) / 2, m, 0.5)))  # the least k with P(Bin <= k) >= (1 - level) / 2
    return float(np.median(x)), float(x[j - 1]), float(x[m - j])


def measure(label: str, net: nn.Module, x0: torch.Tensor, K: int, steps: int, repeats: int,
            base: SimpleNamespace | None = None) -> dict:
    """Per method: median wall / CPU seconds, the median of its per-pair ratios to the bare
    forwards of the same count with a 95% interval (:func:`median_interval`), in wall time, in
    process CPU time (every thread) and in the calling thread's CPU time (``main``: what the
    probe's worker thread does not count); its own CPU cost per forward (around :class:`Null`,
    every thread and calling thread only) and the ratios that cost gives. With ``base``
    (:func:`library`) the baseline's methods too, named ``base:METHOD``, interleaved."""
    schedule = "linear"  # by name: each library builds its own Schedule (T = 1000)
    libs = {"": library(), **({"base:": base} if base is not None else {})}
    runs, null = {}, {}
    for prefix, lib in libs.items():
        for name, run in methods(lib.Denoiser(net.eval(), schedule, "eps", name=label), x0, K, steps, lib).items():
            runs[name if name.startswith("bare") else prefix + name] = run
        for name, run in methods(lib.Denoiser(Null(), schedule, "eps", name="null"), x0, K, steps, lib).items():
            null[name if name.startswith("bare") else prefix + name] = run
    t = _times(runs, repeats)
    own = _times(null, repeats)
    med = statistics.median
    rows = {}
    for k, (_, forwards) in runs.items():
        ref = _reference(k)
        row = {"forwards": forwards, "reference": ref, "wall_s": med(t[k]["wall"]), "cpu_s": med(t[k]["cpu"]),
               "main_cpu_s": med(t[k]["main"])}
        for q in ("wall", "cpu", "main"):
            row[f"{q}_ratio"], row[f"{q}_ratio_lo"], row[f"{q}_ratio_hi"] = median_interval(t[k][q + "_ratio"])
        bare_cpu = med(t[ref]["cpu"]) / forwards
        for q, own_key in (("own", "cpu"), ("own_main", "main")):
            ms = (med(own[k][own_key]) - med(own[ref][own_key])) / forwards * 1e3
            row[f"{q}_ms_per_forward"], row[f"{q}_ratio"] = ms, 1 + ms * 1e-3 / bare_cpu
        rows[k] = row
    return {"net": label, "batch": list(x0.shape), "K": K, "steps": steps, "repeats": repeats, "rows": rows}


def table(result: dict) -> str:
    lines = [f"\n## {result['net']}: batch {tuple(result['batch'])}, {result['steps']} steps, K = "
             f"{result['K']} t; {result['repeats']} pairs with the bare forwards, medians [95% interval]",
             f"{'method':<17}{'fwd':>4}{'wall s':>8}{'wall ratio':>21}{'cpu ratio':>21}{'main-thread cpu':>21}"
             f"{'own ms/fwd':>11}{'own':>7}{'own main':>9}"]
    r3 = lambda r, q: f"{r[q + '_ratio']:.3f} [{r[q + '_ratio_lo']:.3f}, {r[q + '_ratio_hi']:.3f}]"  # noqa: E731
    for k, r in result["rows"].items():
        lines.append(f"{k:<17}{r['forwards']:>4}{r['wall_s']:>8.3f}{r3(r, 'wall'):>21}{r3(r, 'cpu'):>21}"
                     f"{r3(r, 'main'):>21}{r['own_ms_per_forward']:>11.3f}{r['own_ratio']:>7.3f}"
                     f"{r['own_main_ratio']:>9.3f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--label", default="", help="suffix of the JSON file (e.g. before, after)")
    p.add_argument("--only", choices=("mlp", "unet"), default=None)
    p.add_argument("--mlp-batch", type=int, default=4096)
    p.add_argument("--unet-batch", type=int, default=8)
    p.add_argument("--baseline", default=None, help="a directory holding another biaskit/ to time alongside")
    args = p.parse_args(argv)
    base = library(args.baseline) if args.baseline else None
    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    results = []
    if args.only in (None, "mlp"):
        from biaskit.models.mlp import MLP
        x0 = torch.rand(args.mlp_batch, 2, generator=g) * 2 - 1
        results.append(measure("biaskit MLP (128 hidden, 3 blocks), 2-D points", MLP(dim=2, hidden=128, blocks=3),
                               x0, K=50, steps=50, repeats=args.repeats, base=base))
        print(table(results[-1]), flush=True)
    if args.only in (None, "unet"):
        x0 = torch.rand(args.unet_batch, 3, 32, 32, generator=g) * 2 - 1
        results.append(measure("diffusers UNet2DModel (32/64 ch), 3x32x32", UNetNet(), x0, K=10, steps=10,
                               repeats=args.repeats, base=base))
        print(table(results[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench_call{'-' + args.label if args.label else ''}.json"
    out.write_text(json.dumps({"threads": 1, "torch": torch.__version__, "python": platform.python_version(),
                               "numpy": np.__version__, "results": results}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
