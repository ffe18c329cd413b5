"""Every notebook of the course executes top to bottom (small parameters, offline) and is
committed without outputs. Notebook-specific numbers are checked in each topic's test file."""
from __future__ import annotations

import json

import pytest

from conftest import NOTEBOOKS

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
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    assert "parameters" in first_code.get("metadata", {}).get("tags", []), name
    assert "SMALL" in "".join(first_code["source"]), f"{name}: parameters cell lacks SMALL"


@pytest.mark.notebook
@pytest.mark.parametrize("name", ALL)
def test_notebook_executes(notebook_runs, name):
    run = notebook_runs(name)
    assert run.status == "ok", f"{name} failed: {run.error}"
