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
    same_kind = got.dtype.kind == want.dtype.kind == "U" or got.dtype == want.dtype  # <U10 vs <U11: text length
    if not same_kind or got.shape != want.shape:
        pytest.fail(f"{where}: {got.dtype} {got.shape}, golden {want.dtype} {want.shape}")
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
    if want is None:
        pytest.skip("a case added after the goldens were taken (no golden to compare with)")
    if set(want) == {"error"}:
        pytest.skip(f"refused before the restructuring: {str(want['error'])[:200]}")
    if artefact == "sampler_outputs" and not np.isfinite(want["x0"]).all():
        # samples that were NaN (a chain from zero SNR where the model or the step is undefined)
        # are refused in one line since: the one intended change to a golden (tests/golden/README.md)
        with pytest.raises(ValueError, match="samples that are not finite"):
            G.compute(artefact, case)
        return
    got = G.compute(artefact, case)
    # a value refused before may exist now (new capability); a value that existed must still exist
    missing = sorted(set(want) - set(got))
    assert not missing, f"{artefact}/{case}: values {missing} are no longer computed"
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


def test_golden_cases_all_still_computed():
    """Every golden case is still a case of make_golden.py: a preset variant, sampler name or
    weighting that existed before the restructuring still exists (new ones may be added)."""
    for artefact in G.ARTEFACTS:
        gone = sorted(set(golden(artefact)) - set(_cases(artefact)))
        assert not gone, f"{artefact}: cases {gone[:10]} are no longer computed"


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


def test_bitwise_comparison_catches_one_ulp_and_one_character():
    """The comparison itself can fail: one ulp of one float, a -0.0 for 0.0, one character of text."""
    a = np.array([1.0, 0.0, np.nan], dtype=np.float32)
    assert_bitwise("same", a.copy(), a)
    for changed in (np.array([np.nextafter(np.float32(1), np.float32(2)), 0.0, np.nan], dtype=np.float32),
                    np.array([1.0, -0.0, np.nan], dtype=np.float32), a.astype(np.float64)):
        with pytest.raises(pytest.fail.Exception):
            assert_bitwise("changed", changed, a)
    with pytest.raises(pytest.fail.Exception, match="line 1"):
        assert_bitwise("text", np.array("t,x\n1,2.5\n"), np.array("t,x\n1,2.50\n"))


@pytest.mark.parametrize("case", _cases("weight_values"))
def test_golden_weight_values(case):
    """The weight tables at full precision, from ``weights_table`` / ``process_weights_table``."""
    check("weight_values", case)


@pytest.mark.parametrize("case", _cases("sample_cli"))
def test_golden_sample_cli(case):
    """``biaskit sample`` samples.npz of an oracle and tiny discrete, image, flow and EDM runs."""
    check("sample_cli", case)
