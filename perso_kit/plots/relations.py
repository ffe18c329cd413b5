"""The figure of notebook 06's relations section: what the checks said, and what the links
bought item-kNN (:mod:`perso_kit.roles.relations`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .style import finish, new_figure

#: one colour per status of a checked relation
STATUS_COLORS = {"confirmed": "#2e7d32", "unverifiable": "#9e9e9e", "contradicted": "#c62828",
                 "unknown title": "#ef6c00"}


def relation_checks(counts: pd.DataFrame, table: pd.DataFrame, metric: str = "ndcg@10",
                    title: str | None = None, takeaway: str | None = None, who=None):
    """Two panels. Left: proposed relations per kind, stacked by status (``counts`` from
    :func:`~perso_kit.roles.relations.relation_counts`; the ``all`` row is left out). Right:
    ``metric`` of each model of ``table`` (from :func:`perso_kit.evaluate` with ``ci``: the
    ``<metric>_lo`` and ``<metric>_hi`` columns give the error bars). ``who`` (the client that
    proposed the relations) is stamped on the figure."""
    fig, (left, right) = new_figure(ncols=2, width=5.5, height=3.8)
    kinds = [k for k in counts.index if k != "all"]
    start = np.zeros(len(kinds))
    for status, col in STATUS_COLORS.items():
        vals = counts.reindex(kinds)[status].to_numpy(dtype=float) if status in counts else \
            np.zeros(len(kinds))
        left.barh(kinds, vals, left=start, color=col, label=status)
        start += vals
    left.invert_yaxis()
    finish(left, "Proposed relations, checked against the catalog", "relations proposed", "",
           legend=True)
    models = table["model"].tolist()
    y = table[metric].to_numpy(dtype=float)
    lo, hi = f"{metric}_lo", f"{metric}_hi"
    err = (np.vstack([y - table[lo].to_numpy(dtype=float), table[hi].to_numpy(dtype=float) - y])
           if lo in table and hi in table else None)
    right.errorbar(y, np.arange(len(models)), xerr=err, fmt="o", color="#1f4e79", capsize=4)
    right.set_yticks(np.arange(len(models)), models)
    right.invert_yaxis()
    finish(right, title or f"{metric} with and without the relations (95% intervals)", metric,
           "", takeaway=takeaway, who=who)
    return fig
