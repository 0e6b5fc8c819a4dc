"""Third-party checkpoints: diffusers folders, ADM state dicts and plugins load, their configs are
read back, and closed-form probe results hold (a model that outputs 0 has a known x0-MSE)."""

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import biaskit
from biaskit import safeload
from biaskit.models.adm import ADMUNet, NOT_IN_STATE_DICT, infer_adm_config
from biaskit.report import cell_widths, high_noise_share, write_report
from biaskit.loaders import add_loader_arguments, detect_format, loader_kwargs_from_args

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / ".." / "shared" / "checkpoints" / "mnist-ddpm-cnn" / "ddpm_mnist_starter.pth"
MNIST_SPEC = f"{ROOT / 'examples' / 'mnist_ddpm_cnn.py'}:factory"




def _signs(n, shape, seed=0):
    """x0 = +-0.5 in every element: E[x0^2] = 0.25 exactly."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (n, *shape), generator=g).float() - 0.5)


def _within(df, stat, truth, rel=0.06):
    """The probe's estimate is within rel of the truth and its 95% interval is not far off."""
    est = df[stat].to_numpy()
    assert np.allclose(est, truth, rtol=rel), (stat, est, truth)
    width = df[f"{stat}_hi"].to_numpy() - df[f"{stat}_lo"].to_numpy()
    assert np.all(np.abs(est - truth) <= 2 * width), (stat, est, truth, width)


# ---------------------------------------------------------------------------------------------
# ADM

ADM_CONFIGS = [
    dict(in_channels=3, model_channels=32, num_res_blocks=1, attention_resolutions=[2],
         channel_mult=[1, 2], learn_sigma=True, num_heads=1),
    dict(in_channels=1, model_channels=32, num_res_blocks=2, attention_resolutions=[1, 4],
         channel_mult=[1, 1, 2], num_classes=10, use_scale_shift_norm=True, resblock_updown=True,
         num_head_channels=16),
    dict(in_channels=3, model_channels=64, num_res_blocks=1, attention_resolutions=[],
         channel_mult=[0.5, 1], conv_resample=False, num_heads=4),
]
IDENTIFIABLE = ("in_channels", "model_channels", "num_res_blocks", "attention_resolutions",
                "channel_mult", "learn_sigma", "num_classes", "use_scale_shift_norm",
                "resblock_updown", "conv_resample", "out_channels")


def _known(cfg):
    """What each test config means for every identifiable argument (written out by hand)."""
    return {"learn_sigma": False, "num_classes": None, "use_scale_shift_norm": False,
            "resblock_updown": False, "conv_resample": True, **cfg,
            "out_channels": cfg["in_channels"] * (2 if cfg.get("learn_sigma") else 1)}


def test_adm_keys_and_shapes_follow_the_guided_diffusion_layout():
    # hand-derived from the published layout for num_channels 32, channel_mult 1,2, one res block,
    # attention at ds 2 (the second level), learn_sigma on RGB
    sd = ADMUNet(**ADM_CONFIGS[0]).state_dict()
    expected = {
        "time_embed.0.weight": (128, 32), "time_embed.2.weight": (128, 128),
        "input_blocks.0.0.weight": (32, 3, 3, 3),
        "input_blocks.1.0.in_layers.0.weight": (32,), "input_blocks.1.0.in_layers.2.weight": (32, 32, 3, 3),
        "input_blocks.1.0.emb_layers.1.weight": (32, 128), "input_blocks.1.0.out_layers.3.weight": (32, 32, 3, 3),
        "input_blocks.2.0.op.weight": (32, 32, 3, 3),
        "input_blocks.3.0.skip_connection.weight": (64, 32, 1, 1),
        "input_blocks.3.1.norm.weight": (64,), "input_blocks.3.1.qkv.weight": (192, 64, 1),
        "input_blocks.3.1.proj_out.weight": (64, 64, 1),
        "middle_block.0.in_layers.2.weight": (64, 64, 3, 3), "middle_block.1.qkv.weight": (192, 64, 1),
        "middle_block.2.out_layers.3.weight": (64, 64, 3, 3),
        "output_blocks.0.0.in_layers.2.weight": (64, 128, 3, 3), "output_blocks.0.1.qkv.weight": (192, 64, 1),
        "output_blocks.1.0.skip_connection.weight": (64, 96, 1, 1), "output_blocks.1.2.conv.weight": (64, 64, 3, 3),
        "output_blocks.2.0.in_layers.2.weight": (32, 96, 3, 3), "output_blocks.3.0.in_layers.2.weight": (32, 64, 3, 3),
        "out.0.weight": (32,), "out.2.weight": (6, 32, 3, 3),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert max(int(k.split(".")[1]) for k in sd if k.startswith("output_blocks")) == 3
    assert not any(k.startswith("label_emb") for k in sd)
    sd2 = ADMUNet(**ADM_CONFIGS[1]).state_dict()
    assert sd2["label_emb.weight"].shape == (10, 128)
    assert sd2["input_blocks.1.0.emb_layers.1.weight"].shape == (64, 128)  # scale and shift: 2 x 32
    assert "input_blocks.3.0.in_layers.0.weight" in sd2 and "input_blocks.3.0.op.weight" not in sd2


@pytest.mark.parametrize("i", range(len(ADM_CONFIGS)))
def test_adm_config_is_inferred_and_loads_strictly(tmp_path, i):
    cfg = ADM_CONFIGS[i]
    torch.manual_seed(i)
    net = ADMUNet(**cfg).eval()
    path = tmp_path / "ema_0.9999_000000.pt"
    torch.save(net.state_dict(), path)
    inferred = infer_adm_config(safeload.read_state_dict(path))
    known = _known(cfg)
    assert {k: inferred[k] for k in IDENTIFIABLE} == {k: known[k] for k in IDENTIFIABLE}
    assert set(inferred) == set(net.config)
    # nothing in the weights depends on these: guided-diffusion's UNetModel defaults come back
    assert {k: inferred[k] for k in NOT_IN_STATE_DICT} == dict(
        image_size=None, num_heads=1, num_head_channels=-1, num_heads_upsample=-1,
        use_new_attention_order=False, dropout=0.0)

    heads = {k: cfg[k] for k in ("num_heads", "num_head_channels") if k in cfg}
    label = {"class_label": 3} if cfg.get("num_classes") else {}
    d = biaskit.load(path, noise_schedule="linear", diffusion_steps=1000, **heads, **label)
    assert d.info["format"] == "adm" and d.info["sha256"] == safeload.file_sha256(path)
    assert d.parameterization == "eps" and d.time_input == "index"
    src = d.source  # typed provenance; info spells it with the keys metadata always had
    assert (src.format, src.path, src.sha256, src.step) == ("adm", str(path), d.info["sha256"], None)
    assert src.name == path.stem and src.shape is None and d.any_size  # image_size is not stored
    assert list(d.info)[:4] == ["name", "format", "path", "sha256"] and "config" in src.extras
    with pytest.raises(TypeError):
        d.info["format"] = "x"  # read-only
    C = cfg["in_channels"]
    x = torch.randn(2, C, 8, 8)
    t = torch.tensor([10, 900])
    with torch.no_grad():
        y = torch.full((2,), 3) if label else None
        raw = net(x, t, y)
        pred = d(x, t)
    assert torch.allclose(pred.out, raw[:, :C], atol=1e-5)
    if cfg.get("learn_sigma"):
        assert pred.var_out.shape == (2, C, 8, 8)
        assert torch.allclose(pred.var_out, raw[:, C:], atol=1e-5)
    else:
        assert pred.var_out is None


def test_adm_needs_a_label_for_class_conditional_and_warns_about_heads(tmp_path):
    path = tmp_path / "cc.pt"
    torch.save(ADMUNet(**ADM_CONFIGS[1]).state_dict(), path)
    d = biaskit.load(path, num_head_channels=16)  # per-sample labels, given per call
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 900])
    with pytest.raises(ValueError, match="class-conditional.*--class-label"):
        d(x, t)
    with torch.no_grad():
        y = torch.tensor([2, 7])
        assert torch.equal(d(x, t, y).out, d.net(x, t, y=y))
    with pytest.warns(UserWarning, match="heads is not stored"):
        biaskit.load(path, class_label=0)
    with pytest.raises(ValueError, match="not class-conditional: drop --class-label"):
        unconditional = tmp_path / "u.pt"
        torch.save(ADMUNet(**ADM_CONFIGS[0]).state_dict(), unconditional)
        biaskit.load(unconditional, class_label=0, num_heads=1)
    # contradicting the weights is caught by name
    with pytest.raises(ValueError, match="label_emb.weight"):
        biaskit.load(path, class_cond=False, num_head_channels=16)


