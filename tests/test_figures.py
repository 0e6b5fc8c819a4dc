"""biaskit figures: the cache, and every notebook executed through papermill in the smoke profile
by the same code path as the CLI (``biaskit.cli.main(["figures", ...])``)."""

import hashlib
import json
from pathlib import Path

import pytest

from biaskit import cli
from biaskit.study.cache import Cache, cache_key
from biaskit.study.notebooks import notebooks, select
from biaskit.study.profiles import PROFILES, parameters, planned_runs


# --- the cache --------------------------------------------------------------------------------
def test_cache_key_is_sha256_of_canonical_json():
    config = {"b": [1, 2.5], "a": {"y": None, "x": "s"}}
    text = '{"config":{"a":{"x":"s","y":null},"b":[1,2.5]},"kind":"runs","source":"9"}'
    assert cache_key("runs", config, source="9") == hashlib.sha256(text.encode()).hexdigest()
    # key order and tuple/list spelling do not matter; values, kind and source digest do
    assert cache_key("runs", {"a": {"x": "s", "y": None}, "b": (1, 2.5)}, "9") == cache_key("runs", config, "9")
    assert cache_key("runs", {**config, "b": [1, 2.6]}, "9") != cache_key("runs", config, "9")
    assert cache_key("probe", config, "9") != cache_key("runs", config, "9")
    assert cache_key("runs", config, "10") != cache_key("runs", config, "9")


def test_cache_builds_once_and_logs_hits(tmp_path):
    log = tmp_path / "log.jsonl"
    cache = Cache(tmp_path / "c", log=log)
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "x.txt").write_text("42")

    a = cache.get("things", {"n": 1}, build)
    b = cache.get("things", {"n": 1}, build)
    c = cache.get("things", {"n": 2}, build)
    assert a == b != c and len(calls) == 2
    assert (a / "x.txt").read_text() == "42"
    assert (cache.hits, cache.misses) == (1, 2)
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events == ["miss", "hit", "miss"]
    # a fresh Cache object on the same folder (another process) sees the entries
    assert Cache(tmp_path / "c").contains("things", {"n": 2})


