"""The weighting algebra: identities between spaces, hand-computed values, snr = 0 limits."""

import math

import numpy as np
import pytest
import torch

from biaskit import weighting as W
from biaskit.schedules import get_schedule, linear

SNR = torch.logspace(-4, 4, 41, dtype=torch.float64)
ALL = ["constant", "snr", "min_snr", "min_snr:gamma=2", "p2", "p2:k=1:gamma=0.5", "debias",
       "soft_min_snr", "edm", "sigmoid", "sigmoid:b=-1", "trunc_snr", "max_snr:3"]

# the table of SCIENCE.md, typed independently in x0 space (w_x0) as plain numpy
HAND_X0 = {
    "constant": lambda s: s,
    "snr": lambda s: np.ones_like(s),
    "min_snr": lambda s: np.minimum(s, 5.0),
    "min_snr:gamma=2": lambda s: np.minimum(s, 2.0),
    "p2": lambda s: s / (1 + s),
    "p2:k=1:gamma=0.5": lambda s: s / np.sqrt(1 + s),
    "debias": lambda s: np.sqrt(s),
    "soft_min_snr": lambda s: s / (1 + 0.25 * s),
    "edm": lambda s: s + 4.0,
    "sigmoid": lambda s: s * 1 / (1 + s),
    "sigmoid:b=-1": lambda s: s * np.exp(-1) / (np.exp(-1) + s),
    "trunc_snr": lambda s: np.maximum(s, 1.0),
    "max_snr:3": lambda s: np.maximum(s, 3.0),
}


@pytest.mark.parametrize("spec", ALL)
def test_x0_space_matches_table(spec):
    np.testing.assert_allclose(W.get_weighting(spec)(SNR, "x0").numpy(), HAND_X0[spec](SNR.numpy()),
                               rtol=1e-12)


@pytest.mark.parametrize("spec", ALL)
def test_space_identities(spec):
    w = W.get_weighting(spec)
    eps, x0, v, u = (w(SNR, s) for s in ("eps", "x0", "v", "flow"))
    torch.testing.assert_close(x0, SNR * eps, rtol=1e-12, atol=0)
    torch.testing.assert_close(v, SNR / (SNR + 1) * eps, rtol=1e-12, atol=0)
    torch.testing.assert_close(u, SNR / (1 + SNR.sqrt()) ** 2 * eps, rtol=1e-12, atol=0)


def test_identities_follow_from_the_errors():
    """Check the space conversions on actual errors, not on the formulas: for a random eps error,
    w_eps |e_eps|^2 = w_x0 |e_x0|^2 = w_v |e_v|^2 = w_flow |e_u|^2."""
    g = torch.Generator().manual_seed(0)
    snr = torch.tensor(0.37, dtype=torch.float64)
    alpha, sigma = (snr / (1 + snr)).sqrt(), (1 / (1 + snr)).sqrt()
    x0, eps, d = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(3))
    x_t = alpha * x0 + sigma * eps
    eps_hat = eps + d
    x0_hat = (x_t - sigma * eps_hat) / alpha
    errs = {"eps": d, "x0": x0_hat - x0, "v": (alpha * eps_hat - sigma * x0_hat) - (alpha * eps - sigma * x0),
            "flow": (eps_hat - x0_hat) - (eps - x0)}
    w = W.get_weighting("p2:k=1:gamma=0.5")
    losses = [float(w(snr, s) * (e**2).sum()) for s, e in errs.items()]
    np.testing.assert_allclose(losses, losses[0], rtol=1e-10)


def test_debias_at_last_linear_step_is_about_157():
    s = linear(1000)
    w = W.get_weighting("debias")(s.snr[-1], "eps")
    assert float(w) == pytest.approx(157.4, abs=0.1)
    assert float(W.amplification(s.snr[-1])) == pytest.approx(float(w), rel=1e-12)


def test_zero_snr_limits():
    s0 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    # finite limits: constant eps = 1, constant x0 = 0, v of snr/edm = 1/(0+1) * g(0)
    assert W.get_weighting("constant")(s0, "eps").tolist() == [1.0, 1.0]
    assert W.get_weighting("constant")(s0, "x0").tolist() == [0.0, 1.0]
    assert W.get_weighting("snr")(s0, "v").tolist() == [1.0, 0.5]
    assert W.get_weighting("edm")(s0, "v")[0] == 4.0
    assert W.get_weighting("min_snr")(s0, "eps").tolist() == [1.0, 1.0]  # min(snr,5)/snr -> 1
    assert W.get_weighting("min_snr")(s0, "v").tolist() == [0.0, 0.5]
    assert W.get_weighting("debias")(s0, "x0").tolist() == [0.0, 1.0]
    assert W.get_weighting("sigmoid")(s0, "eps")[0] == 1.0
    for name in ("snr", "debias", "edm", "trunc_snr"):
        with pytest.raises(W.InfiniteWeightError, match="snr_min"):
            W.get_weighting(name)(s0, "eps")
    # documented clamp: evaluate at snr_min instead
    assert float(W.get_weighting("debias")(s0, "eps", snr_min=1e-4)[0]) == pytest.approx(100.0)


