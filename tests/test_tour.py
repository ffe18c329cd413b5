"""The headless tour: every notebook runs, a failure is reported with its cell, the rest go on."""
from __future__ import annotations

import nbformat

from perso_kit.tour import run_tour


def write(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, str(path))


def test_tour_reports_a_failing_cell_and_runs_the_rest(tmp_path):
    src = tmp_path / "notebooks"
    src.mkdir()
    write(src / "01_ok.ipynb", "SMALL = False", "print('small' if SMALL else 'big')")
    write(src / "02_broken.ipynb", "SMALL = False", "x = 1", "raise ValueError('planted failure')")
    write(src / "03_after.ipynb", "SMALL = False", "print('still ran')")
    summary = run_tour(tmp_path / "out", parameters={"SMALL": True}, folder=src)
    assert summary["notebook"].tolist() == ["01_ok.ipynb", "02_broken.ipynb", "03_after.ipynb"]
    assert summary["status"].tolist() == ["ok", "failed", "ok"]
    assert "ValueError" in summary["error"][1] and "planted failure" in summary["error"][1]
    assert "cell" in summary["error"][1]
    executed = (tmp_path / "out" / "01_ok.ipynb").read_text()
    assert "small" in executed  # the parameter passed through
    assert (tmp_path / "out" / "03_after.html").exists()
