"""The Target records: each one's read inverts its own training target and its oracle output
(closed-form round trips), its x0-error factor is |d x0_hat / d out|^2 measured by autograd, and
the registry is the only place a target name is branched on."""

import ast
import math
from pathlib import Path

import pytest
import torch

from biaskit import targets as TG
from biaskit.formulations import ProcessDenoiser
from biaskit.processes import VE, Flow
from biaskit.weighting import SPACES

ROOT = Path(__file__).resolve().parent.parent / "biaskit"
LAM = torch.tensor([-6.0, -2.5, 0.0, 1.5, 4.0, 9.0], dtype=torch.float64)  # logsnr per sample
SCALE = torch.tensor([1.0, 3.0, 0.25, 1.0, 7.0, 0.5], dtype=torch.float64)  # a process's own scale


def _frame(shape=(6, 2, 3)):
    """x0, eps (B, ...) and process-scale alpha, sigma rows at LAM, scaled by SCALE (not VP)."""
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(*shape, generator=g, dtype=torch.float64)
    eps = torch.randn(*shape, generator=g, dtype=torch.float64)
    rows = (-1,) + (1,) * (len(shape) - 1)
    alpha = (SCALE * torch.sigmoid(LAM).sqrt()).reshape(rows)
    sigma = (SCALE * torch.sigmoid(-LAM).sqrt()).reshape(rows)
    return x0, eps, alpha, sigma


def _read(record, out, x, alpha, sigma, sigma_data=0.6):
    """(x0_hat, eps_hat) from ``out`` at the process's x, as a ProcessDenoiser reads it."""
    a_vp, s_vp = TG.vp_scale(alpha, sigma)
    x_vp = x / (alpha**2 + sigma**2).sqrt()
    c = record.coefficients(alpha, sigma, sigma_data, x)
    return record.read_process(out, x, alpha, sigma, x_vp, a_vp, s_vp, c)


