"""biaskit sample: draw samples from a model with a native or diffusers sampler.

Writes DIR/samples.npz (``x0`` for one step count, ``x0_<n>`` for each of several, plus
``timesteps_<n>``), DIR/samples.png/.pdf (a grid of the first samples per step count: image
mosaics, or scatter plots for 2-D data) and DIR/sample_meta.json.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from .. import sampling as S
from ..denoiser import resolve_device
from .common import add_model_arguments, check_out, load_model, parse_list


def add_arguments(p):
    p.add_argument("model", help="oracle:NAME (e.g. oracle:gmm2d), a biaskit run directory, or a "
                   "third-party checkpoint")
    p.add_argument("--sampler", default="ddim",
                   help=f"one of {', '.join(S.sampler_names())}, or a diffusers *Scheduler class "
                   "name (default ddim)")
    p.add_argument("--steps", default="50",
                   help="number of steps, or a comma list for a grid across step counts, e.g. "
                   "2,3,4,5,10,50,100,500,1000 (default 50)")
    p.add_argument("--n", type=int, default=64, help="samples per step count (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of x_T and every step's noise (default 0)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default 0)")
    p.add_argument("--variance", default="fixed_small", choices=S.VARIANCES,
                   help="DDPM reverse variance (default fixed_small)")
    p.add_argument("--spacing", default="even", choices=S.SPACINGS,
                   help="which steps to keep (default even, as ADM)")
    p.add_argument("--clip", action="store_true", help="clamp x0_hat to the data range at each step")
    p.add_argument("--shape", default=None,
                   help="per-sample shape, e.g. 3,32,32 or 2 (default: from the model)")
    p.add_argument("--trajectory", action="store_true",
                   help="also save every step's x_t and x0_hat (one step count only)")
    p.add_argument("--grid", type=int, default=16, help="samples shown per grid cell (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(p)


def _shape(model, text) -> tuple[int, ...]:
    if text:
        shape = tuple(parse_list("--shape", text))
        model.check_shape(shape)
        return shape
    if model.shape:  # biaskit runs record it, oracles know their data's
        return model.shape
    raise ValueError("cannot tell the sample shape of this model; pass --shape, e.g. --shape 3,32,32")


class _FirstNonFinite:
    """Sampling callback remembering (call i, t) of the first step with a non-finite state."""

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
        fig = plots.plot_image_table(shown, model.data_range, columns=math.ceil(math.sqrt(n_show)))
    elif first.ndim == 2 and first.shape[1] == 2:
        fig = plots.plot_points_table({model.name: {k: v.cpu() for k, v in x0s.items()}},
                                      lim=model.data_range)
    else:
        return []
    written = plots.save(fig, out / "samples")
    plt.close(fig)
    return written


def run(args) -> int:
    device = resolve_device(args.device)
    steps = parse_list("--steps", args.steps)
    if args.trajectory and len(steps) > 1:
        raise ValueError("--trajectory saves one chain: give a single --steps value")
    if args.n < 1:
        raise ValueError(f"--n must be positive, got {args.n}")
    if args.eta < 0:
        raise ValueError(f"--eta must be >= 0, got {args.eta}")
    check_out(args.out)
    model = load_model(args, device)
    shape = (args.n, *_shape(model, args.shape))
    for n in steps:
        S.check_steps(args.sampler, model, n)
    kwargs = dict(sampler=args.sampler, eta=args.eta, variance=args.variance, clip=args.clip,
                  seed=args.seed, spacing=args.spacing, device=device)
    arrays, x0s = {}, {}
    for n in steps:
        watch = _FirstNonFinite()
        r = S.sample(model, shape, steps=n, return_trajectory=args.trajectory,
                     progress=not args.no_progress, callback=watch, **kwargs)
        if watch.first is not None:
            i, t = watch.first
            raise ValueError(f"the {n}-step {args.sampler} chain went non-finite (NaN/inf) at model "
                             f"call {i} (t = {t}); nothing was written")
        suffix = "" if len(steps) == 1 else f"_{n}"
        arrays[f"x0{suffix}"] = r.x0.float().cpu().numpy()
        arrays[f"timesteps{suffix}"] = np.asarray(r.timesteps)
        if r.trajectory is not None:
            arrays.update(t=r.trajectory.t.numpy(), x_t=r.trajectory.x_t.float().cpu().numpy(),
                          x0_hat=r.trajectory.x0_hat.float().cpu().numpy())
        x0s[f"{n} steps"] = r.x0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "samples.npz", **arrays)
    meta = {"model": args.model, "denoiser": model.describe(), "steps": steps, "n": args.n,
            "shape": list(shape[1:]), **kwargs,
            "data_range": list(model.data_range)}
    (out / "sample_meta.json").write_text(json.dumps(meta, indent=2, default=str))
    written = [out / "samples.npz", out / "sample_meta.json"] + _figure(x0s, model, out, args.grid)
    for n in steps:
        x = x0s[f"{n} steps"].float()
        dims = [0] + list(range(2, x.ndim))
        means = " ".join(f"{m:.3f}" for m in x.mean(dims).tolist())
        print(f"{n:>5} steps: channel means {means}  std {x.std().item():.3f}")
    for p in written:
        print(f"wrote {p}", file=sys.stderr)
    return 0
