"""Shared fixtures: the demo world, and notebooks executed once per test session."""
from __future__ import annotations

import atexit
import hashlib
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests never reach a real LLM unless a live test asks for one explicitly.
for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT",
            "AZURE_OPENAI_DEPLOYMENT", "OPENAI_API_VERSION", "PERSO_KIT_LLM_BACKEND",
            "PERSO_KIT_LLM_REPLAY", "PERSO_KIT_LLM_MODEL", "PERSO_KIT_LLM_CACHE",
            "PERSO_KIT_LLM_BUDGET_USD", "PERSO_KIT_LLM_TITLES_ONLY", "PERSO_KIT_LLM_PRICE_AS",
            "PERSO_KIT_LLM_TIMEOUT", "PERSO_KIT_EMBED_MODEL", "PERSO_KIT_DATASET"):
    os.environ.pop(var, None)
# Downloads and LLM caches of a test session go to a fresh folder, never the user's cache;
# the folder is removed when the session's process ends.
os.environ["PERSO_KIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="perso-kit-tests-")
atexit.register(shutil.rmtree, os.environ["PERSO_KIT_CACHE_DIR"], ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
PLANTED_KEY = "sk-planted-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


@pytest.fixture(scope="session")
def demo_world():
    from perso_kit.data.demo import make_world
    return make_world(seed=42)


@pytest.fixture(scope="session")
def demo(demo_world):
    return demo_world.dataset


@pytest.fixture(scope="session")
def notebook_runs(tmp_path_factory):
    """Execute a notebook at most once per test run (small parameters); returns its run.

    With several workers (pytest-xdist, ``-n 2``), the workers share one folder of executed
    notebooks: the first worker that needs a notebook runs it while holding a lock on it, and
    any other worker waits for that lock and then reads the stored result.
    """
    from filelock import FileLock

    from perso_kit.config import environment
    from perso_kit.tour import run_notebook

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the folder all workers of this run share
    out_dir = base / "executed"
    out_dir.mkdir(exist_ok=True)
    cache: dict = {}

    def run(name: str, **parameters):
        key = (name, tuple(sorted(parameters.items())))
        if key not in cache:
            slug = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
            stored = out_dir / f"{slug}.pickle"
            with FileLock(f"{stored}.lock"):
                if stored.exists():
                    cache[key] = pickle.loads(stored.read_bytes())
                else:
                    params = {"SMALL": True, **parameters}
                    # A planted key sits in the kernel's environment (the offline backend is
                    # chosen explicitly): test_notebooks.py checks that it reaches no output.
                    with environment(OPENAI_API_KEY=PLANTED_KEY, PERSO_KIT_LLM_BACKEND="offline"):
                        cache[key] = run_notebook(NOTEBOOKS / name, out_dir / slug, params)
                    stored.write_bytes(pickle.dumps(cache[key]))
        return cache[key]

    return run


def _ran_to_the_end(notebook_runs, name: str, **parameters):
    """``notebook_runs(name, ...)``, asserting that the notebook ran to the end."""
    result = notebook_runs(name, **parameters)
    assert result.status == "ok", f"{name} failed: {result.error}"
    return result


@pytest.fixture(scope="session")
def notebook_records(notebook_runs):
    """The records (:func:`perso_kit.report.read_records`) of a notebook executed by
    :func:`notebook_runs`, after checking that it ran to the end."""
    from perso_kit.report import read_records

    def records(name: str, **parameters) -> dict:
        return read_records(_ran_to_the_end(notebook_runs, name, **parameters).output)

    return records


@pytest.fixture(scope="module")
def run(request, notebook_runs):
    """The executed notebook named by the test module's ``NB`` (checked to have run to the end)."""
    return _ran_to_the_end(notebook_runs, request.module.NB)


@pytest.fixture(scope="module")
def rec(run):
    """The records of the test module's notebook (``NB``)."""
    from perso_kit.report import read_records

    return read_records(run.output)


def dataset_from_pairs(pairs, n_items=None):
    """A dataset from (user, item) pairs; items 1..n_items, users 1..max user."""
    import numpy as np
    import pandas as pd

    from perso_kit.data.dataset import make_dataset

    inter = pd.DataFrame(pairs, columns=["user_id", "item_id"])
    n_items = n_items or int(inter["item_id"].max())
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1),
                          "title": [f"item {i}" for i in range(1, n_items + 1)],
                          "genres": [("Drama",)] * n_items})
    return make_dataset("tiny", inter, items)


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` imported as a module (its ``main`` not run)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def movielens_dir() -> Path | None:
    """The folder with real MovieLens files, when PERSO_KIT_DATA_DIR names one."""
    value = os.environ.get("PERSO_KIT_DATA_DIR")
    return Path(value) if value and Path(value).is_dir() else None
