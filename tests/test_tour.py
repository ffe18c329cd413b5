"""The headless tour: every notebook runs, a failure is reported with its cell, the rest go on."""
from __future__ import annotations

import json
import os

import nbformat
import pytest
import pandas as pd

from perso_kit.report import read_records
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


def recording_notebook(path, calls, failed, invalid_json=0, misses=0):
    """A notebook that records a session summary with these counts, as Act-3 notebooks do."""
    write(path, "SMALL = False",
          "from perso_kit.report import record\n"
          f"record(llm_calls={calls}, llm_failed={failed}, llm_invalid_json={invalid_json}, "
          f"llm_replay_misses={misses})")


def test_a_notebook_whose_llm_calls_mostly_failed_is_marked_failed(tmp_path):
    src = tmp_path / "notebooks"
    src.mkdir()
    recording_notebook(src / "05_unreachable.ipynb", calls=12, failed=12)
    recording_notebook(src / "06_misses.ipynb", calls=10, failed=6, misses=6)
    # controls: a few failures, and invalid JSON answers (a small model's, still answers)
    recording_notebook(src / "07_some.ipynb", calls=10, failed=4)
    recording_notebook(src / "08_bad_json.ipynb", calls=10, failed=9, invalid_json=9)
    write(src / "09_no_llm.ipynb", "SMALL = False", "x = 1")
    summary = run_tour(tmp_path / "out", folder=src, html=False).set_index("notebook")
    assert summary["status"].tolist() == ["failed", "failed", "ok", "ok", "ok"]
    assert summary.loc["05_unreachable.ipynb", "error"].startswith("12 of 12 LLM calls failed")
    assert summary.loc["06_misses.ipynb", "llm_replay_misses"] == 6
    assert "6 replay misses): the recording lacks" in summary.loc["06_misses.ipynb", "error"]
    assert summary.loc["07_some.ipynb", "llm_failed"] == 4
    assert summary.loc["07_some.ipynb", "error"] == ""
    assert pd.isna(summary.loc["09_no_llm.ipynb", "llm_calls"])


def test_only_takes_commas_and_spaces_and_demo_only_notebooks_are_skipped(tmp_path):
    src = tmp_path / "notebooks"
    src.mkdir()
    for n in ("01", "02", "03", "04"):
        write(src / f"{n}_nb.ipynb", "DATASET = 'demo'", "print(DATASET)")
    write(src / "09_demo_only.ipynb", "DATASET = 'demo'",
          'if DATASET != "demo":\n    raise ValueError("needs the demo world")')
    summary = run_tour(tmp_path / "out", folder=src, html=False, only=["01,02", "09"],
                       parameters={"DATASET": "planted"})
    assert summary["notebook"].tolist() == ["01_nb.ipynb", "02_nb.ipynb", "09_demo_only.ipynb"]
    assert summary["status"].tolist() == ["ok", "ok", "skipped"]
    assert summary["error"][2].startswith("needs the demo world")
    assert not (tmp_path / "out" / "09_demo_only.ipynb").exists()   # not run at all
    # on the demo world the same notebook runs
    summary = run_tour(tmp_path / "out", folder=src, html=False, only="09")
    assert summary["status"].tolist() == ["ok"]


def test_each_run_writes_an_index_naming_its_options_and_what_it_replaced(tmp_path):
    src = tmp_path / "notebooks"
    src.mkdir()
    write(src / "01_a.ipynb", "SMALL = False", "x = 1")
    write(src / "02_b.ipynb", "SMALL = False", "x = 2")
    out = tmp_path / "out"
    run_tour(out, folder=src, parameters={"SMALL": True}, only="01")
    page = (out / "index.html").read_text()
    assert '<a href="01_a.html">01_a.ipynb</a>' in page and "SMALL=True" in page
    assert "02_b" not in page and "replace" not in page
    run_tour(out, folder=src, html=False, options={"dataset": "demo"})
    page = (out / "index.html").read_text()
    assert '<a href="02_b.ipynb">02_b.ipynb</a>' in page and "dataset=demo" in page
    assert "replace those of the run of" in page and "SMALL" in page  # the run it replaced
    facts = json.loads((out / "tour.json").read_text())
    assert facts["options"] == {"dataset": "demo"} and len(facts["notebooks"]) == 2


