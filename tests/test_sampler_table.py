"""The sampler table: a sampler is one function and one row. A toy sampler registered here (Euler
on the VP probability-flow ODE, written from its definition) samples through ``sample()``,
``model_calls``, hybrid sampling and ``biaskit sample`` with no other change, and converges to
the closed-form flow map of Gaussian data at first order."""

import json
import math

import numpy as np
import pytest
import torch

from biaskit import get_schedule
from biaskit.cli import main
from biaskit.oracle import GaussianMixture, oracle_denoiser
from biaskit.sampling import (SamplerSpec, hybrid_sample, lookup, model_calls, register, sample,
                              sampler_names, sampling_grid, unregister)

M, S = torch.tensor([0.5, -1.0]), 0.5


# Song et al. 2021 (score SDE), Eq. 13 for the VP SDE: dx/dt = -beta(t)/2 (x + score),
# score = -eps_hat / sigma; with beta dt = -d log abar, Euler in log abar between kept steps
def vp_euler(model, x, grid, *, generator=None, callback=None, progress=False):
    log_abar = grid.kept.abar.double().log().tolist()
    sigma = grid.kept.sigma.tolist()
    for i, k in enumerate(range(grid.n - 1, -1, -1)):
        pred = model(x, k)
        h = (log_abar[k - 1] if k > 0 else 0.0) - log_abar[k]
        x_next = x + 0.5 * h * (x - pred.eps_hat / sigma[k])
        if callback is not None:
            callback(model.info(i, k, x, pred, x_next))
        x = x_next
    return x


@pytest.fixture
def toy():
    spec = register(SamplerSpec("toy_vp_euler", vp_euler))
    yield spec
    unregister(spec.name)


def _gaussian():
    mix = GaussianMixture.isotropic([1.0], M[None], S)
    return oracle_denoiser(mix, get_schedule("linear"), data_range=(-3, 3))


def test_a_registered_sampler_converges_to_the_gaussian_flow_map(toy):
    """For x0 ~ N(m, s^2 I) the probability-flow ODE keeps z = (x_t - alpha m) / sqrt(alpha^2 s^2
    + sigma^2) fixed, so x_T maps to m + s z; Euler's error falls as 1/steps."""
    den = _gaussian()
    sched = den.schedule
    a_T, s_T = float(sched.alpha[-1]), float(sched.sigma[-1])
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    exact = M.double() + S * (x_T.double() - a_T * M.double()) / math.sqrt(a_T**2 * S**2 + s_T**2)
    err = {n: float((sample(den, x_T, sampler=toy.name, steps=n, progress=False).x0.double()
                     - exact).abs().max()) for n in (100, 1000)}
    assert err[1000] < 0.01
    assert 8 < err[100] / err[1000] < 12  # first order
    seen = []
    r = sample(den, x_T, sampler=toy.name, steps=7, callback=seen.append, progress=False)
    assert len(seen) == 7 == model_calls(toy.name, den, 7) and r.sampler == toy.name
    assert r.timesteps == [999, 832, 666, 500, 333, 166, 0]


def test_sample_looks_its_sampler_up_once(monkeypatch):
    # a family that answers one name and counts how often it is asked: sample() resolves once
    from biaskit.sampling import table
    asked = []
    def resolve(name):
        asked.append(name)
        return SamplerSpec(name, vp_euler) if name == "counted_vp_euler" else None
    monkeypatch.setattr(table, "_FAMILIES", [*table._FAMILIES, (resolve, None)])
    x = sample(_gaussian(), (4, 2), sampler="counted_vp_euler", steps=5, progress=False).x0
    assert asked == ["counted_vp_euler"] and x.shape == (4, 2)
    with pytest.raises(ValueError, match="counted_vp_euler: steps must be in 1..1000"):
        sample(_gaussian(), (4, 2), sampler="counted_vp_euler", steps=0, progress=False)


def test_the_row_sets_options_calls_and_grid(toy):
    """A row's options reach its function, its calls count feed hybrid sampling, and its grid kind
    picks the noise levels."""
    got = {}

    def with_eta(model, x, grid, *, generator=None, callback=None, progress=False, eta=0.0):
        got["eta"] = eta
        return vp_euler(model, x, grid)

    def twice(grid, parameterization, options):
        return 2 * grid.n

    register(SamplerSpec("toy_eta", with_eta, options=("eta",), calls=twice))
    try:
        den = _gaussian()
        sample(den, (2, 2), sampler="toy_eta", steps=3, eta=0.25, variance="fixed_large", progress=False)
        assert got == {"eta": 0.25}
        assert model_calls("toy_eta", den, 3) == 6
        # hybrid sampling splits the row's 6 calls: k = 6 is model A alone
        a = hybrid_sample(den, den, 6, (2, 2), sampler="toy_eta", steps=3, progress=False).x0
        assert torch.equal(a, sample(den, (2, 2), sampler="toy_eta", steps=3, progress=False).x0)
    finally:
        unregister("toy_eta")
    assert sampling_grid(toy.name, den, 4)[1].idx == [0, 333, 666, 999]


