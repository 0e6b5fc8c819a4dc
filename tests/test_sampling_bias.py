"""Notebook 06's recipes: the extra runs' configs, the brightness spread against numpy's
quantiles, and the replication rows' verdicts on hand-written tables."""

import numpy as np
import pandas as pd
import pytest
import torch

from biaskit.study import sampling_bias as sb
from biaskit.schedules import get_schedule


def test_extra_runs_are_the_profile_runs_with_their_fix():
    ip = sb.extra_config("smoke", "gmm", "constant+ip")
    assert ip.loss.input_perturbation == 0.1 and ip.loss.weighting == "constant"
    base = sb.extra_config("smoke", "gmm", "constant, scaled_linear")
    zsnr = sb.extra_config("smoke", "gmm", "v, scaled_linear zero SNR")
    assert base.schedule.name == zsnr.schedule.name == "scaled_linear" and zsnr.schedule.zero_terminal_snr
    assert zsnr.loss.target == "v" and base.loss.target == "eps"
    # Stable Diffusion's schedule keeps abar_T = 0.0047 (Lin et al. 2024, Sec. 3.1), its rescaling 0
    assert abs(float(get_schedule("scaled_linear").abar[-1]) - 0.0047) < 1e-4
    assert float(get_schedule("scaled_linear", zero_terminal_snr=True).abar[-1]) == 0.0
    with pytest.raises(ValueError, match="valid"):
        sb.extra_config("smoke", "gmm", "nope")


def test_brightness_spread_is_the_quantile_range_of_per_sample_means():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(400, 3, 2, 2, generator=g)             # per-sample mean: sd 1 / sqrt(12)
    narrow = 0.5 * torch.randn(400, 3, 2, 2, generator=g)
    df = sb.brightness_spread({"data": data, "narrow": narrow}, n_boot=200).set_index("set")
    for name, x in (("data", data), ("narrow", narrow)):
        m = x.double().flatten(1).mean(1).numpy()
        want = np.quantile(m, 0.975) - np.quantile(m, 0.025)
        assert df.loc[name, "spread"] == pytest.approx(want, rel=1e-9)
        assert df.loc[name, "spread_lo"] <= df.loc[name, "spread"] <= df.loc[name, "spread_hi"]
    # the normal law's 95% range is 2 * 1.96 sd: the ratio 0.5 lies in the interval
    r = df.loc["narrow"]
    assert r.ratio_lo < 0.5 < r.ratio_hi and r.ratio_hi < 0.8
    assert df.loc["data", "spread"] == pytest.approx(2 * 1.96 / 12**0.5, rel=0.15)


@pytest.mark.parametrize("column", ["model", "weighting"])
def test_replication_rows_read_verdicts_from_intervals(tmp_path, column):
    """``column``: the name of the column naming the model; ``weighting`` is how a figures folder
    of an earlier version wrote it (its exposure frames had a ``model`` column beside, the
    denoiser's own name), read the same."""
    d = tmp_path / "06_sampling_bias"
    d.mkdir()
    row = {"eps_scale": "none", "statistic": "outside_q99", "t": 0}
    if column == "weighting":
        row["model"] = "model"
    pd.DataFrame([{**row, column: "constant", "chain": 0.2, "chain_lo": 0.15, "chain_hi": 0.25,
                   "gap": 0.19, "gap_lo": 0.14, "gap_hi": 0.24},
                  {**row, column: "debias", "chain": 0.02, "chain_lo": 0.0, "chain_hi": 0.04,
                   "gap": 0.01, "gap_lo": -0.01, "gap_hi": 0.03}]).to_csv(d / "final_states.csv", index=False)
    pd.DataFrame([{column: "constant", "eps_scale": "none", "mean_abs_gap": 0.5, "half": 0.1},
                  {column: "debias", "eps_scale": "none", "mean_abs_gap": 0.2, "half": 0.1}]
                 ).to_csv(d / "exposure_gap.csv", index=False)
    pd.DataFrame([{"set": "constant", "value": 1.0, "lo": 0.9, "hi": 1.1},
                  {"set": "constant, eps scaled", "value": 0.5, "lo": 0.4, "hi": 0.6},
                  {"set": "constant+ip", "value": 1.0, "lo": 0.8, "hi": 1.2}]).to_csv(d / "fixes_quality.csv")
    (base, s0), (fix, s1) = sb.TERMINAL_SNR_CHAINS[0], sb.TERMINAL_SNR_CHAINS[-1]
    pd.DataFrame([{"set": f"{base}, {s0}", "ratio": 0.7, "ratio_lo": 0.6, "ratio_hi": 0.8},
                  {"set": f"{fix}, {s1}", "ratio": 0.95, "ratio_lo": 0.85, "ratio_hi": 1.05}]
                 ).to_csv(d / "brightness.csv", index=False)
    rows = {r[0]: r[2] for r in sb.replication_rows(tmp_path)}
    # one training seed per model: the verdict says which way the interval points, undecided
    agrees, observed = "undecided, 1 seed (points the claimed way)", "undecided, 1 seed (observed on this seed)"
    assert [v for k, v in rows.items() if k.startswith("Lin et al.")] == [agrees]
    verdicts = list(rows.values())
    assert verdicts[:3] == [observed, "inconclusive", observed]  # constant leaves q_t, debias nearer
    assert rows["beyond the paper: debias reduces exposure bias (mean |eps-norm gap| per dim along "
                "the chain)"] == observed
    assert rows["Ning et al.: constant, eps scaled samples closer to the data than constant (SWD)"] == agrees
    assert rows["Ning et al.: constant+ip samples closer to the data than constant (SWD)"] == "inconclusive"
    assert sb.replication_rows(tmp_path / "nothing") == []


