"""Class-conditional training on the labelled digits: a conditional MLP (null class 10, label
dropout 0.2) trained here for seconds, probed per class at high noise against the exact
conditional oracle on the same draws, and classifier-free guidance at scales 1 and 0 against
the conditional and unconditional readings of the same run."""

from dataclasses import replace

import numpy as np
import pytest
import torch

import biaskit
from biaskit.data import load_dataset
from biaskit.loaders.plugin import load_plugin
from biaskit.oracle import ConditionalOracleNet
from biaskit.probe import probe
from biaskit.train import run_training

T, HIGH = 100, 95  # cosine schedule of 100 steps: abar at step 95 is 2e-3 (snr 2e-3)


def _config(out, **model):
    return {"model": {"name": "mlp", "config": {"hidden": 128, "blocks": 2, "emb_dim": 64, "freq_dim": 32,
                                                **model}},
            "batch_size": 128, "steps": 1500, "log_every": 1500, "ckpt_every": 1500, "out": str(out),
            "optim": {"lr": 2e-3, "warmup_steps": 20, "lr_schedule": "cosine"}, "device": "cpu",
            "threads": 1, "schedule": {"name": "cosine", "T": T}, "ema": {"decay": 0.99},
            "loss": {"target": "x0", "label_dropout": 0.2}}


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_dataset("digits")


@pytest.fixture(scope="module")
def run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("cond")
    run_training(_config(out, num_classes=10), data=digits, progress=False)
    return out


def _by_class(den, digits):
    df = probe(den, digits, timesteps=[HIGH], n=200, by_class=True, progress=False, seed=1)
    return df.sort_values("label")["x0_mse"].to_numpy()


def test_per_class_error_at_high_noise_follows_the_exact_conditional_oracle(digits, run, tmp_path):
    den = biaskit.load(run)
    assert den.conditioning.null_label == 10 and den.conditioning.class_label is None
    got = _by_class(den, digits)
    # the exact conditional posterior mean of the training digits on the same schedule and draws
    spec = tmp_path / "oracle.py"
    spec.write_text("def make(module):\n    return module\n")
    oracle = load_plugin(None, f"{spec}:make", channels=1, parameterization="x0",
                         factory_kwargs={"module": ConditionalOracleNet(digits.train, digits.train_labels)},
                         noise_schedule="cosine", diffusion_steps=T, time_input="alpha_sigma",
                         label_keyword="y")
    assert oracle.schedule.same_as(den.schedule)
    want = _by_class(oracle, digits)
    # classes differ where the oracle's do: a 0 is tighter about its mean than a 7 (0.09 and
    # 0.21 per element); the trained net adds about the same excess to every class
    lo, hi = int(want.argmin()), int(want.argmax())
    assert want[hi] / want[lo] > 2
    assert got[hi] - got[lo] > 0.5 * (want[hi] - want[lo])
    assert np.corrcoef(got, want)[0, 1] > 0.8
    assert np.all(got > want)  # nothing beats the exact posterior mean on its own draws
    # the same run read unconditionally (the null class for all) errs more in every class
    uncond = _by_class(_with(den, class_label=10), digits)
    assert np.all(uncond > got)


def _with(den, **kw):
    den.conditioning = replace(den.conditioning, **kw)
    return den


def test_guidance_scale_one_is_conditional_zero_unconditional(digits, run):
    kw = dict(timesteps=[10, 50, HIGH], n=60, progress=False, seed=2)
    cond = probe(biaskit.load(run), digits, **kw)
    uncond = probe(_with(biaskit.load(run), class_label=10), digits, **kw)
    g1 = probe(_with(biaskit.load(run), guidance_scale=1.0), digits, **kw)
    g0 = probe(_with(biaskit.load(run), guidance_scale=0.0), digits, **kw)
    for stat in ("x0_mse", "eps_mse", "x0_bias_sq"):
        np.testing.assert_array_equal(g1[stat], cond[stat])
        np.testing.assert_array_equal(g0[stat], uncond[stat])
    assert np.abs(cond["x0_mse"] - uncond["x0_mse"]).max() > 1e-2
    # no labels at all is the null class, bit for bit
    net, x = biaskit.load(run).net, torch.randn(5, 1, 8, 8)
    time_in = torch.full((5,), 40.0)
    with torch.no_grad():
        assert torch.equal(net(x, time_in), net(x, time_in, y=torch.full((5,), 10)))


