"""Promises of the repository itself: CI runs the README's test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_test_command() -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("Install and run the tests"))
    return next(line for line in lines[heading:] if "pytest" in line).strip()


def test_ci_runs_the_readme_test_command_verbatim():
    command = readme_test_command()
    assert "SIMPLENET_EDU_QUICK=1" in command and "--nbval" in command
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines
