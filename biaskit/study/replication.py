"""The replication table: each of the paper's claims, what a figure run measured, and whether it agrees.

Read from the CSVs the notebooks write under a figures folder (``biaskit figures`` calls
:func:`write` at the end; ``python -m biaskit.study.replication FIGURES`` rebuilds it). One claim is one
entry of :data:`CLAIMS`: a function of the folder returning rows (claim, measured, verdict).
Every interval is written ``value [lo, hi]`` (95%).

Verdicts come from 95% intervals, never from point estimates alone:
  - a claim about weightings is decided (``agrees`` / ``disagrees``) only when its interval
    covers training-seed variance, i.e. rests on at least :data:`MIN_SEEDS` training seeds per
    weighting; on fewer the verdict reads ``undecided, N seed(s)`` and says which way the
    interval points (probe or sampling noise only: a second seed may well differ);
  - a relative difference (debias against constant over a named range of t): the ratio of
    :mod:`biaskit.probe.ratio` with its interval (over seeds, :func:`biaskit.intervals.over_seeds`);
    the side of 0 of R - 1 decides, else ``inconclusive``;
  - two sample-quality values (independent sample sets, each with its bootstrap interval): a
    side only when the intervals are disjoint, else ``inconclusive``; both inside the
    data-vs-data noise floor's interval reads ``at the noise floor``; both above the floor and
    nearer pure noise than the floor reads ``neither model generates here``;
  - a finding beyond the paper (no claim to agree with): ``observed`` / ``reversed`` when the
    intervals are disjoint, else ``inconclusive``.

Multiplicity: every row is its own 95% interval; :func:`chance_note` prints under the table how
many decided rows could pass by chance alone (5% of the rows that test a side).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from .artefacts import MANIFEST, field_values, paths, read
from .verdicts import A, B, MIN_SEEDS, NOISE, chance_note, ci, lower_is_better, seeded, side


def _range_text(r) -> str:
    return (f"t {int(r['t_from'])}..{int(r['t_to'])} (logsnr {r['logsnr_from']:.1f}..{r['logsnr_to']:.1f}, "
            f"{int(r['n_t'])} probed t weighted {str(r['weights']).split(' (')[0]})")


def _ratio_measured(r, stat: str) -> str:
    seeds = int(r["seeds"])
    head = f"{B} / {A} - 1, {stat} over {_range_text(r)}: "
    if pd.isna(r["log_ratio"]):
        return head + ("no ratio: a statistic is 0 within its noise at a probed t "
                       f"({seeds} training seed{'s' if seeds != 1 else ''})")
    by = f"; per seed {', '.join(f'{100 * float(v):+.0f}%' for v in str(r['relative_by_seed']).split())}" \
        if seeds > 1 else ""
    how = f"{seeds} training seeds, interval over seeds" if seeds > 1 else "1 training seed, probe noise only"
    return head + f"{ci(r['relative'], r['relative_lo'], r['relative_hi'], True)}, {how}{by}"


def _ratio_rows(folder: Path, name: str) -> pd.DataFrame | None:
    s = read(folder, name)
    if s is None or "log_ratio" not in s:   # written before ratios (rerun 01)
        return None
    return s[(s["model"] == B) & (s["reference"] == A)]


def high_t_error(folder: Path) -> list[tuple]:
    s = _ratio_rows(folder, "high_t_summary")
    if s is None:
        return []
    rows = []
    for stat, claim in (("x0_mse", "constant weighting has a larger x0 error at high noise"),
                        ("x0_bias_l2", "constant weighting has a larger colour bias at high noise")):
        sel = s[s["statistic"] == stat]
        if stat == "x0_bias_l2":
            sel = sel[sel["dataset"] != "gmm"]
        for _, r in sel.iterrows():
            rows.append((f"{claim} ({r['dataset']}, t >= {int(r['t_from'])})", _ratio_measured(r, stat),
                         seeded(side(r["log_ratio_lo"], r["log_ratio_hi"]), int(r["seeds"]))))
    return rows


def low_t_error(folder: Path) -> list[tuple]:
    """Where debias is worse: its x0_mse against constant's at low noise (not a claim of the
    paper), the same ratio over the range of the ``low_t_summary`` artefact."""
    s = _ratio_rows(folder, "low_t_summary")
    if s is None:
        return []
    rows = []
    for _, r in s[s["statistic"] == "x0_mse"].iterrows():
        way = side(r["log_ratio_lo"], r["log_ratio_hi"], claimed_negative=False)
        verdict = seeded({"agrees": "observed", "disagrees": "reversed"}.get(way, way), int(r["seeds"]))
        rows.append((f"(not claimed) debias has a larger x0 error at low noise ({r['dataset']}, "
                     f"t <= {int(r['t_to'])})", _ratio_measured(r, "x0_mse"), verdict))
    return rows




def _seeds(d: pd.DataFrame) -> int:
    """Training seeds behind a frame's model rows (a ``seeds`` column, else the one seed)."""
    return int(d["seeds"].min()) if "seeds" in d else 1


def _quality_rows(q: pd.DataFrame, x: str, label: str) -> list[tuple]:
    """One row per distinct computation: samplers whose (constant, debias) numbers agree to 4
    significant digits at a setting (DDIM and DPM-Solver++ at 2 steps on ADM's grid: the same
    first-order step) share a row."""
    rows: dict[tuple, dict] = {}
    q = q[q["clip"].astype(str).str.lower() == "true"] if "clip" in q else q
    for (metric, sampler), g in q.groupby(["metric", "sampler"], sort=False):
        floor_rows = g[g["model"] == "data vs data"]
        noise_rows = g[g["model"] == NOISE]
        for xv in sorted({g[x].min(), g[x].max()}):
            at = g[g[x] == xv].set_index("model")
            if A not in at.index or B not in at.index:
                continue
            # to 4 significant digits: the two samplers' arithmetic differs in the last bits
            numbers = tuple(float(f"{v:.4g}") for w in (A, B) for v in at.loc[w, ["value", "lo", "hi"]])
            if (metric, xv, numbers) in rows:
                rows[(metric, xv, numbers)]["samplers"].append(sampler)
                continue
            floor = floor_rows[floor_rows[x] == xv].iloc[0] if not floor_rows.empty else None
            noise = noise_rows[noise_rows[x] == xv].iloc[0] if not noise_rows.empty else None
            fl = f"; data vs data {ci(floor['value'], floor['lo'], floor['hi'])}" if floor is not None else ""
            fl += f"; {NOISE} {ci(noise['value'], noise['lo'], noise['hi'])}" if noise is not None else ""
            rows[(metric, xv, numbers)] = {
                "samplers": [sampler],
                "measured": f"constant {ci(*at.loc[A, ['value', 'lo', 'hi']])}, "
                            f"debias {ci(*at.loc[B, ['value', 'lo', 'hi']])}{fl}",
                "verdict": seeded(lower_is_better(at.loc[A], at.loc[B], floor, noise), _seeds(g))}
    return [(f"debias gives better samples ({label}: {' = '.join(r['samplers'])}"
             f"{' (the same numbers)' if len(r['samplers']) > 1 else ''}, {xv} {x.replace('_', ' ')}, {metric})",
             r["measured"], r["verdict"]) for (metric, xv, _), r in rows.items()]


def sample_quality(folder: Path) -> list[tuple]:
    rows = []
    for name, x, label in (("quality_vs_steps", "steps", "few vs many steps"),
                           ("fid_vs_steps", "steps", "Inception features"),
                           ("quality_vs_iterations", "training_step", "early vs late in training")):
        q = read(folder, name)
        if q is not None:
            rows += _quality_rows(q.dropna(subset=[x]) if x == "training_step" else q, x, label)
    return rows


def chain_damage(folder: Path) -> list[tuple]:
    """Hybrid sampling (debias for the first k calls, then constant): the share of the gap
    between the pure models that the first half of the chain decides. Only read when the pure
    models differ (disjoint intervals); otherwise the share is a ratio of noise."""
    h = read(folder, "hybrid_share")
    sweep = read(folder, "hybrid_sweep")
    if h is None or sweep is None:
        return []
    rows = []
    for _, r in h[(h["order"] == f"{B} then {A}")].iterrows():
        s = sweep[(sweep["order"] == r["order"]) & (sweep["metric"] == r["metric"])
                  & (sweep["clip"].astype(str) == str(r["clip"]))].set_index("k")
        pure_a, pure_b = s.loc[s.index.max()], s.loc[0]           # all debias, all constant
        differ = pure_a["hi"] < pure_b["lo"] or pure_b["hi"] < pure_a["lo"]
        share = r["share_recovered_by_first_half"]
        rows.append((f"the high-noise steps decide the difference ({r['metric']}, "
                     f"{'clipped' if str(r['clip']).lower() == 'true' else 'unclipped'} chain)",
                     f"debias for the first {int(r['k_half'])} calls, then constant, moves the result "
                     f"{100 * share:.0f}% of the way from pure constant "
                     f"{ci(*pure_b[['value', 'lo', 'hi']])} to pure debias {ci(*pure_a[['value', 'lo', 'hi']])}",
                     seeded("agrees" if share > 0.5 else "disagrees", _seeds(s)) if differ
                     else "inconclusive (the pure models do not differ)"))
    return rows


