"""biaskit probe: per-timestep error, bias and variance of a model on held-out data.

Writes DIR/per_timestep.csv, DIR/metadata.json, figures (PNG + PDF) and DIR/report.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from ..denoiser import resolve_device
from ..loaders.formats import is_oracle
from ..probe import probe
from ..report import write_report
from ..results import METADATA, TABLE, save_results
from .latent import add_condition_arguments, check_latent_flags, run_probe
from .common import (add_data_arguments, add_model_arguments, check_out, data_options, load_data,
                     load_model, parse_list)


def add_arguments(p):
    p.add_argument("model", help="oracle:NAME (e.g. oracle:gmm), a biaskit run directory, or a "
                   "third-party checkpoint")
    add_data_arguments(p, required=True, what="probed")
    p.add_argument("--out", required=True, help="output directory")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--timesteps", default=None,
                      help="comma list of the model's timesteps t, e.g. 0,250,500,999 (1,500,999 "
                      "for a model trained on 1..999)")
    grid.add_argument("--num-timesteps", type=int, default=None,
                      help="K steps evenly spaced over the model's T steps (default min(T, 50))")
    p.add_argument("--stratified", action="store_true",
                   help="with --num-timesteps: one random step per stratum instead of even spacing")
    p.add_argument("--samples", type=int, default=512, help="held-out samples per t (default 512)")
    p.add_argument("--seed", type=int, default=0, help="seed of samples, noise and grid (default 0)")
    p.add_argument("--batch-size", type=int, default=256, help="(t, sample) pairs per forward (default 256)")
    p.add_argument("--bootstrap", type=int, default=0,
                   help="bootstrap resamples for the x0_var interval (default 0: delta method)")
    p.add_argument("--bands", type=int, default=4, help="spatial-frequency bands (images; default 4)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (--amp / --no-amp; default on for cuda, off on cpu)")
    p.add_argument("--by-class", action="store_true",
                   help="rows per class of a labelled --data (column label; --samples per class)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(p)
    add_condition_arguments(p, "image")


def _load(args, device):
    """(denoiser, dataset): the data are loaded in the model's data range."""
    from ..data import load_dataset
    if is_oracle(args.model):
        ds = load_dataset(args.data, seed=args.data_seed, **data_options(args.data_option))
        same = args.model.split(":")[-1] in (ds.name, args.data)
        return load_model(args, device, **({"dataset": ds} if same else {})), ds
    model = load_model(args, device)
    ds = load_data(args.data, model, args.data_option, args.data_seed)
    from ..settings_check import check_settings  # what the weights cannot tell, on data
    check_settings(model, ds.test, mode=getattr(args, "settings_check", "auto"),
                   labels=ds.test_labels)
    return model, ds


def _figures(df, model, ds, out: Path, seed: int) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .. import plots
    written = []
    stats = [s for s in ("x0_mse", "eps_mse", "excess_mse") if s in df]
    if "label" in df:  # one curve per (model, class)
        df = df.assign(model=df["model"] + " | class " + df["label"].astype(str))
    figs = {"per_timestep": plots.plot_per_timestep(df, stats, x=("t", "logsnr")),
            "colour_bias": plots.plot_colour_bias(df)}
    bands = [c for c in df.columns if c.startswith("x0_err_band") and c[11:].isdigit()]
    if bands:
        figs["error_bands"] = plots.plot_per_timestep(df, bands, x="logsnr")
    if ds.is_image:
        ts = df["t"].to_numpy()
        chosen = sorted({int(ts[round(q * (len(ts) - 1))]) for q in (0.1, 0.4, 0.7, 0.95)})
        figs["x0_grid"] = plots.plot_x0_grid(model, ds.test[:4], chosen, seed=seed,
                                             labels=getattr(ds, "test_labels", None))
    for name, fig in figs.items():
        written += plots.save(fig, out / name)
        plt.close(fig)
    return written


def run(args) -> int:
    device = resolve_device(args.device)
    timesteps = parse_list("--timesteps", args.timesteps) if args.timesteps is not None else None
    if args.stratified and args.timesteps:
        raise ValueError("--stratified goes with --num-timesteps, not with --timesteps")
    check_out(args.out)
    if check_latent_flags(args):
        return run_probe(args, device, timesteps)
    model, ds = _load(args, device)
    df = probe(model, ds, timesteps=timesteps, num_timesteps=args.num_timesteps, stratified=args.stratified,
               n=args.samples, seed=args.seed, batch_size=args.batch_size, device=device,
               bootstrap=args.bootstrap, progress=not args.no_progress, amp=args.amp, bands=args.bands,
               by_class=args.by_class)
    meta = dict(df.attrs["metadata"])
    meta["model_spec"] = args.model
    meta["command"] = ["biaskit", "probe", *sys.argv[2:]] if sys.argv[1:2] == ["probe"] else None
    out = save_results(df, args.out, meta)
    written = [out / TABLE, out / METADATA]
    if not args.no_plots:
        written += _figures(df, model, ds, out, args.seed)
    written.append(write_report(out.resolve(), df, meta))  # absolute: figure links are relative to it
    cols = [c for c in ("t", "snr", "x0_mse", "eps_mse", "x0_bias_l2", "clip_frac", "excess_mse") if c in df]
    print(df[cols].to_string(index=False, max_rows=12, float_format="{:.4g}".format))
    for p in written:
        print(f"wrote {p}", file=sys.stderr)
    return 0

