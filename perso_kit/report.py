"""Small helpers notebooks use to report what they measured.

:func:`record` shows a number in the notebook *and* stores it in the notebook's output under a
machine-readable type, so the test suite (and ``python -m perso_kit tour``) can read the key
numbers of an executed notebook back and check them::

    record(ndcg_ease=0.47, ndcg_popularity=0.29)

:func:`read_records` does the reading from an executed ``.ipynb``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MIME = "application/vnd.perso-kit.record+json"
_RECORDED: dict = {}  # what this kernel recorded, for tables that set it beside a recording


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value


def record(**values) -> None:
    """Show and store key numbers of a notebook (names are keyword arguments).

    >>> record(users=1000)        # in a notebook: shows "users = 1000"  # doctest: +SKIP
    """
    from IPython.display import display

    values = {k: _plain(v) for k, v in values.items()}
    _RECORDED.update(values)
    text = "\n".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                     for k, v in values.items())
    display({MIME: values, "text/plain": text}, raw=True)


def recorded() -> dict:
    """Every value :func:`record` stored in this kernel so far (later values win)."""
    return dict(_RECORDED)


def read_records(path: str | Path) -> dict:
    """All values :func:`record` stored in an executed notebook, merged in cell order."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    out: dict = {}
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if MIME in data:
                out.update(data[MIME])
    return out
