"""The ADM settings check on a small ADM that biaskit trains itself: the settings it was trained
with (time fed as t, four heads, the new qkv order) give the lowest eps error on held-out digits,
and each wrong one (t * 1000 / T, one head, the legacy order) is measurably worse and named."""

import warnings

import numpy as np
import pytest
import torch

import biaskit
from biaskit.settings_check import CERTAIN, CLEAR, check_settings, evaluate_settings

T = 250
ARCH = dict(model_channels=32, num_res_blocks=1, channel_mult=[1], attention_resolutions=[1],
            use_scale_shift_norm=True, num_heads=4, use_new_attention_order=True)
RIGHT = dict(num_heads=4, use_new_attention_order=True)
TRAIN = {"schedule": {"name": "linear_adm", "T": T}, "data": {"name": "digits"},
         "model": {"name": "adm", "time_input": "index", "config": ARCH},
         "loss": {"target": "eps"}, "optim": {"lr": 2e-3, "warmup_steps": 20},
         "ema": {"decay": 0.98, "start": 50}, "batch_size": 32, "steps": 200, "threads": 1,
         "log_every": 1000, "ckpt_every": 100000, "device": "cpu"}


@pytest.fixture(scope="session")
def trained_adm(tmp_path_factory):
    """(path of an ADM state dict, digits dataset): 200 steps of biaskit training, T = 250 with
    guided-diffusion's linear schedule, time fed as the integer t."""
    from biaskit.train import Trainer
    out = tmp_path_factory.mktemp("adm")
    trainer = Trainer({**TRAIN, "out": str(out / "run")})
    for _ in trainer.run(progress=False):
        pass
    path = out / "ema.pt"
    torch.save(trainer.ema.state_dict(), path)
    return path, trainer.data


def _load(trained_adm, **flags):
    path, data = trained_adm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return biaskit.load(path, noise_schedule="linear", diffusion_steps=T,
                            data_range=data.data_range, **flags)


def _eps_mse(d, x0, t, seed=1):
    """Eps-MSE of d on x0 at step t, computed here from x_t = alpha x0 + sigma eps."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(x0.shape, generator=g)
    abar = d.schedule.abar[t].float()
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    with torch.no_grad():
        return float((d(x_t, torch.full((x0.shape[0],), t)).eps_hat - eps).square().mean())


def test_right_settings_have_lowest_error_and_pass(trained_adm):
    d = _load(trained_adm, **RIGHT)
    x0 = trained_adm[1].test
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the right settings
        df = check_settings(d, x0)
    assert df["chosen"].sum() == 1 and df.loc[df["score"].idxmin(), "chosen"]
    assert d.info["settings_check"]["best"] == d.info["settings_check"]["chosen"]  # in metadata
    # the trained network denoises: far below eps_hat = 0 (eps-MSE 1) at every checked t
    assert all(_eps_mse(d, x0[:64], t) < 0.5 for t in (75, 125, 175, 225))


@pytest.mark.parametrize("wrong,flag", [
    (dict(num_heads=1), "--num-heads 4 --use-new-attention-order True"),
    (dict(num_heads=4), "--use-new-attention-order True"),
])
def test_wrong_heads_are_measurably_worse_and_flagged(trained_adm, wrong, flag):
    right, bad = _load(trained_adm, **RIGHT), _load(trained_adm, **wrong)
    x0 = trained_adm[1].test
    # independent of the check's own draws: other samples, other noise, one t
    assert _eps_mse(bad, x0[64:192], 175) > 1.02 * _eps_mse(right, x0[64:192], 175)
    with pytest.warns(UserWarning, match=flag) as rec:
        df = check_settings(bad, x0, mode="warn")
    assert len(rec) == 1
    best = df.loc[df["score"].idxmin()]
    assert best["z"] > CLEAR[0] and best["heads"] == "num_heads=4 use_new_attention_order=True"


def test_wrong_time_scaling_is_certain_and_stops(trained_adm):
    bad = _load(trained_adm, rescale_timesteps=True, **RIGHT)
    x0 = trained_adm[1].test
    assert torch.allclose(bad.time_features(torch.tensor([10])), torch.tensor([40.0]))  # 1000/250 t
    assert _eps_mse(bad, x0[64:192], 175) > 1.25 * _eps_mse(_load(trained_adm, **RIGHT), x0[64:192], 175)
    with pytest.raises(ValueError, match=r"--rescale-timesteps False.*--settings-check warn"):
        check_settings(bad, x0)
    with pytest.warns(UserWarning, match="rescale-timesteps False"):
        df = check_settings(bad, x0, mode="warn")
    best = df.loc[df["score"].idxmin()]
    assert best["z"] > CERTAIN[0] and best["rel"] > CERTAIN[1]


def test_equivalent_settings_are_tried_once_and_non_adm_is_skipped(trained_adm):
    d = _load(trained_adm, **RIGHT)
    df = evaluate_settings(d, trained_adm[1].test, n=4)
    # 32-channel blocks: num_heads 1, 2, 4, 8 and num_head_channels 32 (= 1 head) in both orders
    # where heads > 1, once for one head: 1 + 3 * 2 = 7 head settings (the chosen is one of
    # them), times 2 time conventions (T = 250 != 1000); then the two other data ranges ([0, 1],
    # [-0.5, 0.5]; digits are in [-1, 1]) and the three other targets (x0, v, flow), one at a time
    assert len(df) == 14 + 2 + 3 and df["setting"].is_unique
    assert np.isclose(df.loc[df["chosen"], "diff"].iloc[0], 0)
    assert check_settings(biaskit.load("oracle:gmm2d"), torch.zeros(4, 2)) is None
    assert check_settings(d, trained_adm[1].test, mode="off") is None