def test_adm_flags_in_guided_diffusion_units(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(ADMUNet(**ADM_CONFIGS[0]).state_dict(), path)
    # --attention_resolutions lists image resolutions: 16 at image size 32 is ds 2
    d = biaskit.load(path, image_size=32, attention_resolutions="16", num_heads=2, predict_xstart=True)
    assert d.info["config"]["attention_resolutions"] == [2] and d.parameterization == "x0"
    # improved-diffusion's rescale_timesteps: a 4000-step model sees t * 1000 / 4000
    d = biaskit.load(path, num_heads=2, diffusion_steps=4000, rescale_timesteps=True)
    assert torch.allclose(d.time_features(torch.tensor([0, 400, 3999])), torch.tensor([0.0, 100.0, 999.75]))
    with pytest.raises(ValueError, match="image-size"):
        biaskit.load(path, attention_resolutions="16", num_heads=2)
    with pytest.raises(ValueError, match=r"input_blocks\.3\.1\.qkv"):  # attention at ds 1 instead
        biaskit.load(path, image_size=32, attention_resolutions="32", num_heads=2)


def _zero_output(net):
    """An ADM whose last layer is zero: eps_hat = 0 for every input."""
    nn.init.zeros_(net.out[2].weight)
    nn.init.zeros_(net.out[2].bias)
    return net


def test_zero_output_adm_has_x0_mse_one_over_snr(tmp_path):
    # eps_hat = 0 gives x0_hat = x_t / alpha, so x0_hat - x0 = eps / sqrt(snr): x0_mse = 1/snr
    net = _zero_output(ADMUNet(**ADM_CONFIGS[0]))
    path = tmp_path / "zero.pt"
    torch.save(net.state_dict(), path)
    d = biaskit.load(path, num_heads=1, noise_schedule="cosine", diffusion_steps=100)
    x0 = _signs(64, (3, 8, 8))
    df = biaskit.probe.probe(d, x0, timesteps=[5, 30, 60, 95], n=64, progress=False, batch_size=128)
    _within(df, "x0_mse", 1 / df["snr"].to_numpy())
    _within(df, "eps_mse", np.ones(4))


# ---------------------------------------------------------------------------------------------
# diffusers

def _tiny_unet(seed=0):
    from diffusers import UNet2DModel
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, attention_head_dim=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D")).eval()


def _perturb(unet, zero_out: bool):
    with torch.no_grad():
        for p in unet.parameters():  # diffusers zero-initialises some layers; make them count
            p.add_(0.05 * torch.randn_like(p))
        if zero_out:
            unet.conv_out.weight.zero_()
            unet.conv_out.bias.zero_()
    return unet


SCHEDULERS = [
    dict(prediction_type="epsilon", beta_schedule="linear"),
    dict(prediction_type="sample", beta_schedule="squaredcos_cap_v2", num_train_timesteps=200),
    dict(prediction_type="v_prediction", beta_schedule="scaled_linear", beta_start=0.00085,
         beta_end=0.012, rescale_betas_zero_snr=True),
]


def _pipeline(tmp_path, sched_kw, zero_out, safe=True):
    from diffusers import DDPMPipeline, DDPMScheduler
    unet = _perturb(_tiny_unet(), zero_out)
    scheduler = DDPMScheduler(**sched_kw)
    folder = tmp_path / "pipe"
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder, safe_serialization=safe)
    return folder, unet, scheduler


