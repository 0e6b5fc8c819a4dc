"""The README contract: its test command is the one .ci/run runs."""

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
