"""Run the course headless: execute every notebook in order and keep the results.

``python -m perso_kit tour`` calls :func:`run_tour`: each notebook in ``notebooks/`` is executed
with papermill (parameters such as the dataset pass through to its parameters cell), an executed
copy and an HTML page are written to a build folder, and a summary table says how long each
took and whether it passed. A failing notebook is reported with the cell that failed and the
error; the others still run.

A notebook's status is

* ``ok`` -- it ran to the end, and most of its LLM calls were answered;
* ``failed`` -- a cell raised, or more than half of its LLM calls got no answer (a server that
  cannot be reached, a replay miss, ...: the counts come from the ``session_summary()`` the
  Act-3 notebooks record last; an answer that is invalid JSON is an answer, not a failure);
* ``skipped`` -- the tour was asked for another dataset and the notebook needs the demo world
  (its first cells raise ``if DATASET != "demo"``): it is not run.

Each run writes ``index.html`` into its folder: the options that made the pages, and a link to
each page. The pages (:func:`page_html`) read the same offline: no script is loaded from the web,
and each widget is drawn as a snapshot of its last state. Kernels run in ``notebooks/``; relative paths in the kit's variables are made
absolute first (:func:`perso_kit.config.absolute_path_variables`). The kernel's warning that it
"is running over TCP without encryption" is silenced: the kernel only listens on this machine's
loopback interface, so nothing travels over a network.
"""
from __future__ import annotations

import html as _html
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .config import REPO_DIR, absolute_path_variables, environment

NOTEBOOK_DIR = REPO_DIR / "notebooks"
if not NOTEBOOK_DIR.is_dir():  # an installed kit: the wheel ships them inside the package
    NOTEBOOK_DIR = Path(__file__).resolve().parent / "_notebooks"
#: above this share of unanswered LLM calls, a notebook that ran to the end is marked failed
MOSTLY_FAILED = 0.5
#: how a notebook says it needs the demo world (a guard in one of its code cells)
_DEMO_GUARD = re.compile(r"if\s+DATASET\s*!=\s*[\"']demo[\"']\s*:\s*\n\s*raise\b")
#: the kernel's log level: its one warning (unencrypted TCP on the loopback) says nothing useful
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
#: the kernels draw inline whatever ``MPLBACKEND`` says: CI images often set ``Agg``, under which
#: an executed notebook (and its page) would hold no figure at all
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@dataclass
class NotebookRun:
    """What happened when one notebook ran."""

    notebook: str
    seconds: float
    status: str  # "ok", "failed" or "skipped"
    error: str = ""  # what failed, or why it was skipped
    output: Path | None = None
    cpu_seconds: float = float("nan")  # the kernel's and its children's (e.g. a local model)
    llm_calls: float = float("nan")  # from the notebook's recorded session summary, if any
    llm_failed: float = float("nan")  # calls that failed (invalid JSON answers included)
    llm_replay_misses: float = float("nan")


def needs_demo_world(path: Path) -> bool:
    """Does the notebook refuse any dataset but the demo world (``if DATASET != "demo": raise``)?"""
    import nbformat
    nb = nbformat.read(str(path), as_version=4)
    return any(c.cell_type == "code" and _DEMO_GUARD.search(c.source) for c in nb.cells)


def llm_counts(executed: Path) -> dict:
    """The LLM calls an executed notebook recorded with ``record(**session_summary())``:
    ``llm_calls``, ``llm_failed``, ``llm_replay_misses`` and ``unanswered`` (failed calls that
    got no answer at all: failed minus invalid JSON); empty when it recorded none."""
    from .report import read_records
    rec = read_records(executed)
    if "llm_calls" not in rec:
        return {}
    failed = int(rec.get("llm_failed", 0))
    return {"llm_calls": int(rec["llm_calls"]), "llm_failed": failed,
            "llm_replay_misses": int(rec.get("llm_replay_misses", 0)),
            "unanswered": failed - int(rec.get("llm_invalid_json", 0))}


def llm_verdict(counts: dict) -> str:
    """The error of a notebook whose LLM calls mostly got no answer, else "".

    >>> llm_verdict({"llm_calls": 10, "llm_failed": 10, "llm_replay_misses": 0, "unanswered": 10})
    '10 of 10 LLM calls failed (0 replay misses): check that the LLM server can be reached (URL, key)'
    >>> llm_verdict({"llm_calls": 10, "llm_failed": 4, "llm_replay_misses": 0, "unanswered": 4})
    ''
    """
    calls = counts.get("llm_calls", 0)
    if not calls or counts["unanswered"] <= MOSTLY_FAILED * calls:
        return ""
    misses = counts["llm_replay_misses"]
    advice = ("the recording lacks these requests (record them, or replay the file made for "
              "these notebooks)" if 2 * misses >= counts["unanswered"]
              else "check that the LLM server can be reached (URL, key)")
    return f"{counts['unanswered']} of {calls} LLM calls failed ({misses} replay misses): {advice}"


def notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The course notebooks, in order (``00_...`` first)."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def run_notebook(path: Path, output_dir: Path, parameters: dict | None = None,
                 html: bool = False, timeout: int = 900) -> NotebookRun:
    """Execute one notebook into ``output_dir`` (and an HTML page if ``html``); never raises
    for an error inside the notebook: the returned :class:`NotebookRun` says what failed
    (see the module docstring for ``ok``, ``failed`` and ``skipped``)."""
    import papermill as pm

    path = Path(path)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / path.name
    dataset = (parameters or {}).get("DATASET")
    if dataset not in (None, "demo") and needs_demo_world(path):
        out.unlink(missing_ok=True)  # no stale page from an earlier run
        out.with_suffix(".html").unlink(missing_ok=True)
        return NotebookRun(path.name, 0.0, "skipped",
                           f"needs the demo world (not run with DATASET={dataset!r})", None, 0.0)
    t0 = time.perf_counter()
    cpu0 = _children_cpu()
    status, error = "ok", ""
    try:
        with environment(MPLBACKEND=INLINE_BACKEND, **absolute_path_variables()):
            pm.execute_notebook(str(path), str(out), parameters=parameters or {},
                                cwd=str(path.parent), progress_bar=False, kernel_name="python3",
                                execution_timeout=timeout, report_mode=False,
                                language="python", extra_arguments=KERNEL_ARGUMENTS)
    except pm.PapermillExecutionError as e:
        status = "failed"
        error = f"cell {e.exec_count}: {e.ename}: {e.evalue}"
    except Exception as e:  # a kernel that died, a timeout, a notebook that is not JSON
        status = "failed"
        error = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    counts = llm_counts(out) if out.exists() else {}
    if status == "ok" and llm_verdict(counts):
        status, error = "failed", llm_verdict(counts)
    if html and out.exists():
        _write_html(out)
    nan = float("nan")
    return NotebookRun(path.name, seconds, status, error, out if out.exists() else None, cpu,
                       counts.get("llm_calls", nan), counts.get("llm_failed", nan),
                       counts.get("llm_replay_misses", nan))


def _children_cpu() -> float:
    """CPU seconds used so far by the finished child processes of this one (the kernels, and
    what they started and waited for, such as a local model server)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


#: the page template: JupyterLab's look, with no script fetched from the web. Widgets are
#: drawn as static snapshots (:func:`perso_kit.widgets.snapshot_widgets`), so neither the
#: widget manager nor require.js is needed; the notebooks hold no LaTeX (their ``$`` are
#: prices), so MathJax would only garble them; no Mermaid diagrams. Wide tables scroll
#: sideways inside their cell instead of widening the page.
PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
<style type="text/css">
.jp-OutputArea-output, .jp-RenderedMarkdown { overflow-x: auto; min-width: 0; max-width: 100%; }
.jp-OutputArea-child { min-width: 0; }
.jp-RenderedHTMLCommon table { margin-left: 0; }
</style>
{%- endblock html_head_css -%}
"""


def page_html(executed) -> str:
    """The HTML page of an executed notebook (a path or an ``nbformat`` node): JupyterLab's
    look, widgets as static snapshots, wide tables scrolling inside their cell, and no script
    loaded from the web, so the page reads the same offline."""
    import copy

    import nbformat
    from nbconvert import HTMLExporter

    from .widgets import snapshot_widgets

    nb = (copy.deepcopy(executed) if isinstance(executed, nbformat.NotebookNode)
          else nbformat.read(str(executed), as_version=4))
    snapshot_widgets(nb)
    exporter = HTMLExporter(template_name="lab")
    exporter.raw_template = PAGE_TEMPLATE
    body, _ = exporter.from_notebook_node(nb)
    return body


def _write_html(executed: Path) -> Path:
    page = executed.with_suffix(".html")
    page.write_text(page_html(executed), encoding="utf-8")
    return page


