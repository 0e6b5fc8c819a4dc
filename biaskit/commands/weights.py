"""biaskit weights: one row per t with t, snr, logsnr and one column per weighting."""

from __future__ import annotations

import sys

from .. import weighting as W
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
                   help="scale each weighting so its x0-space weight has mean (or max) 1 over t; "
                   "every space gets the same constant (default none)")
    p.add_argument("--format", default="table", choices=["csv", "table"])
    p.add_argument("--plot", default=None, help="save a figure (PNG/PDF by extension)")


def measure_line(measures: dict[str, str], space: str) -> str:
    """One line saying what the columns hold and the measure each weighting is defined in."""
    per_logsnr = [c for c, m in measures.items() if m == "per_logsnr"]
    per_sample = [c for c, m in measures.items() if m == "per_sample"]
    parts = [f"defined per sample: {', '.join(per_sample)}"] if per_sample else []
    if per_logsnr:
        parts.append(f"defined per unit logsnr, shown times |dlogsnr/dt|: {', '.join(per_logsnr)}")
    return f"# per-sample weights on the {space}-MSE under uniform t; " + "; ".join(parts)


def run(args) -> int:
    schedule = get_schedule(args.schedule, args.timesteps)
    specs = parse_list("--weightings", args.weightings, str) if args.weightings is not None else W.names()
    df = W.weights_table(schedule, specs, args.space, snr_min=args.snr_min, normalize=args.normalize)
    measures = W.measures(specs)
    if args.format == "csv":
        print(measure_line(measures, args.space), file=sys.stderr)  # stdout stays plain CSV
        df.to_csv(sys.stdout, index=False, float_format="%.8g")
    else:
        import pandas as pd
        print(measure_line(measures, args.space))
        with pd.option_context("display.max_rows", 40, "display.width", 200,
                               "display.float_format", "{:.4g}".format):
            print(df.to_string(index=False, max_rows=40))
    if args.plot:
        from ..plots import plot_weightings
        labelled = df.rename(columns={c: f"{c} (per logsnr)" for c, m in measures.items()
                                      if m == "per_logsnr"})
        fig = plot_weightings(labelled, space=args.space, schedule_name=schedule.name)
        fig.savefig(args.plot, bbox_inches="tight", dpi=150)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
