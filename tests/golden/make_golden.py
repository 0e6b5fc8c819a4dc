"""Regenerate the golden files of ``tests/test_golden.py`` from the current code.

    PYTHONPATH=. python tests/golden/make_golden.py            # every artefact
    PYTHONPATH=. python tests/golden/make_golden.py train_losses weight_tables

Each artefact (``ARTEFACTS``) is a table of cases {case: thunk}; a thunk returns {value name:
numpy array} (floats as computed, strings as 0-d unicode arrays), saved exactly, uncompressed in
value, in ``data/<artefact>.npz`` under the key ``case::name``. ``tests/test_golden.py`` calls the
same thunks and asserts bit-for-bit equality, so each computation lives in one place. A case the
code refused when the goldens were taken is saved as ``case::error`` (its message) and not
asserted: the restructuring may make it work. Every computation is seeded, CPU only, on one
thread. Regenerate only when a change of numbers is intended, and say so in the commit message.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[2]
THIRD_PARTY = REPO.parent / "shared" / "checkpoints" / "mnist-ddpm-cnn"


# torch threads of every computation: 1; BIASKIT_GOLDEN_THREADS=2 checks that no golden depends on it
THREADS = int(os.environ.get("BIASKIT_GOLDEN_THREADS", "1"))


def deterministic():
    """THREADS CPU threads (1), fixed seed: the goldens must not depend on the machine's core count."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and raw bytes (bit-exact fingerprint)."""
    a = t.detach().cpu().contiguous().numpy()
    h = hashlib.sha256(f"{a.dtype}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def cli(argv: list[str]) -> str:
    """stdout of ``biaskit.cli.main(argv)``; raises when it exits non-zero."""
    from biaskit.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    if rc != 0:
        raise RuntimeError(f"biaskit {' '.join(argv)} exited {rc}: {err.getvalue()}")
    return out.getvalue()


# --- 1. every preset's first losses ------------------------------------------------------------
STEPS = 3
# tiny sizes per preset family (the preset's quick size, overridden so that 3 steps take < 1 s)
TINY = {
    "gmm": ["batch_size=16", "data.n_train=256", "data.n_test=64", "model.config.hidden=32",
            "model.config.blocks=1"],
    "digits": ["batch_size=8", "data.n_train=64", "data.n_test=16", "model.config.channels=8",
               "model.config.channel_mult=[1]"],
    "patches": ["batch_size=8", "data.n_train=64", "data.n_test=16", "model.config.channels=8",
                "model.config.channel_mult=[1]"],
    "celebahq": ["batch_size=4", "data.n_train=32", "data.n_test=8", "model.config.model_channels=32",
                 "model.config.channel_mult=[1]", "model.config.attention_resolutions=[]",
                 "model.config.num_heads=1", "data.options.size=8", "model.config.image_size=8"],
}
COMMON = [f"steps={STEPS}", "log_every=1", "ckpt_every=1000", "probe_every=0", "device=cpu", f"threads={THREADS}",
          "optim.warmup_steps=1", "ema.start=0"]
# process runs beyond the presets: every continuous process with every target it trains
PROCESS_RUNS = {f"gmm-constant@{proc}-{target}": ("gmm-constant", [f"process.name={proc}", f"loss.target={target}"])
                for proc in ("flow", "edm", "ve", "vp_cosine", "vp_linear_logsnr")
                for target in ("eps", "x0", "v", "flow", "edm")}
# discrete runs with each discrete target and the other time-sampling laws / options
DISCRETE_RUNS = {
    **{f"gmm-debias@discrete-{t}": ("gmm-debias", [f"loss.target={t}"]) for t in ("x0", "v", "flow")},
    "gmm-constant@lognormal": ("gmm-constant", ["loss.t_sampling=lognormal:0:2"]),
    "gmm-debias@normalize-mean": ("gmm-debias", ["loss.normalize=mean"]),
    "gmm-min_snr@cosine": ("gmm-min_snr", ["schedule.name=cosine"]),
    "gmm-constant@perturb": ("gmm-constant", ["loss.input_perturbation=0.1"]),
    "gmm-flow@density-logit": ("gmm-flow", ["loss.density=logit_normal:0:1"]),
    "gmm-debias@ve-x0": ("gmm-debias", ["process.name=ve", "loss.target=x0", "loss.density=vp_linear"]),
    "gmm-min_snr@vp_cosine-v": ("gmm-min_snr", ["process.name=vp_cosine", "loss.target=v"]),
}


def train_first_steps(preset: str, overrides: list[str], out: Path, size: str = "quick"
                      ) -> tuple[np.ndarray, torch.Tensor]:
    """(losses of the first STEPS optimiser steps (float32), the model's first parameter after them)
    of ``preset`` (its ``size``) with ``overrides`` (``--set`` strings). The one place that
    touches the trainer's internals (``Trainer``, ``.net``)."""
    from biaskit.config import apply_overrides, get_preset
    from biaskit.train import Trainer
    family = preset.split("-")[0]
    config = apply_overrides(get_preset(preset, size), TINY[family] + COMMON + overrides + [f"out={out}"])
    deterministic()
    trainer = Trainer(config)
    losses = [state.loss.detach().float().item() for state in trainer.run(progress=False)]
    return np.asarray(losses, dtype=np.float32), next(iter(trainer.net.parameters())).detach().clone()


# the full sizes (their optimiser, schedule, precision settings) with the same tiny overrides; celebahq's
# full size reads a user's image folder
FULL_DATA = {"digits": [], "patches": ["data.options.size=8", "model.config.attention_levels=[]"],
             "gmm": ["data.options.dim=2"]}


def training_runs() -> dict[str, tuple[str, list[str], str]]:
    """{run name: (preset, extra --set overrides, size)}: every preset variant (quick size), the
    extra runs, then at the full size (``name@full``) every gmm variant and digits/patches-constant
    (their other variants differ from constant only by the weighting, covered at the quick size)."""
    from biaskit.config import preset_names
    runs = {name: (name, [], "quick") for name in preset_names()}
    runs.update({k: (p, o, "quick") for k, (p, o) in {**DISCRETE_RUNS, **PROCESS_RUNS}.items()})
    full = {f"{n}@full": (n, FULL_DATA[n.split("-")[0]] + (["model.config.attention_levels=[]"]
                                                          if n.startswith("digits") else []), "full")
            for n in preset_names() if n.startswith("gmm-") or n in ("digits-constant", "patches-constant")}
    return {**runs, **full}


def train_losses_cases() -> dict:
    """Per run: ``loss`` (STEPS,) float32 and ``param0`` the first parameter tensor's sha256."""
    def case(preset, overrides, size):
        def thunk():
            with tempfile.TemporaryDirectory() as tmp:
                losses, p0 = train_first_steps(preset, overrides, Path(tmp) / "run", size)
            return {"loss": losses, "param0": np.array(tensor_digest(p0))}
        return thunk
    return {name: case(*spec) for name, spec in training_runs().items()}


# --- 2. every weight table ---------------------------------------------------------------------
SCHEDULES = ("linear", "linear_adm", "scaled_linear", "cosine", "sigmoid")
PROCESSES = ("edm", "flow", "ve", "vesde", "vesde_tutorial", "vp_cosine", "vp_linear_logsnr")
DENSITY_SPECS = ("uniform", "normal:0:2", "lognormal_sigma:-1.2:1.2", "logit_normal:0:1", "mode:1.29",
                 "cosmap", "vp_linear", "sd3_logit_normal:0:1", "sd3_mode:1.29")
SPACES = ("x0", "eps", "v", "flow")
T_SMALL = 64   # rows of the discrete tables (T = 1000 for the linear schedule's x0 table only)


def _text(argv: list[str]):
    return lambda: {"stdout": np.array(cli(argv))}


def weight_tables_cases() -> dict:
    """``biaskit weights --format csv`` text (exact string) for every schedule x space x
    normalize (T = 64; the linear schedule also at T = 1000, zero terminal snr with --snr-min),
    and for every process x space (x every density in x0 space; --points 33)."""
    from biaskit.weighting import names
    no_vlb = ",".join(w for w in names() if w != "vlb")
    out = {}
    for sched in SCHEDULES:
        for space in SPACES:
            for norm in ("none", "mean", "max"):
                out[f"discrete/{sched}/{space}/{norm}"] = _text(
                    ["weights", "--format", "csv", "--schedule", sched, "--timesteps", str(T_SMALL),
                     "--space", space, "--normalize", norm])
    out["discrete/linear/x0/none/T1000"] = _text(["weights", "--format", "csv"])
    for space in SPACES:
        out[f"discrete/linear_zsnr/{space}/snr_min"] = _text(
            ["weights", "--format", "csv", "--schedule", "linear_zsnr", "--timesteps", str(T_SMALL),
             "--space", space, "--snr-min", "1e-4", "--weightings", no_vlb])
    for proc in PROCESSES:
        for space in SPACES:
            for dens in DENSITY_SPECS if space == "x0" else ("uniform",):
                out[f"process/{proc}/{space}/{dens}"] = _text(
                    ["weights", "--format", "csv", "--process", proc, "--space", space,
                     "--density", dens, "--points", "33"])
    return out


def _frame_values(df) -> dict:
    """Every column of a DataFrame as an exact numpy array (numbers as computed, float64 or int)."""
    return {str(c): df[c].to_numpy() for c in df.columns}


def weight_values_cases() -> dict:
    """The same tables as weight_tables at full precision (the CLI prints %.8g), from the Python
    API the command calls: ``biaskit.weighting.weights_table`` (every schedule x space, T = 64;
    linear x0 with normalize mean and max) and ``biaskit.densities.process_weights_table`` (every
    process x space under uniform t; x0 also under logit_normal:0:1 and vp_linear; n = 33)."""
    from biaskit import weighting as W
    from biaskit.densities import process_weights_table
    from biaskit.processes import get_process
    from biaskit.schedules import get_schedule
    specs = W.names()
    continuous = [w for w in specs if w != "vlb" and not W.get_weighting(w).native]

    def discrete(sched, space, norm):
        return lambda: _frame_values(W.weights_table(get_schedule(sched, T_SMALL), specs, space,
                                                     normalize=norm))

    def process(proc, space, dens):
        return lambda: _frame_values(process_weights_table(get_process(proc), continuous, space, dens, n=33))
    out = {f"discrete/{sched}/{space}/none": discrete(sched, space, "none") for sched in SCHEDULES for space in SPACES}
    out.update({f"discrete/linear/x0/{norm}": discrete("linear", "x0", norm) for norm in ("mean", "max")})
    out.update({f"process/{proc}/{space}/uniform": process(proc, space, "uniform") for proc in PROCESSES
                for space in SPACES})
    out.update({f"process/{proc}/x0/{dens}": process(proc, "x0", dens) for proc in PROCESSES
                for dens in ("logit_normal:0:1", "vp_linear")})
    return out


def target_weights_cases() -> dict:
    """Per target: ``formulations.x0_error_factor`` (sigma_data 0.5 and 1) and
    ``formulations.target_weight`` of every registered weighting (and three parametrised specs),
    with and without snr_min, float64, on snr = 0, logspace(-6, 6, 49). A pair the code refuses is left out."""
    from biaskit import formulations as F
    from biaskit.weighting import names

    def case(target):
        def thunk():
            snr = torch.cat([torch.zeros(1, dtype=torch.float64), torch.logspace(-6, 6, 49, dtype=torch.float64)])
            out = {}
            for key, kw in (("x0_error_factor", {}), ("x0_error_factor_sd1", {"sigma_data": 1.0})):
                with contextlib.suppress(ValueError, KeyError):
                    out[key] = F.x0_error_factor(target, snr, **kw).numpy()
            for w in names() + ["min_snr:5", "p2:k=1:gamma=0.5", "soft_min_snr:2"]:
                for snr_min in (None, 1e-4):
                    with contextlib.suppress(ValueError, KeyError):
                        out[f"target_weight/{w}/{snr_min}"] = F.target_weight(w, snr, target, snr_min=snr_min).numpy()
            return out
        return thunk
    return {target: case(target) for target in F.TARGETS}


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


ARTEFACTS = {"train_losses": train_losses_cases, "weight_tables": weight_tables_cases,
             "target_weights": target_weights_cases, "probe_csvs": probe_csvs_cases,
             "weight_values": weight_values_cases,
             "sampler_outputs": sampler_outputs_cases, "sample_cli": sample_cli_cases}
SEP = "::"   # npz key = case + SEP + value name; a case the code refuses is saved as case::error


def compute(artefact: str, case: str) -> dict:
    """{value name: array} of one case, deterministic (one thread, seed 0)."""
    deterministic()
    return ARTEFACTS[artefact]()[case]()


def generate(artefact: str) -> dict:
    """Every case of ``artefact`` as {case::name: array}; a refused case as {case::error: message}."""
    out = {}
    for case in ARTEFACTS[artefact]():
        try:
            values = compute(artefact, case)
        except (ValueError, KeyError, RuntimeError, TypeError, NotImplementedError) as e:
            out[f"{case}{SEP}error"] = np.array(str(e))
            continue
        if not values:
            out[f"{case}{SEP}error"] = np.array("every computation of this case was refused")
        out.update({f"{case}{SEP}{k}": v for k, v in values.items()})
    return out


def save(artefact: str, values: dict):
    DATA.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(DATA / f"{artefact}.npz", **values)


def load(artefact: str) -> dict[str, dict[str, np.ndarray]]:
    """{case: {value name: array}} of the saved golden file."""
    out: dict[str, dict] = {}
    with np.load(DATA / f"{artefact}.npz") as z:
        for key in z.files:
            case, name = key.rsplit(SEP, 1)
            out.setdefault(case, {})[name] = z[key]
    return out


if __name__ == "__main__":
    for artefact in sys.argv[1:] or ARTEFACTS:
        values = generate(artefact)
        save(artefact, values)
        print(f"{artefact}: {len(values)} values -> {DATA / artefact}.npz", file=sys.stderr)
