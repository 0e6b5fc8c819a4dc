"""Golden tests of issue 25 (one noise axis): numbers taken from the code BEFORE the
restructuring (commit 5366184) must come out bit for bit after it.

Each artefact and case is computed by ``tests/golden/make_golden.py`` (the one place that says
how), compared with ``tests/golden/data/<artefact>.npz``: float arrays by dtype, shape and raw
bytes (NaN payloads included), strings exactly. What each golden covers and how to regenerate it:
``tests/golden/README.md`` (regenerate only for an intended change of numbers, stated in the
commit message)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import make_golden as G  # noqa: E402

_CACHE: dict[str, dict] = {}


def golden(artefact: str) -> dict:
    if artefact not in _CACHE:
        _CACHE[artefact] = G.load(artefact)
    return _CACHE[artefact]


def assert_bitwise(where: str, got: np.ndarray, want: np.ndarray):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{where}: dtype {got.dtype}, golden {want.dtype}"
    assert got.shape == want.shape, f"{where}: shape {got.shape}, golden {want.shape}"
    if want.dtype.kind == "U":
        g, w = str(got), str(want)
        if g != w:
            gl, wl = g.splitlines(), w.splitlines()
            first = next((i for i, (a, b) in enumerate(zip(gl, wl)) if a != b), min(len(gl), len(wl)))
            pytest.fail(f"{where}: text differs first at line {first}:\n  got    "
                        f"{gl[first] if first < len(gl) else '<end>'}\n  golden {wl[first] if first < len(wl) else '<end>'}")
        return
    if got.tobytes() != want.tobytes():
        diff = np.flatnonzero(~((got == want) | (np.isnan(got) & np.isnan(want)))
                              if want.dtype.kind == "f" else got != want)
        pytest.fail(f"{where}: {diff.size} of {want.size} values differ (first at flat index "
                    f"{diff[:1].tolist()}: got {got.ravel()[diff[:1]].tolist()}, golden "
                    f"{want.ravel()[diff[:1]].tolist()})")


def check(artefact: str, case: str):
    want = golden(artefact).get(case)
    assert want is not None, f"{artefact}/{case}: no golden (regenerate with make_golden.py)"
    if set(want) == {"error"}:
        pytest.skip(f"refused before the restructuring: {str(want['error'])[:200]}")
    got = G.compute(artefact, case)
    assert set(got) == set(want), (f"{artefact}/{case}: values {sorted(set(got) ^ set(want))} appeared or "
                                   "disappeared")
    for name in want:
        assert_bitwise(f"{artefact}/{case}/{name}", got[name], want[name])


def _cases(artefact: str):
    return sorted(G.ARTEFACTS[artefact]())


@pytest.mark.parametrize("case", _cases("train_losses"))
def test_golden_train_first_losses(case):
    """First STEPS losses and first parameter of every preset variant and process x target run."""
    check("train_losses", case)


@pytest.mark.parametrize("case", _cases("weight_tables"))
def test_golden_weight_table(case):
    """``biaskit weights --format csv`` text of every schedule/process, space, normalize, density."""
    check("weight_tables", case)


@pytest.mark.parametrize("case", _cases("target_weights"))
def test_golden_target_weights(case):
    """``formulations.x0_error_factor`` and ``target_weight`` of every weighting for one target."""
    check("target_weights", case)


def test_golden_cases_all_saved():
    """Every case in make_golden.py has a golden, and every golden a case (none silently dropped)."""
    for artefact in G.ARTEFACTS:
        assert set(_cases(artefact)) == set(golden(artefact)), artefact


@pytest.mark.parametrize("case", _cases("probe_csvs"))
def test_golden_probe_csv(case):
    """``biaskit probe`` CSVs of a tiny trained run, a process run, an oracle, the MNIST DDPM."""
    if case.startswith("thirdparty/") and not G.MNIST.is_file():
        pytest.skip(f"third-party checkpoint not present at {G.MNIST}")
    check("probe_csvs", case)


@pytest.mark.parametrize("case", _cases("sampler_outputs"))
def test_golden_sampler_output(case):
    """Final samples and trajectory of every sampler name on an oracle and tiny eps/v/flow/EDM nets."""
    check("sampler_outputs", case)