def test_each_sample_is_trained_with_its_own_label_or_the_null_class(digits, tmp_path):
    # the labels the network gets are those of the very rows of x0 the loss sees (found by
    # matching the rows in the data, not by redrawing the batch), the null class 10 at rate ~0.2
    from biaskit.train.trainer import Trainer
    trainer = Trainer(_config(tmp_path / "pairs", num_classes=10), data=digits)
    seen, loss = [], trainer.objective.loss
    trainer.objective.loss = lambda model, x0, *a: (seen.append((x0.clone(), model.labels.clone())),
                                                    loss(model, x0, *a))[1]
    for _ in range(4):
        trainer.train_step()
    x_all, y_all = digits.train, torch.as_tensor(digits.train_labels)
    nulls = 0
    for x0, y in seen:
        assert x0.shape[0] == y.shape[0] == 128
        same = (x0[:, None] == x_all[None]).flatten(2).all(-1)  # (b, N): the data rows equal to x0_i
        assert same.any(1).all()
        for i in range(len(y)):
            if y[i] == 10:
                nulls += 1
            else:
                assert y[i] in y_all[same[i]], i
    assert 0.12 < nulls / (4 * 128) < 0.28  # label_dropout 0.2 (sd 0.018)


def test_conditional_training_errors_name_the_key(digits, tmp_path):
    with pytest.raises(ValueError, match="carries no labels"):
        run_training(_config(tmp_path / "a", num_classes=10), data=(digits.train, digits.test),
                     progress=False)
    with pytest.raises(ValueError, match=r"labels run 0\.\.9; they must lie in 0\.\.4"):
        run_training(_config(tmp_path / "b", num_classes=5), data=digits, progress=False)
    cfg = _config(tmp_path / "c")
    with pytest.raises(ValueError, match="label_dropout 0.2 needs a class-conditional model"):
        run_training(cfg, data=digits, progress=False)
    with pytest.raises(ValueError, match=r"label_dropout must lie in \[0, 1\)"):
        run_training({**_config(tmp_path / "d", num_classes=10),
                      "loss": {"target": "x0", "label_dropout": 1.0}}, data=digits, progress=False)
    from biaskit.models.mlp import MLP
    plain = MLP(dim=4, hidden=8, blocks=1, emb_dim=8, freq_dim=8)
    assert not any(k.startswith("label") for k in plain.state_dict())  # nothing added
    with pytest.raises(ValueError, match="not class-conditional"):
        plain(torch.zeros(2, 4), torch.zeros(2), y=torch.zeros(2, dtype=torch.int64))
    cond = MLP(dim=4, hidden=8, blocks=1, emb_dim=8, freq_dim=8, num_classes=3)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.3"):
        cond(torch.zeros(2, 4), torch.zeros(2), y=torch.tensor([0, 4]))


def test_cache_key_of_an_unconditional_run_is_unchanged(tmp_path):
    from biaskit.study.cache import run_key_config
    from biaskit.config import load_config
    cfg = _config(tmp_path / "k")
    del cfg["loss"]["label_dropout"]
    assert "label_dropout" not in run_key_config(load_config(cfg))["loss"]
    cfg["loss"]["label_dropout"] = 0.1
    assert run_key_config(load_config(cfg))["loss"]["label_dropout"] == 0.1


