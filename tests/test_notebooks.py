"""Every notebook of the course executes top to bottom (small parameters, offline) and is
committed without outputs. Notebook-specific numbers are checked in each topic's test file."""
from __future__ import annotations

import json

import pytest

from conftest import NOTEBOOKS, PLANTED_KEY

ALL = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("name", ALL)
def test_notebook_is_committed_without_outputs(name):
    nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("name", ALL)
def test_notebook_has_a_tagged_parameters_cell_first(name):
    nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    # the first code cell installs the kit where it is missing (tests/test_packaging.py)
    first_code = [c for c in nb["cells"] if c["cell_type"] == "code"][1]
    assert "parameters" in first_code.get("metadata", {}).get("tags", []), name
    assert "SMALL" in "".join(first_code["source"]), f"{name}: parameters cell lacks SMALL"


@pytest.mark.notebook
@pytest.mark.parametrize("name", ALL)
def test_notebook_executes(notebook_runs, name):
    run = notebook_runs(name)
    assert run.status == "ok", f"{name} failed: {run.error}"


@pytest.mark.notebook
@pytest.mark.parametrize("name", ALL)
def test_planted_key_reaches_no_output(notebook_runs, name):
    run = notebook_runs(name)
    assert run.output is not None
    text = run.output.read_text(encoding="utf-8")
    assert PLANTED_KEY not in text and PLANTED_KEY[3:20] not in text


@pytest.mark.notebook
def test_start_here_records_the_environment(notebook_runs):
    from perso_kit.report import read_records

    run = notebook_runs("00_start_here.ipynb")
    assert run.status == "ok", run.error
    rec = read_records(run.output)
    assert rec["dataset"] == "demo" and rec["users"] == 1000
    assert rec["backend"] == "offline" and rec["offline"] is True
    assert 0.2 < rec["ndcg_popularity"] < 0.4


def test_every_notebook_ends_with_the_way_on():
    """Each notebook's last cell links the next one (the last links back to 00), and the link
    names a notebook that exists."""
    import re
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    for i, path in enumerate(paths[1:], start=1):
        last = json.loads(path.read_text())["cells"][-1]
        last = {"cell_type": last["cell_type"], "source": "".join(last["source"])}
        target = paths[i + 1] if i + 1 < len(paths) else paths[0]
        links = re.findall(r"\]\(([^)]+\.ipynb)\)", last["source"])
        assert last["cell_type"] == "markdown" and links == [target.name], path.name
