"""The artefacts of a figure run that are read back (by the replication table,
:mod:`biaskit.study.replication`), in one place: a name, the notebook that writes it and its file
under that notebook's folder ``FIGURES/NOTEBOOK/``.

The notebooks write them as ``out / artefacts.file(NAME)`` and the readers ask for them by name
(:func:`read`, :func:`paths`), so a file is renamed or moved here only. A file name with a
``{field}`` (``{dataset}_compare.csv``) is one artefact per value: :func:`file` fills it in,
:func:`paths` finds every written one and :func:`field_values` reads the values back from its name.

A column renamed since a file was written is read under its new name (:data:`RENAMED_COLUMNS`),
so a figures folder of an earlier version still gives the same table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Formatter

import pandas as pd


@dataclass(frozen=True)
class Artefact:
    notebook: str  # the notebook that writes it (its folder under a figures folder)
    file: str      # the file name, with {field}s for one file per value


ARTEFACTS = {
    # 01_existence: relative differences (debias vs constant) over ranges of t, probe frames
    "high_t_summary": Artefact("01_existence", "high_t_summary.csv"),
    "low_t_summary": Artefact("01_existence", "low_t_summary.csv"),
    "compare": Artefact("01_existence", "{dataset}_compare.csv"),
    # 02_impact: sample quality and colour statistics
    "quality_vs_steps": Artefact("02_impact", "quality_vs_steps.csv"),
    "fid_vs_steps": Artefact("02_impact", "fid_vs_steps.csv"),
    "quality_vs_iterations": Artefact("02_impact", "quality_vs_iterations.csv"),
    "colour_statistics": Artefact("02_impact", "colour_statistics.csv"),
    # 03_reasons: hybrid chains
    "hybrid_share": Artefact("03_reasons", "hybrid_share.csv"),
    "hybrid_sweep": Artefact("03_reasons", "hybrid_sweep.csv"),
    # 05_formulations: excess x0 error at high noise
    "high_noise_summary": Artefact("05_formulations", "high_noise_summary.csv"),
    # 06_sampling_bias: exposure bias and its fixes
    "final_states": Artefact("06_sampling_bias", "final_states.csv"),
    "exposure_gap": Artefact("06_sampling_bias", "exposure_gap.csv"),
    "fixes_quality": Artefact("06_sampling_bias", "fixes_quality.csv"),
    "brightness": Artefact("06_sampling_bias", "brightness.csv"),
    # 06_sampling_bias on image datasets (their law unknown: the eps-norm statistic)
    "image_exposure_gap": Artefact("06_sampling_bias", "exposure_gap_{dataset}.csv"),
    "image_fixes_quality": Artefact("06_sampling_bias", "fixes_quality_{dataset}.csv"),
}
MANIFEST = "manifest.json"  # written by the runner at the top of a figures folder
# former column -> column: the study's frames named the model (a weighting like ``debias``, or
# ``data vs data``) ``weighting``; an exposure frame had both, its ``model`` the denoiser's own name
RENAMED_COLUMNS = {"weighting": "model"}


def _artefact(name: str) -> Artefact:
    if name not in ARTEFACTS:
        raise KeyError(f"no artefact {name!r}; known: {', '.join(ARTEFACTS)}")
    return ARTEFACTS[name]


def file(name: str, **fields) -> str:
    """The file name of artefact ``name`` (``fields`` fill its ``{field}``s)."""
    try:
        return _artefact(name).file.format(**fields)
    except KeyError as e:
        raise KeyError(f"artefact {name!r} ({_artefact(name).file}) needs the field {e}") from None


def path(folder, name: str, **fields) -> Path:
    """Where artefact ``name`` lies under the figures folder ``folder``."""
    return Path(folder) / _artefact(name).notebook / file(name, **fields)


def _parts(name: str) -> list[tuple[str, str | None]]:
    """The file name of artefact ``name`` as (literal text, the {field} after it or None)."""
    return [(text, field) for text, field, _, _ in Formatter().parse(_artefact(name).file)]


def paths(folder, name: str) -> list[Path]:
    """Every written file of artefact ``name`` under ``folder`` (one per value of its fields), sorted."""
    pattern = "".join(text + ("*" if field is not None else "") for text, field in _parts(name))
    return sorted((Path(folder) / _artefact(name).notebook).glob(pattern))


def field_values(name: str, p) -> dict[str, str]:
    """The {field} values of artefact ``name``'s file ``p`` (a path, as :func:`paths` gives
    it): the inverse of :func:`file`, ``fashion_mnist_compare.csv`` -> {dataset: fashion_mnist}.
    A ValueError when ``p``'s name is not a file of that artefact."""
    pattern = "".join(re.escape(text) + (f"(?P<{field}>.+)" if field is not None else "")
                      for text, field in _parts(name))
    found = re.fullmatch(pattern, Path(p).name)
    if found is None:
        raise ValueError(f"{Path(p).name} is not a file of artefact {name!r} ({_artefact(name).file})")
    return found.groupdict()


def read(folder, name: str, **fields) -> pd.DataFrame | None:
    """The CSV artefact ``name`` under ``folder`` as a frame, None when the run did not write it;
    a former column name (:data:`RENAMED_COLUMNS`) is read as the new one, replacing a column of
    that name written beside it."""
    p = path(folder, name, **fields)
    if not p.exists():
        return None
    df = pd.read_csv(p)
    old = [c for c in RENAMED_COLUMNS if c in df]
    return df.drop(columns=[RENAMED_COLUMNS[c] for c in old if RENAMED_COLUMNS[c] in df]).rename(
        columns={c: RENAMED_COLUMNS[c] for c in old})