@pytest.mark.parametrize("sched_kw", SCHEDULERS, ids=lambda s: s["prediction_type"])
def test_diffusers_pipeline_matches_diffusers(tmp_path, sched_kw):
    folder, unet, scheduler = _pipeline(tmp_path, sched_kw, zero_out=False)
    assert detect_format(folder) == "diffusers"
    d = biaskit.load(folder)
    kind = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}[sched_kw["prediction_type"]]
    assert d.parameterization == kind and d.info["format"] == "diffusers"
    # the schedule is diffusers' own alphas_cumprod
    assert torch.allclose(d.schedule.abar, scheduler.alphas_cumprod.double(), atol=1e-6)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, d.schedule.T - 1])
    with torch.no_grad():
        assert torch.allclose(d(x, t).out, unet(x, t).sample, atol=1e-5)
    assert d.info["config"]["block_out_channels"] == [8, 16]
    assert set(d.info["sha256"]) == {"unet/diffusion_pytorch_model.safetensors"}
    src = d.source
    assert (src.format, src.path, src.step, src.shape) == ("diffusers", str(folder), None, (3, 8, 8))
    assert dict(src.sha256) == d.info["sha256"] and src.name == "pipe" and d.any_size
    assert set(d.info) == {"name", "format", "path", "sha256", "config", "scheduler", "schedule_source"}


@pytest.mark.parametrize("sched_kw", SCHEDULERS, ids=lambda s: s["prediction_type"])
def test_zero_output_diffusers_closed_forms(tmp_path, sched_kw):
    folder, _, _ = _pipeline(tmp_path, sched_kw, zero_out=True, safe=sched_kw["prediction_type"] != "sample")
    d = biaskit.load(folder)
    T = d.schedule.T
    ts = [2, T // 4, T // 2, T - 1] if sched_kw["prediction_type"] != "epsilon" else [2, T // 4, T // 2, T - 2]
    df = biaskit.probe.probe(d, _signs(64, (3, 8, 8)), timesteps=ts, n=64, progress=False, batch_size=128)
    abar = d.schedule.abar[ts].numpy()
    if sched_kw["prediction_type"] == "epsilon":     # x0_hat = x_t / alpha
        truth = (1 - abar) / abar
    elif sched_kw["prediction_type"] == "sample":    # x0_hat = 0
        truth = np.full(len(ts), 0.25)
    else:                                            # x0_hat = alpha x_t
        truth = (1 - abar) ** 2 * 0.25 + abar * (1 - abar)
    _within(df, "x0_mse", truth)


def test_bare_unet_folder_with_and_without_scheduler_config(tmp_path):
    from diffusers import DDIMScheduler
    unet = _perturb(_tiny_unet(), zero_out=False)
    unet.save_pretrained(tmp_path / "unet")
    DDIMScheduler(prediction_type="v_prediction", num_train_timesteps=500).save_pretrained(tmp_path / "sched")
    assert detect_format(tmp_path / "unet") == "diffusers-unet"
    d = biaskit.load(tmp_path / "unet", scheduler_config=tmp_path / "sched")
    assert d.parameterization == "v" and d.schedule.T == 500
    with pytest.warns(UserWarning, match="no scheduler config"):
        d = biaskit.load(tmp_path / "unet")
    assert d.parameterization == "eps" and d.schedule.T == 1000
    assert np.isclose(float(d.schedule.betas[-1]), 0.02)


# ---------------------------------------------------------------------------------------------
# detection and errors

def test_unknown_checkpoints_get_a_clear_error(tmp_path):
    f = tmp_path / "mystery.pt"
    torch.save({"encoder.weight": torch.zeros(2), "decoder.weight": torch.zeros(2)}, f)
    with pytest.raises(ValueError, match=r"mystery\.pt.*encoder.*--model-spec"):
        biaskit.load(f)
    nested = tmp_path / "wrapped.pt"
    torch.save({f"model.{k}": v for k, v in ADMUNet(**ADM_CONFIGS[2]).state_dict().items()}, nested)
    with pytest.raises(ValueError, match=r"--state-dict-prefix model\."):
        biaskit.load(nested)
    assert biaskit.load(nested, state_dict_prefix="model.", num_heads=4).info["format"] == "adm"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="model_index.json"):
        biaskit.load(tmp_path / "empty")
    with pytest.raises(ValueError, match="do not apply to a plugin model"):
        biaskit.load(f, model_spec=MNIST_SPEC, num_channels=3)


# ---------------------------------------------------------------------------------------------
# plugins

PLUGIN = '''
import torch
from torch import nn

class Recorder(nn.Module):
    """Outputs a constant eps_hat = c and remembers the time input it got."""
    def __init__(self):
        super().__init__()
        self.c = nn.Parameter(torch.zeros(1))
    def forward(self, x, t):
        self.seen = t.detach().clone()
        return torch.zeros_like(x) + self.c

def make():
    return Recorder()
'''


