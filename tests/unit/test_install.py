"""The README's two commands and CI's entrypoint cannot drift apart: CI installs and tests exactly as a user does."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAIN_JOB = " && .venv/bin/python pipelines/run.py --pipeline whisper_intensity"


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def ci_lines() -> list[str]:
    return [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]


def test_the_readme_sets_up_with_the_lock_and_runs_the_main_job():
    setup, tests = readme_commands()
    assert setup.endswith(MAIN_JOB)
    assert "-c constraints.txt" in setup and (REPO / "constraints.txt").is_file()
    assert tests == ".venv/bin/python -m pytest"


def test_ci_runs_the_readme_install_in_a_new_venv_and_the_readme_test_command():
    setup, tests = readme_commands()
    lines = ci_lines()
    install = setup.removesuffix(MAIN_JOB)
    assert install in lines, f"CI must install with the README's command: {install}"
    assert tests in lines
    assert lines.index("rm -rf .venv") < lines.index(install) < lines.index(tests)
