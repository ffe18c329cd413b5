"""The student edition: no solution survives (cells tagged ``solution``, written ``<details>``
solutions), no output survives, the rest is kept as it was, and the student notebooks still
run."""
from __future__ import annotations

import ast
import re

import nbformat
import pytest

from perso_kit.__main__ import main
from perso_kit.edition import (PLACEHOLDER, is_solution_cell, strip_solution_text,
                               student_notebook, write_student_edition)
from perso_kit.tour import NOTEBOOK_DIR, notebooks, run_notebook

TEACHER = notebooks(NOTEBOOK_DIR)


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    dest = tmp_path_factory.mktemp("student")
    assert main(["student-edition", str(dest)]) == 0
    return dest


def _toy():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("1. Why?\n\n<details><summary>Solution</summary>\n\nThe "
                                      "secret answer.\n</details>\n\n2. How?\n\n<details>"
                                      "<summary>Solutions</summary>Also secret.</details>"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("secret = x + 41", metadata={"tags": ["solution"]}),
        nbformat.v4.new_markdown_cell("<details><summary>More</summary>kept</details>"),
    ]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[1].execution_count = 3
    return nb


def test_a_toy_notebook_loses_its_solutions_and_outputs_only():
    nb = _toy()
    ids = [c.id for c in nb.cells]
    out = student_notebook(nb)
    assert [c.id for c in out.cells] == [ids[0], ids[1], ids[3]]
    assert out.cells[0].source == f"1. Why?\n\n{PLACEHOLDER}\n\n2. How?\n\n{PLACEHOLDER}"
    assert out.cells[1].source == "x = 1" and out.cells[1].outputs == []
    assert out.cells[1].execution_count is None
    assert out.cells[2].source == "<details><summary>More</summary>kept</details>"  # not an answer
    assert len(nb.cells) == 4 and nb.cells[1].outputs      # the teacher's copy is untouched


def test_stripping_a_notebook_without_solutions_changes_nothing():
    assert strip_solution_text("no answers here") == "no answers here"


def _solution_lines(nb) -> set[str]:
    """Lines only the solutions hold: every line of a solution cell and of a written solution
    that the rest of the notebook does not also hold (e.g. an ``import`` both use), ignoring
    lines too short to identify."""
    solution, rest = set(), set()
    for c in nb.cells:
        text = c.source
        if c.cell_type == "markdown":
            blocks = re.findall(r"<details>\s*<summary>\s*Solutions?.*?</details>", text, re.S)
            for b in blocks:
                solution |= _lines(re.sub(r"</?details>|<summary>.*?</summary>", "", b))
                text = text.replace(b, "")
            rest |= _lines(text)
        elif is_solution_cell(c):
            solution |= _lines(text)
        else:
            rest |= _lines(text)
    return solution - rest


def _lines(text: str) -> set[str]:
    return {s for s in (line.strip() for line in text.splitlines()) if len(s) >= 12}


@pytest.mark.parametrize("path", TEACHER, ids=lambda p: p.name[:2])
def test_no_solution_text_survives(path, edition):
    teacher = nbformat.read(path, as_version=4)
    student = nbformat.read(edition / path.name, as_version=4)
    secret = _solution_lines(teacher)
    if path.name[:2] != "00":
        assert any(is_solution_cell(c) for c in teacher.cells), "the teacher edition has them"
    assert secret, f"{path.name}: no solution text found to check against"
    kept = "\n".join(c.source for c in student.cells)
    survived = sorted(secret & _lines(kept))
    assert not survived, f"{path.name}: solution text in the student edition: {survived[:3]}"
    assert not any(is_solution_cell(c) for c in student.cells)
    assert "<summary>Solution" not in kept and PLACEHOLDER in kept
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in student.cells if c.cell_type == "code")
    # everything else is kept, in order, with its id
    rest = [c.id for c in teacher.cells if not is_solution_cell(c)]
    assert [c.id for c in student.cells] == rest


