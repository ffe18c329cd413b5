"""Small helpers notebooks use to report what they measured.

:func:`record` shows a number in the notebook *and* stores it in the notebook's output under a
machine-readable type, so the test suite (and ``python -m perso_kit tour``) can read the key
numbers of an executed notebook back and check them::

    record(ndcg_ease=0.47, ndcg_popularity=0.29)

:func:`read_records` does the reading from an executed ``.ipynb``.

Tables read as text: the kit keeps lists of values (an item's genres) as tuples, which pandas
would print as ``(Adventure,)`` or ``(Romance, Drama)``. Imported in Jupyter, this module asks
IPython to show every DataFrame through :func:`sequences_as_text`, so such cells read
``Adventure`` and ``Romance, Drama``. Only what is displayed changes: the DataFrames keep their
tuples, and every prompt is built from the data, never from a display.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

MIME = "application/vnd.perso-kit.record+json"
_RECORDED: dict = {}  # what this kernel recorded, for tables that set it beside a recording


def _plain(value):
    """``value`` as plain JSON: numpy scalars as Python numbers, containers as dicts and lists,
    and NaN or infinity as the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no such
    numbers; a kernel would otherwise warn when it sends them)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else str(value)
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


# ------------------------------------------------------------------ tables that read as text
def sequences_as_text(df):
    """A copy of ``df`` for display whose tuple, list and set cells read ``"A, B"`` (the
    frame itself is returned when it holds none).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"title": ["Alpha"], "genres": [("Romance", "Drama")]})
    >>> sequences_as_text(df)["genres"].tolist(), df["genres"].tolist()
    (['Romance, Drama'], [('Romance', 'Drama')])
    """
    import pandas as pd

    def text(value):
        return ", ".join(map(str, value)) if isinstance(value, (tuple, list, set, frozenset)) \
            else value

    columns = [c for c, kind in df.dtypes.items() if kind == object
               and df[c].map(lambda v: isinstance(v, (tuple, list, set, frozenset))).any()]
    if not columns:
        return df
    out = df.copy()
    for c in columns:
        out[c] = out[c].map(text)
    return out if isinstance(out, pd.DataFrame) else df


def show_sequences_as_text(shell=None) -> bool:
    """Make IPython display every DataFrame through :func:`sequences_as_text` (HTML and plain
    text). ``shell`` defaults to the running IPython; returns False when there is none.
    Importing this module in Jupyter calls it."""
    import pandas as pd

    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(pd.DataFrame, lambda df: sequences_as_text(df)._repr_html_())
    formatters["text/plain"].for_type(
        pd.DataFrame, lambda df, p, cycle: p.text(repr(sequences_as_text(df))))
    return True


show_sequences_as_text()