def colour_shift(folder: Path) -> list[tuple]:
    """Colour statistics of samples (02): per model, the channel whose per-sample mean or
    std is shifted most from the data's, at the fewest and the most DDIM steps, each with its
    95% interval (independent sets: a side only when the intervals of |shift| are disjoint)."""
    c = read(folder, "colour_statistics")
    if c is None:
        return []
    rows = []
    c = c[c["set"] != "data"].assign(model=lambda d: d["set"].str.split(", ").str[0],
                                 steps=lambda d: d["set"].str.split(", ").str[1])
    for (clip, stat, steps), g in c.groupby(["clip", "statistic", "steps"], sort=False):
        worst = {w: d.loc[d["shift"].abs().idxmax()] for w, d in g.groupby("model")}
        if A not in worst or B not in worst:
            continue
        a, b = worst[A], worst[B]
        text = "; ".join(f"{w} {r['channel']} "
                         f"{ci(r['shift'], r['shift'] - r['shift_half'], r['shift'] + r['shift_half'])}"
                         for w, r in ((A, a), (B, b)))
        far_a, near_a = abs(a["shift"]) + a["shift_half"], abs(a["shift"]) - a["shift_half"]
        far_b, near_b = abs(b["shift"]) + b["shift_half"], abs(b["shift"]) - b["shift_half"]
        verdict = "agrees" if far_b < near_a else "disagrees" if far_a < near_b else "inconclusive"
        what = {"mean": "per-sample channel mean (colour)", "std": "per-sample channel std (contrast)"}[stat]
        rows.append((f"constant weighting shifts sample colour more ({what}, DDIM "
                     f"{steps}, {'clipped' if str(clip).lower() == 'true' else 'unclipped'})",
                     f"largest shift from the data: {text}", seeded(verdict, _seeds(g))))
    return rows


PAPER_SAMPLERS = ("ddpm", "ddim", "dpm_solver++", "unipc")


def samplers_not_run(folder: Path) -> list[tuple]:
    q = read(folder, "quality_vs_steps")
    if q is None:
        return []
    missing = [s for s in PAPER_SAMPLERS if s not in set(q["sampler"])]
    return [("sample quality against steps for " + ", ".join(missing),
             "not run in this profile (the full profile runs all four samplers)",
             "not measured")] if missing else []


def formulations(folder: Path) -> list[tuple]:
    """Beyond the paper (notebook 05): is the high-noise x0 error a property of the eps
    parameterization? Each eps-VP model's excess x0 error at the noisiest probed logsnr against
    the largest of the other formulations' (v, EDM, flow; usual and debias-equivalent weights)."""
    s = read(folder, "high_noise_summary")
    if s is None:
        return []
    eps = s[s["model"].isin([A, B])]
    other = s[~s["model"].isin([A, B])]
    if eps.empty or other.empty:
        return []
    worst = other.loc[other["excess_noisiest"].idxmax()]
    rows = []
    for _, r in eps.iterrows():
        verdict = seeded("observed" if r["excess_noisiest_lo"] > worst["excess_noisiest_hi"] else
                          "reversed" if r["excess_noisiest_hi"] < worst["excess_noisiest_lo"] else
                          "inconclusive", _seeds(s))
        rows.append((f"beyond the paper: eps-VP {r['model']} has a larger excess x0 error at high noise than "
                     f"v, EDM and flow models (gmm, logsnr {r['logsnr_noisiest']:.1f})",
                     f"{r['model']} {ci(r['excess_noisiest'], r['excess_noisiest_lo'], r['excess_noisiest_hi'])}"
                     f" vs the largest other ({worst['model']}) "
                     f"{ci(worst['excess_noisiest'], worst['excess_noisiest_lo'], worst['excess_noisiest_hi'])}",
                     verdict))
    return rows


def sampling_bias(folder: Path) -> list[tuple]:
    """Notebook 06: exposure bias and its fixes, terminal SNR (:func:`biaskit.study.sampling_bias.replication_rows`)."""
    from .sampling_bias import replication_rows
    return replication_rows(folder)


CLAIMS = (high_t_error, low_t_error, sample_quality, samplers_not_run, colour_shift, chain_damage,
          formulations, sampling_bias)


