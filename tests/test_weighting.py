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
