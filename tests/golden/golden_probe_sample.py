"""Golden artefacts 3 and 4: probe CSVs, sampler outputs (API and CLI)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from golden_base import COMMON, REPO, THIRD_PARTY, TINY, cli

# --- 3. probe CSVs -------------------------------------------------------------------------------
MNIST = THIRD_PARTY / "ddpm_mnist_starter.pth"
MNIST_FLAGS = ["--model-spec", f"{REPO / 'examples' / 'mnist_ddpm_cnn.py'}:factory", "--state-dict-prefix", "gt.",
               "--abar-key", "alpha_t", "--time-input", "scaled", "--time-scale", "0.001",
               "--data-range=-0.5,0.5", "--trained-timesteps", "1:999"]
PROBE = ["--samples", "24", "--batch-size", "48", "--seed", "3", "--no-progress", "--no-plots"]


def _csv_files(out: Path, tmp: str) -> dict:
    """Every CSV the probe wrote under ``out``, as exact text with the temporary folder's path
    replaced by ``<tmp>`` (the one column part that legitimately varies)."""
    return {p.relative_to(out).as_posix(): np.array(p.read_text().replace(tmp, "<tmp>"))
            for p in sorted(out.rglob("*.csv"))}


def _trained_then_probed(preset: str, overrides: list[str], data: list[str], grid: list[str]):
    """Train ``preset`` (tiny, 3 steps, via ``biaskit train``) into a temporary folder, then
    ``biaskit probe`` it; the probe's CSVs."""
    def thunk():
        family = preset.split("-")[0]
        with tempfile.TemporaryDirectory() as tmp:
            sets = [a for o in TINY[family] + COMMON + overrides for a in ("--set", o)]
            cli(["train", "--preset", preset, "--out", f"{tmp}/run", "--no-progress", *sets])
            cli(["probe", f"{tmp}/run", *data, *grid, "--out", f"{tmp}/probe", *PROBE])
            return _csv_files(Path(tmp) / "probe", tmp)
    return thunk


def _probed(model: str, flags: list[str]):
    def thunk():
        if model == str(MNIST) and not MNIST.is_file():
            raise FileNotFoundError(f"third-party checkpoint not present at {MNIST}")
        with tempfile.TemporaryDirectory() as tmp:
            cli(["probe", model, *flags, "--out", f"{tmp}/probe", *PROBE])
            return _csv_files(Path(tmp) / "probe", tmp)
    return thunk


def probe_csvs_cases() -> dict:
    """``biaskit probe`` CSVs (per_timestep.csv ...) of tiny trained runs (discrete eps/v/x0,
    an image UNet, flow and EDM processes), analytic oracles and the third-party MNIST DDPM."""
    gmm = ["--data", "gmm", "--data-option", "dim=2", "--data-option", "K=8"]
    grid = ["--num-timesteps", "5"]
    return {
        "run/gmm-debias": _trained_then_probed("gmm-debias", [], gmm, grid),
        "run/gmm-v": _trained_then_probed("gmm-v", [], gmm, grid),
        "run/gmm-debias-x0": _trained_then_probed("gmm-debias", ["loss.target=x0"], gmm, grid),
        "run/digits-constant": _trained_then_probed("digits-constant", [], ["--data", "digits"],
                                                    ["--timesteps", "10,300,700"]),
        "process/gmm-flow": _trained_then_probed("gmm-flow", [], gmm, grid),
        "process/gmm-edm": _trained_then_probed("gmm-edm", [], gmm, grid),
        "process/gmm-constant-vp_cosine-v": _trained_then_probed(
            "gmm-constant", ["process.name=vp_cosine", "loss.target=v"], gmm, grid),
        "oracle/gmm": _probed("oracle:gmm", ["--data", "gmm", *grid]),
        "oracle/gmm-stratified": _probed("oracle:gmm", ["--data", "gmm", *grid, "--stratified"]),
        "oracle/empirical-digits": _probed("oracle:empirical:digits", ["--data", "digits", "--timesteps",
                                                                       "100,500,900"]),
        # gmm data shaped as MNIST (reading MNIST's CSV costs 18 s; the model's numbers are the point)
        "thirdparty/mnist-ddpm-cnn": _probed(str(MNIST), ["--data", "gmm", "--data-option", "shape=[1,28,28]",
                                                          *MNIST_FLAGS, "--settings-check", "off",
                                                          "--timesteps", "1,200,800"]),
    }