def table(folder) -> pd.DataFrame:
    """(claim, measured, verdict) rows of every claim whose figures exist under ``folder``."""
    folder = Path(folder)
    rows = [row for claim in CLAIMS for row in claim(folder)]
    return pd.DataFrame(rows, columns=["claim", "measured (95% interval)", "verdict"])


def _manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def header(folder) -> str:
    """What the table rests on, read from the run: profile and commit (``manifest.json``),
    training seeds per claim, probe draws per t, model sizes (the profile's study plan) and the
    samplers and sample counts of the quality rows."""
    folder = Path(folder)
    last = _manifest(folder).get("last_run", {})
    profile, commit = last.get("profile", "unknown"), last.get("commit") or "unknown"
    lines = [f"Profile **{profile}**, commit `{commit}`, device {last.get('device', 'unknown')}."]
    s = read(folder, "high_t_summary")
    if s is not None and "seeds" in s:
        seeds = "; ".join(f"{d}: {', '.join(f'{m} {int(n)}' for m, n in g.groupby('model')['seeds'].max().items())}"
                          f" (against {A} of the same seeds)" for d, g in s.groupby("dataset", sort=False))
        lines.append(f"Training seeds per weighting in the relative-difference rows: {seeds}; every "
                     f"other row compares one training seed per weighting. A verdict needs "
                     f"{MIN_SEEDS} seeds.")
    n = [f"{field_values('compare', p)['dataset']} {int(pd.read_csv(p, usecols=['n'])['n'].iloc[0])}"
         for p in paths(folder, "compare")]
    if n:
        lines.append(f"Probe draws per t (held-out x0, one noise each): {', '.join(n)}.")
    if profile in _profiles():
        lines.append(f"Models ({profile} study plan): {_model_sizes(profile)}.")
    q = read(folder, "quality_vs_steps")
    if q is not None:
        lines.append(f"Samplers: {', '.join(dict.fromkeys(q['sampler']))} at "
                     f"{', '.join(str(v) for v in sorted(set(q['steps'])))} steps; sets of "
                     f"{_manifest(folder).get('notebooks', {}).get('02_impact', {}).get('parameters', {}).get('n_samples', '?')}"
                     f" samples, x0_hat clipped (the paper's protocol).")
    lines.append("Intervals are 95%, written value [lo, hi]; relative differences are ratios R - 1 "
                 "with intervals on log R (never below -100%).")
    return "\n".join(lines) + "\n\n"


def _profiles():
    from .profiles import PROFILES
    return PROFILES


def _model_sizes(profile: str) -> str:
    from .profiles import DATASETS, run_config
    out = []
    for f in DATASETS:
        c = run_config(profile, f, A)
        cfg = ", ".join(f"{k} {v}" for k, v in c.model.config.items())
        out.append(f"{f} {c.model.name} ({cfg}), {c.steps} steps of batch {c.batch_size}")
    return "; ".join(out)


def markdown(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "".join("| " + " | ".join(str(v) for v in r) + " |\n" for r in df.itertuples(index=False))


def report(folder) -> str:
    """The markdown of ``replication.md``: :func:`header`, the table, :func:`chance_note`."""
    df = table(folder)
    return header(folder) + markdown(df) + "\n" + chance_note(df) + "\n"


def write(folder) -> Path | None:
    """Write ``replication.csv`` and ``replication.md`` into ``folder``; returns the .md path,
    or None (and writes nothing) when no claim's figures are there (e.g. ``--only 04``)."""
    folder = Path(folder)
    df = table(folder)
    if df.empty:
        return None
    from ..atomic import atomic_paths
    with atomic_paths(folder / "replication.csv", folder / "replication.md") as (csv, md):
        df.to_csv(csv, index=False)
        md.write_text(report(folder))
    return folder / "replication.md"


START, END = "<!-- replication:start -->\n", "<!-- replication:end -->"


def update_readme(readme, table_md: str) -> None:
    """Put ``table_md`` between the README's replication markers (the README shows the table
    the committed figures give; tests/test_replication.py checks that they agree)."""
    path = Path(readme)
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{path} has no {START.strip()} ... {END} block")
    head, rest = text.split(START, 1)
    from ..atomic import write_text
    write_text(path, head + START + table_md + END + rest.split(END, 1)[1])


if __name__ == "__main__":  # python -m biaskit.study.replication FIGURES [README]
    written = write(sys.argv[1] if len(sys.argv) > 1 else "figures")
    if written is None:
        sys.exit("no claim's figures in that folder: nothing to tabulate")
    md = written.read_text()
    if len(sys.argv) > 2:
        update_readme(sys.argv[2], md)
    print(md)