def test_table_on_zero_terminal_schedule():
    s = get_schedule("linear_zsnr")
    df = W.weights_table(s, ["constant", "debias", "min_snr"], "x0")
    assert np.isfinite(df[["constant", "debias", "min_snr"]].to_numpy()).all()
    with pytest.raises(W.InfiniteWeightError):
        W.weights_table(s, ["debias"], "eps")


def test_vlb_equals_ddpm_bound_coefficient():
    s = linear(1000)
    b, ab = s.betas.numpy(), s.abar.numpy()
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    # L_{t-1} = beta_t^2 / (2 s_t^2 alpha_t (1 - abar_t)) |eps - eps_hat|^2, s_t^2 = beta~_t (Ho et al. Eq. 12)
    bt = b * (1 - ab_prev) / (1 - ab)
    t = np.arange(1, 1000)
    hand = b[t] ** 2 / (2 * bt[t] * (1 - b[t]) * (1 - ab[t]))
    got = W.weights_table(s, ["vlb"], "eps")["vlb"].to_numpy()
    np.testing.assert_allclose(got[1:], hand, rtol=1e-10)
    # simplifies to beta / (2 (1 - beta) (1 - abar_{t-1})): decreasing from t=1
    np.testing.assert_allclose(got[1:], b[t] / (2 * (1 - b[t]) * (1 - ab_prev[t])), rtol=1e-10)


def test_user_callable_in_eps_space():
    w = W.from_callable(lambda s: 1 / s.sqrt(), space="eps", name="mine")
    torch.testing.assert_close(w(SNR, "x0"), W.get_weighting("debias")(SNR, "x0"), rtol=1e-12, atol=0)
    w2 = W.get_weighting(lambda s: torch.ones_like(s))  # x0 space by default = snr weighting
    torch.testing.assert_close(w2(SNR, "eps"), 1 / SNR)


def test_column_names_and_parsing():
    assert W.get_weighting("min_snr").column == "min_snr"
    assert W.get_weighting("min_snr:5").column == "min_snr"
    assert W.get_weighting("min_snr:gamma=2").column == "min_snr_2"
    assert W.get_weighting("p2:k=1:gamma=0.5").column == "p2_0.5"
    with pytest.raises(ValueError, match="valid weightings: .*debias"):
        W.get_weighting("nope")
    with pytest.raises(ValueError, match="takes parameters"):
        W.get_weighting("debias:3")


def test_per_logsnr_density_and_normalisation():
    s = linear(1000)
    w = W.get_weighting("constant")(s.snr, "eps").numpy()
    rho = W.per_logsnr_density(w, s, normalize="integral")
    lam = s.logsnr.numpy()
    assert np.trapezoid(rho[::-1], lam[::-1]) == pytest.approx(1.0, rel=1e-9)
    # uniform t with constant weight: density = (1/T) / |dlogsnr/dt|, hand-differenced
    dl = np.abs(np.gradient(lam))
    raw = W.per_logsnr_density(w, s, normalize="none")
    np.testing.assert_allclose(raw, 1 / 1000 / dl, rtol=1e-12)
    nw = W.normalize_weights(W.get_weighting("debias")(s.snr, "eps"), "mean")
    assert float(nw.mean()) == pytest.approx(1.0)
    q = W.share_by_quarter(np.ones(1000))
    np.testing.assert_allclose(q, [0.25] * 4)


def test_cli_csv(capsys):
    from biaskit.cli import main
    assert main(["weights", "--schedule", "linear", "--timesteps", "1000", "--space", "x0",
                 "--format", "csv"]) == 0
    import io
    import pandas as pd
    df = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(df.columns[:3]) == ["t", "snr", "logsnr"] and len(df) == 1000
    assert "snr_weighting" in df.columns and "debias" in df.columns
    assert np.isfinite(df.drop(columns="t").to_numpy()).all()
    assert df["debias"].iloc[-1] == pytest.approx(math.sqrt(df["snr"].iloc[-1]), rel=1e-6)


def test_cli_plot_and_errors(tmp_path, capsys):
    from biaskit.cli import main
    out = tmp_path / "w.png"
    assert main(["weights", "--plot", str(out), "--format", "csv"]) == 0
    assert out.stat().st_size > 10_000
    assert main(["weights", "--schedule", "nope"]) == 2
    assert "valid schedules" in capsys.readouterr().err