# --- 4. sampler outputs ---------------------------------------------------------------------------
SAMPLE_STEPS, SAMPLE_N = 4, 8
# models sampled: an analytic oracle (x0 net) and tiny 3-step runs (eps, v; flow and EDM processes)
SAMPLE_MODELS = {"oracle-gmm": None, "run-gmm-debias": ("gmm-debias", []), "run-gmm-v": ("gmm-v", []),
                 "process-gmm-flow": ("gmm-flow", []), "process-gmm-edm": ("gmm-edm", [])}
# extra options beyond each sampler's defaults
SAMPLE_OPTIONS = {"ddpm/fixed_large": ("ddpm", {"variance": "fixed_large"}),
                  "ddim/eta1": ("ddim", {"eta": 1.0}),
                  "ddim/clip-trailing": ("ddim", {"clip": True, "spacing": "trailing"})}
_MODELS: dict = {}


# exact process oracles (formulations.process_oracle: the oracle's output in each target), sampled
# by the samplers that read a process's own grid and by ddim
ORACLE_PROCESSES = ("flow", "edm", "vp_cosine")
ORACLE_TARGETS = ("eps", "x0", "v", "flow", "edm")
ORACLE_SAMPLERS = ("ddim", "heun", "flow_euler", "flow_match_euler", "edm_euler")


def _process_oracle(process: str, target: str):
    """``formulations.process_oracle`` of a fixed 3-component mixture in 3-d (internal names:
    ``GaussianMixture.isotropic``, ``processes.get_process``, ``formulations.process_oracle``)."""
    from biaskit.formulations import process_oracle
    from biaskit.mixture import GaussianMixture
    from biaskit.processes import get_process
    means = torch.tensor([[1.0, -0.5, 0.2], [-0.8, 0.4, 0.0], [0.1, 0.9, -1.1]], dtype=torch.float64)
    mix = GaussianMixture.isotropic([0.5, 0.3, 0.2], means, 0.3)
    return process_oracle(mix, get_process(process), target, data_range=(-3.0, 3.0))


def sample_model(name: str):
    """The denoiser ``name`` of SAMPLE_MODELS: ``biaskit.load`` of an oracle or of a tiny run
    trained (3 steps, ``biaskit train``) into a temporary folder, or ``process-oracle-P-T`` (a
    process oracle); kept for the process."""
    if name not in _MODELS:
        import biaskit
        if name.startswith("process-oracle-"):
            _MODELS[name] = _process_oracle(*name[len("process-oracle-"):].split("-"))
            return _MODELS[name]
        spec = SAMPLE_MODELS[name]
        if spec is None:
            _MODELS[name] = biaskit.load("oracle:gmm")
        else:
            preset, overrides = spec
            family = preset.split("-")[0]
            with tempfile.TemporaryDirectory() as tmp:
                sets = [a for o in TINY[family] + COMMON + overrides for a in ("--set", o)]
                cli(["train", "--preset", preset, "--out", f"{tmp}/run", "--no-progress", *sets])
                _MODELS[name] = biaskit.load(f"{tmp}/run")
    return _MODELS[name]