@pytest.mark.parametrize("name", list(TG.TARGETS))
def test_read_inverts_the_training_target(name):
    record = TG.TARGETS[name]
    x0, eps, alpha, sigma = _frame()
    x_in, goal = record.inputs(x0, eps, alpha, sigma, 0.6)
    x = alpha * x0 + sigma * eps
    c = record.coefficients(alpha, sigma, 0.6, x)
    torch.testing.assert_close(x_in, record.net_input(x, alpha, c), rtol=1e-14, atol=1e-14)
    x0_hat, eps_hat = _read(record, goal, x, alpha, sigma)
    torch.testing.assert_close(x0_hat, x0, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(eps_hat, eps, rtol=1e-10, atol=1e-10)
    # an oracle whose posterior mean is the true x0 outputs the training target itself
    got = record.oracle_output(x_in, alpha, sigma, lambda x_t: x0, c)
    torch.testing.assert_close(got, goal, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", SPACES)
def test_space_targets_round_trip_in_vp_scale_and_match_their_definitions(name):
    record = TG.TARGETS[name]
    x0, eps, alpha, sigma = _frame()
    a, s = TG.vp_scale(alpha, sigma)
    out = record.output(x0, eps, a, s)
    x0_hat, eps_hat = record.read(out, a * x0 + s * eps, a, s)
    torch.testing.assert_close(x0_hat, x0, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(eps_hat, eps, rtol=1e-10, atol=1e-10)
    by_hand = {"x0": x0, "eps": eps, "v": a * eps - s * x0, "flow": eps - x0}[name]
    torch.testing.assert_close(out, by_hand, rtol=0, atol=1e-15)


def _measured_factor(record, scale):
    """(d x0_hat / d out)^2 (B,) by autograd through read_process, at LAM with alpha, sigma
    multiplied by ``scale``."""
    x0, eps, alpha, sigma = _frame((6, 1))
    alpha, sigma = alpha * scale, sigma * scale
    out = torch.zeros(6, 1, dtype=torch.float64, requires_grad=True)
    x0_hat, _ = _read(record, out, alpha * x0 + sigma * eps, alpha, sigma, sigma_data=0.6)
    (grad,) = torch.autograd.grad(x0_hat.sum(), out)
    return grad[:, 0] ** 2


@pytest.mark.parametrize("name", list(TG.TARGETS))
def test_x0_error_factor_is_the_squared_derivative_of_x0_hat(name):
    """In frames that are not VP (two different scales at the same snr)."""
    record = TG.TARGETS[name]
    one, three = _measured_factor(record, 1.0), _measured_factor(record, 3.0)
    if record.no_factor:  # the score's sigma^4 / alpha^2 changes with the scale at equal snr
        with pytest.raises(ValueError, match="depends on the process's scale"):
            record.x0_error_factor(LAM.exp())
        torch.testing.assert_close(three, one * 9, rtol=1e-12, atol=0)
        return
    want = record.x0_error_factor(LAM.exp(), 0.6)
    torch.testing.assert_close(one, want, rtol=1e-12, atol=0)
    torch.testing.assert_close(three, want, rtol=1e-12, atol=0)


def test_the_records_agree_with_a_process_denoiser_built_on_them():
    """ProcessDenoiser reads a network through the records: a net that outputs the exact target
    of (x0, eps) gives x0 back, for a VE and a shifted-flow process."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(6, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(6, 3, generator=g, dtype=torch.float64)
    for process in (VE(), Flow(shift=3.0)):
        for name in TG.TARGETS:
            record = TG.TARGETS[name]
            t = process.t_of_logsnr(LAM)
            alpha, sigma = process.alpha(t)[:, None], process.sigma(t)[:, None]
            goal = record.inputs(x0, eps, alpha, sigma, 0.6)[1]
            den = ProcessDenoiser(lambda x_in, time: goal, process, name, sigma_data=0.6, view=LAM)
            a_vp, s_vp = torch.sigmoid(LAM).sqrt()[:, None], torch.sigmoid(-LAM).sqrt()[:, None]
            pred = den.predict(a_vp * x0 + s_vp * eps, LAM)
            torch.testing.assert_close(pred.x0_hat, x0, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", list(TG.TARGETS))
def test_a_process_denoiser_reports_its_target_as_its_parameterization(name):
    """Prediction.out is in the space the parameterization names: for a space target it is the
    record's output at (x0_hat, eps_hat) in VP scale, as a discrete Denoiser's out is."""
    g = torch.Generator().manual_seed(4)
    x_vp = torch.randn(6, 3, generator=g, dtype=torch.float64)
    den = ProcessDenoiser(lambda x_in, time: torch.tanh(x_in), Flow(shift=2.0), name, view=LAM)
    assert den.parameterization == name and den.describe()["parameterization"] == name
    pred = den(x_vp, torch.arange(6))
    record = TG.get_target(den.parameterization)
    if record.space:
        again = record.output(pred.x0_hat, pred.eps_hat, pred.alpha, pred.sigma)
        torch.testing.assert_close(again, pred.out, rtol=1e-10, atol=1e-10)
    den.parameterization = "epsilon"
    assert den.target == "eps"


def test_hand_values():
    one = torch.ones(1, dtype=torch.float64)
    assert [float(TG.TARGETS[k].x0_error_factor(one)) for k in SPACES] == [1.0, 1.0, 0.5, 0.25]
    assert math.isclose(float(TG.TARGETS["edm"].x0_error_factor(one, 0.5)), 0.2, rel_tol=1e-15)
    assert TG.get_target("v_prediction").name == "v" and TG.get_target("epsilon").name == "eps"
    with pytest.raises(ValueError, match="unknown target 'noise'; valid: x0, eps, v, flow, edm, score"):
        TG.get_target("noise")
    with pytest.raises(ValueError, match="unknown parameterization 'edm'; valid: x0, eps, v, flow"):
        TG.space_target("edm")


# --- the registry is the only place a target name is branched on ---------------------------------
NAMES = set(TG.TARGETS) | {a for t in TG.TARGETS.values() for a in t.aliases}
WORDS = ("target", "parameterization", "space")
# (module, source of the comparison): branches that are not a target's own formula
ALLOWED = {
    # x0 is the space every weighting is defined in, the reference, not one target's formula
    ("biaskit/weighting/timesteps.py", "space == 'x0'"),
}


def _ident(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, (ast.Call, ast.Subscript)):
        return _ident(node.func if isinstance(node, ast.Call) else node.value)
    return ""


def _strings(node) -> set:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_strings(e) for e in node.elts)) if node.elts else set()
    return set()


def _branches(source: str) -> list[str]:
    """Comparisons of a target-like variable with a target name, and look-ups in a dict literal
    keyed by target names (``{"x0": ..., "eps": ...}[space]``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            named = set().union(*(_strings(p) for p in parts)) & NAMES
            if named and any(w in _ident(p).lower() for p in parts for w in WORDS):
                found.append(ast.unparse(node))
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Dict):
            keys = set().union(*(_strings(k) for k in node.value.keys if k is not None))
            if len(keys & NAMES) >= 2:
                found.append(ast.unparse(node))
    return found


def test_the_branch_finder_finds_planted_branches():
    planted = ('if self.target == "edm":\n    pass\n'
               'w = {"x0": 1, "eps": 2}[space]\n'
               'ok = kind in ("eps", "v") or loss.target not in ("flow",)\n'
               'fine = process.name == "flow"\n')
    assert _branches(planted) == ["self.target == 'edm'", "{'x0': 1, 'eps': 2}[space]",
                                  "loss.target not in ('flow',)"]


def test_no_module_but_the_registry_branches_on_a_target_name():
    found = set()
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).as_posix()
        if rel != "biaskit/targets.py":
            found |= {(rel, b) for b in _branches(path.read_text())}
    assert found - ALLOWED == set(), "branch on a target name outside biaskit/targets.py"
    assert ALLOWED - found == set(), "an allowed branch is gone: drop it from ALLOWED"