def test_a_plugin_without_a_schedule_warns_at_its_caller_and_is_ddpm_linear(tmp_path):
    (tmp_path / "plug.py").write_text(PLUGIN)
    with pytest.warns(UserWarning, match="assuming DDPM linear, T=1000") as seen:
        d = biaskit.load(None, model_spec=f"{tmp_path / 'plug.py'}:make")
    assert [Path(w.filename).name for w in seen] == [Path(__file__).name]  # the user's line, not ours
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)  # Ho et al. 2020
    assert torch.allclose(d.schedule.abar, torch.cumprod(1 - betas, 0))
    assert d.info["schedule_source"] == "default (DDPM linear, T=1000)"


def test_plugin_schedule_from_checkpoint_and_scaled_time(tmp_path):
    (tmp_path / "plug.py").write_text(PLUGIN)
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1001), 0)
    f = tmp_path / "weights.pth"
    torch.save({"alpha_t": abar, "gt.c": torch.tensor([0.1])}, f)
    d = biaskit.load(f, model_spec=f"{tmp_path / 'plug.py'}:make", state_dict_prefix="gt.",
                     abar_key="alpha_t", time_input="scaled", time_scale=1e-3,
                     data_range="-0.5,0.5", trained_timesteps="1:999")
    assert d.schedule.T == 999 and d.data_range == (-0.5, 0.5)
    assert torch.allclose(d.schedule.abar, abar[1:1000].double())
    x = torch.zeros(3, 1, 4, 4)
    pred = d(x, torch.tensor([0, 499, 998]))
    assert torch.allclose(d.net.seen, torch.tensor([0.001, 0.5, 0.999]))
    assert torch.allclose(pred.eps_hat, torch.full_like(x, 0.1))
    # the same through a spec naming the plugin and --weights
    d2 = biaskit.load(f"{tmp_path / 'plug.py'}:make", weights=f, state_dict_prefix="gt.", abar_key="alpha_t")
    assert d2.schedule.T == 1001 and d2.info["sha256"] == safeload.file_sha256(f)
    assert (d2.source.format, d2.source.path, d2.source.name) == ("plugin", str(f), "weights")
    assert d2.source.sha256 == d2.info["sha256"] and d2.source.shape is None and not d2.any_size
    assert set(d2.info) == {"name", "format", "path", "sha256", "model_spec", "schedule_source"}
    assert d.info["trained_timesteps"] == [1, 999]
    with pytest.raises(ValueError, match="abar key 'abar'.*alpha_t"):
        biaskit.load(f, model_spec=f"{tmp_path / 'plug.py'}:make", state_dict_prefix="gt.", abar_key="abar")
    with pytest.raises(ValueError, match="has no 'nope'.*make"):
        biaskit.load(f, model_spec=f"{tmp_path / 'plug.py'}:nope")


NAN_PLUGIN = """
import torch
from torch import nn

class Broken(nn.Module):
    def forward(self, x, t):
        return torch.where(t.reshape(-1, 1, 1, 1) > 0.5, float("nan"), 0.0) + 0 * x
"""


def test_nan_outputs_are_reported_with_their_t(tmp_path):
    (tmp_path / "broken.py").write_text(NAN_PLUGIN)
    d = biaskit.load(f"{tmp_path / 'broken.py'}:Broken", noise_schedule="linear", diffusion_steps=100,
                     time_input="scaled", time_scale=0.01)
    with pytest.raises(ValueError, match=r"NaN or inf at t=60"):
        biaskit.probe.probe(d, _signs(8, (1, 4, 4)), timesteps=[10, 40, 60, 90], n=8, progress=False)


