"""The replication table's verdicts follow from the intervals alone (hand-made CSVs), and the
README shows the table the committed figures give."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biaskit.study import replication as R

ROOT = Path(__file__).resolve().parent.parent


def _high_t(folder: Path, lo, hi, seeds=3, name="high_t_summary.csv"):
    """A high_t_summary row of relative differences lo..hi (R - 1) over ``seeds`` seeds."""
    d = folder / "01_existence"
    d.mkdir(parents=True, exist_ok=True)
    log = np.log1p([lo, hi])
    pd.DataFrame([{"model": "debias", "reference": "constant", "statistic": "x0_mse", "seeds": seeds,
                   "relative_by_seed": " ".join(["-0.5"] * seeds), "t_from": 500, "t_to": 999,
                   "logsnr_from": -2.5, "logsnr_to": -10.1, "n_t": 10, "weights": "per unit log SNR (x)",
                   "n": 512, "log_ratio": log.mean(), "log_ratio_lo": log[0], "log_ratio_hi": log[1],
                   "relative": np.expm1(log.mean()), "relative_lo": lo, "relative_hi": hi,
                   "interval": "x", "dataset": "digits"}]).to_csv(d / name, index=False)


def test_ratio_rows_give_their_side_of_zero_only_with_three_seeds(tmp_path):
    for k, (lo, hi, seeds, verdict) in enumerate([
            (-0.5, -0.1, 3, "agrees"), (0.1, 0.5, 3, "disagrees"), (-0.5, 0.2, 3, "inconclusive"),
            (-0.5, -0.1, 1, "undecided, 1 seed (points the claimed way)"),
            (0.1, 0.5, 2, "undecided, 2 seeds (points against the claim)")]):
        _high_t(tmp_path / str(k), lo, hi, seeds)
        t = R.table(tmp_path / str(k))
        assert list(t["verdict"]) == [verdict]
        assert f"[{100 * lo:+.0f}%, {100 * hi:+.0f}%]" in t.iloc[0, 1]
        assert f"{seeds} training seed" in t.iloc[0, 1]


def test_low_noise_rows_are_findings_beyond_the_paper(tmp_path):
    for k, (lo, hi, seeds, verdict) in enumerate([(0.1, 0.3, 3, "observed"), (-0.3, -0.1, 3, "reversed"),
                                                  (0.1, 0.3, 1, "undecided, 1 seed (observed on this seed)")]):
        _high_t(tmp_path / str(k), lo, hi, seeds, name="low_t_summary.csv")
        t = R.table(tmp_path / str(k))
        assert list(t["verdict"]) == [verdict] and t.iloc[0, 0].startswith("(not claimed)")


def test_a_summary_without_ratios_gives_no_row(tmp_path):
    d = tmp_path / "01_existence"
    d.mkdir()
    pd.DataFrame([{"model": "debias", "reference": "constant", "statistic": "x0_mse", "relative": -0.9,
                   "relative_lo": -1.3, "relative_hi": -0.5, "dataset": "gmm"}]).to_csv(d / "high_t_summary.csv")
    assert R.table(tmp_path).empty
    assert R.write(tmp_path) is None and not (tmp_path / "replication.md").exists()


def _quality(folder: Path, constant, debias, floor, noise=None, seeds=None, samplers=("ddim",),
             column="model"):
    d = folder / "02_impact"
    d.mkdir(parents=True)
    sets = [("constant", constant), ("debias", debias), ("data vs data", floor)]
    sets += [(R.NOISE, noise)] if noise else []
    rows = [{column: w, "metric": "swd", "sampler": sampler, "steps": s, "clip": True,
             "value": (lo + hi) / 2, "lo": lo, "hi": hi, **({"seeds": seeds} if seeds else {})}
            for sampler in samplers for s in (2, 50) for w, (lo, hi) in sets]
    pd.DataFrame(rows).to_csv(d / "quality_vs_steps.csv", index=False)


def test_sample_quality_needs_disjoint_intervals_and_names_the_floor(tmp_path):
    one = "undecided, 1 seed (points {})"
    cases = [((0.5, 0.6), (0.2, 0.3), (0.0, 0.1), None, None, one.format("the claimed way")),
             ((0.2, 0.3), (0.5, 0.6), (0.0, 0.1), None, None, one.format("against the claim")),
             ((0.5, 0.6), (0.2, 0.3), (0.0, 0.1), None, 3, "agrees"),
             ((0.2, 0.4), (0.3, 0.5), (0.0, 0.1), None, None, "inconclusive"),
             ((0.05, 0.1), (0.02, 0.08), (0.0, 0.12), None, None, "at the noise floor"),
             # both far above the floor and nearer pure noise (1.0) than the floor (0.05)
             ((0.8, 0.9), (0.6, 0.7), (0.0, 0.1), (0.95, 1.05), 3, "neither model generates here"),
             ((0.3, 0.4), (0.1, 0.2), (0.0, 0.1), (0.95, 1.05), 3, "agrees")]
    for k, (c, d, f, noise, seeds, verdict) in enumerate(cases):
        _quality(tmp_path / str(k), c, d, f, noise, seeds)
        t = R.table(tmp_path / str(k))
        assert list(t["verdict"]) == [verdict] * 2 + ["not measured"], verdict
        assert "ddpm, dpm_solver++, unipc" in t.iloc[-1, 0]   # the paper's samplers not run


def test_samplers_with_the_same_numbers_share_one_row(tmp_path):
    _quality(tmp_path, (0.5, 0.6), (0.2, 0.3), (0.0, 0.1), samplers=("ddim", "dpm_solver++"))
    t = R.table(tmp_path)
    quality = t[t["claim"].str.startswith("debias gives")]
    assert len(quality) == 2 and all("ddim = dpm_solver++" in c for c in quality["claim"])


def test_a_folder_written_before_the_model_column_was_renamed_reads_the_same(tmp_path):
    """Figures of an earlier version name the model column ``weighting``: the same table."""
    _quality(tmp_path / "new", (0.5, 0.6), (0.2, 0.3), (0.0, 0.1), (0.95, 1.05))
    _quality(tmp_path / "old", (0.5, 0.6), (0.2, 0.3), (0.0, 0.1), (0.95, 1.05), column="weighting")
    new, old = R.table(tmp_path / "new"), R.table(tmp_path / "old")
    assert len(new) == 3 and "data vs data 0.05 [0, 0.1]" in new.iloc[0, 1] and "pure noise" in new.iloc[0, 1]
    pd.testing.assert_frame_equal(new, old)


def test_the_report_has_a_header_one_notation_and_the_chance_count(tmp_path):
    _high_t(tmp_path, -0.5, -0.1, 3)
    _quality(tmp_path, (0.5, 0.6), (0.2, 0.3), (0.0, 0.1))
    (tmp_path / "manifest.json").write_text('{"last_run": {"profile": "quick", "commit": "abc123", "device": "cpu"}}')
    md = R.report(tmp_path)
    assert "Profile **quick**, commit `abc123`" in md and "digits: debias 3" in md
    assert "+-" not in md
    # rows testing a side: the ratio row and two quality rows; 5% of 3 = 0.15 by chance
    assert "3 rows test a side" in md and "about 0.15 of them" in md


def test_formulations_row_compares_eps_vp_with_the_largest_other(tmp_path):
    d = tmp_path / "05_formulations"
    d.mkdir()
    rows = [("constant", 40.0, 20.0, 60.0), ("debias", 3.0, -1.0, 8.0), ("v", 0.001, 0.0009, 0.0011),
            ("flow", 0.005, 0.002, 3.5)]   # flow's upper bound overlaps debias's interval
    pd.DataFrame([{"model": m, "logsnr_noisiest": -10.0, "excess_noisiest": v, "excess_noisiest_lo": lo,
                   "excess_noisiest_hi": hi} for m, v, lo, hi in rows]).to_csv(d / "high_noise_summary.csv", index=False)
    t = R.table(tmp_path)
    assert list(t["verdict"]) == ["undecided, 1 seed (observed on this seed)", "inconclusive"]
    assert all("(flow) 0.005 [0.002, 3.5]" in m for m in t.iloc[:, 1])


def test_readme_shows_the_committed_replication_table():
    md = (ROOT / "figures" / "replication.md").read_text()
    assert md == R.report(ROOT / "figures")   # the table the committed CSVs give
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- replication:start -->\n", 1)[1].split("<!-- replication:end -->", 1)[0]
    assert block == md


# --- the artefacts a figure run leaves, by name (biaskit.study.artefacts) ---------------------------
def test_artefacts_are_found_by_name(tmp_path):
    from biaskit.study import artefacts
    assert artefacts.path(tmp_path, "high_t_summary") == tmp_path / "01_existence" / "high_t_summary.csv"
    assert artefacts.file("compare", dataset="gmm") == "gmm_compare.csv"
    assert artefacts.read(tmp_path, "brightness") is None       # not written by this run
    d = tmp_path / "01_existence"
    d.mkdir()
    for name in ("digits_compare.csv", "gmm_compare.csv", "high_t_summary.csv", "gmm_compare.png"):
        pd.DataFrame({"n": [7]}).to_csv(d / name, index=False)
    assert [p.name for p in artefacts.paths(tmp_path, "compare")] == ["digits_compare.csv", "gmm_compare.csv"]
    assert artefacts.read(tmp_path, "high_t_summary")["n"].tolist() == [7]
    # a former column name reads as the new one, replacing the column of that name beside it
    pd.DataFrame({"model": ["denoiser"], "weighting": ["debias"], "n": [1]}).to_csv(d / "gmm_compare.csv")
    assert artefacts.read(tmp_path, "compare", dataset="gmm")[["model", "n"]].values.tolist() == [["debias", 1]]
    assert "weighting" not in artefacts.read(tmp_path, "compare", dataset="gmm")
    with pytest.raises(KeyError, match="no artefact 'nope'"):
        artefacts.path(tmp_path, "nope")
    with pytest.raises(KeyError, match="needs the field 'dataset'"):
        artefacts.file("compare")


def test_an_artefact_file_gives_back_its_dataset_underscores_and_all(tmp_path):
    from biaskit.study import artefacts
    for name in ("compare", "image_exposure_gap", "image_fixes_quality"):
        for dataset in ("digits", "fashion_mnist", "my_cats_64", "compare_x"):
            p = artefacts.path(tmp_path, name, dataset=dataset)
            assert artefacts.field_values(name, p) == {"dataset": dataset}
    with pytest.raises(ValueError, match="gmm_compare.png is not a file of artefact 'compare'"):
        artefacts.field_values("compare", tmp_path / "gmm_compare.png")
    # the report's header names the dataset a compare file was written for (it read "fashion" before)
    d = tmp_path / "01_existence"
    d.mkdir()
    pd.DataFrame({"n": [64]}).to_csv(d / artefacts.file("compare", dataset="fashion_mnist"), index=False)
    assert "Probe draws per t (held-out x0, one noise each): fashion_mnist 64." in R.header(tmp_path)


def test_every_artefact_is_written_by_its_notebook_through_the_table():
    import json

    from biaskit.study import artefacts
    from biaskit.study.notebooks import notebooks
    sources = {n: "".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"])
               for n, p in notebooks().items()}
    for name, a in artefacts.ARTEFACTS.items():
        assert f'artefacts.file("{name}"' in sources[a.notebook], (name, a.notebook)