def test_relative_llm_paths_mean_the_folder_the_command_ran_in(tmp_path, monkeypatch):
    src = tmp_path / "notebooks"
    src.mkdir()
    write(src / "01_env.ipynb", "SMALL = False",
          "import os\nfrom perso_kit.report import record\n"
          "record(cache=os.environ['PERSO_KIT_LLM_CACHE'], cwd=os.getcwd())")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERSO_KIT_LLM_CACHE", "class.sqlite")
    run_tour(tmp_path / "out", folder=src, html=False)
    rec = read_records(tmp_path / "out" / "01_env.ipynb")
    assert rec["cache"] == str(tmp_path / "class.sqlite") and rec["cwd"] == str(src)
    assert os.environ["PERSO_KIT_LLM_CACHE"] == "class.sqlite"  # the parent's is unchanged


def test_the_tour_command_exits_non_zero_on_a_failure_and_says_how_to_open_it(
        tmp_path, monkeypatch, capfd):
    from perso_kit import __main__, tour
    src = tmp_path / "notebooks"
    src.mkdir()
    recording_notebook(src / "01_ok.ipynb", calls=2, failed=0)
    recording_notebook(src / "02_down.ipynb", calls=4, failed=4)
    monkeypatch.setattr(tour, "NOTEBOOK_DIR", src)
    out = tmp_path / "out"
    assert __main__.main(["tour", "--no-html", "--out", str(out), "--only", "01"]) == 0
    assert __main__.main(["tour", "--no-html", "--out", str(out), "--only", "01,02"]) == 1
    printed = capfd.readouterr()
    assert f"open {out / 'index.html'}" in printed.out and "4 of 4 LLM calls failed" in printed.out
    assert "without encryption" not in printed.err   # the kernels' transport warning is silenced


@pytest.mark.notebook
def test_notebook_05_against_a_closed_port_is_marked_failed(tmp_path, monkeypatch, capsys):
    """The circuit breaker makes every call after the third connection failure fail at once,
    so the notebook ends soon; the tour counts its failed calls and exits non-zero."""
    import socket

    from perso_kit import __main__
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("PERSO_KIT_LLM_MODEL", "a-model")
    out = tmp_path / "out"
    assert __main__.main(["tour", "--only", "05", "--small", "--no-html", "--out", str(out)]) == 1
    facts = json.loads((out / "tour.json").read_text())
    row = facts["notebooks"][0]
    assert row["status"] == "failed" and row["llm_failed"] > row["llm_calls"] / 2
    assert "LLM calls failed" in row["error"] and "can be reached" in row["error"]
    page = (out / "05_llm_basics_for_personalization.ipynb").read_text()
    assert f"127.0.0.1:{port}" in page  # the banner names the server


