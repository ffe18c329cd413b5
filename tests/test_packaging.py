"""Install files agree with each other: requirements.txt, pyproject.toml, binder/, .ci/run."""
from __future__ import annotations

import re

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]


def requirement_lines(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return sorted(line for line in lines if line and not line.startswith(("#", "-")))


def test_binder_installs_what_requirements_lists():
    assert requirement_lines(REPO / "binder" / "requirements.txt") == \
        requirement_lines(REPO / "requirements.txt")
    assert "pip install --no-deps -e ." in (REPO / "binder" / "postBuild").read_text()


def test_requirements_install_the_kit_and_match_pyproject():
    assert "-e ." in (REPO / "requirements.txt").read_text().splitlines()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(deps) == requirement_lines(REPO / "requirements.txt")


def test_design_card_packages_are_required():
    names = {re.split(r"[<>=!~ ]", r)[0].lower() for r in requirement_lines(REPO / "requirements.txt")}
    assert {"jupyterlab", "ipywidgets", "pandas", "matplotlib", "openai", "implicit",
            "lightgbm"} <= names


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = re.search(r"# The README's test command:\n(.+)\n", ci).group(1).strip()
    assert command in readme


def test_the_local_extra_matches_requirements_local():
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["local"]
    assert sorted(extra) == requirement_lines(REPO / "requirements-local.txt")
    assert "-r requirements-local.txt" in (REPO / "requirements-test.txt").read_text()
    assert "pip install -r requirements-local.txt" in (REPO / "binder" / "postBuild").read_text()
