"""The README contract: its test command is the one .ci/run runs, and every command it shows runs."""

import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme = (ROOT / "README.md").read_text()
    assert ci in readme
    assert "pytest" in ci and "torch==2.13.0" in ci


def test_readme_opens_with_the_two_commands():
    blocks = (ROOT / "README.md").read_text().split("```bash\n")[1:3]
    first, second = (b.split("```")[0].strip() for b in blocks)
    assert first.endswith("biaskit figures --profile quick")
    assert second.endswith("python -m pytest -q")


# --- every command of the README, run in a fresh folder at small sizes ----------------------------
# The README's sizes are for real use; the test keeps its commands and shrinks them with these
# documented rules (README, "Tests"): train runs 1/100 of the steps (20 for a preset's default) on a
# tiny UNet (a 32-channel ADM for an ADM preset, the loaded network for --init) with batch 8, probes use 4 timesteps and 32 samples without figures, samplers 16
# samples, and `torchrun ... -m biaskit.cli` runs in one process (DDP has its own tests).
# `biaskit figures` is run by tests/test_figures.py at the smoke profile, so here its commands are
# only parsed.

TINY = ["--set", "model.config.channels=8", "--set", "model.config.channel_mult=[1]",
        "--set", "model.config.mid_attention=false", "--set", "model.config.attention_levels=[]",
        "--set", "model.config.num_res_blocks=1", "--set", "data.n_train=64", "--set", "batch_size=8",
        "--no-progress"]
# an ADM preset (celebahq) gets a 32-channel one-level ADM (GroupNorm has 32 groups); a fine-tuning
# run (--init) keeps its loaded network and only gets the small data and batch
TINY_ADM = ["--set", "model.config.model_channels=32", "--set", "model.config.channel_mult=[1]",
            "--set", "model.config.attention_resolutions=[]", "--set", "data.n_train=64",
            "--set", "batch_size=8", "--no-progress"]
