"""The replication table: each of the paper's claims, what a figure run measured, and whether it agrees.

Read from the CSVs the notebooks write under a figures folder (``biaskit figures`` calls
:func:`write` at the end; ``python -m biaskit.replication FIGURES`` rebuilds it). One claim is one
entry of :data:`CLAIMS`: a function of the folder returning rows (claim, measured, verdict).

Verdicts come from 95% intervals, never from point estimates alone:
  - a paired difference (debias - constant on the same draws): ``agrees`` when its interval lies
    on the claimed side of 0, ``disagrees`` when on the other, else ``inconclusive``;
  - two sample-quality values (independent sample sets, each with its bootstrap interval):
    ``agrees`` / ``disagrees`` only when the intervals are disjoint, else ``inconclusive``; both
    inside the data-vs-data noise floor's interval reads ``at the noise floor``;
  - a finding beyond the paper (no claim to agree with): ``observed`` / ``reversed`` when the
    intervals are disjoint, else ``inconclusive``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

A, B = "constant", "debias"     # the paper's comparison: the usual weighting and its fix


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / name
    return pd.read_csv(path) if path.exists() else None


def _ci(v, lo, hi, pct: bool = False) -> str:
    f = (lambda x: f"{100 * x:+.0f}%") if pct else (lambda x: f"{x:.3g}")
    return f"{f(v)} [{f(lo)}, {f(hi)}]"


def _side(lo: float, hi: float, claimed_negative: bool = True) -> str:
    if hi < 0:
        return "agrees" if claimed_negative else "disagrees"
    if lo > 0:
        return "disagrees" if claimed_negative else "agrees"
    return "inconclusive"


def _lower_is_better(a: pd.Series, b: pd.Series, floor: pd.Series | None) -> str:
    """Verdict on "b is better (lower) than a" from two (value, lo, hi) rows."""
    if floor is not None and a["hi"] <= floor["hi"] and b["hi"] <= floor["hi"]:
        return "at the noise floor"
    if b["hi"] < a["lo"]:
        return "agrees"
    if b["lo"] > a["hi"]:
        return "disagrees"
    return "inconclusive"


def high_t_error(folder: Path) -> list[tuple]:
    s = _read(folder / "01_existence", "high_t_summary.csv")
    if s is None:
        return []
    rows = []
    for stat, claim in (("x0_mse", "constant weighting has a larger x0 error at high noise"),
                        ("x0_bias_l2", "constant weighting has a larger colour bias at high noise")):
        sel = s[(s["model"] == B) & (s["reference"] == A) & (s["statistic"] == stat)]
        if stat == "x0_bias_l2":
            sel = sel[sel["dataset"] != "gmm"]
        for _, r in sel.iterrows():
            rows.append((f"{claim} ({r['dataset']}, t >= {int(r['t_from'])})",
                         f"debias vs constant, {stat}: {_ci(r['relative'], r['relative_lo'], r['relative_hi'], True)}",
                         _side(r["difference_lo"], r["difference_hi"])))
    return rows


def low_t_error(folder: Path, t_max_share: float = 0.25) -> list[tuple]:
    """Where debias is worse: paired x0_mse differences at t < T / 4 (not a claim of the paper)."""
    rows = []
    for path in sorted((folder / "01_existence").glob("*_compare.csv")):
        d = pd.read_csv(path)
        diff = d[(d["kind"] == "difference") & (d["model"] == f"{B} - {A}")]
        base = d[(d["kind"] == "model") & (d["model"] == A)].set_index("t")["x0_mse"]
        T = int(d["t"].max()) + 1
        low = diff[diff["t"] < t_max_share * T]
        if low.empty:
            continue
        worse = int((low["x0_mse_lo"] > 0).sum())
        rel = (low.set_index("t")["x0_mse"] / base.reindex(low["t"]).to_numpy()).median()
        rows.append((f"(not claimed) debias at low noise, {path.name.split('_')[0]}, t < {int(t_max_share * T)}",
                     f"debias worse (interval above 0) at {worse} of {len(low)} probed t; "
                     f"median relative x0_mse difference {100 * rel:+.0f}%",
                     "debias worse" if worse else "no loss"))
    return rows


def _quality_rows(q: pd.DataFrame, x: str, label: str) -> list[tuple]:
    rows = []
    q = q[q["clip"].astype(str).str.lower() == "true"] if "clip" in q else q
    for (metric, sampler), g in q.groupby(["metric", "sampler"], sort=False):
        floor_rows = g[g["weighting"] == "data vs data"]
        for xv in sorted({g[x].min(), g[x].max()}):
            at = g[g[x] == xv].set_index("weighting")
            if A not in at.index or B not in at.index:
                continue
            floor = floor_rows[floor_rows[x] == xv].iloc[0] if not floor_rows.empty else None
            fl = f"; data vs data {_ci(floor['value'], floor['lo'], floor['hi'])}" if floor is not None else ""
            rows.append((f"debias gives better samples ({label}: {sampler}, {xv} {x.replace('_', ' ')}, {metric})",
                         f"constant {_ci(*at.loc[A, ['value', 'lo', 'hi']])}, "
                         f"debias {_ci(*at.loc[B, ['value', 'lo', 'hi']])}{fl}",
                         _lower_is_better(at.loc[A], at.loc[B], floor)))
    return rows


def sample_quality(folder: Path) -> list[tuple]:
    rows = []
    for name, x, label in (("quality_vs_steps.csv", "steps", "few vs many steps"),
                           ("fid_vs_steps.csv", "steps", "Inception features"),
                           ("quality_vs_iterations.csv", "training_step", "early vs late in training")):
        q = _read(folder / "02_impact", name)
        if q is not None:
            rows += _quality_rows(q.dropna(subset=[x]) if x == "training_step" else q, x, label)
    return rows


def chain_damage(folder: Path) -> list[tuple]:
    """Hybrid sampling (debias for the first k calls, then constant): the share of the gap
    between the pure models that the first half of the chain decides. Only read when the pure
    models differ (disjoint intervals); otherwise the share is a ratio of noise."""
    h = _read(folder / "03_reasons", "hybrid_share.csv")
    sweep = _read(folder / "03_reasons", "hybrid_sweep.csv")
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
                     f"{_ci(*pure_b[['value', 'lo', 'hi']])} to pure debias {_ci(*pure_a[['value', 'lo', 'hi']])}",
                     ("agrees" if share > 0.5 else "disagrees") if differ
                     else "inconclusive (the pure models do not differ)"))
    return rows


def colour_shift(folder: Path) -> list[tuple]:
    """Colour statistics of samples (02): per weighting, the channel whose per-sample mean or
    std is shifted most from the data's, at the fewest and the most DDIM steps, each with its
    95% half-width (independent sets: ``agrees`` only when |shift| +- half-width are disjoint)."""
    c = _read(folder / "02_impact", "colour_statistics.csv")
    if c is None:
        return []
    rows = []
    c = c[c["set"] != "data"].assign(weighting=lambda d: d["set"].str.split(", ").str[0],
                                     steps=lambda d: d["set"].str.split(", ").str[1])
    for (clip, stat, steps), g in c.groupby(["clip", "statistic", "steps"], sort=False):
        worst = {w: d.loc[d["shift"].abs().idxmax()] for w, d in g.groupby("weighting")}
        if A not in worst or B not in worst:
            continue
        a, b = worst[A], worst[B]
        text = "; ".join(f"{w} {r['channel']} {r['shift']:+.3f} +- {r['shift_half']:.3f}"
                         for w, r in ((A, a), (B, b)))
        far_a, near_a = abs(a["shift"]) + a["shift_half"], abs(a["shift"]) - a["shift_half"]
        far_b, near_b = abs(b["shift"]) + b["shift_half"], abs(b["shift"]) - b["shift_half"]
        verdict = "agrees" if far_b < near_a else "disagrees" if far_a < near_b else "inconclusive"
        what = {"mean": "per-sample channel mean (colour)", "std": "per-sample channel std (contrast)"}[stat]
        rows.append((f"constant weighting shifts sample colour more ({what}, DDIM "
                     f"{steps}, {'clipped' if str(clip).lower() == 'true' else 'unclipped'})",
                     f"largest shift from the data: {text}", verdict))
    return rows


PAPER_SAMPLERS = ("ddpm", "ddim", "dpm_solver++", "unipc")


def samplers_not_run(folder: Path) -> list[tuple]:
    q = _read(folder / "02_impact", "quality_vs_steps.csv")
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
    s = _read(folder / "05_formulations", "high_noise_summary.csv")
    if s is None:
        return []
    eps = s[s["model"].isin([A, B])]
    other = s[~s["model"].isin([A, B])]
    if eps.empty or other.empty:
        return []
    worst = other.loc[other["excess_noisiest"].idxmax()]
    rows = []
    for _, r in eps.iterrows():
        verdict = ("observed" if r["excess_noisiest_lo"] > worst["excess_noisiest_hi"] else
                   "reversed" if r["excess_noisiest_hi"] < worst["excess_noisiest_lo"] else "inconclusive")
        rows.append((f"beyond the paper: eps-VP {r['model']} has a larger excess x0 error at high noise than "
                     f"v, EDM and flow models (gmm, logsnr {r['logsnr_noisiest']:.1f})",
                     f"{r['model']} {_ci(r['excess_noisiest'], r['excess_noisiest_lo'], r['excess_noisiest_hi'])}"
                     f" vs the largest other ({worst['model']}) "
                     f"{_ci(worst['excess_noisiest'], worst['excess_noisiest_lo'], worst['excess_noisiest_hi'])}",
                     verdict))
    return rows


CLAIMS = (high_t_error, low_t_error, sample_quality, samplers_not_run, colour_shift, chain_damage,
          formulations)


def table(folder) -> pd.DataFrame:
    """(claim, measured, verdict) rows of every claim whose figures exist under ``folder``."""
    folder = Path(folder)
    rows = [row for claim in CLAIMS for row in claim(folder)]
    return pd.DataFrame(rows, columns=["claim", "measured (95% interval)", "verdict"])


def markdown(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "".join("| " + " | ".join(str(v) for v in r) + " |\n" for r in df.itertuples(index=False))


def write(folder) -> Path:
    """Write ``replication.csv`` and ``replication.md`` into ``folder``; returns the .md path."""
    folder = Path(folder)
    df = table(folder)
    from .atomic import atomic_paths
    with atomic_paths(folder / "replication.csv", folder / "replication.md") as (csv, md):
        df.to_csv(csv, index=False)
        md.write_text(markdown(df))
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
    from .atomic import write_text
    write_text(path, head + START + table_md + END + rest.split(END, 1)[1])


if __name__ == "__main__":  # python -m biaskit.replication FIGURES [README]
    md = write(sys.argv[1] if len(sys.argv) > 1 else "figures").read_text()
    if len(sys.argv) > 2:
        update_readme(sys.argv[2], md)
    print(md)
