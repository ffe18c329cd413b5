"""Run the course headless: execute every notebook in order and keep the results.

``python -m perso_kit tour`` calls :func:`run_tour`: each notebook in ``notebooks/`` is executed
with papermill (parameters such as the dataset pass through to its parameters cell), an executed
copy and an HTML page are written to a build folder, and a summary table says how long each
took and whether it passed. A failing notebook is reported with the cell that failed and the
error; the others still run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .config import REPO_DIR

NOTEBOOK_DIR = REPO_DIR / "notebooks"


@dataclass
class NotebookRun:
    """What happened when one notebook ran."""

    notebook: str
    seconds: float
    status: str  # "ok" or "failed"
    error: str = ""
    output: Path | None = None
    cpu_seconds: float = float("nan")  # the kernel's and its children's (e.g. a local model)


def notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The course notebooks, in order (``00_...`` first)."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def run_notebook(path: Path, output_dir: Path, parameters: dict | None = None,
                 html: bool = False, timeout: int = 900) -> NotebookRun:
    """Execute one notebook into ``output_dir`` (and an HTML page if ``html``); never raises
    for an error inside the notebook: the returned :class:`NotebookRun` says what failed."""
    import papermill as pm

    path = Path(path)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / path.name
    t0 = time.perf_counter()
    cpu0 = _children_cpu()
    status, error = "ok", ""
    try:
        pm.execute_notebook(str(path), str(out), parameters=parameters or {},
                            cwd=str(path.parent), progress_bar=False, kernel_name="python3",
                            execution_timeout=timeout, report_mode=False,
                            language="python")
    except pm.PapermillExecutionError as e:
        status = "failed"
        error = f"cell {e.exec_count}: {e.ename}: {e.evalue}"
    except Exception as e:  # a kernel that died, a timeout, a notebook that is not JSON
        status = "failed"
        error = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    if html and out.exists():
        _write_html(out)
    return NotebookRun(path.name, seconds, status, error, out if out.exists() else None, cpu)


def _children_cpu() -> float:
    """CPU seconds used so far by the finished child processes of this one (the kernels, and
    what they started and waited for, such as a local model server)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _write_html(executed: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(executed), as_version=4))
    page = executed.with_suffix(".html")
    page.write_text(body, encoding="utf-8")
    return page


def run_tour(output_dir: str | Path = REPO_DIR / "build" / "tour", parameters: dict | None = None,
             only: list[str] | None = None, html: bool = True,
             folder: str | Path = NOTEBOOK_DIR) -> pd.DataFrame:
    """Execute every notebook in order (or those whose name contains one of ``only``).

    ``parameters`` go to every notebook's parameters cell (a notebook ignores the ones it does
    not define). Returns the summary: notebook, wall seconds, CPU seconds of the kernel and
    what it started, status, error.
    """
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
    return pd.DataFrame([{"notebook": r.notebook, "seconds": round(r.seconds, 1),
                          "cpu_seconds": round(r.cpu_seconds, 1), "status": r.status,
                          "error": r.error} for r in runs])
