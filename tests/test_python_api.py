"""The Python API from ``import biaskit`` alone: every module reachable lazily, a callable probe,
and networks in memory (diffusers models and schedulers built here, randomly initialised)."""

import subprocess
import sys

import pytest
import torch

import biaskit
from biaskit import Denoiser

diffusers = pytest.importorskip("diffusers")


def tiny_unet(channels=1, size=8, seed=0):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels,
                                 block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))


# --- 1. reachable from `import biaskit` ---------------------------------------------------------

MODULES = ["sampling", "metrics", "train", "config", "processes", "formulations", "plots", "plot_images",
           "data", "oracle", "trajectory", "intervals", "loaders", "checkpoint", "models", "report",
           "monitor", "results"]


def test_every_module_is_an_attribute_after_import_biaskit():
    # a fresh interpreter: in this one the test modules have imported them already
    code = ("import biaskit, types; bad = [n for n in %r if not isinstance(getattr(biaskit, n), "
            "types.ModuleType)]; assert not bad, bad" % MODULES)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert set(MODULES) <= set(dir(biaskit))


def test_import_stays_light_and_unknown_names_fail():
    # the heavy modules are not imported by `import biaskit`
    code = ("import sys, biaskit; heavy = [m for m in ('biaskit.sampling', 'biaskit.metrics', "
            "'biaskit.train', 'biaskit.probe', 'diffusers', 'matplotlib') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        biaskit.nothing  # noqa: B018


def test_probe_module_is_callable_and_keeps_its_submodules():
    import biaskit.probe.statistics as statistics
    from biaskit.probe import probe
    assert statistics.STATISTICS and biaskit.probe.probe is probe
    oracle = biaskit.oracle.from_spec("oracle:gmm2d", schedule="linear")
    data = biaskit.data.load_dataset("gmm2d", n_test=64)
    a = biaskit.probe(oracle, data, timesteps=[10, 500], n=32, progress=False)
    b = probe(oracle, data, timesteps=[10, 500], n=32, progress=False)
    assert a.equals(b) and len(a) == 2


# --- 2. networks in memory ------------------------------------------------------------------------

def test_diffusers_model_and_scheduler_object_in_memory():
    """The Denoiser's x0_hat is diffusers' own v-prediction inversion x0 = sqrt(abar) x - sqrt(1-abar) v,
    with abar from the scheduler object's alphas_cumprod."""
    unet = tiny_unet()
    sch = diffusers.DDPMScheduler(num_train_timesteps=100, prediction_type="v_prediction")
    d = biaskit.load(unet, scheduler=sch)
    assert d.parameterization == "v" and d.shape == (1, 8, 8) and d.schedule.T == 100
    assert unet.training and next(unet.parameters()).requires_grad  # in memory: not frozen
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([1, 40, 99])
    with torch.no_grad():
        v = unet(x, t).sample
        got = d(x, t).x0_hat
    abar = sch.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(got, abar.sqrt() * x - (1 - abar).sqrt() * v, rtol=1e-5, atol=1e-5)
    # the same with the config dict, as a Denoiser directly, and with a tuple output
    for other in (biaskit.load(unet, scheduler=dict(sch.config)), Denoiser(unet, sch)):
        torch.testing.assert_close(other(x, t).x0_hat, got)
    tupled = Denoiser(lambda x, t: unet(x, t, return_dict=False), sch)
    torch.testing.assert_close(tupled(x, t).x0_hat, got)


def test_in_memory_equals_the_saved_folder(tmp_path):
    unet, sch = tiny_unet(seed=3), diffusers.DDPMScheduler(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2")
    unet.save_pretrained(tmp_path / "unet")
    sch.save_pretrained(tmp_path / "scheduler")
    folder = biaskit.load(tmp_path / "unet", scheduler_config=tmp_path / "scheduler")
    mem = biaskit.load(unet, scheduler=sch)
    assert mem.schedule.same_as(folder.schedule)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0, 49])
    torch.testing.assert_close(mem(x, t).eps_hat, folder(x, t).eps_hat)


def test_get_schedule_reads_a_scheduler_object():
    sch = diffusers.DDPMScheduler(num_train_timesteps=200, beta_schedule="scaled_linear",
                                  beta_start=0.00085, beta_end=0.012)
    s = biaskit.get_schedule(sch)
    torch.testing.assert_close(s.abar, sch.alphas_cumprod.double(), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="continuous process"):
        biaskit.get_schedule(diffusers.FlowMatchEulerDiscreteScheduler())


def test_flow_scheduler_in_memory_is_a_process_denoiser():
    """A flow-matching scheduler: x = (1 - s) x0 + s eps, velocity u = eps - x0, time s * 1000;
    at the view step of logsnr lam, s = 1 / (1 + exp(lam / 2)) and x_vp = x / sqrt(a^2 + s^2)."""
    unet = tiny_unet(seed=1)
    d = biaskit.load(unet, scheduler=diffusers.FlowMatchEulerDiscreteScheduler())
    assert type(d).__name__ == "ProcessDenoiser"
    x_vp, i = torch.randn(2, 1, 8, 8), torch.tensor([100, 700])
    lam = d.logsnr_at(i).float().reshape(-1, 1, 1, 1)
    s = torch.sigmoid(-lam / 2)
    a = 1 - s
    x = x_vp * (a**2 + s**2).sqrt()
    with torch.no_grad():
        u = unet(x, (s * 1000).flatten()).sample
        got = d(x_vp, i).x0_hat
    torch.testing.assert_close(got, x - s * u, rtol=1e-4, atol=1e-4)


