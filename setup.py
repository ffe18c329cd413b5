"""Build step that puts the course's shipped files into the wheel (the rest is in pyproject.toml).

The repository keeps these files where the course and its tests use them, at the top level; an
installed kit finds them inside the package:

- ``data/demo_vocabulary.json``, ``data/llm_prices.csv``, ``data/agent_tasks.json``,
  ``data/recordings/`` and ``data/benchmarks/*.json`` (measured tables a notebook shows) go to
  ``perso_kit/_data/`` (where ``perso_kit.config.SHIPPED_DATA_DIR`` looks when no checkout is
  beside the package);
- the notebooks ``notebooks/NN_*.ipynb`` go to ``perso_kit/_notebooks/`` (where
  ``perso_kit.tour.NOTEBOOK_DIR`` looks; ``python -m perso_kit notebooks DEST`` copies them out);
- the syllabus and glossary ``docs/*.md`` go to ``perso_kit/_docs/`` (copied out beside the
  notebooks, see ``perso_kit.edition``).

Only the files named here are shipped: ``data/cache/`` (downloads, the LLM cache) never is. An
editable install (``pip install -e .``) copies nothing: a checkout reads them in place.
"""
from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent

#: (folder in the repository, patterns inside it, folder inside the package)
SHIPPED = [
    ("data", ["demo_vocabulary.json", "llm_prices.csv", "agent_tasks.json", "recordings/*.json",
              "recordings/*.sqlite", "benchmarks/*.json"], "_data"),
    ("notebooks", ["[0-9][0-9]_*.ipynb"], "_notebooks"),
    ("docs", ["*.md"], "_docs"),
]


def shipped_files() -> list[tuple[Path, Path]]:
    """(source file, its path inside the package) for every shipped file."""
    files = []
    for folder, patterns, dest in SHIPPED:
        for pattern in patterns:
            for f in sorted((HERE / folder).glob(pattern)):
                if f.is_file():
                    files.append((f, Path(dest) / f.relative_to(HERE / folder)))
    return files


class BuildPyWithCourseFiles(build_py):
    """``build_py`` that also copies the shipped data and notebooks into the package."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for source, inside in shipped_files():
            target = Path(self.build_lib) / "perso_kit" / inside
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target))


setup(cmdclass={"build_py": BuildPyWithCourseFiles})