def sampler_outputs_cases() -> dict:
    """``biaskit.sampling.sample`` of every sampler name (``sampler_names()``: native ddpm/ddim,
    ODE heun/flow_euler, every diffusers and process scheduler), plus SAMPLE_OPTIONS, on every
    SAMPLE_MODELS model, and ORACLE_SAMPLERS on every process oracle (ORACLE_PROCESSES x
    ORACLE_TARGETS): SAMPLE_STEPS steps, SAMPLE_N samples of seed 0. Values: the final ``x0``,
    the model calls' ``timesteps`` and ``schedule_index``, the trajectory's ``x_t``, ``x0_hat``,
    ``t`` and ``logsnr``."""
    from biaskit.sampling import sample, sampler_names

    def case(model, sampler, options):
        def thunk():
            d = sample_model(model)
            r = sample(d, (SAMPLE_N, *d.shape), sampler=sampler, steps=SAMPLE_STEPS, seed=0,
                       return_trajectory=True, progress=False, **options)
            tr = r.trajectory
            out = {"x0": r.x0.numpy(), "timesteps": np.asarray(r.timesteps, dtype=np.int64),
                   "schedule_index": np.asarray(r.schedule_index, dtype=np.int64),
                   "x_t": tr.x_t.numpy(), "x0_hat": tr.x0_hat.numpy(), "t": tr.t.numpy()}
            if tr.logsnr is not None:
                out["logsnr"] = tr.logsnr.numpy()
            return out
        return thunk
    runs = {name: (name, {}) for name in sampler_names()}
    runs.update(SAMPLE_OPTIONS)
    cases = {f"{model}/{name}": case(model, sampler, options)
             for model in SAMPLE_MODELS for name, (sampler, options) in runs.items()}
    cases.update({f"process-oracle-{p}-{t}/{sampler}": case(f"process-oracle-{p}-{t}", sampler, {})
                  for p in ORACLE_PROCESSES for t in ORACLE_TARGETS for sampler in ORACLE_SAMPLERS})
    return cases


def _sample_cli(model: str, flags: list[str], train=None):
    """``biaskit sample`` of ``model`` (or of a tiny run of ``train`` = (preset, overrides) trained
    first) into a temporary folder, with ``--trajectory`` for one step count: every array of its
    ``samples.npz``."""
    def thunk():
        with tempfile.TemporaryDirectory() as tmp:
            path = model
            if train is not None:
                preset, overrides = train
                sets = [a for o in TINY[preset.split("-")[0]] + COMMON + overrides for a in ("--set", o)]
                cli(["train", "--preset", preset, "--out", f"{tmp}/run", "--no-progress", *sets])
                path = f"{tmp}/run"
            one_chain = ["--trajectory"] if "," not in flags[flags.index("--steps") + 1] else []
            cli(["sample", path, *flags, "--n", "8", "--seed", "5", "--out", f"{tmp}/s", *one_chain,
                 "--grid", "8", "--no-progress"])
            with np.load(Path(tmp) / "s" / "samples.npz") as z:
                return {k: z[k] for k in z.files}
    return thunk


def sample_cli_cases() -> dict:
    """``biaskit sample`` CLI outputs (samples.npz: x0, timesteps, trajectory) of an oracle and
    tiny discrete (MLP, UNet), flow and EDM runs."""
    cases = {
        "oracle-gmm/ddim": _sample_cli("oracle:gmm", ["--sampler", "ddim", "--steps", "4"]),
        "oracle-gmm/ddpm-2-steps-lists": _sample_cli("oracle:gmm", ["--sampler", "ddpm", "--steps", "3,5"]),
        "oracle-gmm/dpmpp_2m-trailing": _sample_cli("oracle:gmm", ["--sampler", "dpmpp_2m", "--steps", "4",
                                                                   "--spacing", "trailing"]),
        "run-gmm-debias/ddim-eta": _sample_cli("", ["--sampler", "ddim", "--steps", "4", "--eta", "0.5"],
                                              ("gmm-debias", [])),
        "run-digits-constant/ddpm-clip": _sample_cli("", ["--sampler", "ddpm", "--steps", "3", "--clip"],
                                                     ("digits-constant", [])),
        "process-gmm-flow/flow_euler": _sample_cli("", ["--sampler", "flow_euler", "--steps", "4"],
                                                   ("gmm-flow", [])),
        "process-gmm-flow/flow_match_euler": _sample_cli("", ["--sampler", "flow_match_euler", "--steps", "4"],
                                                         ("gmm-flow", [])),
        "process-gmm-edm/heun": _sample_cli("", ["--sampler", "heun", "--steps", "4"], ("gmm-edm", [])),
        "process-gmm-edm/edm_dpmpp_2m": _sample_cli("", ["--sampler", "edm_dpmpp_2m", "--steps", "4"],
                                                    ("gmm-edm", [])),
    }
    return cases

