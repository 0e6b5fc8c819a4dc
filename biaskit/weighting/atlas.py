"""The tables of the weighting atlas (notebook 00): every weighting's per-sample weight in each
space on each schedule, its density over logsnr, its share per quarter of t, and the x0 error's
amplification 1 / sqrt(snr). Each a long-format DataFrame, one row per (..., t)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .registry import get_weighting
from .core import InfiniteWeightError
from .timesteps import (amplification, normalize_weights, per_logsnr_density,
                        per_sample_weights, share_by_quarter)


def label(name: str) -> str:
    """A weighting's name, marked when it is defined per unit logsnr rather than per sample."""
    return f"{name} (per logsnr)" if get_weighting(name).measure == "per_logsnr" else name


def atlas_table(weightings, schedules: dict, spaces, snr_min: float) -> tuple[pd.DataFrame, list]:
    """Per-sample weights w(t) (normalised to mean 1 over t, :func:`per_sample_weights` with
    normalize="mean") of every weighting in every space on every schedule {name: Schedule};
    eps-space weights infinite at snr = 0 (zero terminal SNR) are clamped at ``snr_min``.
    Returns (rows schedule, space, weighting, measure, t, snr, logsnr, weight; the
    (schedule, space, weighting) left out because a weight is infinite)."""
    frames, skipped = [], []
    for sname, sched in schedules.items():
        clamp = snr_min if float(sched.snr[-1]) == 0 else None
        for space in spaces:
            for w in weightings:
                try:
                    weight = per_sample_weights(w, sched, space, snr_min=clamp, normalize="mean")
                except InfiniteWeightError:
                    skipped.append((sname, space, w))
                    continue
                frames.append(pd.DataFrame({"schedule": sname, "space": space, "weighting": label(w),
                                            "measure": get_weighting(w).measure, "t": np.arange(sched.T),
                                            "snr": sched.snr.numpy(), "logsnr": sched.logsnr.numpy(),
                                            "weight": weight.numpy()}))
    return pd.concat(frames, ignore_index=True), skipped


def density_table(schedules: dict, weightings) -> pd.DataFrame:
    """Per schedule and weighting: the eps-space per-sample weight (mean 1 over t) and the
    density over logsnr it implies under uniform t (:func:`per_logsnr_density`, integral 1)."""
    rows = []
    for sname, sched in schedules.items():
        for w in weightings:
            w_t = per_sample_weights(w, sched, "eps").numpy()
            rows.append(pd.DataFrame({"schedule": sname, "weighting": label(w), "t": np.arange(sched.T),
                                      "logsnr": sched.logsnr.numpy(),
                                      "per-sample weight (eps space)": normalize_weights(w_t).numpy(),
                                      "density over logsnr": per_logsnr_density(w_t, sched, normalize="integral")}))
    return pd.concat(rows, ignore_index=True)


def quarter_shares(atlas: pd.DataFrame) -> pd.DataFrame:
    """Share of each (schedule, space, weighting)'s total weight in each quarter of t (q3 the
    noisiest), from an :func:`atlas_table`."""
    rows = []
    for (sname, space, w), d in atlas.groupby(["schedule", "space", "weighting"], sort=False):
        q = share_by_quarter(d.sort_values("t")["weight"].to_numpy())
        rows += [{"schedule": sname, "space": space, "weighting": w, "quarter": f"q{i}", "share": s}
                 for i, s in enumerate(q)]
    return pd.DataFrame(rows)


def amplification_table(schedules: dict) -> pd.DataFrame:
    """1 / sqrt(snr(t)), the factor by which an eps error becomes an x0 error, per schedule."""
    return pd.concat([pd.DataFrame({"schedule": s, "t": np.arange(sc.T),
                                    "amplification": amplification(sc.snr).numpy()})
                      for s, sc in schedules.items()], ignore_index=True)


def native_comparison(schedules: dict, native: str = "debias_fork", reference: str = "debias",
                      targets=("eps", "x0", "v")) -> pd.DataFrame:
    """Per schedule, target and t: the weight on the target's own MSE of a ``native`` weighting
    (one factor on whichever target is trained) and of its x0-defined ``reference`` (converted
    to that target), unnormalised, and their ratio native / reference (debias_fork / debias:
    1 for eps, 1/snr for x0, (snr + 1)/snr for v)."""
    rows = []
    for sname, sched in schedules.items():
        for target in targets:
            a = per_sample_weights(native, sched, target).numpy()
            b = per_sample_weights(reference, sched, target).numpy()
            rows.append(pd.DataFrame({"schedule": sname, "target": target, "t": np.arange(sched.T),
                                      "snr": sched.snr.numpy(), "logsnr": sched.logsnr.numpy(),
                                      native: a, reference: b, "ratio": a / b}))
    return pd.concat(rows, ignore_index=True)
