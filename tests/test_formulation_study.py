"""biaskit.study.formulations on small hand-made frames whose answers are worked out below."""

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from biaskit.study import formulations as fs
from biaskit.metrics import BASELINE
from biaskit.processes import VE, Flow, get_process


def _frame():
    # model a: excess 4, 2, 1, 0 at logsnr -4, -2, 0, 2 (listed least noisy first, as a probe does)
    rows = []
    for name, scale in (("a", 1.0), ("b", 0.5)):
        for t, lam, ex, orc, bias in ((0, 2.0, 0.0, 0.1, 0.0), (1, 0.0, 1.0, 0.5, 0.0),
                                      (2, -2.0, 2.0, 1.0, 0.1), (3, -4.0, 4.0, 2.0, 0.3)):
            rows.append({"model": name, "kind": "model", "t": t, "schedule_index": t, "snr": math.exp(lam),
                         "logsnr": lam, "n": 8, "excess_mse": scale * ex, "excess_mse_lo": scale * ex - 0.1,
                         "excess_mse_hi": scale * ex + 0.1, "oracle_mse": orc, "oracle_mse_lo": orc - 0.01,
                         "oracle_mse_hi": orc + 0.01, "x0_mse": orc + scale * ex, "x0_bias_l2": scale * bias})
    rows.append({**rows[0], "model": "b - a", "kind": "difference"})
    return pd.DataFrame(rows)


def test_high_noise_table_integrates_the_excess_over_logsnr():
    h = fs.high_noise_table(_frame(), cut=-3.0).set_index("model")
    assert list(h.index) == ["a", "b"]  # difference rows are not models
    # trapezoids: total 6 + 3 + 1 = 10; below -3: (4 + 3) / 2 * 1 = 3.5 (y = 3 at the cut)
    assert h.loc["a", "excess_share_below_cut"] == pytest.approx(0.35)
    assert h.loc["b", "excess_share_below_cut"] == pytest.approx(0.35)  # a share: scale-free
    assert h.loc["a", "n_below_cut"] == 1
    assert h.loc["a", "excess_over_oracle_below_cut"] == pytest.approx(4.0 / 2.0)
    assert h.loc["b", "excess_noisiest"] == pytest.approx(2.0)
    assert h.loc["b", "excess_noisiest_lo"] == pytest.approx(1.9)
    assert h.loc["a", "x0_bias_l2_noisiest"] == pytest.approx(0.3)
    assert h.loc["a", "logsnr_noisiest"] == -4.0
    # a cut beyond every point: all or nothing
    assert fs.high_noise_table(_frame(), cut=5.0).set_index("model").loc["a", "excess_share_below_cut"] == 1
    assert fs.high_noise_table(_frame(), cut=-9.0).set_index("model").loc["a", "excess_share_below_cut"] == 0


def test_with_oracle_adds_the_oracle_error_as_a_model():
    df = fs.with_oracle(_frame())
    oracle = df[df["model"] == fs.ORACLE].sort_values("t")
    assert list(oracle["x0_mse"]) == [0.1, 0.5, 1.0, 2.0]
    assert list(oracle["x0_mse_lo"]) == pytest.approx([0.09, 0.49, 0.99, 1.99])
    assert set(df["model"]) == {"a", "b", fs.ORACLE}
    with pytest.raises(ValueError, match="oracle"):
        fs.with_oracle(_frame().drop(columns="oracle_mse"))


def test_quality_over_floor_and_summary():
    q = pd.DataFrame([{"model": "a", "metric": "swd", "value": 0.3, "sampler": "ddim", "steps": 2, "clip": False},
                      {"model": "a", "metric": "swd", "value": 0.1, "sampler": "ddim", "steps": 10, "clip": False},
                      {"model": "b", "metric": "swd", "value": 0.2, "sampler": "ddim", "steps": 2, "clip": False},
                      {"model": "b", "metric": "swd", "value": 0.4, "sampler": "ddim", "steps": 10, "clip": False},
                      {"model": "b", "metric": "swd", "value": 0.6, "sampler": "heun", "steps": 2, "clip": False},
                      {"model": BASELINE, "metric": "swd", "value": 0.05, "sampler": None, "steps": None,
                       "clip": False}])
    over = fs.quality_over_floor(q)
    assert BASELINE not in set(over["model"])
    assert list(over["over_floor"]) == pytest.approx([6, 2, 4, 8, 12])
    s = fs.summary_table(fs.high_noise_table(_frame(), -3.0), q, sampler="ddim", clip=False).set_index("model")
    assert s.loc["a", "swd/floor ddim 2 steps"] == pytest.approx(6)
    assert s.loc["b", "swd/floor ddim 10 steps"] == pytest.approx(8)
    assert s.loc["b", "swd/floor own 2 steps"] == pytest.approx(12)
    assert math.isnan(s.loc["a", "swd/floor own 2 steps"])


def test_own_sampler_of_each_process():
    assert fs.own_sampler(SimpleNamespace(process=VE())) == "heun"
    assert fs.own_sampler(SimpleNamespace(process=get_process("edm"))) == "heun"
    assert fs.own_sampler(SimpleNamespace(process=Flow())) == "flow_euler"
    assert fs.own_sampler(SimpleNamespace()) is None
    assert fs.own_sampler(SimpleNamespace(process=get_process("vp_cosine"))) is None
    assert fs.OWN_SAMPLERS == ("heun", "flow_euler")   # the "own" columns of summary_table


def test_formulation_groups_pair_each_usual_loss_with_its_debias_equivalent():
    from biaskit.study.formulations import formulation_groups
    from biaskit.study.profiles import FORMULATIONS
    assert formulation_groups(FORMULATIONS) == {
        "eps-VP": ["constant", "debias"], "v-VP": ["v", "v-debias"], "EDM": ["edm", "edm-debias"],
        "flow matching": ["flow", "flow-debias"]}
    assert formulation_groups(["edm-debias", "debias"]) == {"EDM": ["edm-debias"], "eps-VP": ["debias"]}


def test_grouped_bias_plot_has_one_panel_per_formulation_and_a_unit():
    import matplotlib
    matplotlib.use("Agg")
    from biaskit import plots
    rows = [{"model": m, "t": t, "logsnr": -t / 100, "x0_bias_l2": v, "x0_bias_l2_lo": 0.0, "x0_bias_l2_hi": 2 * v}
            for m, v in (("constant", 0.3), ("debias", 0.0), ("v", 0.01)) for t in (0, 500, 999)]
    fig = plots.plot_per_timestep_groups(pd.DataFrame(rows), "x0_bias_l2", {"eps-VP": ["constant", "debias"], "v-VP": ["v"]},
                                         linthresh=0.05)
    assert [a.get_title() for a in fig.axes] == ["eps-VP", "v-VP"]
    assert "data units" in fig.axes[0].get_ylabel() and fig.axes[0].get_yscale() == "symlog"
    assert len(fig.axes[0].get_lines()) == 2 and len(fig.axes[1].get_lines()) == 1
