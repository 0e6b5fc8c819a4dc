"""The replication table's verdicts follow from the intervals alone (hand-made CSVs), and the
README shows the table the committed figures give."""

from pathlib import Path

import pandas as pd

from biaskit import replication as R

ROOT = Path(__file__).resolve().parent.parent


def _high_t(folder: Path, lo, hi):
    d = folder / "01_existence"
    d.mkdir(parents=True)
    pd.DataFrame([{"model": "debias", "reference": "constant", "statistic": "x0_mse", "t_from": 500,
                   "n_t": 3, "reference_mean": 1.0, "difference": (lo + hi) / 2,
                   "difference_lo": lo, "difference_hi": hi, "relative": (lo + hi) / 2,
                   "relative_lo": lo, "relative_hi": hi, "dataset": "digits"}]
                 ).to_csv(d / "high_t_summary.csv", index=False)


def test_paired_differences_give_their_side_of_zero(tmp_path):
    for k, (lo, hi, verdict) in enumerate([(-0.5, -0.1, "agrees"), (0.1, 0.5, "disagrees"),
                                           (-0.5, 0.2, "inconclusive")]):
        _high_t(tmp_path / str(k), lo, hi)
        t = R.table(tmp_path / str(k))
        assert list(t["verdict"]) == [verdict]
        assert f"{100 * (lo + hi) / 2:+.0f}%" in t.iloc[0, 1]


def _quality(folder: Path, constant, debias, floor):
    d = folder / "02_impact"
    d.mkdir(parents=True)
    rows = [{"weighting": w, "metric": "swd", "sampler": "ddim", "steps": s, "clip": True,
             "value": (lo + hi) / 2, "lo": lo, "hi": hi}
            for s in (2, 50) for w, (lo, hi) in (("constant", constant), ("debias", debias),
                                                 ("data vs data", floor))]
    pd.DataFrame(rows).to_csv(d / "quality_vs_steps.csv", index=False)


def test_sample_quality_needs_disjoint_intervals_and_names_the_floor(tmp_path):
    cases = [((0.5, 0.6), (0.2, 0.3), (0.0, 0.1), "agrees"),
             ((0.2, 0.3), (0.5, 0.6), (0.0, 0.1), "disagrees"),
             ((0.2, 0.4), (0.3, 0.5), (0.0, 0.1), "inconclusive"),
             ((0.05, 0.1), (0.02, 0.08), (0.0, 0.12), "at the noise floor")]
    for k, (c, d, f, verdict) in enumerate(cases):
        _quality(tmp_path / str(k), c, d, f)
        t = R.table(tmp_path / str(k))
        assert list(t["verdict"]) == [verdict] * 2 + ["not measured"], verdict
        assert "ddpm, dpm_solver++, unipc" in t.iloc[-1, 0]   # the paper's samplers not run


def test_formulations_row_compares_eps_vp_with_the_largest_other(tmp_path):
    d = tmp_path / "05_formulations"
    d.mkdir()
    rows = [("constant", 40.0, 20.0, 60.0), ("debias", 3.0, -1.0, 8.0), ("v", 0.001, 0.0009, 0.0011),
            ("flow", 0.005, 0.002, 3.5)]   # flow's upper bound overlaps debias's interval
    pd.DataFrame([{"model": m, "logsnr_noisiest": -10.0, "excess_noisiest": v, "excess_noisiest_lo": lo,
                   "excess_noisiest_hi": hi} for m, v, lo, hi in rows]).to_csv(d / "high_noise_summary.csv", index=False)
    t = R.table(tmp_path)
    assert list(t["verdict"]) == ["observed", "inconclusive"]
    assert all("(flow) 0.005 [0.002, 3.5]" in m for m in t.iloc[:, 1])


def test_readme_shows_the_committed_replication_table():
    md = (ROOT / "figures" / "replication.md").read_text()
    assert md == R.markdown(R.table(ROOT / "figures"))   # the table the committed CSVs give
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- replication:start -->\n", 1)[1].split("<!-- replication:end -->", 1)[0]
    assert block == md
