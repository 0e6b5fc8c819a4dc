"""``report.md``: a probe result a person can read (what was probed, headline numbers, figures).

Headline numbers, per model (rows of a :func:`biaskit.probe.probe` / ``compare`` frame), every t
the model's own timestep (a model trained on 1..999 of 1000 reads t = 1..999):
- x0-MSE (95% interval) and eps-MSE at both ends of the probed range (the first and last probed t,
  nearest to the first and last trained timestep) and at quantiles of the probed t in between,
  next to 1/snr, the x0-MSE of a model that predicts eps_hat = 0 (x0_hat = x_t / alpha);
- the largest per-channel mean error of x0_hat (the colour bias on RGB data) and where it is;
- the share of the total x0 error, integrated uniformly over the trained t, that comes from the
  high-noise half t >= T/2 (T the model's number of training timesteps), and the same share for
  the eps error (what L_simple weights);
- the largest fraction of x0_hat outside the data range by more than the probe's tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["write_report", "headline", "high_noise_share", "cell_widths", "timestep_span"]

_RGB = ("red", "green", "blue")


def cell_widths(ts, T: int, span=None) -> np.ndarray:
    """How many integer timesteps each probed t stands for: the grid's Voronoi cells on
    [first - 0.5, last + 0.5], ``span = (first, last)`` the model's trained timesteps (default
    (0, T - 1)); all ones when every t was probed."""
    first, last = (0, T - 1) if span is None else span
    ts = np.asarray(ts, dtype=float)
    edges = np.concatenate([[first - 0.5], (ts[1:] + ts[:-1]) / 2, [last + 0.5]])
    return np.diff(edges)


def high_noise_share(ts, values, T: int, span=None) -> float:
    """sum_{t >= T/2} w_t values_t / sum_t w_t values_t with w_t = :func:`cell_widths` (T the
    model's number of training timesteps, ``span`` its trained ones): the share of a per-t error,
    integrated uniformly over t, that comes from the high-noise half."""
    ts, values = np.asarray(ts, dtype=float), np.asarray(values, dtype=float)
    mass = cell_widths(ts, T, span) * values
    return float(mass[ts >= T / 2].sum() / mass.sum())


def timestep_span(schedule) -> tuple[int, tuple[int, int]]:
    """(T, (first, last)): the model's number of training timesteps and its first and last
    trained timestep, for a :class:`~biaskit.schedules.Schedule` or its ``to_dict()`` (as a
    probe's metadata holds it). A model trained on 1..999 of 1000 gives (1000, (1, 999))."""
    if isinstance(schedule, dict):
        steps = schedule.get("timesteps") or list(range(len(schedule["abar"])))
        T = schedule.get("num_train_timesteps") or len(steps)
    else:
        steps, T = schedule.timesteps.tolist(), schedule.num_train_timesteps
    return int(T), (int(steps[0]), int(steps[-1]))


def _models(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    if "kind" in df:
        df = df[df["kind"] == "model"]
    if "model" not in df:
        return {"model": df.sort_values("t")}
    return {str(m): d.sort_values("t") for m, d in df.groupby("model", sort=False)}


def _ci(d: pd.Series, col: str) -> str:
    v = f"{d[col]:.4g}"
    if f"{col}_lo" in d and f"{col}_hi" in d:
        v += f" [{d[f'{col}_lo']:.4g}, {d[f'{col}_hi']:.4g}]"
    return v


def headline(d: pd.DataFrame, T: int, quantiles=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0), span=None) -> dict:
    """The headline numbers of one model's rows (sorted by t): a dict of plain values. The levels
    are the rows at ``quantiles`` of the probed t, 0 and 1 being the first and last probed t;
    ``T`` and ``span`` as :func:`high_noise_share`."""
    ts = d["t"].to_numpy()
    picks = sorted({int(round(q * (len(d) - 1))) for q in quantiles})
    rows = d.iloc[picks]
    out = {"levels": [{"t": int(r.t), "snr": float(r.snr),
                       "x0_mse": _ci(r, "x0_mse"), "eps_mse": _ci(r, "eps_mse") if "eps_mse" in r else "",
                       "one_over_snr": 1 / float(r.snr) if r.snr > 0 else float("inf")}
                      for _, r in rows.iterrows()]}
    bias = [c for c in d.columns if c.startswith("x0_bias_c") and c[9:].isdigit()]
    if bias:
        B = d[bias].to_numpy()
        i, k = np.unravel_index(np.nanargmax(np.abs(B)), B.shape)
        r = d.iloc[i]
        out["bias"] = {"channel": int(k), "t": int(r.t), "snr": float(r.snr), "value": _ci(r, bias[k]),
                       "channels": len(bias)}
    out["x0_high_noise_share"] = high_noise_share(ts, d["x0_mse"], T, span)
    if "eps_mse" in d:
        out["eps_high_noise_share"] = high_noise_share(ts, d["eps_mse"], T, span)
    if "clip_frac" in d:
        r = d.iloc[int(np.nanargmax(d["clip_frac"].to_numpy()))]
        out["clip"] = {"t": int(r.t), "value": float(r.clip_frac)}
    return out


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _what(metadata: dict) -> list[str]:
    lines = []
    for name, m in (metadata.get("models") or {}).items():
        lines.append(f"- **{name}**: format `{m.get('format', 'biaskit')}`, parameterization "
                     f"`{m.get('parameterization')}`, time input `{m.get('time_input')}`"
                     + (f" x {m['time_scale']:g}" if m.get("time_scale") else "")
                     + f", data range {m.get('data_range')}")
        for key in ("path", "model_spec", "sha256", "schedule_source", "trained_timesteps", "assumed"):
            if m.get(key) is not None:
                value = json.dumps(m[key]) if isinstance(m[key], (dict, list)) else m[key]
                lines.append(f"  - {key}: `{value}`")
        if m.get("config"):
            lines.append(f"  - config: `{json.dumps(m['config'], default=str)}`")
    sched = metadata.get("schedule") or {}
    if sched:
        steps = sched.get("timesteps") or []
        lines.append(f"- schedule: `{sched.get('name')}`, {len(sched.get('abar', steps))} steps"
                     + (f", timesteps t = {steps[0]}..{steps[-1]} of the model's "
                        f"{sched.get('num_train_timesteps')}" if steps else ""))
    data = metadata.get("data")
    if data:
        lines.append(f"- data: `{json.dumps(data, default=str)}`")
    for key, label in (("n", "samples per t"), ("seed", "seed"), ("device", "device"),
                       ("wall_time_s", "wall time (s)")):
        if metadata.get(key) is not None:
            value = metadata[key]
            lines.append(f"- {label}: {value:.1f}" if isinstance(value, float) else f"- {label}: {value}")
    if metadata.get("timesteps"):
        ts = metadata["timesteps"]
        lines.append(f"- probed t (the model's timesteps): {len(ts)} steps from {ts[0]} to {ts[-1]}")
    if metadata.get("clip_tol") is not None:
        lines.append(f"- clip_frac: share of x0_hat beyond the data range by more than "
                     f"{metadata['clip_tol']:g} x its width")
    return lines


def _headline_md(name: str, h: dict) -> list[str]:
    rows = [[r["t"], f"{r['snr']:.3g}", r["x0_mse"], r["eps_mse"], f"{r['one_over_snr']:.3g}"]
            for r in h["levels"]]
    lines = [f"### {name}", "",
             "x0-MSE and eps-MSE (per pixel, 95% interval) at the first and last probed t and at "
             "noise levels in between; 1/snr is the x0-MSE of a model that predicts eps_hat = 0:", "",
             _table(["t", "snr", "x0_mse", "eps_mse", "1/snr"], rows), ""]
    if "bias" in h:
        b = h["bias"]
        where = _RGB[b["channel"]] if b["channels"] == 3 else f"channel {b['channel']}"
        kind = "colour bias" if b["channels"] == 3 else "mean (brightness) bias"
        lines.append(f"- Largest {kind} of x0_hat: {where}, {b['value']} at t = {b['t']} "
                     f"(snr {b['snr']:.3g}).")
    lines.append(f"- Share of the total x0 error (uniform over t) from the high-noise half t >= T/2: "
                 f"{100 * h['x0_high_noise_share']:.1f}%"
                 + (f"; the same share of the eps error (what L_simple weights): "
                    f"{100 * h['eps_high_noise_share']:.1f}%." if "eps_high_noise_share" in h else "."))
    if "clip" in h:
        tol = f" by more than {h['clip_tol']:g} x its width" if h.get("clip_tol") is not None else ""
        lines.append(f"- Largest fraction of x0_hat outside the data range{tol}: "
                     f"{100 * h['clip']['value']:.1f}% at t = {h['clip']['t']}.")
    return lines + [""]


def write_report(out_dir, df: pd.DataFrame, metadata: dict | None = None, figures=None) -> Path:
    """Write ``out_dir/report.md`` for a probe frame and its metadata; returns its path.

    ``figures``: image paths to show (default: every PNG in ``out_dir``), linked relative to it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metadata = metadata if metadata is not None else df.attrs.get("metadata", {})
    sched = metadata.get("schedule")
    T, span = timestep_span(sched) if sched else (int(df["t"].max()) + 1, None)
    models = _models(df)
    title = ", ".join(models)
    lines = [f"# Probe report: {title}", "", "## What was probed", "", *_what(metadata), "",
             "Errors are per-element means over C, H, W; intervals are 95%.", "",
             "## Headline numbers", ""]
    for name, d in models.items():
        lines += _headline_md(name, {**headline(d, T, span=span), "clip_tol": metadata.get("clip_tol")})
    figures = sorted(out.glob("*.png")) if figures is None else [Path(f) for f in figures]
    if figures:
        lines += ["## Figures", ""]
        for f in figures:
            f = f if f.exists() else out / f  # a bare name is taken relative to out_dir
            try:
                link = f.resolve().relative_to(out.resolve()).as_posix()
            except ValueError:  # outside out_dir: link it where it is
                link = f.resolve().as_posix()
            lines += [f"![{f.stem}]({link})", ""]
    lines += ["Full table: `per_timestep.csv`; metadata: `metadata.json`.", ""]
    from .atomic import write_text
    return write_text(out / "report.md", "\n".join(lines))
