"""Class-conditional models: labelled data sets, per-sample labels through every loader path,
per-class probing and classifier-free guidance. The model is the exact conditional posterior
mean of the labelled digits (:class:`~biaskit.oracle.ConditionalOracleNet`) read as a plugin
network called with labels; its per-class error at high noise is checked against each class's
spread computed here from the points, and guidance against its definition."""

import numpy as np
import pytest
import torch
from PIL import Image

from biaskit.data import load_dataset
from biaskit.loaders.plugin import load_plugin
from biaskit.oracle import ConditionalOracleNet
from biaskit.probe import probe

PLUGIN = "def make(module):\n    return module\n"


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_dataset("digits")


@pytest.fixture(scope="module")
def net(digits):
    return ConditionalOracleNet(digits.train, digits.train_labels)  # null label 10


def _load(tmp_path, net, **flags):
    spec = tmp_path / "plug.py"
    spec.write_text(PLUGIN)
    return load_plugin(None, f"{spec}:make", factory_kwargs={"module": net}, channels=1,
                       noise_schedule="linear", diffusion_steps=1000, parameterization="x0",
                       time_input="alpha_sigma", **flags)


def test_labelled_sets_keep_each_sample_with_its_label(digits, tmp_path):
    from sklearn.datasets import load_digits
    d = load_digits()
    images = torch.tensor(d.images / 16.0 * 2 - 1, dtype=torch.float32).flatten(1)
    for x, y in zip(digits.test[:20], digits.test_labels[:20]):
        i = int((images - x.flatten()).abs().max(1).values.argmin())
        assert d.target[i] == int(y)
    # an image folder with one subfolder per class: labels by sorted subfolder name
    for cls, value in (("cat", 40), ("dog", 200)):
        (tmp_path / "f" / cls).mkdir(parents=True)
        for k in range(5):
            Image.fromarray(np.full((8, 8), value + k, np.uint8)).save(tmp_path / "f" / cls / f"{k}.png")
    ds = load_dataset(str(tmp_path / "f"), size=8, mode="L", n_test=4)
    assert ds.classes == ("cat", "dog")
    for x, y in zip(torch.cat([ds.train, ds.test]), torch.cat([ds.train_labels, ds.test_labels])):
        assert (x.mean() > 0) == (y == 1)  # dog pixels (200+) are bright, cat pixels (40+) dark


def test_per_class_error_at_high_noise_is_each_class_spread(digits, net, tmp_path):
    cond = _load(tmp_path, net, label_keyword="y")
    df = probe(cond, digits, timesteps=[999], n=200, by_class=True, progress=False, seed=1)
    assert sorted(df["label"]) == list(range(10))
    # at snr 4e-5 E[x0 | x_t, y] is nearly the training mean of class y, so the x0 MSE is the
    # held-out spread of the class about that mean, per element
    x, y = digits.test, digits.test_labels
    spread = np.array([float((x[y == c] - digits.train[digits.train_labels == c].mean(0)).square().mean())
                       for c in range(10)])
    got = df.sort_values("label")["x0_mse"].to_numpy()
    np.testing.assert_allclose(got, spread, rtol=0.1)
    assert got.max() / got.min() > 1.5  # classes differ: a 1 is not spread like an 8
    # the unconditional reading (the null label for all) errs about the pooled mean: more
    uncond = _load(tmp_path, net, class_label=10)
    du = probe(uncond, digits, timesteps=[999], n=200, by_class=True, progress=False, seed=1)
    assert np.all(du.sort_values("label")["x0_mse"].to_numpy() > got)


def test_guidance_scale_one_is_conditional_zero_unconditional(digits, net, tmp_path):
    kw = dict(timesteps=[100, 600, 950], n=60, progress=False, seed=2)
    cond = probe(_load(tmp_path, net, label_keyword="y"), digits, **kw)
    uncond = probe(_load(tmp_path, net, class_label=10), digits, **kw)
    g1 = probe(_load(tmp_path, net, guidance_scale=1.0), digits, **kw)
    g0 = probe(_load(tmp_path, net, guidance_scale=0.0, null_label=10), digits, **kw)
    for stat in ("x0_mse", "eps_mse", "x0_bias_sq"):
        np.testing.assert_array_equal(g1[stat], cond[stat])
        np.testing.assert_array_equal(g0[stat], uncond[stat])
    assert np.abs(cond["x0_mse"] - uncond["x0_mse"]).max() > 1e-2
    # w = 3: x0_hat = x0_u + 3 (x0_c - x0_u), the definition restated on one batch
    g3 = _load(tmp_path, net, guidance_scale=3.0, null_label=10)
    c, u = _load(tmp_path, net, label_keyword="y"), _load(tmp_path, net, class_label=10)
    x_t, t, y = torch.randn(8, 1, 8, 8), torch.full((8,), 700), digits.test_labels[:8]
    with torch.no_grad():
        want = u(x_t, t).x0_hat + 3 * (c(x_t, t, y).x0_hat - u(x_t, t).x0_hat)
        torch.testing.assert_close(g3(x_t, t, y).x0_hat, want, rtol=1e-5, atol=1e-5)