def test_the_command_samples_with_a_registered_sampler(toy, tmp_path):
    out = tmp_path / "s"
    rc = main(["sample", "oracle:gmm2d", "--sampler", toy.name, "--steps", "5", "--n", "8",
               "--out", str(out), "--no-progress", "--settings-check", "off"])
    assert rc == 0
    assert json.loads((out / "sample_meta.json").read_text())["sampler"] == toy.name
    assert np.isfinite(np.load(out / "samples.npz")["x0"]).all()


def test_unknown_and_ill_formed_rows_are_one_line_errors(toy, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown sampler 'nope'; valid: ddpm, ddim, heun, .*toy_vp_euler"):
        lookup("nope")
    rc = main(["sample", "oracle:gmm2d", "--sampler", "nope", "--out", str(tmp_path / "o"),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown sampler 'nope'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="already registered"):
        register(SamplerSpec("ddim", vp_euler))
    with pytest.raises(ValueError, match="unknown grid kind 'sigmas'; valid: schedule, process, scheduler"):
        SamplerSpec("x", vp_euler, grid="sigmas")
    with pytest.raises(ValueError, match="unknown option 'steps'; valid: eta, variance, scheduler_kwargs"):
        SamplerSpec("x", vp_euler, options=("steps",))
    register(SamplerSpec("toy_process_only", vp_euler, models="process"))
    try:
        with pytest.raises(ValueError, match="toy_process_only samples only process models"):
            sample(_gaussian(), (2, 2), sampler="toy_process_only", steps=2, progress=False)
    finally:
        unregister("toy_process_only")
    assert "toy_process_only" not in sampler_names()


def test_every_row_is_one_of_the_common_signature():
    """Built-in rows: the grid kinds and call counts the samplers' docstrings state."""
    assert {n: lookup(n).grid for n in ("ddim", "heun", "flow_euler", "euler", "edm_euler")} == \
        {"ddim": "schedule", "heun": "process", "flow_euler": "process", "euler": "schedule",
         "edm_euler": "scheduler"}
    den = _gaussian()
    assert model_calls("heun", den, 5) == 9 and model_calls("ddpm", den, 5) == 5
    assert model_calls("diffusers_heun", den, 5) == 9  # Heun's 2nd evaluation but the last
    assert lookup("ddim").options == ("eta",) and lookup("ddpm").options == ("variance",)


def test_samples_that_are_not_finite_are_refused_in_one_line():
    """A chain never returns NaN samples: from zero SNR (a flow model's t = 1) a VP scheduler
    divides by alpha = 0, and a model that returns NaN at one step spoils the chain; both raise a
    ValueError naming the sampler, the model and the cause."""
    from biaskit.formulations import process_oracle
    from biaskit.processes import Flow
    mix = GaussianMixture.isotropic([0.5, 0.5], [[-1.0, 0.5], [1.0, -0.5]], 0.3)
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    flow = process_oracle(mix, Flow(), "x0", data_range=(-3, 3), name="flow x0")
    assert torch.isfinite(sample(flow, noise, sampler="flow_euler", steps=8, progress=False).x0).all()
    with pytest.raises(ValueError, match=r"'dpmpp_2m' gave 16 of 16 samples that are not finite from "
                                         r"model 'flow x0': the chain starts at zero SNR"):
        sample(flow, noise, sampler="dpmpp_2m", steps=8, progress=False)
    # a sweep that records a diverging chain as a NaN row asks for the samples as they are
    assert torch.isnan(sample(flow, noise, sampler="dpmpp_2m", steps=8, progress=False, check_finite=False).x0).all()

    den = oracle_denoiser(mix, get_schedule("linear", 1000), data_range=(-3, 3), name="vp")

    class NanAtOneStep(torch.nn.Module):  # the oracle, but NaN for the first 3 samples at its 4th call
        def __init__(self):
            super().__init__()
            self.inner, self.schedule, self.name, self.calls = den, den.schedule, "nan at one step", 0
            self.parameterization, self.data_range = den.parameterization, den.data_range

        def forward(self, x, t, *args, **kw):
            out = self.inner(x, t, *args, **kw)
            self.calls += 1
            if self.calls == 4:
                out.x0_hat[:3] = out.eps_hat[:3] = float("nan")
            return out

        def __getattr__(self, key):
            try:
                return super().__getattr__(key)
            except AttributeError:
                return getattr(self.inner, key)

    assert torch.isfinite(sample(den, noise, sampler="ddim", steps=10, progress=False).x0).all()
    with pytest.raises(ValueError, match=r"gave 3 of 16 samples that are not finite from model "
                                         r"'nan at one step': the model or a step returned NaN/inf"):
        sample(NanAtOneStep(), noise, sampler="ddim", steps=10, progress=False)