def test_plain_module_with_a_schedule_or_process():
    net = torch.nn.Conv2d(1, 1, 1)
    d = biaskit.load(lambda x, t: net(x), schedule="cosine", name="conv")
    assert d.name == "conv" and d.schedule.name == "cosine"
    assert type(biaskit.load(lambda x, t: net(x), process="edm")).__name__ == "ProcessDenoiser"


@pytest.mark.parametrize("call, match", [
    (lambda u: biaskit.load(3), "biaskit.load expects a path or model spec string, a Denoiser, or a network"),
    (lambda u: biaskit.load([u]), "got list"),
    (lambda u: biaskit.load(type(u), schedule="linear"), "got the class UNet2DModel"),
    (lambda u: Denoiser(u, 1000), "schedule: expected a biaskit Schedule"),
    (lambda u: Denoiser("unet", "linear"), "net must be a torch nn.Module or a callable"),
    (lambda u: biaskit.load(u, scheduler="linear"), "scheduler= expects a diffusers scheduler"),
    (lambda u: Denoiser(lambda x, t: {"out": x}, "linear")(torch.zeros(1, 1, 8, 8), 0),
     "expected a tensor, an output with a .sample tensor"),
])
def test_wrong_types_are_type_errors_naming_what_was_expected(call, match):
    with pytest.raises(TypeError, match=match):
        call(tiny_unet())


def test_a_class_conditional_network_in_memory_gets_its_class_label():
    # a diffusers UNet with class embeddings, read with one class for all: its eps is the
    # network's own output at that label (a network in memory has no guidance options)
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                 layers_per_block=1, norm_num_groups=4, num_class_embeds=3,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))
    d = biaskit.load(unet, schedule="linear", class_label=2)
    assert (d.conditioning.keyword, d.conditioning.class_label, d.conditioning.guidance_scale) == \
        ("class_labels", 2, None)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 700])
    with torch.no_grad():
        want = unet(x, t, class_labels=torch.tensor([2, 2])).sample
        assert torch.allclose(d(x, t).eps_hat, want, atol=1e-6)
    with pytest.raises(ValueError, match="do not apply"):
        biaskit.load(unet, schedule="linear", guidance_scale=2.0)


def test_a_schedule_is_asked_for_never_assumed():
    with pytest.raises(ValueError, match="needs the schedule it was trained with"):
        biaskit.load(tiny_unet())


# --- 3. one long view of every result ------------------------------------------------------------

def test_to_long_of_compare_and_metric_frames_carries_the_metadata():
    import numpy as np
    oracle = biaskit.oracle.from_spec("oracle:gmm2d", schedule="linear")
    data = biaskit.data.load_dataset("gmm2d", n_test=64)
    df = biaskit.compare({"a": oracle, "b": oracle}, data, timesteps=[10, 500], n=32, progress=False)
    long = df.biaskit.to_long()
    stats = [c for c in df.columns if c.endswith("_lo")]
    assert list(long.columns[-4:]) == ["statistic", "value", "lo", "hi"]
    assert {"model", "kind", "reference", "t", "snr", "logsnr", "n"} <= set(long.columns)
    assert long.attrs["metadata"] == df.attrs["metadata"] and long.attrs is not df.attrs
    row = long[(long.model == "b - a") & (long.t == 500) & (long.statistic == "x0_mse")].iloc[0]
    wide = df[(df.model == "b - a") & (df.t == 500)].iloc[0]
    assert (row.value, row.lo, row.hi) == (wide.x0_mse, wide.x0_mse_lo, wide.x0_mse_hi)
    assert row.value == 0.0  # a model against itself on the same draws
    assert np.isnan(long[long.statistic == "x0_bias_p"].lo).all()  # a p-value has no interval
    assert len(long) == len(df) * len([c for c in df.columns if c not in biaskit.results.KEYS
                                       and not c.endswith(("_lo", "_hi"))]) and len(stats) > 10
    scores = biaskit.metrics.evaluate({"half": data.test[:32]}, data, ("swd", "gmm"), n_boot=10)
    m = biaskit.to_long(scores)
    assert set(m.statistic) >= {"swd", "log_likelihood"} and list(m.columns[-4:]) == ["statistic", "value", "lo", "hi"]
    assert m.attrs["metadata"]["data_range"] == tuple(data.data_range)


def test_xarray_view_or_a_clear_import_error():
    oracle = biaskit.oracle.from_spec("oracle:gmm2d", schedule="linear")
    df = biaskit.probe(oracle, biaskit.data.load_dataset("gmm2d", n_test=16), timesteps=[10], n=16, progress=False)
    try:
        import xarray  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs xarray"):
            df.biaskit.to_xarray()
        return
    ds = df.biaskit.to_xarray()
    assert set(ds.dims) == {"model", "t", "statistic"}
    assert float(ds.hi.sel(model=df.model[0], t=10, statistic="x0_mse")) == df.x0_mse_hi[0]


def test_evaluate_takes_the_data_range_from_the_data_or_the_model():
    from biaskit import metrics
    data = biaskit.data.load_dataset("gmm2d", n_test=64, data_range=(0.0, 1.0))
    x = data.test[:32]
    assert metrics.evaluate({"x": x}, data, ("swd",), n_boot=5).attrs["metadata"]["data_range"] == (0.0, 1.0)
    d = biaskit.load(torch.nn.Identity(), schedule="linear", data_range=(-0.5, 0.5))
    got = metrics.evaluate({"x": x}, data.test, ("swd",), model=d, n_boot=5).attrs["metadata"]["data_range"]
    assert got == (-0.5, 0.5)
    with pytest.raises(ValueError, match="data_range is unknown and FID/KID need it"):
        metrics.evaluate({"x": x}, data.test, ("fid",))
    assert "only for FID and KID" in " ".join(metrics.evaluate.__doc__.split())
