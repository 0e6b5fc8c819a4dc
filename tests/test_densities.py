"""Training-time densities over logsnr against their defining sampling recipes (Monte Carlo), and
weightings across processes at equal snr."""

import math

import numpy as np
import pytest
import torch

from biaskit import densities as D
from biaskit import processes as PR
from biaskit import weighting as W

LAM = torch.linspace(-30, 30, 60001, dtype=torch.float64)


def _cdf(pdf_values):
    dl = float(LAM[1] - LAM[0])
    c = torch.cumsum((pdf_values[1:] + pdf_values[:-1]) / 2 * dl, 0)
    return torch.cat([torch.zeros(1, dtype=torch.float64), c])


def _recipe(name, n, g):
    """logsnr samples drawn the way each paper draws its training times."""
    z = torch.randn(n, generator=g, dtype=torch.float64)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    logit = lambda s: torch.log(s) - torch.log1p(-s)  # noqa: E731
    if name == "lognormal_sigma":   # EDM: ln sigma = P_mean + P_std z, snr = 1 / sigma^2
        return -2 * (-1.2 + 1.2 * z)
    if name == "logit_normal":      # SD3: s = sigmoid(m + s z), snr = ((1 - s) / s)^2
        return -2 * logit(torch.sigmoid(0.5 + 0.8 * z))
    if name == "mode":              # SD3 Eq. 20
        s = 1 - u - 1.29 * (torch.cos(math.pi / 2 * u) ** 2 - 1 + u)
        return -2 * logit(s)
    if name == "cosmap":            # SD3 Eq. 21
        s = 1 - 1 / (torch.tan(math.pi / 2 * u) + 1)
        return -2 * logit(s)
    if name == "uniform_flow":      # plain flow matching: t ~ U(0, 1), x_t = (1 - t) x0 + t eps
        return 2 * (torch.log1p(-u) - torch.log(u))
    raise KeyError(name)


CASES = [("lognormal_sigma", "lognormal_sigma:-1.2:1.2", None), ("logit_normal", "logit_normal:0.5:0.8", None),
         ("mode", "mode:1.29", None), ("cosmap", "cosmap", None), ("uniform_flow", "uniform", PR.Flow())]


@pytest.mark.parametrize("recipe,spec,process", CASES, ids=[c[0] for c in CASES])
def test_density_matches_its_sampling_recipe(recipe, spec, process):
    g = torch.Generator().manual_seed(0)
    lam = _recipe(recipe, 400_000, g)
    lam = lam[torch.isfinite(lam)]
    pdf = D.get_density(spec)(LAM, process)
    cdf = _cdf(pdf)
    assert float(cdf[-1]) == pytest.approx(1.0, abs=2e-3)  # integrates to 1 (mass beyond |lam| 30 is tiny)
    qs = torch.quantile(lam[:200_000], torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64))
    model_cdf = np.interp(qs.numpy(), LAM.numpy(), cdf.numpy())
    # empirical CDF at its own quantiles is the level; Monte Carlo sd ~ sqrt(q(1-q)/2e5) <= 1.1e-3
    np.testing.assert_allclose(model_cdf, [0.05, 0.25, 0.5, 0.75, 0.95], atol=6e-3)


