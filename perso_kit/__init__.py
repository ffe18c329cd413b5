"""perso-kit: personalization in the age of large language models, as a runnable course.

The notebooks tell the story; this package holds the code they share::

    import perso_kit as pk
    ds = pk.load_dataset("demo")                 # or "ml-100k", "ml-1m", "ml-latest-small"
    split = pk.split.random_per_user(ds, test_fraction=0.25)
    table = pk.evaluate({"Popularity": pk.recommenders.Popularity()}, split, k=10)
"""
from __future__ import annotations

from . import config, metrics, recommenders, split
from .data import Dataset, load_dataset
from .evaluate import evaluate, evaluate_recommendations

__version__ = "0.1.0"


def __getattr__(name: str):
    """Load the heavier parts (``llm``, ``widgets``, ``simulate``, ``roles``, ``plots``) on
    first use, so ``import perso_kit`` stays quick."""
    import importlib

    if name in ("llm", "widgets", "simulate", "roles", "plots", "report", "tour"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'perso_kit' has no attribute {name!r}")


__all__ = ["Dataset", "load_dataset", "evaluate", "evaluate_recommendations", "split",
           "metrics", "recommenders", "config", "__version__"]