def test_figures_are_kept_even_when_the_environment_asks_for_agg(tmp_path, monkeypatch):
    """``MPLBACKEND=Agg`` (set by many CI images, and by .ci/run) would leave an executed
    notebook without a single figure; the tour's kernels draw inline whatever it says."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    src = tmp_path / "notebooks"
    src.mkdir()
    write(src / "01_plot.ipynb", "SMALL = False",
          "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    summary = run_tour(tmp_path / "out", folder=src, html=False)
    assert summary["status"].tolist() == ["ok"]
    outputs = nbformat.read(str(tmp_path / "out" / "01_plot.ipynb"), 4).cells[1].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert os.environ["MPLBACKEND"] == "Agg"          # the caller's environment is untouched


# ------------------------------------------------------------------ pages that read offline
CDN_MARKS = ("cdn.jsdelivr", "unpkg.com", "cdnjs.cloudflare", "<script src=")


def cdn_references(page: str) -> list[str]:
    return [mark for mark in CDN_MARKS if mark in page]


def test_a_page_shows_its_widgets_with_no_script_from_the_web(tmp_path):
    from nbconvert import HTMLExporter

    src = tmp_path / "notebooks"
    src.mkdir()
    write(src / "01_widget.ipynb", "SMALL = False",
          "import ipywidgets as w\n"
          "w.VBox([w.Dropdown(options=['first', 'second'], value='second', description='Pick'),\n"
          "        w.Button(description='Planted button'), w.HTML('<b>planted pane</b>')])",
          "import pandas as pd\nimport perso_kit.report  # as every notebook does\n"
          "pd.DataFrame({'title': ['Alpha'], 'genres': [('Adventure',)]})")
    summary = run_tour(tmp_path / "out", folder=src)
    assert summary["status"].tolist() == ["ok"]
    executed = tmp_path / "out" / "01_widget.ipynb"
    # the planted failure: nbconvert's own page of the same notebook loads its widget
    # manager (and require.js) from a CDN, so the check below can see one
    stock, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(str(executed), 4))
    assert "unpkg.com" in cdn_references(stock) and "<script src=" in cdn_references(stock)
    page = (tmp_path / "out" / "01_widget.html").read_text()
    assert cdn_references(page) == []
    assert "Planted button" in page and "<b>planted pane</b>" in page and "second" in page
    assert "interactive in Jupyter" in page
    assert "overflow-x: auto" in page                        # wide tables scroll in their cell
    assert "<td>Adventure</td>" in page and "(Adventure,)" not in page   # genres read as text
    assert nbformat.read(str(executed), 4).metadata.get("widgets")   # the .ipynb keeps its state


def test_dataframes_show_sequences_as_text_and_keep_their_data(demo):
    from types import SimpleNamespace

    from IPython.core.formatters import DisplayFormatter

    from perso_kit.report import sequences_as_text, show_sequences_as_text

    items = demo.items[["title", "genres"]].head(3)
    before = items.to_dict("records")
    shell = SimpleNamespace(display_formatter=DisplayFormatter())   # a kernel's formatters
    stock, _ = shell.display_formatter.format(items)
    assert "(" + ", ".join(items["genres"].iloc[0]) in stock["text/plain"]  # pandas: a tuple
    assert show_sequences_as_text(shell) is True
    shown, _ = shell.display_formatter.format(items)
    for title, genres in zip(items["title"], items["genres"]):
        assert f"<td>{', '.join(genres)}</td>" in shown["text/html"]
        assert ", ".join(genres) in shown["text/plain"] and str(genres) not in shown["text/plain"]
    assert items.to_dict("records") == before and isinstance(items["genres"].iloc[0], tuple)
    plain = pd.DataFrame({"n": [1, 2]})
    assert sequences_as_text(plain) is plain                  # nothing to change: no copy


@pytest.mark.notebook
def test_notebook_09_page_has_its_chat_and_figures_offline_under_agg(tmp_path, monkeypatch):
    """The conversational notebook, executed with ``MPLBACKEND=Agg`` as CI sets it: the
    executed notebook holds figures, and its page shows the chat's first exchange and the
    figures with no script from the web."""
    from perso_kit.tour import NOTEBOOK_DIR, run_notebook

    monkeypatch.setenv("MPLBACKEND", "Agg")
    run = run_notebook(NOTEBOOK_DIR / "09_conversational_recommender.ipynb", tmp_path,
                       {"SMALL": True}, html=True)
    assert run.status == "ok", run.error
    nb = nbformat.read(str(run.output), 4)
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images
    page = run.output.with_suffix(".html").read_text()
    assert cdn_references(page) == []
    assert "A thriller from the 80s, nothing dark" in page and "<b>system:</b>" in page
    assert page.count("data:image/png") >= len(images)