def test_edm_and_sd3_closed_forms_over_logsnr():
    # ln sigma ~ N(-1.2, 1.2^2) is lam ~ N(2.4, 2.4^2); logit(s) ~ N(0, 1) is lam ~ N(0, 2^2)
    lam = torch.tensor([-3.0, 0.0, 2.4, 7.0], dtype=torch.float64)
    ref = np.exp(-((lam.numpy() - 2.4) / 2.4) ** 2 / 2) / (2.4 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(D.get_density("lognormal_sigma")(lam).numpy(), ref, rtol=1e-13)
    ref = np.exp(-(lam.numpy() / 2) ** 2 / 2) / (2 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(D.get_density("logit_normal")(lam).numpy(), ref, rtol=1e-13)


def test_uniform_time_density_of_each_process_is_uniform_in_its_time():
    for p in (PR.VE(), PR.Flow(shift=3.0, t_min=0.01, t_max=0.99), PR.ContinuousVP("cosine")):
        t = torch.linspace(p.t_min, p.t_max, 41, dtype=torch.float64)[1:-1]
        np.testing.assert_allclose(D.time_pdf("uniform", p, t).numpy(), 1 / (p.t_max - p.t_min), rtol=1e-9)


def test_edm_weighting_is_edms_lambda_on_the_d_mse():
    sigma = torch.logspace(-3, 2, 50, dtype=torch.float64)
    snr = sigma**-2
    lam_edm = PR.edm_preconditioning(sigma, sigma_data=0.5)["weight"]  # (sigma^2 + sd^2) / (sigma sd)^2
    np.testing.assert_allclose(W.get_weighting("edm")(snr, "x0").numpy(), lam_edm.numpy(), rtol=1e-12)


@pytest.mark.parametrize("p", [PR.Flow(), PR.VE(), PR.ContinuousVP("cosine"), PR.Flow(shift=3.0)], ids=repr)
@pytest.mark.parametrize("spec", ["constant", "debias", "min_snr:5", "p2:k=1:gamma=1", "edm"])
def test_weighted_losses_agree_across_targets_at_equal_snr(p, spec):
    """w_space ||target error||^2 is the same number in every space, computed in the process's own
    coordinates: x0_hat - x0 = d, eps_hat - eps = -(alpha / sigma) d, v and flow velocity from
    their definitions (v = alpha_vp eps - sigma_vp x0 on the VP-scaled process)."""
    g = torch.Generator().manual_seed(1)
    t = torch.linspace(p.t_min + 0.02 * (p.t_max - p.t_min), p.t_max * 0.98, 33, dtype=torch.float64)
    a, s = p.alpha(t), p.sigma(t)
    d = torch.randn(33, generator=g, dtype=torch.float64)        # x0 error at fixed x_t
    e_eps = -(a / s) * d                                          # x_t = a x0 + s eps held fixed
    a_vp, s_vp = PR.vp_coefficients(p.logsnr(t))
    e_v = a_vp * e_eps - s_vp * d                                 # v = alpha eps - sigma x0
    e_u = e_eps - d                                               # u = eps - x0
    snr = p.snr(t)
    w = W.get_weighting(spec)
    ref = w(snr, "x0") * d**2
    for space, err in (("eps", e_eps), ("v", e_v), ("flow", e_u)):
        np.testing.assert_allclose((w(snr, space) * err**2).numpy(), ref.numpy(), rtol=1e-12)


def test_effective_weight_is_one_objective_across_formulations():
    """EDM's loss (lambda(sigma) on the D-MSE, ln sigma ~ N(-1.2, 1.2^2)) and the same weighting
    for a flow model whose times are logit-normal with the same law over logsnr agree per unit
    logsnr; debias under uniform VP (cosine) time is not debias under uniform flow time."""
    lam = torch.linspace(-10, 10, 201, dtype=torch.float64)
    edm = D.effective_x0_weight("edm", "lognormal_sigma:-1.2:1.2", PR.VE(), lam)
    # lam ~ N(2.4, 2.4^2) is logit(s) ~ N(-1.2, 1.2^2): the same density written for a flow model
    flow = D.effective_x0_weight("edm", "logit_normal:-1.2:1.2", PR.Flow(), lam)
    np.testing.assert_allclose(flow.numpy(), edm.numpy(), rtol=1e-12)
    vp = D.effective_x0_weight("debias", "uniform", PR.ContinuousVP("cosine"), lam)
    fl = D.effective_x0_weight("debias", "uniform", PR.Flow(t_min=1e-4, t_max=1 - 1e-4), lam)
    assert float((vp / fl).max() / (vp / fl).min()) > 1.5


def test_per_logsnr_weighting_is_its_own_effective_weight():
    lam = torch.linspace(-8, 8, 17, dtype=torch.float64)
    got = D.effective_x0_weight("sigmoid:b=2", "logit_normal", PR.Flow(), lam)
    np.testing.assert_allclose(got.numpy(), (torch.sigmoid(2 - lam) * lam.exp()).numpy(), rtol=1e-12)


def test_bad_specs():
    with pytest.raises(ValueError, match="valid: cosmap"):
        D.get_density("beta")
    with pytest.raises(ValueError, match="parameter must be a number"):
        D.get_density("normal:a")
    with pytest.raises(ValueError, match=r"scale must be in \[-1, 1.75"):
        D.get_density("mode:3")
    with pytest.raises(ValueError, match="pass the process"):
        D.get_density("uniform")(torch.zeros(1))


def test_weights_command_on_a_process(capsys):
    import io

    import pandas as pd

    from biaskit import cli
    rc = cli.main(["weights", "--process", "flow", "--density", "logit_normal:0:1", "--space", "flow",
                   "--weightings", "constant,debias", "--points", "9", "--format", "csv"])
    out = capsys.readouterr()
    assert rc == 0 and "x0-MSE weight per unit logsnr" in out.err
    df = pd.read_csv(io.StringIO(out.out)).set_index("t")
    # t = 0.5: snr = 1, w_flow = snr / (1 + sqrt snr)^2 = 1/4 for both; x0 per logsnr = 1 * N(0; 0, 2^2)
    assert df.loc[0.5, "constant"] == pytest.approx(0.25) and df.loc[0.5, "debias"] == pytest.approx(0.25)
    assert df.loc[0.5, "constant_x0_per_logsnr"] == pytest.approx(1 / (2 * math.sqrt(2 * math.pi)))
    # t = 0.25: snr = 9, debias w_x0 = 3, flow weight 3 / 16
    assert df.loc[0.25, "debias"] == pytest.approx(3 / 16)
    assert cli.main(["weights", "--process", "flow", "--weightings", "vlb"]) == 2
    assert "discrete DDPM bound" in capsys.readouterr().err


def test_weights_command_normalizes_and_plots_under_a_process(capsys, tmp_path):
    import io

    import pandas as pd

    from biaskit import cli
    args = ["weights", "--process", "vp_linear_logsnr", "--weightings", "debias,constant", "--points", "2001",
            "--format", "csv"]
    assert cli.main([*args, "--normalize", "mean", "--plot", str(tmp_path / "w.png")]) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out))
    # uniform t on a logsnr linear in t: p_lam = 1 / 30 on [-15, 15]; mean-normalised, the x0 weight
    # per logsnr integrates to 1 (debias: w_x0 = sqrt(snr) = exp(lam / 2), so c = 30 / (2 (e^7.5 - e^-7.5)))
    for col in ("debias", "constant"):
        assert np.trapezoid(df[f"{col}_x0_per_logsnr"].to_numpy(), df["logsnr"].to_numpy()) == pytest.approx(1, rel=1e-4)
    c = 30 / (2 * (math.exp(7.5) - math.exp(-7.5)))
    np.testing.assert_allclose(df["debias"], c * np.exp(df["logsnr"] / 2), rtol=1e-6)
    assert (tmp_path / "w.png").stat().st_size > 0
    # max: the largest x0 weight over the process's range is 1
    assert cli.main([*args, "--normalize", "max"]) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert df["debias"].max() == pytest.approx(1, rel=1e-6) and df["constant"].max() == pytest.approx(1)