def test_conditional_errors_name_the_flag(digits, net, tmp_path):
    cond = _load(tmp_path, net, label_keyword="y")
    with pytest.raises(ValueError, match="class-conditional and the data carry no labels.*--class-label"):
        probe(cond, digits.test, timesteps=[10], n=8, progress=False)
    with pytest.raises(ValueError, match="needs the unconditional label.*--null-label"):
        _load(tmp_path, net, guidance_scale=2.0)
    with pytest.raises(ValueError, match="by_class .*needs labelled data"):
        probe(cond, digits.test, timesteps=[10], n=8, progress=False, by_class=True)


def test_sampling_with_labels_and_guidance(digits, net, tmp_path):
    from biaskit.sampling import sample
    y = torch.tensor([0, 1, 7, 7])
    kw = dict(sampler="ddim", steps=5, seed=4, progress=False)
    cond = sample(_load(tmp_path, net, label_keyword="y"), (4, 1, 8, 8), labels=y, **kw).x0
    g1 = sample(_load(tmp_path, net, guidance_scale=1.0, null_label=10), (4, 1, 8, 8), labels=y, **kw).x0
    assert torch.equal(g1, cond)
    sevens = sample(_load(tmp_path, net, class_label=7), (4, 1, 8, 8), **kw).x0
    assert torch.equal(sevens[2:], cond[2:])  # same noise, same class, same chain
    # the exact conditional posterior mean lands on a training point of that class at the end
    train = digits.train.flatten(1)
    for x, c in zip(cond, y):
        i = int((train - x.flatten()).square().sum(1).argmin())
        assert int(digits.train_labels[i]) == int(c)


def test_cli_probe_by_class(digits, tmp_path, capsys):
    import pandas as pd

    from biaskit.cli import main
    (tmp_path / "cond.py").write_text(
        "from biaskit.data import load_dataset\nfrom biaskit.oracle import ConditionalOracleNet\n\n"
        "def make():\n    d = load_dataset('digits')\n"
        "    return ConditionalOracleNet(d.train, d.train_labels)\n")
    rc = main(["probe", f"{tmp_path / 'cond.py'}:make", "--label-keyword", "y",
               "--noise-schedule", "linear", "--parameterization", "x0", "--time-input", "alpha_sigma",
               "--data", "digits", "--by-class", "--samples", "8", "--timesteps", "500,999",
               "--out", str(tmp_path / "o"), "--no-progress", "--no-plots"])
    assert rc == 0, capsys.readouterr().err
    df = pd.read_csv(tmp_path / "o" / "per_timestep.csv")
    assert sorted(set(df["label"])) == list(range(10)) and len(df) == 20 and set(df["n"]) == {8}


def test_wrapped_models_pass_the_labels_on(digits, net, tmp_path):
    """SwitchAfter and EpsScaled (sampling.wrapped) call a class-conditional model with the
    labels: the same model on both sides of the switch is the model's own chain, and epsilon
    scaling by lambda = 1 only re-derives x0_hat from eps_hat (float rounding)."""
    from biaskit.exposure import EpsScale, EpsScaled
    from biaskit.sampling import SwitchAfter, sample
    y = torch.tensor([0, 1, 7, 7])
    kw = dict(sampler="ddim", steps=5, seed=4, progress=False, labels=y)
    den = _load(tmp_path, net, label_keyword="y")
    cond = sample(den, (4, 1, 8, 8), **kw).x0
    assert torch.equal(sample(SwitchAfter(den, den, 2, 5), (4, 1, 8, 8), **kw).x0, cond)
    torch.testing.assert_close(sample(EpsScaled(den, EpsScale(1.0)), (4, 1, 8, 8), **kw).x0, cond,
                               rtol=0, atol=1e-4)


def test_settings_check_runs_with_each_samples_own_label(digits, net, tmp_path):
    import warnings

    from biaskit.settings_check import check_settings
    x, y = digits.test, digits.test_labels
    # the oracle recalls its training points at t = 0, so held-out eps errors jump there: state
    # the trained range (every step) so that the ends are not named
    whole = dict(trained_timesteps=(0, 999))
    right = _load(tmp_path, net, label_keyword="y", **whole)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = check_settings(right, x, labels=y)
    rec = right.info["settings_check"]
    assert rec["outcome"] == "ok" and rec["best"] == rec["chosen"] and "labels" in rec, rec
    # the exact conditional posterior mean: fed the labels, it beats every other reading; the
    # same net fed the null label for all (unconditional) errs more at the same pairs
    uncond = _load(tmp_path, net, class_label=10, **whole)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        du = check_settings(uncond, x, labels=y, mode="warn")
    assert uncond.info["settings_check"]["eps_mse"] > rec["eps_mse"] * 1.05
    assert "labels" not in uncond.info["settings_check"]  # one class for all: labels unused
    assert len(df) == len(du)
    # a wrong flag on the per-sample model is named, as on any other
    wrong = _load(tmp_path, net, label_keyword="y", data_range=(0.0, 1.0), **whole)
    with pytest.raises(ValueError, match=r"--data-range=-1,1"):
        check_settings(wrong, (x + 1) / 2, labels=y)
    # without labels it is skipped (and says why), with too few it is an error
    skipped = _load(tmp_path, net, label_keyword="y")
    assert check_settings(skipped, x) is None
    assert skipped.info["settings_check"]["outcome"] == "skipped"
    with pytest.raises(ValueError, match="3 labels for"):
        check_settings(skipped, x, labels=y[:3])
