"""Regenerate the golden files of ``tests/test_golden.py`` from the current code.

    PYTHONPATH=. python tests/golden/make_golden.py            # every artefact
    PYTHONPATH=. python tests/golden/make_golden.py train_losses weight_tables

Each artefact (``ARTEFACTS``) is a table of cases {case: thunk}; a thunk returns {value name:
numpy array} (floats as computed, strings as 0-d unicode arrays), saved exactly, uncompressed in
value, in ``data/<artefact>.npz`` under the key ``case::name``. ``tests/test_golden.py`` calls the
same thunks and asserts bit-for-bit equality, so each computation lives in one place. A case the
code refused when the goldens were taken is saved as ``case::error`` (its message) and not
asserted: the restructuring may make it work.

The cases live in ``golden_training.py`` (1: first losses), ``golden_weights.py`` (2: weight
tables), ``golden_probe_sample.py`` (3, 4: probe CSVs, samplers); ``golden_base.py`` holds the
one-thread setting, the CLI call and the tiny training sizes. Every computation is seeded, CPU only, on one
thread. Regenerate only when a change of numbers is intended, and say so in the commit message.
"""

import sys
from pathlib import Path

import numpy as np

from golden_base import deterministic
from golden_probe_sample import MNIST, probe_csvs_cases, sample_cli_cases, sampler_outputs_cases  # noqa: F401
from golden_training import train_losses_cases
from golden_weights import target_weights_cases, weight_tables_cases, weight_values_cases

DATA = Path(__file__).parent / "data"

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