# --- measures: per sample or per unit logsnr -----------------------------------------------------
def _logsnr(s):
    """logsnr from the schedule's abar, by hand (numpy)."""
    ab = s.abar.numpy()
    return np.log(ab / (1 - ab))


def _sigm(x):
    return 1 / (1 + np.exp(-x))


def test_every_registry_entry_says_its_measure():
    ms = {n: W.get_weighting(n).measure for n in W.names()}
    assert set(ms.values()) <= set(W.MEASURES)
    # Kingma & Gao define sigmoid per unit logsnr; P2, Min-SNR, debias, EDM's lambda(sigma), ... are
    # weights per sampled t
    assert [n for n, m in ms.items() if m == "per_logsnr"] == ["sigmoid"]
    assert W.measures(["sigmoid", "snr", "p2:k=0"]) == {"sigmoid": "per_logsnr",
                                                         "snr_weighting": "per_sample", "p2_0": "per_sample"}


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("b", [0.0, -1.0, 2.0])
def test_sigmoid_per_sample_weight_is_density_times_logsnr_jacobian(schedule, b):
    s = get_schedule(schedule, 1000)
    lam = _logsnr(s)
    dlam = np.abs(np.gradient(lam))  # |d logsnr / dt| per step, central differences
    spec = f"sigmoid:b={b}"
    np.testing.assert_allclose(W.per_sample_weights(spec, s, "eps").numpy(),
                               _sigm(b - lam) * dlam, rtol=1e-10)
    np.testing.assert_allclose(W.per_sample_weights(spec, s, "x0").numpy(),
                               np.exp(lam) * _sigm(b - lam) * dlam, rtol=1e-10)
    # the table holds the same per-sample weights, and the density they imply is sigmoid again
    w_eps = W.weights_table(s, [spec], "eps").iloc[:, -1].to_numpy()
    np.testing.assert_allclose(W.per_logsnr_density(w_eps, s, normalize="none"),
                               _sigm(b - lam) / 1000, rtol=1e-10)


def test_per_logsnr_weight_keeps_its_density_under_any_time_density():
    s = linear(1000)
    from biaskit.densities import step_probabilities
    p = step_probabilities("lognormal:2.4:2.4", s)
    uniform = W.per_sample_weights("sigmoid", s, "eps").numpy()
    drawn = W.per_sample_weights("sigmoid", s, "eps", p_t=p).numpy()
    # E_{t~p}[w_p(t) .] = E_{t~uniform}[w_u(t) .]: w_p p = w_u / T
    np.testing.assert_allclose(drawn * p, uniform / 1000, rtol=1e-10)
    # a per-sample weighting is the same whatever p is (p is then part of the objective)
    np.testing.assert_array_equal(W.per_sample_weights("debias", s, "eps", p_t=p).numpy(),
                                  W.per_sample_weights("debias", s, "eps").numpy())


def test_sigmoid_at_zero_terminal_snr():
    s = get_schedule("linear_zsnr", 1000)
    snr = s.snr.numpy()
    w = W.per_sample_weights("sigmoid", s, "x0").numpy()
    # last step: rho_x0 |dlogsnr/dt| = (rho_x0 / snr) |dsnr/dt| -> e^0 / (e^0 + 0) * (snr_998 - 0)
    assert w[-1] == pytest.approx(snr[-2], rel=1e-12) and np.isfinite(w).all()
    with pytest.raises(W.InfiniteWeightError, match=r"eps space .*x0, v or flow space, or .*snr_min"):
        W.per_sample_weights("sigmoid", s, "eps")
    with pytest.raises(ValueError, match="per unit logsnr.*at least 2 steps"):
        W.per_sample_weights("sigmoid", linear(1))


# --- limits and messages -----------------------------------------------------------------------
def test_p2_with_k_zero_has_exact_zero_snr_limits():
    s = get_schedule("linear_zsnr", 1000)
    snr = s.snr.numpy()
    w = W.per_sample_weights("p2:k=0:gamma=0.5", s, "x0").numpy()
    np.testing.assert_allclose(w, snr**0.5, rtol=1e-12)  # snr * snr^-1/2, 0 at snr = 0
    assert w[-1] == 0.0
    v = W.per_sample_weights("p2:k=0:gamma=0.5", s, "v").numpy()
    np.testing.assert_allclose(v, snr**0.5 / (snr + 1), rtol=1e-12)
    with pytest.raises(W.InfiniteWeightError) as e:
        W.per_sample_weights("p2:k=0:gamma=0.5", s, "eps")
    assert "evaluate it in x0, v or flow space" in str(e.value)
    # gamma > 1: infinite in every space, so only the clamp is suggested
    with pytest.raises(W.InfiniteWeightError) as e:
        W.per_sample_weights("p2:k=0:gamma=1.5", s, "x0")
    assert "evaluate it in" not in str(e.value) and "snr_min" in str(e.value)
    with pytest.raises(ValueError, match="k must be a finite number >= 0"):
        W.get_weighting("p2:k=-1")


