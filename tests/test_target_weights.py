"""Weightings translated between targets and processes at equal snr are identities: a registry
weighting (x0 space) moved to each target's output space and back through the x0_hat that a
ProcessDenoiser of that process actually forms gives the same per-sample x0 weight."""

import math

import pytest
import torch

from biaskit import weighting as W
from biaskit.formulations import ProcessDenoiser, target_weight, x0_error_factor
from biaskit.processes import VE, ContinuousVP, DiscreteVP, Flow
from biaskit.schedules import get_schedule

LAM = torch.linspace(-6.0, 8.0, 29, dtype=torch.float64)  # inside every process's range
PROCESSES = {"discrete_vp_linear": lambda: DiscreteVP(get_schedule("linear", 1000)),
             "vp_cosine": lambda: ContinuousVP("cosine"), "ve": lambda: VE(),
             "flow": lambda: Flow(), "flow_shift3": lambda: Flow(shift=3.0)}
TARGETS = ("eps", "v", "flow", "edm")
# every registry entry but vlb (a discrete-schedule weight, not a function of snr alone) and the
# native ones (debias_fork: one factor on whichever target's MSE, so another x0 objective per target;
# tests/test_hybrid.py checks it against debias)
SPECS = [n for n in W.names() if n != "vlb" and not W.get_weighting(n).native] + \
    ["min_snr:gamma=2", "p2:k=1:gamma=0.5", "sigmoid:b=-1"]


def _unit(x, t):
    return torch.ones_like(x)


def _measured_factor(process, target, lam, sigma_data=0.6):
    """|d x0_hat / d out|^2 as the ProcessDenoiser forms x0_hat: at x_vp = 0 every target's
    x0_hat is linear in the output (x0_hat = c * out), so a unit output gives c exactly."""
    den = ProcessDenoiser(_unit, process, target, sigma_data=sigma_data, view=lam)
    x_vp = torch.zeros(lam.numel(), 1, dtype=torch.float64)
    return den.predict(x_vp, lam).x0_hat[:, 0] ** 2


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_x0_error_factor_is_what_each_process_model_forms(name, target):
    process = PROCESSES[name]()
    t = process.t_of_logsnr(LAM)
    assert torch.allclose(process.logsnr(t), LAM, rtol=0, atol=1e-9)
    got = _measured_factor(process, target, LAM)
    want = x0_error_factor(target, LAM.exp(), sigma_data=0.6)
    assert float(((got - want) / want).abs().max()) < 1e-12


@pytest.mark.parametrize("spec", SPECS)
def test_weightings_round_trip_through_every_target_and_process_at_equal_snr(spec):
    w_x0 = W.get_weighting(spec)(LAM.exp(), "x0")
    for name, make in PROCESSES.items():
        process = make()
        for target in TARGETS:
            w_t = target_weight(spec, LAM.exp(), target, sigma_data=0.6)
            back = w_t / _measured_factor(process, target, LAM)  # per-sample weight on the x0-MSE
            # measured worst relative difference 4.4e-16 .. 1.1e-14 (eps under flow shift 3,
            # where t(logsnr) and back lose a few digits)
            rel = float(((back - w_x0) / w_x0).abs().max())
            assert rel < 1e-12, (spec, name, target, rel)


def test_hand_values_of_the_factors():
    # at snr = 1 (lam = 0): eps 1, v 1/2, flow s = 1/2 -> 1/4, edm sd^2 / (1 + sd^2)
    one = torch.tensor([1.0], dtype=torch.float64)
    assert [float(x0_error_factor(k, one)) for k in ("x0", "eps", "v", "flow")] == [1.0, 1.0, 0.5, 0.25]
    assert math.isclose(float(x0_error_factor("edm", one, 0.5)), 0.25 / 1.25, rel_tol=1e-15)
    # the snr = 0 limits: debias is finite in x0, v, flow and edm space and infinite in eps space
    zero = torch.tensor([0.0], dtype=torch.float64)
    assert float(target_weight("constant", zero, "eps")) == 1.0
    assert float(target_weight("snr", zero, "edm", sigma_data=0.5)) == 0.25
    with pytest.raises(W.InfiniteWeightError):
        target_weight("debias", zero, "eps")
