"""biaskit sample: draw samples from a model with a native or diffusers sampler.

Writes DIR/samples.npz (``x0`` for one step count, ``x0_<n>`` for each of several, plus
``timesteps_<n>``, the model's own timesteps visited, noisiest first), DIR/samples.png/.pdf (a grid
of the first samples per step count, up to 64: image mosaics, or scatter plots for 2-D data) and
DIR/sample_meta.json. With ``--data`` also DIR/sample_stats.csv (:func:`against_data` per step
count), printed one line per step count.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from .. import sampling as S
from ..atomic import atomic_paths
from ..denoiser import resolve_device
from ..exposure import EpsScale, EpsScaled
from ..probe import CLIP_TOL, outside_range
from .latent import add_condition_arguments, check_latent_flags, run_sample
from .common import (add_data_arguments, add_model_arguments, check_out, load_data, load_model,
                     parse_list)


def add_arguments(p):
    p.add_argument("model", help="oracle:NAME (e.g. oracle:gmm2d), a biaskit run directory, or a "
                   "third-party checkpoint")
    p.add_argument("--sampler", default=None,
                   help=f"one of {', '.join(S.sampler_names())}, or a diffusers *Scheduler class "
                   "name (default ddim; for a latent pipeline: pipeline, its own scheduler)")
    p.add_argument("--steps", default="50",
                   help="number of steps, or a comma list for a grid across step counts, e.g. "
                   "2,3,4,5,10,50,100,500,1000 (default 50)")
    p.add_argument("--n", type=int, default=64, help="samples per step count (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of x_T and every step's noise (default 0)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default 0)")
    p.add_argument("--variance", default="fixed_small", choices=S.VARIANCES,
                   help="DDPM reverse variance (default fixed_small)")
    p.add_argument("--spacing", default="even", choices=S.SPACINGS + S.PROCESS_SPACINGS,
                   help="which steps to keep (default even, as ADM); flow_match: flow_euler on a "
                   "flow model walks FlowMatchEulerDiscreteScheduler's sigmas")
    p.add_argument("--clip", action="store_true", help="clamp x0_hat to the data range at each step")
    p.add_argument("--eps-scale", default=None, metavar="B[,K]",
                   help="epsilon scaling (Ning et al. 2024): every sampler uses eps_hat / lambda_t, "
                   "lambda_t = K t + B with t the model's timestep, e.g. 1.005 (default: none)")
    p.add_argument("--shape", default=None,
                   help="per-sample shape, e.g. 3,32,32 or 2 (default: from the model)")
    p.add_argument("--trajectory", action="store_true",
                   help="also save every step's x_t and x0_hat (one step count only)")
    p.add_argument("--grid", type=int, default=64,
                   help="samples shown per grid cell (default 64, at most --n)")
    add_data_arguments(p, required=False, what="the reference")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(p)
    add_condition_arguments(p, "sample")


def _shape(model, text) -> tuple[int, ...]:
    if text:
        shape = tuple(parse_list("--shape", text))
        model.check_shape(shape)
        return shape
    shape = model.shape
    if shape is None:
        raise ValueError("cannot tell the sample shape of this model; pass --shape, e.g. --shape 3,32,32")
    return shape


class _FirstNonFinite:
    """Sampling callback remembering (call i, the model's t) of the first non-finite step."""

    def __init__(self):
        self.first = None

    def __call__(self, step):
        if self.first is None and not all(bool(x.isfinite().all()) for x in (step.x0_hat, step.x_next)):
            self.first = (step.i, step.t)


def _figure(x0s: dict, model, out: Path, n_show: int) -> list[Path]:
    """``x0s``: {"<n> steps": samples}; images show the first ``n_show``, 2-D points all."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .. import plots
    first = next(iter(x0s.values()))
    if first.ndim == 4:
        shown = {model.name: {k: v[:n_show].cpu() for k, v in x0s.items()}}
        columns = math.ceil(math.sqrt(min(n_show, first.shape[0])))
        fig = plots.plot_image_table(shown, model.data_range, columns=columns,
                                     cell_inches=plots.mosaic_inches(columns, first.shape[-2]))
    elif first.ndim == 2 and first.shape[1] == 2:
        fig = plots.plot_points_table({model.name: {k: v.cpu() for k, v in x0s.items()}},
                                      lim=model.data_range)
    else:
        return []
    written = plots.save(fig, out / "samples")
    plt.close(fig)
    return written


def against_data(x, data, data_range, seed: int = 0):
    """Statistics of samples x (N, C, ...) beside held-out data (M, C, ...), one row per statistic;
    columns statistic, samples, lo, hi (95%), data:

    - ``mean_c{k}``: mean over samples and pixels of channel k (coordinate k of vectors), with the
      t-interval over the N per-sample means;
    - ``std_c{k}``: standard deviation over all samples and pixels of channel k;
    - ``outside_frac``: share of elements beyond the data range by more than the probe's CLIP_TOL
      of its width;
    - ``swd``: sliced Wasserstein distance to the data (:func:`biaskit.metrics.evaluate`) with its
      bootstrap interval; its ``data`` entry is empty (NaN).
    """
    import pandas as pd
    import torch
    from scipy.stats import t as student_t

    from ..metrics import evaluate
    x, data = x.detach().double().cpu(), torch.as_tensor(data).double().cpu()
    per = lambda v: v.reshape(v.shape[0], v.shape[1], -1)  # noqa: E731  (N, C, pixels)
    xs, ds = per(x), per(data)
    rows = []
    for k in range(xs.shape[1]):
        m = xs[:, k].mean(1)
        half = float(student_t.ppf(0.975, len(m) - 1) * m.std() / len(m) ** 0.5) if len(m) > 1 else math.nan
        rows.append((f"mean_c{k}", float(m.mean()), float(m.mean()) - half, float(m.mean()) + half,
                     float(ds[:, k].mean())))
        rows.append((f"std_c{k}", float(xs[:, k].std()), math.nan, math.nan, float(ds[:, k].std())))
    rows.append(("outside_frac", float(outside_range(x, data_range).double().mean()), math.nan, math.nan,
                 float(outside_range(data, data_range).double().mean())))
    swd = evaluate({"samples": x.float()}, data.float(), metrics=("swd",), seed=seed).iloc[0]
    rows.append(("swd", float(swd["value"]), float(swd["lo"]), float(swd["hi"]), math.nan))
    return pd.DataFrame(rows, columns=["statistic", "samples", "lo", "hi", "data"])


def _summary(n: int, x, stats) -> str:
    """One console line for the samples of ``n`` steps (with their statistics against data)."""
    dims = [0] + list(range(2, x.ndim))
    if stats is None:
        means = " ".join(f"{m:.3f}" for m in x.float().mean(dims).tolist())
        return f"{n:>5} steps: channel means {means}  std {x.float().std().item():.3f}"
    st = stats.set_index("statistic")
    pair = lambda key: f"{st.at[key, 'samples']:.3f} (data {st.at[key, 'data']:.3f})"  # noqa: E731
    C = sum(1 for k in st.index if k.startswith("mean_c"))
    means = "  ".join(pair(f"mean_c{k}") for k in range(C))
    stds = "  ".join(pair(f"std_c{k}") for k in range(C))
    out, swd = st.loc["outside_frac"], st.loc["swd"]
    return (f"{n:>5} steps: channel means {means}; std {stds}; outside the range "
            f"{100 * out['samples']:.2f}% (data {100 * out['data']:.2f}%); SWD {swd['samples']:.4g} "
            f"[{swd['lo']:.4g}, {swd['hi']:.4g}]")


def _check_eps_scale(model, scale: EpsScale, spec) -> None:
    """ValueError unless ``model`` can be sampled with eps_hat / lambda_t
    (:class:`~biaskit.exposure.EpsScaled`, which reads the steps of the model's schedule)."""
    if spec.grid != "schedule" and getattr(model, "on_process_grid", None) is not None:
        raise ValueError(f"--eps-scale applies to samplers on the model's schedule steps (ddim, ddpm, "
                         f"the diffusers VP ones); {spec.name} walks the process's own noise levels")
    scale.check(model.schedule.timesteps)


# float32 copies of the whole batch alive at once during a chain step (x_t, the network output,
# x0_hat, eps_hat, the step's noise and the next x_t, with one spare) and after it (the result
# and its numpy copy for samples.npz)
_CHAIN_COPIES, _OUTPUT_COPIES = 7, 2


def _check_memory(args, shape, steps, device, model) -> None:
    """Refuse a --n that cannot fit: the chain's own copies of the batch plus the network's
    memory per sample in one call (measured on 4 and 8 samples)."""
    from ..resources import available_bytes, check_fits, model_bytes_per_sample
    n, D = shape[0], math.prod(shape[1:])
    copies = _CHAIN_COPIES + _OUTPUT_COPIES * len(steps) + (2 * (max(steps) + 1) if args.trajectory else 0)
    net = model_bytes_per_sample(model, shape[1:], device) if n > 8 else 0.0
    per = 4 * D * copies + net
    have = available_bytes(device)
    fits = None if have is None else int(have // per)
    check_fits(f"--n {n}", n * per, device,
               f"{n} samples x ({D} values x 4 bytes x {copies} copies + {net / 2**20:.3g} MiB in "
               "the network)", f"lower --n (about {fits} fit) and draw more with other --seed values")


def run(args) -> int:
    device = resolve_device(args.device)
    steps = parse_list("--steps", args.steps)
    if args.trajectory and len(steps) > 1:
        raise ValueError("--trajectory saves one chain: give a single --steps value")
    if args.n < 1:
        raise ValueError(f"--n must be positive, got {args.n}")
    if args.eta < 0:
        raise ValueError(f"--eta must be >= 0, got {args.eta}")
    if args.grid < 1:
        raise ValueError(f"--grid must be positive, got {args.grid}")
    check_out(args.out)
    if check_latent_flags(args):
        if args.eps_scale is not None:
            raise ValueError("--eps-scale does not apply to a latent pipeline (it samples with its own "
                             "scheduler); drop it")
        args.sampler = args.sampler or "pipeline"
        return run_sample(args, device, steps, against_data)
    args.sampler = args.sampler or "ddim"
    spec = S.lookup(args.sampler)
    scale = EpsScale.parse(args.eps_scale) if args.eps_scale is not None else None
    model = load_model(args, device)
    shape = (args.n, *_shape(model, args.shape))
    for n in steps:
        S.check_steps(args.sampler, model, n)
    if scale is not None:
        _check_eps_scale(model, scale, spec)
    _check_memory(args, shape, steps, device, model)
    ds = load_data(args.data, model, args.data_option, args.data_seed) if args.data else None
    if ds is not None and (tuple(ds.test.shape[1:]) != shape[1:] or len(ds.test) < 2):
        raise ValueError(f"--data {args.data}: {len(ds.test)} held-out samples of shape "
                         f"{tuple(ds.test.shape[1:])}; the samples have shape {shape[1:]} (need at least 2)")
    if ds is not None:
        from ..settings_check import check_settings  # what the weights cannot tell, on data
        check_settings(model, ds.test, mode=getattr(args, "settings_check", "auto"),
                       labels=ds.test_labels)
    kwargs = dict(sampler=args.sampler, eta=args.eta, variance=args.variance, clip=args.clip,
                  seed=args.seed, spacing=args.spacing, device=device)
    arrays, x0s = {}, {}
    for n in steps:
        watch = _FirstNonFinite()
        try:
            r = S.sample(model if scale is None else EpsScaled(model, scale), shape, steps=n,
                         return_trajectory=args.trajectory, progress=not args.no_progress, callback=watch,
                         **kwargs)
            why = ""
        except ValueError as e:  # samples not finite: said with the first call that went so
            if watch.first is None:
                raise
            why = f": {e}"
        if watch.first is not None:
            i, t = watch.first
            raise ValueError(f"the {n}-step {args.sampler} chain went non-finite (NaN/inf) at model "
                             f"call {i} (t = {t}); nothing was written{why}") from None
        suffix = "" if len(steps) == 1 else f"_{n}"
        arrays[f"x0{suffix}"] = r.x0.float().cpu().numpy()
        arrays[f"timesteps{suffix}"] = np.asarray(r.timesteps, dtype=np.int64)
        if r.trajectory is not None:
            arrays.update(t=r.trajectory.t.numpy(),
                          x_t=r.trajectory.x_t.float().cpu().numpy(),
                          x0_hat=r.trajectory.x0_hat.float().cpu().numpy())
        x0s[f"{n} steps"] = r.x0
    out = Path(args.out)
    stats = {}
    if ds is not None:
        stats = {n: against_data(x0s[f"{n} steps"], ds.test, model.data_range, args.seed) for n in steps}
    meta = {"model": args.model, "denoiser": model.describe(), "steps": steps, "n": args.n,
            "shape": list(shape[1:]), **kwargs, "eps_scale": None if scale is None else str(scale),
            "data_range": list(model.data_range),
            "timesteps": "the model's own timesteps (samples.npz timesteps_*, t)",
            "data": ds.spec if ds is not None else None, "clip_tol": CLIP_TOL if ds is not None else None}
    written = [out / "samples.npz"] + ([out / "sample_stats.csv"] if stats else []) + [out / "sample_meta.json"]
    with atomic_paths(*written) as tmps:  # all of them or none; earlier outputs kept until then
        with open(tmps[0], "wb") as f:
            np.savez_compressed(f, **arrays)
        if stats:
            import pandas as pd
            pd.concat([st.assign(steps=n) for n, st in stats.items()])[
                ["steps", "statistic", "samples", "lo", "hi", "data"]].to_csv(tmps[1], index=False)
        tmps[-1].write_text(json.dumps(meta, indent=2, default=str))
    written += _figure(x0s, model, out, args.grid)
    for n in steps:
        print(_summary(n, x0s[f"{n} steps"], stats.get(n)))
    for p in written:
        print(f"wrote {p}", file=sys.stderr)
    return 0