def test_a_conditional_run_from_the_command_line(digits, run, tmp_path, capsys):
    import pandas as pd

    from biaskit.cli import main
    common = ["--data", "digits", "--by-class", "--samples", "8", "--timesteps", "50,95", "--no-progress",
              "--no-plots"]
    frames = {}
    for name, flags in {"cond": [], "g0": ["--guidance-scale", "0"], "null": ["--class-label", "10"]}.items():
        assert main(["probe", str(run), *flags, *common, "--out", str(tmp_path / name)]) == 0, \
            capsys.readouterr().err
        frames[name] = pd.read_csv(tmp_path / name / "per_timestep.csv")
    assert sorted(set(frames["cond"]["label"])) == list(range(10))
    np.testing.assert_array_equal(frames["g0"]["x0_mse"], frames["null"]["x0_mse"])
    assert (frames["null"]["x0_mse"] - frames["cond"]["x0_mse"]).abs().max() > 1e-2
    # the API's options are the same: guidance 0 is the null class
    assert biaskit.load(run, guidance_scale=0.0).conditioning.null_label == 10
    plain = tmp_path / "plain"
    run_training({**_config(plain), "steps": 2, "log_every": 2, "ckpt_every": 2,
                  "loss": {"target": "x0"}}, data=digits, progress=False)
    with pytest.raises(ValueError, match="not class-conditional .*drop --class-label"):
        biaskit.load(plain, class_label=3)


@pytest.mark.parametrize("name,config,shape", [
    ("mlp", dict(dim=64, hidden=16, blocks=1, emb_dim=16, freq_dim=8), (3, 1, 8, 8)),
    ("unet", dict(in_channels=1, channels=8, channel_mult=(1, 2), groups=4), (3, 1, 8, 8))])
def test_label_embedding_adds_to_the_unconditional_network(name, config, shape):
    from biaskit.models import build_model
    torch.manual_seed(0)
    plain = build_model(name, **config)
    torch.manual_seed(0)
    cond = build_model(name, **config, num_classes=4)
    # the same seed initialises every other layer alike; the embedding comes last
    extra = set(cond.state_dict()) - set(plain.state_dict())
    assert extra == {"label.table.weight"} and cond.label.table.num_embeddings == 5
    assert all(torch.equal(v, cond.state_dict()[k]) for k, v in plain.state_dict().items())
    x, time_in = torch.randn(shape), torch.full((shape[0],), 30.0)
    with torch.no_grad():
        for net in (plain, cond):  # the UNet's zero-initialised layers would hide e(y)
            torch.manual_seed(1)
            for p in net.parameters():  # in the same order; the label table last
                torch.nn.init.normal_(p, std=0.1)
        cond.label.table.weight.zero_()  # a zero embedding: exactly the unconditional network
        assert torch.equal(cond(x, time_in, y=torch.tensor([0, 1, 2])), plain(x, time_in))
        torch.nn.init.normal_(cond.label.table.weight)
        outs = [cond(x, time_in, y=torch.full((3,), c)) for c in range(5)]
        assert torch.equal(cond(x, time_in), outs[4])  # no labels: the null class
        assert all((outs[i] - outs[j]).abs().max() > 1e-3 for i in range(5) for j in range(i))


def test_the_run_as_a_labelled_plugin_probes_alike_and_is_checked_with_its_labels(digits, run, tmp_path):
    import warnings

    from biaskit.settings_check import check_settings
    native = biaskit.load(run)
    spec = tmp_path / "plug.py"
    spec.write_text("def make(module):\n    return module\n")

    def plugin(**flags):
        return load_plugin(None, f"{spec}:make", factory_kwargs={"module": native.net}, channels=1,
                           noise_schedule="cosine", diffusion_steps=T, label_keyword="y", **flags)
    kw = dict(timesteps=[10, 50, HIGH], n=100, by_class=True, progress=False, seed=3)
    right = plugin(parameterization="x0", time_input="index")
    a, b = probe(native, digits, **kw), probe(right, digits, **kw)
    for stat in ("x0_mse", "eps_mse", "x0_bias_sq"):
        np.testing.assert_allclose(b[stat], a[stat], rtol=1e-6, atol=0)
    x, y = digits.test, digits.test_labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # only the ends may be named (held-out eps at t = 0)
        check_settings(right, x, labels=y)
    rec = right.info["settings_check"]
    assert rec["best"] == rec["chosen"] and "labels" in rec, rec
    assert not any("probably trained with" in m or "ZERO" in m for m in rec["warnings"]), rec
    wrong = plugin(parameterization="eps", time_input="index")
    with pytest.raises(ValueError, match=r"trained with --parameterization x0"):
        check_settings(wrong, x, labels=y)