@pytest.mark.parametrize("name,space", [("debias", "eps"), ("snr", "eps"), ("edm", "eps")])
def test_infinite_weight_message_never_suggests_the_space_in_use(name, space):
    s = get_schedule("linear_zsnr", 1000)
    with pytest.raises(W.InfiniteWeightError) as e:
        W.per_sample_weights(name, s, space)
    msg = str(e.value)
    assert f"in {space} space is infinite at snr = 0" in msg
    assert msg.split("; ")[1].startswith("evaluate it in x0, v or flow space, or clamp")


def test_vlb_messages():
    zs = get_schedule("linear_zsnr", 1000)  # beta = 1 at the last step: no snr or space helps
    with pytest.raises(W.InfiniteWeightError, match="no space makes it finite"):
        W.per_sample_weights("vlb", zs, "x0")
    with pytest.raises(ValueError, match="T >= 2"):
        W.per_sample_weights("vlb", linear(1))


# --- normalisation: one constant, fixed in x0 space, for every target -------------------------------
# ||e_x0||^2 = ||e_eps||^2 / snr = ||e_v||^2 / (snr + 1) = ||e_u||^2 / (1 + sqrt snr)^2, so the
# x0-space weight equivalent to a weight on the target's error is w_target times:
TO_X0 = {"x0": lambda s: 1.0, "eps": lambda s: s, "v": lambda s: s + 1, "flow": lambda s: (1 + s**0.5) ** 2}


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("spec", ["constant", "min_snr", "debias", "p2", "sigmoid", "edm"])
def test_normalised_weights_are_one_objective_for_every_target(schedule, spec):
    s = get_schedule(schedule, 1000)
    snr = s.snr.numpy()
    from biaskit.densities import step_probabilities
    for p in (None, step_probabilities("lognormal:1:2", s)):
        as_x0 = [W.per_sample_weights(spec, s, tgt, normalize="mean", p_t=p).numpy() * TO_X0[tgt](snr)
                 for tgt in W.SPACES]
        for a in as_x0[1:]:
            np.testing.assert_allclose(a, as_x0[0], rtol=1e-9)
        pp = np.full(1000, 1e-3) if p is None else p
        assert (as_x0[0] * pp).sum() == pytest.approx(1.0, rel=1e-12)


def test_min_snr_normalised_by_hand():
    s = linear(1000)
    snr = s.snr.numpy()
    hand = np.minimum(snr, 5.0) / np.minimum(snr, 5.0).mean()  # x0 space, mean 1 over uniform t
    for tgt in ("eps", "x0", "v"):
        w = W.per_sample_weights("min_snr", s, tgt, normalize="mean").numpy() * TO_X0[tgt](snr)
        np.testing.assert_allclose(w, hand, rtol=1e-10)
    m = W.per_sample_weights("debias", s, "eps", normalize="max").numpy() * snr
    assert m.max() == pytest.approx(1.0, rel=1e-12)


def test_cli_says_each_weightings_measure(capsys):
    from biaskit.cli import main
    assert main(["weights", "--timesteps", "20", "--weightings", "constant,sigmoid"]) == 0
    out = capsys.readouterr().out
    assert "per sample: constant" in out and "per unit logsnr, shown times |dlogsnr/dt|: sigmoid" in out
    assert main(["weights", "--timesteps", "20", "--weightings", "sigmoid", "--format", "csv"]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith("t,snr,logsnr,sigmoid") and "per unit logsnr" in cap.err


def test_cli_limits_and_messages(capsys):
    from biaskit.cli import main
    assert main(["weights", "--schedule", "linear_zsnr", "--weightings", "p2:k=0:gamma=0.5"]) == 0
    capsys.readouterr()
    # T = 1: the weightings that need two steps say so (it was "limit at snr -> 0 is infinite")
    assert main(["weights", "--timesteps", "1", "--weightings", "constant,p2:k=0,debias"]) == 0
    capsys.readouterr()
    for spec, msg in (("vlb", "vlb weighting needs T >= 2"), ("sigmoid", "at least 2 steps")):
        assert main(["weights", "--timesteps", "1", "--weightings", spec]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and msg in err and "snr -> 0" not in err
    assert main(["weights", "--schedule", "linear_zsnr", "--space", "eps", "--weightings", "debias"]) == 2
    err = capsys.readouterr().err
    assert "x0, v or flow space" in err and "--snr-min" in err