def test_cli_probe_of_a_diffusers_folder_writes_report_and_identity(tmp_path, capsys):
    from biaskit.cli import main
    folder, _, _ = _pipeline(tmp_path, SCHEDULERS[0], zero_out=True)
    out = tmp_path / "out"
    rc = main(["probe", str(folder), "--data", "gmm", "--data-option", "shape=[3,8,8]",
               "--data-option", "n_test=32", "--samples", "32", "--timesteps", "100,500,900",
               "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads((out / "metadata.json").read_text())
    (ident,) = meta["models"].values()
    assert ident["format"] == "diffusers" and ident["parameterization"] == "eps"
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    assert ident["sha256"] == {"unet/diffusion_pytorch_model.safetensors": safeload.file_sha256(weights)}
    assert ident["config"]["block_out_channels"] == [8, 16]
    import pandas as pd
    df = pd.read_csv(out / "per_timestep.csv")
    assert np.allclose(df["x0_mse"], 1 / df["snr"], rtol=0.1)   # eps_hat = 0
    report = (out / "report.md").read_text()
    assert "## Headline numbers" in report and "![per_timestep](per_timestep.png)" in report
    assert (out / "per_timestep.png").is_file()

def test_cli_flags_round_trip_into_loader_kwargs():
    from biaskit.cli import build_parser
    argv = ["probe", "m.pt", "--data", "mnist", "--out", "o", "--data-range=-0.5,0.5",
            "--num_head_channels", "64", "--learn-sigma", "--predict_xstart", "false",
            "--noise-schedule", "cosine", "--trained-timesteps", "1:999", "--model-spec", "x.py:f"]
    args = build_parser().parse_args(argv)
    assert loader_kwargs_from_args(args) == {
        "data_range": "-0.5,0.5", "num_head_channels": 64, "learn_sigma": True,
        "predict_xstart": False, "noise_schedule": "cosine", "trained_timesteps": "1:999",
        "model_spec": "x.py:f"}
    p = argparse.ArgumentParser()
    add_loader_arguments(p)
    assert loader_kwargs_from_args(p.parse_args([])) == {}


# ---------------------------------------------------------------------------------------------
# report

def test_high_noise_share_and_report(tmp_path):
    # cells of the grid {0, 5} on 0..9 are {0,1,2} and {3..9}
    assert np.allclose(cell_widths([0, 5], 10), [3, 7])
    assert high_noise_share(np.arange(10), np.ones(10), 10) == 0.5
    assert high_noise_share(np.arange(10), np.r_[np.zeros(5), np.ones(5)], 10) == 1.0
    ts = np.arange(0, 100, 10)
    snr = np.exp(-np.linspace(-5, 5, 10))
    import pandas as pd
    df = pd.DataFrame({"model": "m", "t": ts, "timestep": ts, "snr": snr, "logsnr": np.log(snr),
                       "x0_mse": 1 / snr, "eps_mse": np.ones(10),
                       "x0_bias_c0": np.zeros(10), "x0_bias_c1": np.r_[np.zeros(7), -0.3, 0, 0],
                       "x0_bias_c2": np.full(10, 0.1), "clip_frac": np.zeros(10)})
    (tmp_path / "curve.png").write_bytes(b"")
    path = write_report(tmp_path, df, {"n": 4, "models": {"m": {"format": "adm"}},
                                       "schedule": {"name": "s", "abar": [0.5] * 100}})
    text = path.read_text()
    assert "green, -0.3 at t = 70" in text
    # T = 100: cells [-0.5, 5], ten wide ones, [85, 99.5]; the high-noise half is t >= 50
    w = np.r_[5.5, np.full(8, 10.0), 14.5]
    share = (w / snr)[5:].sum() / (w / snr).sum()
    assert f"high-noise half t >= T/2: {100 * share:.1f}%" in text
    assert "eps error (what L_simple weights): 54.5%" in text and "![curve](curve.png)" in text


# ---------------------------------------------------------------------------------------------
# the real third-party MNIST checkpoint

@pytest.mark.skipif(not MNIST.is_file(), reason=f"third-party checkpoint not present at {MNIST}")
def test_real_mnist_checkpoint_through_the_plugin_path():
    from biaskit.data import load_dataset
    d = biaskit.load(MNIST, model_spec=MNIST_SPEC, state_dict_prefix="gt.", abar_key="alpha_t",
                     time_input="scaled", time_scale=1e-3, data_range=(-0.5, 0.5),
                     trained_timesteps="1:999")
    assert d.info["sha256"] == "ce47bd2d6d5ea30bd84bee894826267a445acf71f1090c5f624b08975b57fb88"
    data = load_dataset("mnist", data_range=(-0.5, 0.5))
    ts = [1, 50, 200, 500, 800, 999]  # the model's timesteps (schedule steps 0, 49, ..., 998)
    df = biaskit.probe.probe(d, data, timesteps=ts, n=96, progress=False, batch_size=192)
    assert df["t"].tolist() == ts and df["schedule_index"].tolist() == [0, 49, 199, 499, 799, 998]
    eps, x0, snr = df["eps_mse"].to_numpy(), df["x0_mse"].to_numpy(), df["snr"].to_numpy()
    assert np.all(np.diff(eps) < 0) or np.all(np.diff(eps[:-1]) < 0)  # falls as t grows
    assert eps[0] == eps.max() and eps[0] < 0.5                           # a trained net, not noise
    assert np.all(np.diff(x0) > 0)                                        # rises with t
    assert np.all(x0 < 0.5 / snr) and np.all(x0[2:] < 0.05 / snr[2:])     # far below eps_hat = 0


@pytest.mark.skipif(not MNIST.is_file(), reason=f"third-party checkpoint not present at {MNIST}")
def test_real_mnist_checkpoint_samples_through_the_cli(tmp_path):
    """`biaskit sample` takes the same loader flags as `biaskit probe`; 50 DDPM steps of the real
    model give digits whose mean brightness is close to MNIST's (computed from the data)."""
    from biaskit.cli import main
    from biaskit.data import load_dataset
    out = tmp_path / "s"
    assert main(["sample", str(MNIST), "--model-spec", MNIST_SPEC, "--state-dict-prefix", "gt.",
                 "--abar-key", "alpha_t", "--time-input", "scaled", "--time-scale", "0.001",
                 "--data-range=-0.5,0.5", "--sampler", "ddpm", "--steps", "50", "--n", "32",
                 "--shape", "1,28,28", "--out", str(out), "--no-progress"]) == 0
    x = np.load(out / "samples.npz")["x0"]
    data_mean = float(load_dataset("mnist", data_range=(-0.5, 0.5)).train.mean())
    assert x.shape == (32, 1, 28, 28) and abs(float(x.mean()) - data_mean) < 0.05
    assert (out / "samples.png").stat().st_size > 5_000


# ---------------------------------------------------------------------------------------------
# guided-diffusion flags pasted as-is, several state dicts, prefixes, time inputs

# guided-diffusion's script_util.model_and_diffusion_defaults() (with diffusion_defaults()),
# restated from its definition
GD_DEFAULTS = dict(
    image_size=64, num_channels=128, num_res_blocks=2, num_heads=4, num_heads_upsample=-1,
    num_head_channels=-1, attention_resolutions="16,8", channel_mult="", dropout=0.0,
    class_cond=False, use_checkpoint=False, use_scale_shift_norm=True, resblock_updown=False,
    use_fp16=False, use_new_attention_order=False,
    learn_sigma=False, diffusion_steps=1000, noise_schedule="linear", timestep_respacing="",
    use_kl=False, predict_xstart=False, rescale_timesteps=False, rescale_learned_sigmas=False)


def test_model_and_diffusion_defaults_load_as_keyword_arguments(tmp_path):
    # those defaults at width 32, one res block: channel_mult "" at 64 px is (1, 2, 3, 4), the
    # resolutions 16, 8 are ds 4, 8, four heads, scale-shift norm
    net = ADMUNet(in_channels=3, model_channels=32, num_res_blocks=1, channel_mult=[1, 2, 3, 4],
                  attention_resolutions=[4, 8], num_heads=4, use_scale_shift_norm=True).eval()
    path = tmp_path / "defaults.pt"
    torch.save(net.state_dict(), path)
    kwargs = {**GD_DEFAULTS, "num_channels": 32, "num_res_blocks": 1}
    with pytest.warns(UserWarning, match=r"ignored.*dropout=0\.0.*use_checkpoint=False.*use_fp16=False"
                                         r".*use_kl.*rescale_learned_sigmas") as rec:
        d = biaskit.load(path, **kwargs)
    assert not [w for w in rec if "heads is not stored" in str(w.message)]
    assert d.info["config"]["channel_mult"] == [1, 2, 3, 4] and d.schedule.T == 1000
    assert "timestep_respacing" not in d.info and d.time_input == "index"
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        assert torch.allclose(d(x, t).out, net(x, t), atol=1e-5)
    with pytest.raises(ValueError, match=r'channel_mult "" at image size 256 means 1,1,2,2,4,4'):
        biaskit.load(path, **{**kwargs, "image_size": 256})


def _gd_respaced(T, counts):
    """guided-diffusion's SpacedDiffusion restated: the kept steps (space_timesteps, summing the
    stride), betas 1 - abar_t / abar_prev over the kept steps, time map[t] (* 1000 / T rescaled)."""
    size, extra = divmod(T, len(counts))
    kept, start = [], 0
    for i, c in enumerate(counts):
        n = size + (i < extra)
        stride, pos = ((n - 1) / (c - 1) if c > 1 else 1), 0.0
        for _ in range(c):
            kept.append(start + round(pos))
            pos += stride
        start += n
    return sorted(set(kept))


def test_timestep_respacing_and_rescale_are_guided_diffusions(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(ADMUNet(**ADM_CONFIGS[0]).state_dict(), path)
    d = biaskit.load(path, num_heads=1, diffusion_steps=300, noise_schedule="linear",
                     timestep_respacing="10,15,20", rescale_timesteps=True)
    kept = _gd_respaced(300, [10, 15, 20])
    assert d.schedule.timesteps.tolist() == kept and d.schedule.T == 45
    betas = np.linspace(1e-4 * 1000 / 300, 0.02 * 1000 / 300, 300)  # guided-diffusion's linear
    abar = np.cumprod(1 - betas)[kept]
    np.testing.assert_allclose(d.schedule.abar.numpy(), abar, rtol=1e-12)
    np.testing.assert_allclose(d.schedule.betas.numpy(), 1 - abar / np.r_[1.0, abar[:-1]], rtol=1e-9)
    t = torch.tensor([0, 11, 44])
    assert torch.allclose(d.time_features(t), torch.tensor(kept)[t].float() * 1000 / 300)
    assert biaskit.load(path, num_heads=1, predict_v=True).parameterization == "v"
    with pytest.raises(ValueError, match="both on"):
        biaskit.load(path, num_heads=1, predict_v=True, predict_xstart=True)


# guided-diffusion README (256x256 unconditional model) and the Debias fork's README sampling flags
GD_README_FLAGS = ("--attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000 "
                   "--image_size 256 --learn_sigma True --noise_schedule linear --num_channels 256 "
                   "--num_head_channels 64 --num_res_blocks 2 --resblock_updown True --use_fp16 True "
                   "--use_scale_shift_norm True --batch_size 4 --num_samples 100 --timestep_respacing 250")
DEBIAS_FLAGS = ("--use_fp16 True --dropout 0.0 --timestep_respacing 100 --predict_v False "
                "--class_cond False --learn_sigma True --noise_schedule linear --diffusion_steps 1000 "
                "--attention_resolutions 32,16,8 --num_channels 256 --num_res_blocks 2 "
                "--num_head_channels 64 --resblock_updown True --use_scale_shift_norm True "
                "--rescale_timesteps False")


@pytest.mark.parametrize("flags", [GD_README_FLAGS, DEBIAS_FLAGS], ids=["guided", "debias"])
def test_readme_flag_strings_parse_as_pasted(flags):
    from biaskit.cli import build_parser
    from biaskit.models.adm import flags_to_config
    args = build_parser().parse_args(["probe", "m.pt", "--data", "x", "--out", "o", *flags.split()])
    kw = loader_kwargs_from_args(args)
    assert kw["num_head_channels"] == 64 and kw["learn_sigma"] is True
    assert kw["use_fp16"] == "True" and kw["timestep_respacing"] in ("250", "100")
    assert args.batch_size == 256  # guided-diffusion's --batch_size is not probe's --batch-size
    arch = {k: v for k, v in kw.items() if k in ("num_channels", "num_res_blocks",
                                                 "attention_resolutions", "image_size")}
    cfg = flags_to_config(dict(in_channels=3, channel_mult=[1, 1, 2, 2, 4, 4]),
                          {**arch, "image_size": 256, "channel_mult": ""})
    # the released 256 px model: widths 256 x (1,1,2,2,4,4), attention at 32, 16, 8 px = ds 8, 16, 32
    assert cfg["channel_mult"] == [1, 1, 2, 2, 4, 4] and cfg["attention_resolutions"] == [8, 16, 32]


def test_checkpoint_holding_several_state_dicts(tmp_path):
    torch.manual_seed(0)
    online, ema = ADMUNet(**ADM_CONFIGS[2]).eval(), ADMUNet(**ADM_CONFIGS[2]).eval()
    path = tmp_path / "both.pt"
    torch.save({"model": online.state_dict(), "ema": ema.state_dict(), "step": 7}, path)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([5, 500])

    def out(d):
        with torch.no_grad():
            return d(x, t).out

    with torch.no_grad():
        want_online, want_ema = online(x, t), ema(x, t)
    assert not torch.allclose(want_online, want_ema)
    with pytest.warns(UserWarning, match=r"holds 'model' \(\d+ tensors\), 'ema'.*using 'ema'"):
        d = biaskit.load(path, num_heads=4)
    assert torch.allclose(out(d), want_ema, atol=1e-5) and d.info["state_dict_key"] == "ema"
    assert torch.allclose(out(biaskit.load(path, num_heads=4, state_dict_key="model")), want_online,
                          atol=1e-5)
    assert torch.allclose(out(biaskit.load(path, num_heads=4, state_dict_prefix="ema.")), want_ema,
                          atol=1e-5)
    with pytest.raises(ValueError, match=r"'nope' is not in both\.pt; it holds 'model'"):
        biaskit.load(path, num_heads=4, state_dict_key="nope")
    two = tmp_path / "two.pt"
    torch.save({"a": online.state_dict(), "b": ema.state_dict()}, two)
    with pytest.raises(ValueError, match=r"several state dicts \('a'.*'b'.*--state-dict-key"):
        biaskit.load(two, num_heads=4)


PREFIXED_PLUGIN = '''
import torch
from torch import nn

class Emb(nn.Module):
    """Integer timesteps through an embedding table (as many small DDPMs do)."""
    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(100, 1)
        self.scale = nn.Parameter(torch.ones(1))
    def forward(self, x, t):
        return x * 0 + self.scale * self.table(t).reshape(-1, 1, 1, 1)

def make():
    return Emb()
'''


def test_prefix_suggestions_and_time_input_errors(tmp_path, capsys):
    from biaskit.cli import main
    (tmp_path / "emb.py").write_text(PREFIXED_PLUGIN)
    spec = f"{tmp_path / 'emb.py'}:make"
    f = tmp_path / "w.pt"
    torch.save({"network.table.weight": torch.zeros(100, 1), "network.scale": torch.ones(1)}, f)
    common = dict(model_spec=spec, noise_schedule="linear", diffusion_steps=100)
    with pytest.raises(ValueError, match=r"carry the prefix 'network\.'.*--state-dict-prefix network\."):
        biaskit.load(f, **common)
    with pytest.raises(ValueError, match=r"prefix 'net\.'.*share the prefix 'network\.'"):
        biaskit.load(f, state_dict_prefix="net.", **common)
    d = biaskit.load(f, state_dict_prefix="network.", time_input="scaled", **common)
    with pytest.raises(ValueError, match=r"rejects time input 'scaled' \(float32.*indices.*"
                                         r"runs with --time-input index \(int64"):
        d(torch.zeros(2, 1, 4, 4), torch.tensor([3, 50]))
    rc = main(["probe", str(f), "--model-spec", spec, "--state-dict-prefix", "network.",
               "--time-input", "sigma", "--noise-schedule", "linear", "--diffusion-steps", "100",
               "--data", "gmm", "--data-option", "shape=[1,4,4]", "--samples", "8",
               "--timesteps", "10,50", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--time-input index" in err[0], err


def _readme_adm_command():
    """(MODEL_FLAGS, SAMPLE_FLAGS, the probe command's words) of the README's ADM example."""
    import re
    text = (ROOT / "README.md").read_text().split("### guided-diffusion, improved-diffusion")[1]
    block = text.split("```bash\n")[1].split("```")[0]
    env = dict(re.findall(r'^(\w+)="([^"]*)"$', block, flags=re.M))
    (command,) = [line for line in block.splitlines() if line.startswith("biaskit probe")]
    return env, command.split()[1:]


def test_readme_adm_command_runs_on_a_small_adm(tmp_path, capsys):
    from PIL import Image
    from biaskit.cli import main
    env, words = _readme_adm_command()
    # the README's flags with the widths of a small model (32 px, 32 channels, attention at
    # 16, 8 px = ds 2, 4, heads of 32 channels); every other flag as pasted
    small = {"--image_size": "32", "--num_channels": "32", "--num_res_blocks": "1",
             "--attention_resolutions": "16,8", "--num_head_channels": "32"}
    model_flags = env["MODEL_FLAGS"].split()
    model_flags = [small.get(model_flags[i - 1], w) if i else w for i, w in enumerate(model_flags)]
    # improved-diffusion's channel_mult at 32 px: 1,2,2,2; learn_sigma: 6 output channels
    net = ADMUNet(in_channels=3, model_channels=32, num_res_blocks=1, channel_mult=[1, 2, 2, 2],
                  attention_resolutions=[2, 4], learn_sigma=True, num_head_channels=32,
                  resblock_updown=True, use_scale_shift_norm=True)
    net = _zero_output(net)  # eps_hat = 0: x0-MSE = 1/snr whatever the settings
    path = tmp_path / "small.pt"
    torch.save(net.state_dict(), path)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):  # few: the probe's forward passes are the cost of this test
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{i}.png")
    argv = []
    for w in words:
        argv += {"$MODEL_FLAGS": model_flags, "$SAMPLE_FLAGS": env["SAMPLE_FLAGS"].split()}.get(w, [w])
    argv = [str(path) if w.endswith(".pt") else str(images) if w == "IMAGE_DIR" else
            str(tmp_path / "out") if w == "runs/adm256" else w for w in argv]
    rc = main([*argv, "--no-progress", "--no-plots"])
    err = capsys.readouterr().err
    assert rc == 0, err
    # the CLI prints warnings as one line each
    assert re.search(r"warning: .*ignored.*use_fp16=True.*batch_size=4.*num_samples=100", err), err
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    (ident,) = meta["models"].values()
    assert ident["timestep_respacing"] == "250" and ident["config"]["channel_mult"] == [1, 2, 2, 2]
    # eps_hat = 0: no better than predicting zero (loud), and no reading credibly better (read as
    # x0 = 0 it is the data-mean estimate: named as looking untrained, not as --parameterization x0)
    check = ident["settings_check"]
    assert check["outcome"] == "warned" and check["eps_mse"] == pytest.approx(1, abs=0.05)
    assert any("NO BETTER THAN PREDICTING ZERO" in w for w in check["warnings"])
    assert not any("probably trained with" in w for w in check["warnings"])
    import pandas as pd
    df = pd.read_csv(tmp_path / "out" / "per_timestep.csv")
    kept = _gd_respaced(1000, [250])
    assert set(df["t"]) <= set(kept) and len(df) == 10  # t: the model's own timesteps
    assert np.allclose(df["x0_mse"], 1 / df["snr"], rtol=0.15)


def test_sample_runs_the_respaced_adm(tmp_path):
    from biaskit.cli import main
    net = _zero_output(ADMUNet(**ADM_CONFIGS[2]))
    path = tmp_path / "m.pt"
    torch.save(net.state_dict(), path)
    out = tmp_path / "s"
    assert main(["sample", str(path), "--num_heads", "4", "--timestep_respacing", "ddim10",
                 "--sampler", "ddim", "--steps", "10", "--n", "4", "--shape", "3,8,8",
                 "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((out / "sample_meta.json").read_text())
    assert meta["denoiser"]["T"] == 10 and meta["denoiser"]["timestep_respacing"] == "ddim10"
    # eps_hat = 0: each DDIM(eta=0) step scales x_t by alpha_prev / alpha_t, so the sample is
    # x_T / alpha at the top kept step, 900 of ddim10; x_T ~ N(0, I)
    abar_900 = np.prod(1 - np.linspace(1e-4, 0.02, 1000)[:901])
    x0 = np.load(out / "samples.npz")["x0"]
    assert abs(x0.std() * np.sqrt(abar_900) - 1) < 0.1


# ---------------------------------------------------------------------------------------------
# the one dispatcher and the one table of loader options

def test_detect_format_tells_every_kind_apart(tmp_path):
    from biaskit.loaders import FORMATS
    run = tmp_path / "run"
    run.mkdir()
    (run / "biaskit.json").write_text("{}")
    weights = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(1)}, weights)
    assert detect_format("oracle:gmm2d") == "oracle" and detect_format(run) == "run"
    assert detect_format(weights) == "adm"  # any weights file without --model-spec; keys checked on load
    assert detect_format(weights, model_spec="x.py:f") == "plugin"
    assert detect_format("x.py:f", weights=weights) == "plugin"
    assert set(FORMATS) == {"oracle", "run", "diffusers", "diffusers-unet", "adm", "plugin"}
    with pytest.raises(FileNotFoundError, match="model not found"):
        detect_format(tmp_path / "nope.pt")
    (tmp_path / "m.txt").write_text("")
    with pytest.raises(ValueError, match=r"unknown model file type '\.txt'"):
        detect_format(tmp_path / "m.txt")
    with pytest.raises(ValueError, match="--weights goes with"):
        detect_format(weights, weights=weights)


def test_the_option_table_covers_every_loader_flag():
    from biaskit.cli import build_parser
    from biaskit.loaders.options import IGNORED_FLAGS, OPTIONS, options_for, parse_scales
    from biaskit.models.adm import GUIDED_DIFFUSION_FLAGS
    adm = {o.name for o in options_for("adm")}
    assert set(GUIDED_DIFFUSION_FLAGS) | set(IGNORED_FLAGS) <= adm
    assert len({o.name for o in OPTIONS}) == len(OPTIONS)
    # every command-line option parses under both spellings into its own keyword
    parser = build_parser()
    for o in (o for o in OPTIONS if o.cli and o.kind in ("value", "bool")):
        value = str(o.choices[0]) if o.choices else {int: "3", float: "0.5", parse_scales: "0.5"}.get(
            o.type, "true" if o.kind == "bool" else "x")
        spellings = ["--" + o.name] + (["--" + o.name.replace("_", "-")] if o.section == "third-party" else [])
        for spelled in spellings:
            args = parser.parse_args(["probe", "m.pt", "--data", "d", "--out", "o", spelled, value])
            kw = {**loader_kwargs_from_args(args, "model"), **loader_kwargs_from_args(args)}
            assert list(kw) == [o.name], (spelled, kw)


def test_flags_that_do_not_apply_are_named_from_python_and_the_cli(tmp_path, capsys):
    from biaskit.cli import main
    (tmp_path / "plug.py").write_text(PLUGIN)
    f = tmp_path / "weights.pth"
    torch.save({"c": torch.tensor([0.1])}, f)
    spec = f"{tmp_path / 'plug.py'}:make"
    argv = ["probe", str(f), "--model-spec", spec, "--data", "gmm", "--out", str(tmp_path / "o")]
    for extra, words in ((["--num-heads", "2"], "--num-heads does not apply to a third-party plugin"),
                         (["--step", "3"], "--step does not apply to a third-party plugin"),
                         (["--use_fp16", "True"], "--use_fp16 does not apply to a third-party plugin")):
        assert main(argv + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    run = tmp_path / "run"
    assert main(["train", "--preset", "gmm-debias", "--out", str(run), "--steps", "1", "--no-progress",
                 "--set", "data.n_train=16", "--set", "batch_size=4"]) == 0
    with pytest.raises(ValueError, match=r"num_heads do not apply to a run model; valid: step"):
        biaskit.load(run, num_heads=2)
    online = biaskit.load(run, ema=False)
    assert online.info["weights"] == "online"
    src = online.source
    assert (src.format, src.path, src.step, src.sha256) == ("run", str(run), 1, None)
    assert src.shape == (2,) and list(online.info) == ["run_dir", "step", "weights", "weighting", "data"]
    assert "biaskit run" in repr(online)
    with pytest.raises(ValueError, match="timestep_respacing do not apply to a plugin model"):
        biaskit.load(f, model_spec=spec, timestep_respacing="10")
