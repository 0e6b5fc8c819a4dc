"""The import layering of the package: no module imports from a layer above its own.

The layers, bottom up (a module's layer is that of the longest name below that it starts with):
foundations (what a number is made of: schedules, processes, targets, densities, weightings,
the config), the model call (the denoiser, the process denoiser, oracles, data, networks), the
machinery over one model call (loaders, checkpoints, training, probing, sampling, metrics), and
the study and the commands on top. Every ``import``, at the top of a file or inside a function,
counts: a lazy import is still a dependency.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "biaskit"

LAYERS = (
    ("foundations", ("checks", "atomic", "jsonio", "rng", "safeload", "source", "intervals", "respacing",
                     "mixture", "pixels", "splits", "parameterization", "targets", "schedules",
                     "process_base", "vesde", "processes", "weighting", "densities", "config_types",
                     "config")),
    ("model call", ("", "denoiser", "formulations", "oracle", "data", "data_files", "data_options",
                    "image_files", "models", "distributed", "results", "resources", "verdicts", "report",
                    "plot_axes", "plot_style")),
    ("machinery", ("loaders", "checkpoint", "train", "probe", "sampling", "metrics", "monitor",
                   "settings_candidates", "settings_stats")),
    ("study and commands", ("commands", "cli", "study", "experiments", "formulation_study", "figures",
                            "profiles", "cache", "jobpool", "heartbeat", "kernel", "replication",
                            "sampling_bias", "exposure", "trajectory", "plots", "plot_images",
                            "plot_samples", "settings_check", "latent", "training_plan")),
)


def _name(path: Path) -> str:
    """``biaskit/train/objective.py`` -> ``train.objective``; a package's __init__ -> the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    """The index of the layer of a module name relative to the package ('' is the package itself)."""
    best, found = -1, None
    for i, (_, names) in enumerate(LAYERS):
        for n in names:
            if (module == n or (n and module.startswith(n + "."))) and len(n) > best:
                best, found = len(n), i
    return found


def _imports(path: Path) -> set[str]:
    """The package modules that ``path`` imports (relative names; a name imported from a package
    that is itself a module counts as that module)."""
    name = _name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "biaskit":
                target = node.module.partition(".")[2]
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                as_file = ROOT / (sub.replace(".", "/") + ".py")
                out.add(sub if as_file.exists() or (ROOT / sub.replace(".", "/")).is_dir() else target)
        elif isinstance(node, ast.Import):
            out |= {a.name.partition(".")[2] for a in node.names if a.name.split(".")[0] == "biaskit"}
    return out - {name}


MODULES = sorted(p for p in ROOT.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = [_name(p) for p in MODULES if _layer(_name(p)) is None]
    assert not missing, f"modules in no layer of tests/test_layers.py (place them): {missing}"


def test_no_module_imports_from_a_layer_above_it():
    bad = []
    for path in MODULES:
        mine = _layer(_name(path))
        for dep in sorted(_imports(path)):
            theirs = _layer(dep)
            if mine is not None and theirs is not None and theirs > mine:
                bad.append(f"{_name(path)} ({LAYERS[mine][0]}) imports {dep} ({LAYERS[theirs][0]})")
    assert not bad, "imports that run up the layers:\n" + "\n".join(bad)


@pytest.mark.parametrize("module,dep", [("config", "train.process_objective"), ("processes", "denoiser"),
                                        ("train.trainer", "commands.common")])
def test_the_layering_check_sees_an_upward_import(module, dep):
    # the check is not vacuous: each of these would be refused
    assert _layer(dep) > _layer(module)


def test_the_import_reader_sees_lazy_and_relative_imports():
    deps = _imports(ROOT / "densities.py")
    assert {"processes", "weighting", "schedules"} <= deps  # `from .weighting import ...` inside functions
    assert "process_objective" not in " ".join(_imports(ROOT / "config.py"))
