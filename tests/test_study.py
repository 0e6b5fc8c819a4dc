"""The impact/reasons analyses (biaskit.study.samples): colour shifts and colour error against hand-made
numbers, and the cached sample analyses against the same samples drawn directly."""

import math

import pandas as pd
import pytest
import torch

from biaskit.study import samples as study
from biaskit.trajectory import channel_stats


def test_channel_shift_is_the_difference_of_averages_with_a_normal_interval():
    # per-sample channel means: data 0 and 2 (average 1, sd sqrt 2), model 3 and 5 (average 4)
    data = torch.tensor([0.0, 2.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2)
    model = torch.tensor([3.0, 5.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2)
    out = study.channel_shift(channel_stats({"data": data, "model": model})).set_index("set")
    assert out.loc["model", "shift"] == pytest.approx(3.0) and out.loc["data", "shift"] == 0
    # 1.959964 sqrt(2/2 + 2/2): the 97.5% normal quantile times the sd of a difference of means
    assert out.loc["model", "shift_half"] == pytest.approx(1.959964 * math.sqrt(2.0), rel=1e-6)
    std = study.channel_shift(channel_stats({"data": data, "model": model}), stat="std")
    assert (std["statistic"] == "std").all() and std["shift"].abs().max() == 0  # both flat images
    with pytest.raises(ValueError, match="no set named 'data'"):
        study.channel_shift(channel_stats({"model": model}))


def test_colour_error_is_the_largest_channel_shift():
    x = torch.zeros(4, 3, 2, 2)
    x[:, 1] = 0.5
    ref = torch.zeros(6, 3, 2, 2)
    ref[:, 2] = -0.8
    e = study.colour_error(x, ref, n_boot=10)
    assert e.metric == "colour_error" and e.value == pytest.approx(0.8)
    assert e.lo == pytest.approx(0.8) and e.hi == pytest.approx(0.8)  # constant sets: no spread
    assert study.file_name("trajectory", True) == "trajectory"
    assert study.file_name("trajectory", False) == "trajectory_unclipped"
    assert "paper" in study.protocol(True) and "unclipped" in study.protocol(False)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    from biaskit.study.cache import Cache
    from biaskit.study.profiles import run_config
    cache = Cache(tmp_path_factory.mktemp("cache"))
    runs = {}
    for w in ("constant", "debias"):
        cfg = run_config("smoke", "digits", w)
        cfg.steps, cfg.ckpt_every, cfg.device = 4, 4, "cpu"
        runs[w] = cache.run(cfg, label=f"digits-{w}")
    return cache, runs


def test_sample_quality_scores_the_samples_of_the_protocol(tiny_runs):
    from biaskit import metrics
    from biaskit.checkpoint import load_run
    from biaskit.study.recipes import run_dataset
    from biaskit.sampling import sample
    cache, runs = tiny_runs
    data = run_dataset(runs["constant"])
    ref = data.test[:24]
    frames = {clip: study.sample_quality(cache, runs, ref, ["swd"], data=data, sampler="ddim",
                                         steps=3, clip=clip, n=24, seed=0) for clip in (True, False)}
    for clip, q in frames.items():
        assert list(q["model"]) == ["constant", "debias"] and (q["clip"] == clip).all()
        den = load_run(runs["debias"], device="cpu")
        x = sample(den, (24, *data.shape), sampler="ddim", steps=3, seed=0, clip=clip, progress=False).x0
        lo, hi = data.data_range
        assert not clip or (x.min() >= lo and x.max() <= hi)
        direct = metrics.evaluate({"debias": x}, ref, ["swd"], data_range=data.data_range, seed=0)
        assert q.set_index("model").loc["debias", "value"] == pytest.approx(direct["value"][0], rel=1e-12)
    assert frames[True]["value"].tolist() != frames[False]["value"].tolist()


def test_hybrid_quality_ends_are_the_pure_models(tiny_runs):
    from biaskit.study.recipes import load_models, run_dataset
    from biaskit.metrics import sliced_wasserstein
    from biaskit.sampling import sample
    cache, runs = tiny_runs
    data = run_dataset(runs["constant"])
    models = load_models(runs, device="cpu")
    ref = data.test[:16]
    noise = torch.randn((16, *data.shape), generator=torch.Generator().manual_seed(0))
    h = study.hybrid_quality(cache, runs, models, "debias", "constant", [0, 3], noise, ref,
                             data=data, sampler="ddim", steps=3, clip=True, seed=0, n_boot=5)
    assert set(h["order"]) == {"debias then constant"} and h["clip"].all()
    swd = h[h.metric == "swd"].set_index("k")["value"]
    for k, name in ((0, "constant"), (3, "debias")):
        x = sample(models[name], noise.clone(), sampler="ddim", steps=3, seed=0, clip=True,
                   progress=False).x0
        # same samples, same resamples: the same (bias-corrected) SWD
        assert swd[k] == pytest.approx(sliced_wasserstein(x, ref, seed=0, n_boot=5).value, rel=1e-12)
    assert (h["lo"] <= h["value"]).all() and (h["value"] <= h["hi"]).all()
    traj = study.trajectories(models, noise, sampler="ddim", steps=3, clip=False, seed=0,
                              data_range=data.data_range)
    assert isinstance(traj, pd.DataFrame) and set(traj["model"]) == {"constant", "debias"}
    assert len(traj) == 2 * 3 and not traj["clip"].any()
