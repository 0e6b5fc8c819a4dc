"""The rules that turn 95% intervals into the replication table's verdicts
(:mod:`biaskit.study.replication`), in one place: which side of 0 a paired interval lies on, when two
independent sets differ, when a claim about weightings may be decided at all (training seeds),
and how many rows could pass by chance."""

from __future__ import annotations

import pandas as pd

A, B = "constant", "debias"     # the paper's comparison: the usual weighting and its fix
MIN_SEEDS = 3                   # training seeds per weighting for a decided verdict
LEVEL = 0.95
NOISE = "pure noise"   # the set of x_T draws scored like samples (biaskit.study.samples.sample_quality)


def ci(v, lo, hi, pct: bool = False) -> str:
    f = (lambda x: f"{100 * x:+.{1 if abs(x) < 0.1 else 0}f}%") if pct else (lambda x: f"{x:.3g}")
    return f"{f(v)} [{f(lo)}, {f(hi)}]"


WAY = {"agrees": "points the claimed way", "disagrees": "points against the claim",
        "observed": "observed on this seed", "reversed": "reversed on this seed"}


def seeded(verdict: str, seeds: int) -> str:
    """``verdict`` when the claim rests on MIN_SEEDS training seeds or more, else the undecided
    form naming the seeds and the way the (probe or sampling noise only) interval points."""
    if seeds >= MIN_SEEDS or verdict not in WAY:
        return verdict
    return f"undecided, {seeds} seed{'s' if seeds != 1 else ''} ({WAY[verdict]})"


def side(lo: float, hi: float, claimed_negative: bool = True) -> str:
    if hi < 0:
        return "agrees" if claimed_negative else "disagrees"
    if lo > 0:
        return "disagrees" if claimed_negative else "agrees"
    return "inconclusive"


def lower_is_better(a: pd.Series, b: pd.Series, floor: pd.Series | None,
                     noise: pd.Series | None = None) -> str:
    """Verdict on "b is better (lower) than a" from two (value, lo, hi) rows; ``floor``: data vs
    data, ``noise``: pure noise scored the same way."""
    if floor is not None and a["hi"] <= floor["hi"] and b["hi"] <= floor["hi"]:
        return "at the noise floor"
    if (floor is not None and noise is not None and min(a["lo"], b["lo"]) > floor["hi"]
            and min(a["value"], b["value"]) >= (floor["value"] + noise["value"]) / 2):
        return "neither model generates here"
    if b["hi"] < a["lo"]:
        return "agrees"
    if b["lo"] > a["hi"]:
        return "disagrees"
    return "inconclusive"


DECIDING = ("agrees", "disagrees", "observed", "reversed", "undecided")


def chance_note(df: pd.DataFrame, level: float = LEVEL) -> str:
    """The multiplicity rule under the table: each row is a separate 95% interval (no
    correction), so of the m rows that test a side (a verdict other than "not measured", "at
    the noise floor" or "neither model generates here"), about (1 - level) m would leave 0 by
    chance if no weighting mattered at all; Holm over m rows would ask a row for level
    1 - 0.05 / m at the least."""
    tested = df["verdict"].str.startswith(DECIDING + ("inconclusive",))
    m = int(tested.sum())
    passed = int(df["verdict"].str.startswith(DECIDING).sum())
    return (f"Multiplicity: {m} rows test a side, each with its own {100 * level:.0f}% interval and no "
            f"correction; if no weighting mattered, about {(1 - level) * m:.2f} of them would leave "
            f"0 by chance alone ({passed} did, counting undecided single-seed rows). A row that must "
            f"stand alone under Holm within this family needs level 1 - {1 - level:.2f} / {max(m, 1)}.")
