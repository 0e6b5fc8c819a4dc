"""biaskit weights: one row per t with t, snr, logsnr and one column per weighting.

With ``--process`` (``flow``, ``ve``/``edm``, ``vp_cosine``, ``vp_linear_logsnr``) the rows are
times of that continuous process and every weighting also gets its effective x0 weight per unit
logsnr under ``--density`` (see :mod:`biaskit.densities`), the one number that compares
formulations. ``--normalize`` and ``--plot`` apply under any process: a process's constant is the
one its training run would use (:class:`~biaskit.train.process_objective.ProcessObjective`)."""

from __future__ import annotations

import sys

from .. import weighting as W
from ..processes import PROCESSES, get_process
from ..schedules import get_schedule
from .common import parse_list


def add_arguments(p):
    p.add_argument("--schedule", default="linear", help="linear, scaled_linear, cosine, sigmoid; "
                   "append _zsnr for zero terminal SNR (default: linear)")
    p.add_argument("--timesteps", type=int, default=1000, help="T (default 1000)")
    p.add_argument("--space", default="x0", choices=W.SPACES, help="loss space (default x0)")
    p.add_argument("--weightings", default=None,
                   help="comma list, e.g. constant,debias,min_snr:5,p2:k=1:gamma=0.5 (default: all)")
    p.add_argument("--snr-min", type=float, default=None,
                   help="clamp snr from below (needed for eps-space weights at zero terminal SNR)")
    p.add_argument("--normalize", default="none", choices=["none", "mean", "max"],
                   help="scale each weighting so its x0-space weight has mean (or max) 1 over t "
                   "(with --process: under --density, as its training run does); every space gets "
                   "the same constant (default none)")
    p.add_argument("--process", default=None, choices=sorted(PROCESSES),
                   help="a continuous process instead of --schedule: rows are its times, and each "
                   "weighting also gets its x0 weight per unit logsnr under --density")
    p.add_argument("--density", default=None,
                   help="with --process: training-time density, e.g. uniform, logit_normal:0:1, "
                   "lognormal_sigma:-1.2:1.2, mode:1.29, cosmap (default uniform in the process's time)")
    p.add_argument("--points", type=int, default=None, help="with --process: number of times (default 201)")
    p.add_argument("--format", default="table", choices=["csv", "table"])
    p.add_argument("--plot", default=None, help="save a figure (PNG/PDF by extension)")


def measure_line(measures: dict[str, str], space: str) -> str:
    """One line saying what the columns hold and the measure each weighting is defined in."""
    per_logsnr = [c for c, m in measures.items() if m == "per_logsnr"]
    per_sample = [c for c, m in measures.items() if m == "per_sample"]
    parts = [f"defined per sample: {', '.join(per_sample)}"] if per_sample else []
    if per_logsnr:
        parts.append(f"defined per unit logsnr, shown times |dlogsnr/dt|: {', '.join(per_logsnr)}")
    native = [c for c in measures if c in W.names() and W.get_weighting(c).native]
    if native:
        parts.append(f"{', '.join(native)}: on the MSE of the trained target, here a {space} target "
                     f"(another objective per target)")
    return f"# per-sample weights on the {space}-MSE under uniform t; " + "; ".join(parts)


def process_line(measures: dict[str, str], space: str, process, density: str) -> str:
    """What the columns of a ``--process`` table hold."""
    per_logsnr = [c for c, m in measures.items() if m == "per_logsnr"]
    note = f" ({', '.join(per_logsnr)}: densities per unit logsnr)" if per_logsnr else ""
    return (f"# {process!r}, t ~ {density}: <name> is the weight per sample on the {space}-MSE"
            f"{note}; <name>_x0_per_logsnr the x0-MSE weight per unit logsnr (w_x0 p_logsnr)")


def _process_table(args, specs):
    from ..densities import process_weights_table
    args.density = args.density or "uniform"
    args.points = 201 if args.points is None else args.points
    if args.points < 3:
        raise ValueError(f"--points must be at least 3, got {args.points}")
    if "vlb" in specs:
        raise ValueError("vlb is the discrete DDPM bound: it has no value on a continuous process "
                         "(drop it, or use --schedule)")
    process = get_process(args.process)
    df = process_weights_table(process, specs, args.space, args.density, n=args.points,
                               snr_min=args.snr_min)
    if args.normalize != "none":
        from ..config import LossConfig
        from ..train.process_objective import ProcessObjective
        for spec in specs:
            loss = LossConfig(weighting=spec, normalize=args.normalize, density=args.density,
                              snr_min=args.snr_min)
            c = ProcessObjective(loss, process, "x0", None).c  # the trainer's constant
            col = W.table_column(W.get_weighting(spec))
            df[col], df[f"{col}_x0_per_logsnr"] = df[col] * c, df[f"{col}_x0_per_logsnr"] * c
    return df, process_line(W.measures(specs), args.space, process, args.density)


def run(args) -> int:
    specs = parse_list("--weightings", args.weightings, str) if args.weightings is not None else W.names()
    measures = W.measures(specs)
    if not args.process:
        given = [f for f, v in (("--density", args.density), ("--points", args.points)) if v is not None]
        if given:
            raise ValueError(f"{given[0]} applies only with --process (a continuous process: "
                             f"{', '.join(sorted(PROCESSES))}); the discrete --schedule draws t uniformly")
    if args.process:
        every = [s for s in specs if s != "vlb" and not W.get_weighting(s).native]
        specs = every if args.weightings is None else specs
        df, line = _process_table(args, specs)
        title = f"{args.process}, t ~ {args.density}"
        plotted = df[["t", "logsnr", "snr", *(W.table_column(W.get_weighting(s)) for s in specs)]]
    else:
        schedule = get_schedule(args.schedule, args.timesteps)
        df = W.weights_table(schedule, specs, args.space, snr_min=args.snr_min, normalize=args.normalize)
        line = measure_line(measures, args.space)
        title, plotted = schedule.name, df
    if args.format == "csv":
        print(line, file=sys.stderr)  # stdout stays plain CSV
        df.to_csv(sys.stdout, index=False, float_format="%.8g")
    else:
        import pandas as pd
        print(line)
        with pd.option_context("display.max_rows", 40, "display.width", 200,
                               "display.float_format", "{:.4g}".format):
            print(df.to_string(index=False, max_rows=40))
    if args.plot:
        from ..plots import plot_weightings
        labelled = plotted.rename(columns={c: f"{c} (per logsnr)" for c, m in measures.items()
                                           if m == "per_logsnr"})
        fig = plot_weightings(labelled, space=args.space, schedule_name=title)
        from ..atomic import write_savefig
        write_savefig(fig, args.plot, bbox_inches="tight", dpi=150)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