def split_names(values: list[str] | str | None) -> list[str]:
    """Notebook names or numbers given as ``01 02``, ``01,02`` or ``"01, 02"`` (any mix).

    >>> split_names(["01,02", "03 ,", "07"])
    ['01', '02', '03', '07']
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [part for v in values for part in re.split(r"[,\s]+", v) if part]


def run_tour(output_dir: str | Path = REPO_DIR / "build" / "tour", parameters: dict | None = None,
             only: list[str] | str | None = None, html: bool = True,
             folder: str | Path = NOTEBOOK_DIR, options: dict | None = None) -> pd.DataFrame:
    """Execute every notebook in order (or those whose name contains one of ``only``).

    ``parameters`` go to every notebook's parameters cell (a notebook ignores the ones it does
    not define). Returns the summary: notebook, wall seconds, CPU seconds of the kernel and
    what it started, status, LLM calls, failed calls and replay misses, error. ``index.html`` in
    ``output_dir`` lists the pages with ``options`` (how the run was asked for; by default the
    parameters and ``only``).
    """
    only = split_names(only)
    paths = notebooks(Path(folder))
    if only:
        paths = [p for p in paths if any(o in p.name for o in only)]
    if not paths:
        raise FileNotFoundError(f"no notebooks to run in {folder}"
                                + (f" matching {only}" if only else ""))
    runs = []
    bar = tqdm(paths, desc="tour", unit="notebook")
    for p in bar:
        bar.set_postfix_str(p.name)
        runs.append(run_notebook(p, Path(output_dir), parameters, html=html))
    summary = pd.DataFrame([{"notebook": r.notebook, "seconds": round(r.seconds, 1),
                             "cpu_seconds": round(r.cpu_seconds, 1), "status": r.status,
                             "llm_calls": r.llm_calls, "llm_failed": r.llm_failed,
                             "llm_replay_misses": r.llm_replay_misses, "error": r.error}
                            for r in runs])
    for c in ("llm_calls", "llm_failed", "llm_replay_misses"):
        summary[c] = summary[c].astype("Int64")  # "<NA>" for a notebook that made no call
    if options is None:
        options = {**(parameters or {}), **({"only": " ".join(only)} if only else {})}
    write_index(Path(output_dir), summary, options)
    return summary


def write_index(output_dir: Path, summary: pd.DataFrame, options: dict) -> Path:
    """Write ``index.html`` (and ``tour.json``, the same facts for programs) in ``output_dir``:
    when the run ended, with which options, and each notebook's status with a link to its page.
    The page also names the run it replaced, if the folder held one."""
    output_dir.mkdir(parents=True, exist_ok=True)
    facts = output_dir / "tour.json"
    replaced = ""
    if facts.exists():
        try:
            old = json.loads(facts.read_text(encoding="utf-8"))
            replaced = f"{old.get('finished', '?')} with options {old.get('options', {})}"
        except ValueError:
            replaced = "an earlier run"
    finished = time.strftime("%Y-%m-%d %H:%M:%S")
    facts.write_text(json.dumps({"finished": finished, "options": options,
                                 "notebooks": summary.astype(object).where(summary.notna(), None)
                                 .to_dict("records")}, default=str, indent=1), encoding="utf-8")
    esc = _html.escape
    rows = []
    for r in summary.itertuples():
        page = output_dir / r.notebook
        link = page.with_suffix(".html") if page.with_suffix(".html").exists() else page
        name = (f'<a href="{esc(link.name)}">{esc(r.notebook)}</a>' if page.exists()
                else esc(r.notebook))
        calls = "" if pd.isna(r.llm_calls) else f"{r.llm_calls} ({r.llm_failed} failed, " \
                                                 f"{r.llm_replay_misses} replay misses)"
        rows.append(f"<tr><td>{name}</td><td>{esc(r.status)}</td><td>{r.seconds}</td>"
                    f"<td>{esc(calls)}</td><td>{esc(r.error)}</td></tr>")
    opts = ", ".join(f"{k}={v}" for k, v in options.items()) or "none (the defaults)"
    body = (f"<!doctype html><meta charset='utf-8'><title>perso-kit tour</title>"
            f"<h1>perso-kit tour</h1><p>Finished {esc(finished)}; options: {esc(opts)}.</p>"
            + (f"<p>These pages replace those of the run of {esc(replaced)}.</p>"
               if replaced else "")
            + "<table border=1 cellpadding=4><tr><th>notebook</th><th>status</th>"
              "<th>seconds</th><th>LLM calls</th><th>error or reason</th></tr>"
            + "".join(rows) + "</table>")
    index = output_dir / "index.html"
    index.write_text(body, encoding="utf-8")
    return index