def test_cache_failed_build_leaves_no_entry(tmp_path):
    cache = Cache(tmp_path)

    def broken(folder):
        (folder / "half.txt").write_text("partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.get("things", {"n": 1}, broken)
    assert not cache.contains("things", {"n": 1})
    assert not any(p.name.endswith("half.txt") for p in tmp_path.rglob("*"))


def test_cache_frames_round_trip(tmp_path):
    import numpy as np
    import pandas as pd
    cache = Cache(tmp_path)
    df = pd.DataFrame({"t": [0, 1], "x": [1 / 3, np.pi]})
    out = cache.frame("tables", {"k": 1}, lambda: df)
    again = cache.frame("tables", {"k": 1}, lambda: 1 / 0)  # a hit never calls compute
    pd.testing.assert_frame_equal(out, df)
    pd.testing.assert_frame_equal(again, df)


# --- plots used by the notebooks ------------------------------------------------------------------
def test_mosaic_places_each_image_in_its_cell():
    import numpy as np
    import torch
    from biaskit.plots import mosaic
    # image i is constant at level i/4 in [0, 1], i.e. 2 i / 4 - 1 in [-1, 1]
    x = torch.stack([torch.full((3, 2, 2), 2 * i / 4 - 1) for i in range(5)])
    m = mosaic(x, (-1, 1), columns=3, pad=1)
    assert m.shape == (2 * 3 - 1, 3 * 3 - 1, 3)
    for i in range(5):
        r, c = divmod(i, 3)
        assert np.allclose(m[3 * r: 3 * r + 2, 3 * c: 3 * c + 2], i / 4)
    assert np.allclose(m[3:5, 6:8], 1.0)  # the empty sixth cell stays white
    assert np.allclose(m[2, :], 1.0) and np.allclose(m[:, 2], 1.0)  # gaps
    gray = mosaic(torch.zeros(2, 1, 4, 4), (0, 1))
    assert gray.shape == (4, 9) and gray.ndim == 2


# --- profiles ---------------------------------------------------------------------------------
def test_profiles_cover_every_notebook():
    names = set(notebooks())
    assert {"00_weighting_atlas", "01_existence", "02_impact", "03_reasons",
            "04_probe_checkpoint", "05_formulations", "06_sampling_bias"} <= names
    for profile in PROFILES:
        for name in names:
            assert PROFILES[profile].get(name) is not None, (profile, name)
            assert parameters(profile, name)["seed"] == 0
    from biaskit.study.profiles import run_config
    full = parameters("full", "02_impact")
    assert run_config("full", full["dataset"], "constant").data.options["size"] >= 32
    assert full["n_samples"] >= 10_000 and full["fid_n"] >= 10_000
    with pytest.raises(ValueError, match="valid profiles"):
        parameters("huge", "00_weighting_atlas")
    with pytest.raises(ValueError, match="available"):
        select(["99_nothing"])


def test_only_the_suite_notebooks_run(tmp_path):
    for name in ("00_atlas", "01_existence", "01_existence.nbconvert", "02_impact-Copy1", "scratch"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    assert list(notebooks(tmp_path)) == ["00_atlas", "01_existence"]


def test_the_notebooks_ship_with_the_package():
    """They live in biaskit/notebooks/, which pyproject.toml names as package data, so that
    `biaskit figures` finds them after a non-editable `pip install .` too."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from biaskit.study.runner import NOTEBOOK_DIR
    root = Path(__file__).resolve().parents[1]
    assert NOTEBOOK_DIR == root / "biaskit" / "notebooks" and len(notebooks()) == 7
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert all(any(p.relative_to(root / "biaskit").match(g) for g in globs["biaskit"])
               for p in NOTEBOOK_DIR.glob("*.ipynb"))


def test_notebook_defaults_are_the_quick_profile():
    """Run interactively with its defaults, a notebook uses the quick profile's configs, so it
    finds the models that `biaskit figures --profile quick` cached."""
    import ast
    from biaskit.study.runner import declared_parameters
    for name, path in notebooks().items():
        declared = declared_parameters(path)
        # training settings live in the study plan only (biaskit.study.profiles), never in a notebook
        assert not {"train_overrides", "train_steps", "preset_profile", "batch_size"} & set(declared), name
        for key, value in parameters("quick", name).items():
            if key in declared and key != "progress":
                assert ast.literal_eval(declared[key]) == value, (name, key)


def test_study_plan_is_the_one_source_of_training_settings(tmp_path):
    """run_config is the preset at the profile's size with the profile's steps, batch size and
    family overrides; the cache key ignores where and how verbosely a run trains."""
    from biaskit.study.cache import Cache, run_key_config
    from biaskit.config import get_preset
    from biaskit.study.profiles import planned_runs, run_config
    cfg = run_config("quick", "patches", "debias")
    preset = get_preset("patches-debias", PROFILES["quick"]["training"]["preset_size"])
    assert cfg.loss.weighting == preset.loss.weighting == "debias"
    assert cfg.steps == PROFILES["quick"]["training"]["steps"]
    for key, value in PROFILES["quick"]["training"]["datasets"]["patches"].items():
        node = cfg
        for part in key.split("."):
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        assert node == value, key
    moved = run_config("quick", "patches", "debias")
    moved.device, moved.threads, moved.log_every, moved.out = "cuda:3", 7, 1, "elsewhere"
    assert run_key_config(moved) == run_key_config(cfg)
    assert Cache(tmp_path).path("runs", run_key_config(moved)) == Cache(tmp_path).path("runs", run_key_config(cfg))
    other = run_config("quick", "patches", "debias", seed=1)
    assert run_key_config(other) != run_key_config(cfg)
    plan = planned_runs("smoke")
    assert ("digits", "debias", 0) in plan and len(plan) == len(set(plan))
    with pytest.raises(ValueError, match="trains no"):
        run_config("quick", "faces", "constant")


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("options", "config"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def test_gpu_smoke_profile_runs_the_full_profiles_models_at_tiny_sizes():
    """gpu-smoke trains what full trains (preset size, architecture, precision, schedule, loss:
    the same code path on a GPU) and differs only in how long and on how much."""
    import dataclasses
    from biaskit.study.profiles import EXTRA_RUNS, FORMULATIONS, planned_runs, run_config
    smoke, full = PROFILES["gpu-smoke"], PROFILES["full"]
    assert smoke["training"]["preset_size"] == full["training"]["preset_size"] == "full"
    plan = planned_runs("gpu-smoke")
    assert {f for f, _, _ in plan} == {f for f, _, _ in planned_runs("full")}
    assert set(plan) <= set(planned_runs("full")) and {w for _, w, _ in plan} == {"constant", "debias"} | set(FORMULATIONS) | set(EXTRA_RUNS)
    may_differ = {"steps", "batch_size", "ckpt_every", "log_every", "probe_every", "ema.decay",
                  "ema.start", "optim.warmup_steps", "data.n_train"}
    for family, w, seed in plan:
        a = _flat(dataclasses.asdict(run_config("full", family, w, seed)))
        b = _flat(dataclasses.asdict(run_config("gpu-smoke", family, w, seed)))
        assert {k for k in a if a[k] != b[k]} <= may_differ, family
        assert b["model.config"] == a["model.config"] and b["precision"] == a["precision"]
        assert b["steps"] <= 100 and b["batch_size"] <= 64 and 0 < b["probe_every"] <= b["steps"]
        assert b["steps"] // b["ckpt_every"] >= 2  # a quality-against-iterations curve
    assert run_config("gpu-smoke", "patches", "debias").precision == "bf16"
    assert run_config("gpu-smoke", "patches", "debias").data.options["size"] == 32
    for name in notebooks():
        p, q = parameters("gpu-smoke", name), parameters("full", name)
        assert set(p) == set(q), name  # every analysis of full, at small counts
    impact = parameters("gpu-smoke", "02_impact")
    assert impact["fid"] and impact["samplers"] == parameters("full", "02_impact")["samplers"]
    assert impact["fid_n"] <= impact["n_samples"] <= 512
    from biaskit.commands.figures import add_arguments
    import argparse
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--profile", "gpu-smoke"]).profile == "gpu-smoke"


# --- progress while it runs -------------------------------------------------------------------
def _notebook(path, sources):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, str(path))


def test_cell_status_reads_the_running_cell(tmp_path):
    from datetime import datetime, timedelta, timezone
    from biaskit.study.heartbeat import cell_status
    started = (datetime.now(timezone.utc) - timedelta(seconds=42)).isoformat()
    cells = [{"cell_type": "code", "source": "a = 1", "metadata": {"papermill": {"status": "completed"}}},
             {"cell_type": "code", "source": "runs = train_runs(cache)\nmore",
              "metadata": {"papermill": {"status": "running", "start_time": started}}},
             {"cell_type": "code", "source": "b", "metadata": {"papermill": {"status": "pending"}}}]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    status = cell_status(path)
    assert status.startswith("cell 1 of 3 (runs = train_runs(cache))") and status.endswith(" s")
    assert 41 <= int(status.rsplit(", ", 1)[1][:-2]) <= 50
    cells[1]["metadata"]["papermill"]["status"] = "completed"
    path.write_text(json.dumps({"cells": cells}))
    assert cell_status(path) is None and cell_status(tmp_path / "missing.ipynb") is None
    path.write_text('{"cells": [')  # caught mid-write
    assert cell_status(path) is None


def test_training_status_names_the_run_being_built(tmp_path):
    from biaskit.study.heartbeat import training_status
    run = tmp_path / "runs" / ".abc123.xyz" / "patches-debias"
    run.mkdir(parents=True)
    (run / "log.csv").write_text("step,loss\n50,0.3\n100,0.2\n")
    (run / "biaskit.json").write_text(json.dumps({"train_config": {"steps": 1200}}))
    (tmp_path / "runs" / "done" / "digits-constant").mkdir(parents=True)  # a finished entry
    assert training_status(tmp_path) == ["training patches-debias: step 100 of 1200"]


def test_figures_prints_a_heartbeat_per_running_notebook_without_kernel_warnings(tmp_path, capfd):
    """Two notebooks at once (--jobs 2): while they run, status lines name each one's cell; the
    kernels' 'running over TCP without encryption' warning is filtered out."""
    from biaskit.study.runner import run_all
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    for name in ("00_a", "01_b"):
        _notebook(nbdir / f"{name}.ipynb", ["import time\ntime.sleep(3)", "x = 1"])
    lines = []
    results = run_all((), profile="smoke", out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                      jobs=2, device="cpu", notebook_dir=nbdir, echo=lines.append, heartbeat_s=0.5)
    assert all(r.ok for r in results)
    beats = [ln for ln in lines if ln.startswith("[")]
    assert any("00_a: cell 0 of 2 (import time)" in b for b in beats), lines
    assert any("01_b: cell 0 of 2 (import time)" in b for b in beats), lines
    assert "without encryption" not in capfd.readouterr().err


def test_the_manifest_lists_only_what_this_run_wrote(tmp_path):
    """A notebook's folder is emptied before it runs: a figure left by an earlier run (a model
    the profile no longer trains) is neither kept nor listed; one table (--only 04 style) of no
    claim's figures writes no empty replication table."""
    from biaskit.study.runner import run_all
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    folder = tmp_path / "out" / "00_a"
    _notebook(nbdir / "00_a.ipynb", ["import matplotlib\nmatplotlib.use('Agg')\nfrom biaskit import plots\n"
                                     "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\n"
                                     f"plots.save(fig, {str(folder / 'new')!r})"])
    stale = tmp_path / "out" / "00_a" / "stale_x0_grid_min_snr.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    lines = []
    results = run_all((), profile="smoke", out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                      jobs=1, device="cpu", notebook_dir=nbdir, echo=lines.append, heartbeat_s=60)
    assert results[0].ok, results[0].error
    assert not stale.exists()
    assert sorted(results[0].figures) == ["00_a/new.pdf", "00_a/new.png"]
    assert not (tmp_path / "out" / "replication.md").exists()
    assert any("replication table: not written" in ln for ln in lines)


# --- the notebooks, end to end ----------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    out, cache = root / "figures", root / "cache"
    argv = ["figures", "--profile", "smoke", "--out", str(out), "--cache", str(cache), "--jobs", "2"]
    rc = cli.main(argv)
    manifest = json.loads((out / "manifest.json").read_text())
    return {"rc": rc, "out": out, "cache": cache, "argv": argv, "manifest": manifest}


def test_every_notebook_runs_in_the_smoke_profile(smoke_run):
    assert smoke_run["rc"] == 0
    out, manifest = smoke_run["out"], smoke_run["manifest"]
    assert set(manifest["notebooks"]) == set(notebooks())
    for name, entry in manifest["notebooks"].items():
        assert entry["ok"], (name, entry["error"])
        assert (out / entry["executed"]).stat().st_size > 0
        pngs = [f for f in entry["figures"] if f.endswith(".png")]
        assert pngs, f"{name} saved no figure"
        for f in entry["figures"]:
            assert (out / f).stat().st_size > 1000, f
        # every PNG has its PDF twin
        assert {f[:-4] for f in pngs} <= {f[:-4] for f in entry["figures"] if f.endswith(".pdf")}
        assert entry["parameters"]["profile"] == "smoke"
        assert len(entry["inputs"]["notebook_sha256"]) == 64
    assert manifest["versions"]["torch"]
    # the notebooks that train did train, on a cold cache
    assert sum(e["cache"]["misses"] for e in manifest["notebooks"].values()) > 0


def test_second_run_hits_the_cache_and_skips_training(smoke_run):
    trainers = ["01_existence", "02_impact", "03_reasons", "04_probe_checkpoint", "05_formulations"]
    argv = smoke_run["argv"][:-2] + ["--only", *trainers]
    assert cli.main(argv) == 0
    manifest = json.loads((smoke_run["out"] / "manifest.json").read_text())
    for name in trainers:
        cache = manifest["notebooks"][name]["cache"]
        assert cache["misses"] == 0 and cache["hits"] > 0, (name, cache)
        assert not [e for e in cache["events"] if e["kind"] == "runs" and e["event"] == "miss"]
    # the first run trained (cache misses of kind "runs"); the second found every run: that is
    # what makes it faster (no timed assertion: wall times on a shared CI machine are noise)
    # (with --jobs > 1 the runs are trained in the pool, before the notebooks that use them, and
    # recorded in the manifest's "training")
    first = [e for n in trainers for e in smoke_run["manifest"]["notebooks"][n]["cache"]["events"]]
    assert (any(e["kind"] == "runs" and e["event"] == "miss" for e in first)
            or any(e["event"] == "miss" for e in smoke_run["manifest"]["last_run"].get("training", [])))
    assert all(e["event"] == "hit" for e in manifest["last_run"].get("training", []))


def test_train_only_plans_the_runs_the_notebooks_use(smoke_run):
    from biaskit.study.runner import train_all
    planned = train_all("smoke", smoke_run["cache"], "cpu", progress=False, echo=lambda s: None)
    used = {e["key"] for n in smoke_run["manifest"]["notebooks"].values()
            for e in n["cache"]["events"] if e["kind"] == "runs"}
    assert {Path(p["run"]).parent.name for p in planned} == used
    assert {p["event"] for p in planned} == {"hit"}  # nothing retrained


def test_exported_plan_commands_fill_the_cache_the_notebooks_use(smoke_run, tmp_path, capsys):
    """`figures --plan` prints one `biaskit train --study` command per run; run one by one they
    build exactly the cache entries the smoke notebooks looked up, and a `figures` run on that
    cache afterwards trains nothing."""
    import shlex
    cache = tmp_path / "cache"
    assert cli.main(["figures", "--profile", "smoke", "--plan", "--cache", str(cache), "--device", "cpu"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#!/bin/sh\nset -e\n")
    commands = [ln for ln in script.splitlines() if ln.startswith("biaskit train ")]
    assert len(commands) == len(planned_runs("smoke")) > 0
    assert sum("--dataset gmm --variant debias" in c for c in commands) == 3   # 3 seeds
    for c in commands:
        assert cli.main(shlex.split(c)[1:]) == 0, c
    used = {e["key"] for n in smoke_run["manifest"]["notebooks"].values()
            for e in n["cache"]["events"] if e["kind"] == "runs"}
    assert {p.parent.name for p in cache.glob("runs/*/entry.json")} == used
    out = tmp_path / "figures"
    assert cli.main(["figures", "--profile", "smoke", "--only", "01", "--out", str(out), "--cache", str(cache),
                     "--jobs", "1"]) == 0
    events = json.loads((out / "manifest.json").read_text())["notebooks"]["01_existence"]["cache"]["events"]
    runs = [e for e in events if e["kind"] == "runs"]
    assert runs and all(e["event"] == "hit" for e in runs)
    slurm = cli.main(["figures", "--profile", "full", "--plan", "slurm", "--cache", str(cache)])
    text = capsys.readouterr().out
    assert slurm == 0 and f"#SBATCH --array=0-{len(planned_runs('full')) - 1}" in text


def test_study_train_errors_are_one_line(tmp_path, capsys):
    # --family / --weighting: the former names of --dataset / --variant, still accepted
    for argv, words in ((["--study", "smoke", "--dataset", "gmm", "--variant", "p2"], "--dataset gmm --variant p2"
                          " --seed 0: study 'smoke' trains no such"),
                        (["--study", "smoke", "--family", "gmm", "--weighting", "p2"], "trains no such"),
                        (["--study", "smoke", "--family", "gmm"], "--study needs --variant"),
                        (["--study", "nope", "--family", "gmm", "--weighting", "debias"], "--study must be"),
                        (["--study", "smoke", "--dataset", "gmm", "--variant", "debias", "--steps", "3"],
                         "drop --preset")):
        assert cli.main(["train", *argv, "--cache", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err


def test_train_only_under_torchrun_fills_the_same_cache_entries(smoke_run, tmp_path):
    """The documented multi-GPU path, on CPU: 2 gloo processes train each run with DDP into the
    cache; the entries are the ones the notebooks look up (same keys)."""
    import os
    import subprocess
    import sys
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29517", "-m", "biaskit.cli", "figures", "--profile", "smoke",
           "--train-only", "--cache", str(cache), "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    used = {e["key"] for n in smoke_run["manifest"]["notebooks"].values()
            for e in n["cache"]["events"] if e["kind"] == "runs"}
    built = {p.parent.name for p in cache.glob("runs/*/entry.json")}
    assert built == used
    assert not list(cache.glob("runs/*.ddp"))


def test_failing_parameter_set_reports_the_cell_and_exits_nonzero(smoke_run, capsys):
    out = smoke_run["out"].parent / "failing"
    rc = cli.main(["figures", "--profile", "smoke", "--only", "00", "--out", str(out),
                   "--set", "schedules=[linear, no_such_schedule]"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "00_weighting_atlas: FAILED at cell" in err and "ValueError" in err
    assert "no_such_schedule" in err
    partly = out / "00_weighting_atlas" / "00_weighting_atlas.ipynb"
    assert f"partly executed notebook: {partly}" in err and partly.is_file()
    entry = json.loads((out / "manifest.json").read_text())["notebooks"]["00_weighting_atlas"]
    assert entry["ok"] is False and entry["error"]["ename"] == "ValueError"


def test_unknown_parameter_is_a_one_line_error(tmp_path, capsys):
    rc = cli.main(["figures", "--profile", "smoke", "--only", "00", "--out", str(tmp_path),
                   "--set", "no_such_parameter=3"])
    assert rc == 2
    assert "unknown notebook parameter(s) no_such_parameter" in capsys.readouterr().err


def test_renamed_parameter_keeps_its_former_name(tmp_path):
    """05's list of preset variants is ``variants``; ``--set weightings=...`` (its former name)
    still sets it, and the smoke profile plans exactly those runs."""
    from biaskit.study.notebooks import NOTEBOOK_DIR, notebook_parameters
    from biaskit.study.runner import _check_overrides
    path = NOTEBOOK_DIR / "05_formulations.ipynb"
    p = notebook_parameters("05_formulations", path, "smoke", tmp_path, tmp_path, "cpu",
                            {"weightings": ["constant", "edm"]})
    assert p["variants"] == ["constant", "edm"] and "weightings" not in p
    p = notebook_parameters("05_formulations", path, "smoke", tmp_path, tmp_path, "cpu")
    assert p["variants"] == PROFILES["smoke"]["05_formulations"]["variants"]
    assert planned_runs("smoke", ["05_formulations"]) == [("gmm", v, 0) for v in p["variants"]]
    _check_overrides({"weightings": ["constant"]}, {"05_formulations": path})   # accepted, no error
    with pytest.raises(ValueError, match="unknown notebook parameter"):
        _check_overrides({"variant": ["constant"]}, {"05_formulations": path})


def test_own_samplers_keeps_its_former_name_native_samplers(tmp_path, monkeypatch):
    """05's ``own_samplers`` (each process's own sampler) was ``native_samplers``: the former
    name still sets it, as an override and as a key of a profile."""
    from biaskit.study import profiles
    from biaskit.study.notebooks import NOTEBOOK_DIR, notebook_parameters
    from biaskit.study.runner import _check_overrides
    path = NOTEBOOK_DIR / "05_formulations.ipynb"
    p = notebook_parameters("05_formulations", path, "quick", tmp_path, tmp_path, "cpu")
    assert p["own_samplers"] is True and "native_samplers" not in p
    p = notebook_parameters("05_formulations", path, "quick", tmp_path, tmp_path, "cpu", {"native_samplers": False})
    assert p["own_samplers"] is False and "native_samplers" not in p
    _check_overrides({"native_samplers": False}, {"05_formulations": path})   # accepted, no error
    mine = {k: v for k, v in PROFILES["quick"]["05_formulations"].items() if k != "own_samplers"}
    monkeypatch.setitem(PROFILES, "old-keys",
                        {**PROFILES["quick"], "05_formulations": {**mine, "native_samplers": False}})
    p = profiles.parameters("old-keys", "05_formulations")
    assert p["own_samplers"] is False and "native_samplers" not in p
    # the new name given beside the former one wins
    assert profiles.renamed({"own_samplers": True, "native_samplers": False}) == {"own_samplers": True}