def test_image_dataset_rows_and_terminal_snr_dataset(tmp_path):
    """An image dataset's eps-norm gap and fixes (``*_<dataset>.csv``) give their own rows naming the
    dataset; the brightness rows name the dataset they were measured on."""
    d = tmp_path / "06_sampling_bias"
    d.mkdir()
    pd.DataFrame([{"model": "constant", "eps_scale": "none", "mean_abs_gap": 0.05, "half": 0.01},
                  {"model": "debias", "eps_scale": "none", "mean_abs_gap": 0.2, "half": 0.01}]
                 ).to_csv(d / "exposure_gap_digits.csv", index=False)
    pd.DataFrame([{"set": "debias", "value": 1.0, "lo": 0.9, "hi": 1.1},
                  {"set": "debias, eps scaled", "value": 1.5, "lo": 1.4, "hi": 1.6}]
                 ).to_csv(d / "fixes_quality_digits.csv", index=False)
    (base, s0), (fix, s1) = sb.TERMINAL_SNR_CHAINS[0], sb.TERMINAL_SNR_CHAINS[-1]
    pd.DataFrame([{"set": f"{base}, {s0}", "ratio": 0.7, "ratio_lo": 0.6, "ratio_hi": 0.8, "dataset": "patches"},
                  {"set": f"{fix}, {s1}", "ratio": 0.5, "ratio_lo": 0.4, "ratio_hi": 0.55, "dataset": "patches"}]
                 ).to_csv(d / "brightness.csv", index=False)
    rows = {r[0]: r[2] for r in sb.replication_rows(tmp_path)}
    reversed_ = "undecided, 1 seed (reversed on this seed)"
    assert rows["beyond the paper: debias reduces exposure bias on digits (mean |eps-norm gap| per dim "
                "along the chain)"] == reversed_
    assert rows["Ning et al.: debias, eps scaled samples closer to the data than debias on digits (SWD)"] \
        == "undecided, 1 seed (points against the claim)"
    (claim,) = [k for k in rows if k.startswith("Lin et al.")]
    assert "on patches" in claim and rows[claim] == "undecided, 1 seed (points against the claim)"
    # a dataset name with an underscore (an image folder's) is read back whole
    (d / "exposure_gap_digits.csv").rename(d / "exposure_gap_my_digits.csv")
    (d / "fixes_quality_digits.csv").rename(d / "fixes_quality_my_digits.csv")
    rows = {r[0]: r[2] for r in sb.replication_rows(tmp_path)}
    assert rows["beyond the paper: debias reduces exposure bias on my_digits (mean |eps-norm gap| per dim "
                "along the chain)"] == reversed_


def test_extra_runs_follow_the_notebook_parameters():
    """The input-perturbation run trains on ``dataset``, the terminal-SNR pair on
    ``terminal_snr_dataset`` (the full profile: patches, whose presets have no v variant: the v
    run is constant weighting of the v-MSE, as gmm's preset v), and image datasets join the plan."""
    from biaskit.study.profiles import notebook_extra_runs, parameters, planned_runs
    full = parameters("full", "06_sampling_bias")
    assert notebook_extra_runs("06_sampling_bias", full) == [
        ("gmm", "constant+ip"), ("patches", "constant, scaled_linear"), ("patches", "v, scaled_linear zero SNR")]
    quick = parameters("quick", "06_sampling_bias")
    assert {f for f, _ in notebook_extra_runs("06_sampling_bias", quick)} == {"gmm"}
    plan = planned_runs("quick", ["06_sampling_bias"])
    assert ("digits", "constant", 0) in plan and ("digits", "debias", 0) in plan
    v = sb.extra_config("smoke", "patches", "v, scaled_linear zero SNR")
    assert v.loss.target == "v" and v.loss.weighting == "v_constant" and v.schedule.zero_terminal_snr
    from biaskit.config import apply_overrides, get_preset, to_dict
    gmm_v = apply_overrides(get_preset("gmm-v", "quick"), ["schedule.name=scaled_linear",
                                                           "schedule.zero_terminal_snr=true"])
    mine = sb.extra_config("quick", "gmm", "v, scaled_linear zero SNR")
    a, b = to_dict(gmm_v), to_dict(mine)
    for k in ("loss", "schedule", "model"):
        assert a[k] == b[k]


def test_a_chosen_scale_of_one_is_not_a_fix():
    """The fixes' comparison takes "W, eps scaled" only where the sweep chose a scale other than 1:
    a chosen 1 is the unscaled model, whose samples would count twice (once as the "fix")."""
    sweep = pd.DataFrame([{"model": "constant", "eps_scale": "0.99", "mean_abs_gap": 0.04, "chosen": True},
                          {"model": "constant", "eps_scale": "1", "mean_abs_gap": 0.07, "chosen": False},
                          {"model": "debias", "eps_scale": "1", "mean_abs_gap": 0.01, "chosen": True}])
    fixes = sb.scaled_fixes(sweep)
    assert list(fixes) == ["constant, eps scaled"] and fixes["constant, eps scaled"].b == 0.99
