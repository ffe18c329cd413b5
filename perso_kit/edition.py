"""The student edition: copies of the notebooks without the exercises' solutions or outputs.

The notebooks in ``notebooks/`` are the teacher edition. Solutions are marked in two ways, and
:func:`student_notebook` removes both:

- a **code cell tagged** ``solution`` (the cells that run each exercise's answer) is dropped;
- a **markdown block** ``<details><summary>Solution</summary> ... </details>`` (the written answer
  under each question) is replaced by one line saying the solution is in the teacher edition.

Every output and execution count is cleared, so a student copy shows nothing a run computed.
The check cells (``answer = None`` then ``check(answer, ...)``, see :mod:`perso_kit.exercises`)
stay: they compare the student's answer with the value the run recomputes.

Both editions, when copied out of the kit (``python -m perso_kit notebooks DEST`` for the
teacher's, ``student-edition DEST`` for the students'), take the course's documents along: the
syllabus and glossary go to ``DEST/docs/`` and the notebooks' links to them
(``../docs/GLOSSARY.md#...`` in the repository) are pointed there, so they work wherever the
copy is opened (:func:`copy_docs`, :func:`docs_beside`).

Command line: ``python -m perso_kit student-edition DEST``.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

#: the tag of a code cell that holds an exercise's solution
SOLUTION_TAG = "solution"
#: a written solution: a <details> block whose summary starts with "Solution" (or "Answer")
SOLUTION_BLOCK = re.compile(
    r"<details>\s*<summary>\s*(?:solutions?|answers?)\b.*?</summary>.*?</details>",
    re.IGNORECASE | re.DOTALL)
#: what replaces a written solution in the student edition
PLACEHOLDER = "*(The solution is in the teacher edition.)*"
#: how a notebook in the repository links to the course's documents, and how a copy does
DOCS_LINK, COPIED_DOCS_LINK = "](../docs/", "](docs/"


def docs_dir() -> Path:
    """The folder of the course's documents (syllabus, glossary): ``docs/`` of a checkout, or
    the copy a wheel ships inside the package."""
    from .config import REPO_DIR

    here = REPO_DIR / "docs"
    return here if here.is_dir() else Path(__file__).resolve().parent / "_docs"


def docs_beside(text: str) -> str:
    """A notebook's text with its links to ``../docs/`` pointed at ``docs/`` beside it.

    >>> docs_beside("see [Borda count](../docs/GLOSSARY.md#borda-count)")
    'see [Borda count](docs/GLOSSARY.md#borda-count)'
    """
    return text.replace(DOCS_LINK, COPIED_DOCS_LINK)


def copy_docs(dest: str | Path) -> list[Path]:
    """Copy the course's documents into ``dest/docs/`` (the links of copied notebooks point
    there); returns the files written."""
    import shutil

    target = Path(dest) / "docs"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for f in sorted(docs_dir().glob("*.md")):
        shutil.copyfile(f, target / f.name)
        written.append(target / f.name)
    return written


def is_solution_cell(cell) -> bool:
    """Whether ``cell`` is an exercise's solution (tagged ``solution``)."""
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def strip_solution_text(markdown: str) -> str:
    """``markdown`` with every ``<details><summary>Solution`` block replaced by a placeholder.

    >>> strip_solution_text("1. Why?\\n\\n<details><summary>Solution</summary>\\nBecause.\\n"
    ...                     "</details>\\n\\n2. How?")
    '1. Why?\\n\\n*(The solution is in the teacher edition.)*\\n\\n2. How?'
    """
    return SOLUTION_BLOCK.sub(PLACEHOLDER, markdown)


def student_notebook(nb):
    """A copy of the notebook ``nb`` (an ``nbformat`` node) for students: solution cells
    dropped, written solutions replaced, outputs and execution counts cleared. Cell ids and
    tags of the kept cells stay as they were."""
    out = nbformat.from_dict(nb)
    cells = []
    for cell in out.cells:
        if is_solution_cell(cell):
            continue
        if cell.cell_type == "markdown":
            cell.source = strip_solution_text(cell.source)
        elif cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        cells.append(cell)
    out.cells = cells
    return out


def write_student_edition(dest: str | Path, source: str | Path | None = None,
                          force: bool = False) -> list[Path]:
    """Write the student edition of every notebook in ``source`` (default: the course's
    notebooks) into the folder ``dest`` (created if missing). A notebook already in ``dest``
    is kept, with a ``FileExistsError`` naming it, unless ``force``. Returns the paths written.
    """
    from .tour import NOTEBOOK_DIR, notebooks

    source = Path(source or NOTEBOOK_DIR)
    dest = Path(dest)
    paths = notebooks(source)
    if not paths:
        raise FileNotFoundError(f"no notebooks in {source}")
    if dest.resolve() == source.resolve():
        raise ValueError(f"{dest} holds the teacher edition: choose another folder")
    there = [p.name for p in paths if (dest / p.name).exists()]
    if there and not force:
        raise FileExistsError(f"{dest} already holds {', '.join(there)}; choose another folder, "
                              "or add --force to overwrite them")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for p in paths:
        nb = student_notebook(nbformat.read(p, as_version=4))
        (dest / p.name).write_text(docs_beside(nbformat.writes(nb)) + "\n", encoding="utf-8")
        written.append(dest / p.name)
    copy_docs(dest)
    return written
