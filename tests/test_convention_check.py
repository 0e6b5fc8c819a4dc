"""The settings check names a foreign convention read with the wrong flags: a flow MLP trained
here, rewrapped as the network a reversed-time flow repository, a negated-velocity one,
score_sde's VE SDE (fed t or sigma) and the score-SDE MNIST tutorial would have trained (the
wrappers of ``test_conventions``, each restated from its own definition), is checked with its
right flags (silent, best = chosen) and with a wrong one (a warning or error naming the right
flag)."""

import warnings

import pytest
import torch

import biaskit
from biaskit.settings_check import check_settings
from biaskit.train import run_training
from test_conventions import Negated, ReversedFlow, ScoreVE, _plugin, score_sde_sigma, tutorial_sigma

# data of about unit scale: for a narrow Gaussian (sd 0.4) the velocity field barely depends on
# t where eps errors count, and a reversed flow time is invisible even for the exact network
MU, SD = torch.tensor([0.5, -0.3]), torch.tensor([1.0, 0.8])
# a 2-D sample has 2 elements, so its eps-MSE is noisy: more samples than the default 32 (images)
N = 200


def _gauss(n, seed):
    g = torch.Generator().manual_seed(seed)
    return MU + SD * torch.randn(n, 2, generator=g)


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """A flow-matching MLP (x = (1 - t) x0 + t eps, predicts eps - x0, fed 1000 t) trained here."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("flow")
    cfg = {"model": {"name": "mlp", "config": {"hidden": 64, "blocks": 2, "emb_dim": 32, "freq_dim": 32}},
           "batch_size": 128, "steps": 1500, "log_every": 1500, "ckpt_every": 1500, "out": str(out),
           "optim": {"lr": 3e-3, "warmup_steps": 5}, "device": "cpu", "threads": 1,
           "process": {"name": "flow"}, "loss": {"target": "flow", "weighting": "flow_constant"}}
    run_training(cfg, data=(_gauss(2000, 0), _gauss(500, 1)), progress=False)
    return biaskit.load(out).net.eval()


CASES = {  # wrapper, right flags, wrong flags, the flags the check must name on the wrong ones
    "reversed": (lambda n: ReversedFlow(n, -1), dict(flow_time="reversed"), {}, "--flow-time reversed"),
    "negated": (Negated, dict(target_sign=-1), {}, "--target-sign -1"),
    "reversed_negated": (lambda n: ReversedFlow(n, 1), dict(flow_time="reversed", target_sign=-1), {},
                         "--flow-time reversed --target-sign -1"),
    "vesde_t": (lambda n: ScoreVE(n, score_sde_sigma), dict(process="vesde"),
                dict(process="vesde_tutorial"), "--process vesde"),
    "vesde_sigma": (lambda n: ScoreVE(n, None, feed_sigma=True), dict(process="vesde", time_input="sigma"),
                    dict(process="vesde"), "--time-input sigma"),
    "vesde_tutorial": (lambda n: ScoreVE(n, tutorial_sigma), dict(process="vesde_tutorial"),
                       dict(process="vesde"), "--process vesde_tutorial"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_settings_check_names_the_convention(native, tmp_path, case):
    wrap, right, wrong, flag = CASES[case]
    net, x0 = wrap(native), _gauss(400, 21)
    good = _plugin(tmp_path, net, **{"process": "flow", **right})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = check_settings(good, x0, n=N)
    rec = good.info["settings_check"]
    assert rec["outcome"] == "ok" and rec["best"] == rec["chosen"], rec
    assert rec["forward_passes"] == len(df) * N * 4  # stated cost (a process has no ends check)
    # the convention axis tried the other direction / Song's other SDE and both signs
    assert df["convention"].nunique() >= 4
    bad = _plugin(tmp_path, net, **{"process": "flow", **wrong})
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            check_settings(bad, x0, n=N)
            stopped = None
        except ValueError as e:
            stopped = str(e)
    messages = [stopped] if stopped else [str(w.message) for w in said]
    assert any(f"probably trained with {flag} " in m or m.endswith(f"trained with {flag}")
               for m in messages), (case, messages)
    assert bad.info["settings_check"]["outcome"] in ("warned", "stopped")
