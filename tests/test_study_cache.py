"""The study cache is keyed on the source of what it caches (biaskit.study.cache.source_digest):
an entry made, then a change in a hashed source file, is a miss; unchanged source, or a change
in a file the kind does not depend on, is a hit."""

import hashlib
import json

import pytest

from biaskit.study import cache as C


def _package(root):
    """A three-module package: train imports schedules (at function level), plots is unrelated,
    models is a registry whose entry is imported by name only."""
    pkg = root / "pkg"
    (pkg / "train").mkdir(parents=True)
    (pkg / "models").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train" / "__init__.py").write_text("def f():\n    from ..schedules import s\n    from .. import models\n")
    (pkg / "schedules.py").write_text("s = 1\n")
    (pkg / "plots.py").write_text("from .schedules import s\n")
    (pkg / "models" / "__init__.py").write_text("REGISTRY = {'mlp': 'pkg.models.mlp:MLP'}\n")
    (pkg / "models" / "mlp.py").write_text("class MLP: pass\n")
    return pkg


@pytest.fixture
def package(tmp_path, monkeypatch):
    pkg = _package(tmp_path)
    monkeypatch.setattr(C, "PACKAGE", pkg)
    monkeypatch.setattr(C, "SOURCES", {"runs": ("pkg.train",)})
    monkeypatch.setattr(C, "_DIGESTS", {})
    return pkg


def test_source_files_follow_imports_and_whole_subpackages(package):
    names = [str(p.relative_to(package)) for p in C.source_files(("pkg.train",))]
    # schedules by its import, models/mlp.py as part of the models package; never plots
    assert names == ["models/__init__.py", "models/mlp.py", "schedules.py", "train/__init__.py"]
    with pytest.raises(ValueError, match="no module pkg.nothing"):
        C.source_files(("pkg.nothing",))


def test_source_digest_is_sha256_of_paths_and_bytes(package):
    h = hashlib.sha256()
    for name in ("models/__init__.py", "models/mlp.py", "schedules.py", "train/__init__.py"):
        h.update(f"pkg/{name}".encode() + b"\0" + (package / name).read_bytes() + b"\0")
    assert C.source_digest("runs") == h.hexdigest()


def _build(folder):
    (folder / "x.txt").write_text("built")


def test_a_changed_source_is_a_miss_and_an_unchanged_one_a_hit(package, tmp_path, monkeypatch):
    cache = C.Cache(tmp_path / "cache")
    first = cache.get("runs", {"n": 1}, _build)
    assert cache.events[-1]["event"] == "miss"
    entry = json.loads((first / "entry.json").read_text())   # says which code built it
    assert entry["source"] == C.source_digest("runs") and entry["key"] == C.cache_key("runs", {"n": 1})
    # a new process, same source: hit
    monkeypatch.setattr(C, "_DIGESTS", {})
    assert cache.get("runs", {"n": 1}, _build) == first and cache.events[-1]["event"] == "hit"
    # a file the runs do not depend on changes: still a hit
    (package / "plots.py").write_text("from .schedules import s\nx = 2\n")
    monkeypatch.setattr(C, "_DIGESTS", {})
    assert cache.get("runs", {"n": 1}, _build) == first and cache.events[-1]["event"] == "hit"
    # the statistic's code changes: a miss, into a new entry
    for changed in ("schedules.py", "models/mlp.py"):
        (package / changed).write_text((package / changed).read_text() + "# changed\n")
        monkeypatch.setattr(C, "_DIGESTS", {})
        again = cache.get("runs", {"n": 1}, _build)
        assert again != first and cache.events[-1]["event"] == "miss", changed
        first = again


def test_the_package_digests_cover_the_code_of_training_and_probes():
    rel = lambda roots: {str(p.relative_to(C.PACKAGE)) for p in C.source_files(roots)}  # noqa: E731
    runs, analyses = rel(C.SOURCES["runs"]), rel(C.ANALYSES)
    for name in ("train/trainer.py", "weighting/core.py", "schedules.py", "models/unet.py", "config.py",
                 "densities.py", "processes.py"):
        assert name in runs, name
    assert {"probe/statistics.py", "sampling/run.py"} <= analyses
    for name in ("metrics/pixel.py", "study/samples.py", "study/recipes.py"):
        assert name in analyses and name not in runs, name
    for name in ("plots.py", "study/replication.py", "study/runner.py", "cli.py"):
        assert name not in runs | analyses, name
    assert C.source_digest("runs") != C.source_digest("compare")
