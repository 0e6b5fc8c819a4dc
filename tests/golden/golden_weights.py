"""Golden artefact 2: every weight table (CLI text, full-precision values, target weights)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from golden_base import cli

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