def test_the_survivor_check_sees_planted_solution_text():
    secret = _solution_lines(_toy())
    assert secret == {"The secret answer.", "secret = x + 41", "Also secret."}
    untagged = _toy()
    untagged.cells[2].metadata["tags"] = []                      # a solution that lost its tag
    untagged.cells[0].source = untagged.cells[0].source.replace("<details>", "<div>", 1)
    leaked = "\n".join(c.source for c in student_notebook(untagged).cells)
    assert secret & _lines(leaked) == {"The secret answer.", "secret = x + 41"}
    clean = "\n".join(c.source for c in student_notebook(_toy()).cells)
    assert not secret & _lines(clean)


def _names(source: str) -> tuple[set[str], set[str]]:
    """Names a code cell binds and names it reads (magics and shell lines left out)."""
    code = "\n".join(line[:len(line) - len(line.lstrip())] + "pass"  # keeps the indentation
                     if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())
    bound, read = set(), set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store) else read).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return bound, read


@pytest.mark.parametrize("path", TEACHER, ids=lambda p: p.name[:2])
def test_no_kept_cell_reads_a_name_only_a_solution_defines(path):
    """The static half of "every student notebook still runs", for every notebook: a kept cell
    that read a variable only a solution cell makes would fail in the student edition."""
    nb = nbformat.read(path, as_version=4)
    kept_names, solution_only, broken = set(), set(), []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        bound, read = _names(c.source)
        if is_solution_cell(c):
            solution_only |= bound - kept_names
        else:
            if (read & solution_only) - bound:
                broken.append((c.id, sorted((read & solution_only) - bound)))
            kept_names |= bound
    assert not broken, f"{path.name}: kept cells read names only solutions define: {broken}"


def test_the_static_check_sees_a_planted_dependency():
    nb = _toy()
    nb.cells.append(nbformat.v4.new_code_cell("print(secret)"))
    bound, read = _names(nb.cells[-1].source)
    assert "secret" in read and "secret" in _names(nb.cells[2].source)[0]


def test_the_command_refuses_a_folder_that_holds_notebooks(edition, capsys):
    assert main(["student-edition", str(edition)]) == 2
    assert "add --force" in capsys.readouterr().err
    assert main(["student-edition", str(edition), "--force"]) == 0
    with pytest.raises(ValueError, match="teacher edition"):
        write_student_edition(NOTEBOOK_DIR, force=True)


def test_the_glossary_and_syllabus_come_along_and_every_link_resolves(edition):
    links = [m for nb in edition.glob("*.ipynb")
             for m in re.findall(r"\]\(([^)#\s]*docs/[^)#\s]+)", nb.read_text(encoding="utf-8"))]
    assert len(links) >= 20 and not [m for m in links if m.startswith("../")]
    assert {(edition / m).name for m in links} == {"GLOSSARY.md", "SYLLABUS.md"}
    assert all((edition / m).is_file() for m in links)


#: the student copies executed at SMALL: the notebook without solutions (00), a classic one and
#: an LLM one whose solution cells sit between kept cells (01, 08). The other notebooks are
#: covered by the static check above: their solution cells only add names no kept cell reads.
EXECUTED = ("00", "01", "08")


@pytest.mark.notebook
@pytest.mark.parametrize("number", EXECUTED)
def test_student_notebooks_run(number, edition, tmp_path):
    from perso_kit.config import environment

    path = next(p for p in notebooks(edition) if p.name.startswith(number))
    with environment(PERSO_KIT_LLM_BACKEND="offline"):
        run = run_notebook(path, tmp_path, {"SMALL": True})
    assert run.status == "ok", run.error
    executed = nbformat.read(run.output, as_version=4)
    checks = [c for c in executed.cells if c.cell_type == "code" and "check(answer" in c.source]
    assert checks and all("no answer yet" in "".join(o.get("text", "") for o in c.outputs)
                          + str([o.get("data", {}) for o in c.outputs]) for c in checks)