TINY_INIT = ["--set", "data.n_train=64", "--set", "batch_size=8", "--no-progress"]
SHRINK = {"train": {"--steps": lambda v: str(max(1, int(v) // 100))},
          "probe": {"--num-timesteps": lambda v: "4", "--samples": lambda v: "32"},
          "sample": {"--n": lambda v: "16"}}
ADD = {"train": {"--steps": "20"}, "probe": {"--num-timesteps": "4", "--samples": "32"}, "sample": {}}


# the README's ADM example is a model file nobody ships: tests/test_thirdparty.py runs it on a
# small saved ADM (test_readme_adm_command_runs)
PLACEHOLDER_MODELS = ("256x256_diffusion_uncond.pt",
                      "stable-diffusion-v1-5")  # tests/test_latent.py runs it on a tiny pipeline


def readme_commands() -> list[list[str]]:
    """argv (after ``biaskit``) of every command in the README's bash blocks, in order; shell
    variables set in a block (``FLAGS="..."``) are expanded in its later lines, as a shell does."""
    text = (ROOT / "README.md").read_text()
    out = []
    for block in text.split("```bash\n")[1:]:
        env = {}
        for line in block.split("```")[0].replace("\\\n", " ").splitlines():
            name, eq, value = line.partition("=")
            if eq and name.isidentifier() and name.isupper():
                env[name] = " ".join(shlex.split(value))
                continue
            for var, value in env.items():
                line = line.replace(f"${var}", value)
            for part in line.split("&&"):
                argv = shlex.split(part, comments=True)
                if argv[:1] == ["biaskit"]:
                    out.append(argv[1:])
                elif argv[:1] == ["torchrun"]:
                    out.append(argv[argv.index("biaskit.cli") + 1:])
    return out


def shrink(argv: list[str]) -> list[str]:
    """``argv`` with the README-test rules applied (see the comment above)."""
    cmd, rules = argv[0], SHRINK.get(argv[0], {})
    out = [rules[argv[i - 1]](a) if i and argv[i - 1] in rules else a for i, a in enumerate(argv)]
    if cmd == "train" and "--list" not in argv:
        out += (TINY_INIT if "--init" in argv else
                TINY_ADM if any(a.startswith("celebahq") for a in argv) else TINY)
    grid = {"--timesteps", "--num-timesteps"} & set(argv)
    for flag, value in ADD.get(cmd, {}).items():
        if flag not in argv and not (flag == "--num-timesteps" and grid):
            out += [flag, value]
    if cmd in ("probe", "sample"):
        out.append("--no-progress")
    if cmd == "probe":
        out.append("--no-plots")  # the probe's figures cost most of its time; tested elsewhere
    return out


def _dependency_order(commands):
    """Trainings first (the probe and sample examples use their runs), in README order."""
    return sorted(commands, key=lambda a: a[0] != "train")


def test_readme_commands_parse():
    from biaskit.cli import build_parser
    commands = readme_commands()
    assert {c[0] for c in commands} == {"weights", "probe", "train", "sample", "figures"}
    for argv in commands:
        build_parser().parse_args(argv)


def _fresh_folder(tmp_path, monkeypatch) -> Path:
    """cd into a fresh folder tmp_path/repo holding only a link to examples/, with ../shared
    linked when the checkout has one; returns the shared folder's path."""
    shared = ROOT.parent / "shared"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "examples").symlink_to(ROOT / "examples")
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)
    monkeypatch.chdir(repo)
    return shared


def test_every_readme_command_runs(tmp_path, monkeypatch, capsys):
    """In a fresh folder holding only links to the repository's examples/ (and ../shared for the
    third-party checkpoint): every non-figures command exits 0."""
    from biaskit.cli import main
    shared = _fresh_folder(tmp_path, monkeypatch)
    ran, without_shared = [], []
    for argv in _dependency_order(readme_commands()):
        if argv[0] == "figures" or set(argv) & set(PLACEHOLDER_MODELS):
            continue
        if any(a.startswith("../shared/") for a in argv) and not shared.is_dir():
            without_shared.append(argv[0])  # a checkout without ../shared: counted, not run
            continue
        rc = main(shrink(argv))
        err = capsys.readouterr().err
        assert rc == 0, (argv, err)
        assert "Traceback" not in err
        ran.append(argv[0])
    every = ran + without_shared
    assert every.count("train") == 9 and every.count("probe") >= 5 and every.count("sample") == 3
    assert (Path.cwd() / "runs" / "digits-debias" / "samples" / "samples.npz").is_file()
    assert (Path.cwd() / "runs" / "digits-flow" / "probe").is_dir() and (Path.cwd() / "runs" / "digits-edm" / "probe").is_dir()


# --- every Python snippet of the README -----------------------------------------------------------

def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [b.split("```")[0] for b in text.split("```python\n")[1:]]


def test_readme_python_blocks_run_as_one_notebook_session(tmp_path, monkeypatch):
    """The README's Python blocks, as written, run in order in one namespace (cells of a notebook)
    in a fresh folder holding links to examples/ and ../shared: load a diffusers model in memory,
    probe, plot on given axes, compare two models, sample, score, monitor a training loop."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import torch
    torch.manual_seed(0)
    shared = _fresh_folder(tmp_path, monkeypatch)
    blocks = readme_python_blocks()
    assert len(blocks) >= 4
    ns: dict = {}
    for block in blocks:
        if "../shared/" in block and not shared.is_dir():
            continue
        exec(compile(block, "README.md", "exec"), ns)  # noqa: S102 - the README's own code
    assert isinstance(ns["df"], pd.DataFrame) and len(ns["df"]) == 8
    assert all(a.lines for a in ns["axes"]) and len(ns["fig"].axes) == 2
    assert set(ns["paired"].model) == {"other - unet"} and {"statistic", "value"} <= set(ns["long"].columns)
    assert ns["x"].shape == (64, 1, 8, 8) and set(ns["scores"].metric) == {"swd", "mmd2"}
    records = pd.read_csv(Path.cwd() / "runs" / "monitor" / "monitor.csv")
    assert sorted(records.step.unique()) == [10, 20] and (records.kind == "difference").sum() == 5
    if shared.is_dir():
        assert list(ns["table"].t) == [1, 264, 999]
    plt.close("all")


def test_readme_prose_names_only_existing_python_calls():
    """Inline `biaskit.a.b(...)` in the prose names a callable that exists."""
    import importlib
    import re
    text = (ROOT / "README.md").read_text()
    names = set(re.findall(r"`(biaskit(?:\.\w+)+)\(", text))
    assert {"biaskit.probe", "biaskit.compare", "biaskit.load"} <= names
    for name in names:
        obj = importlib.import_module("biaskit")
        for part in name.split(".")[1:]:
            obj = getattr(obj, part)
        assert callable(obj), name
