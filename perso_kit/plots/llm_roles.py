"""Figures of the LLM-as-ranker and LLM-as-explainer lessons (notebooks 07 and 08).

>>> import pandas as pd
>>> curve = pd.DataFrame({"top1_rate": [0.5, 0.2], "top3_rate": [0.8, 0.5]}, index=[1, 2])
>>> fig = plot_position_bias({"one presentation": curve}, k=3)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .style import color, finish, new_figure


def plot_position_bias(curves: dict, k: int = 3, takeaway: str | None = None):
    """Rate at which the known-relevant candidate is ranked first (solid) and in the top ``k``
    (dashed), by the position it was shown at; one colour per curve
    (``{label: position_curve(...)}``)."""
    fig, ax = new_figure(width=7)
    palette = ["#e377c2", "#1f77b4", "#2ca02c", "#ff7f0e"]
    for n, (label, curve) in enumerate(curves.items()):
        c = palette[n % len(palette)]
        ax.plot(curve.index, curve["top1_rate"], "-o", color=c, ms=3, label=f"{label}: top-1")
        ax.plot(curve.index, curve[f"top{k}_rate"], "--", color=c, label=f"{label}: top-{k}")
    ax.set_ylim(-0.02, 1.02)
    return finish(ax, "Does the shown position change the answer?",
                  "position the relevant candidate was shown at (1 = first)",
                  "share of probes ranked first / in top-k", takeaway)


def plot_popularity_promoted(table: pd.DataFrame, column: str = "avg_popularity",
                             takeaway: str | None = None):
    """Average training popularity of the top-k each model recommends (one bar per row of an
    :func:`~perso_kit.roles.ranker.evaluate_reranking` table)."""
    fig, ax = new_figure(width=7)
    names = list(table.index)
    ax.barh(names, table[column], color=[color(n, "#e377c2") for n in names])
    ax.invert_yaxis()
    return finish(ax, "Popularity of what each ranker promotes",
                  "mean number of training interactions of recommended items", "ranker",
                  takeaway)


def plot_cost_quality(table: pd.DataFrame, metric: str = "ndcg@10", takeaway: str | None = None):
    """Quality against tokens per user, one point per model."""
    fig, ax = new_figure()
    for n, (name, row) in enumerate(table.iterrows()):
        ax.scatter(row["tokens_per_user"], row[metric], s=50, color=color(name, "#e377c2"))
        short = name.replace("LLM reranker (", "").rstrip(")") if name.startswith("LLM") else name
        ax.annotate(short, (row["tokens_per_user"], row[metric]), fontsize=8,
                    xytext=(6, 4 + 11 * (n % 3)), textcoords="offset points",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5})
    ax.margins(x=0.15, y=0.2)
    return finish(ax, "What each prompt costs and buys", "tokens per user", metric, takeaway)


def plot_faithfulness(summary: pd.DataFrame, takeaway: str | None = None):
    """Grouped bars of the faithfulness shares per explanation source (a
    :func:`~perso_kit.roles.explainer.faithfulness_summary` table)."""
    cols = [c for c in ("history_ok", "attributes_ok", "faithful", "cites_top_driver")
            if c in summary]
    fig, ax = new_figure(width=7)
    x = np.arange(len(cols))
    w = 0.8 / max(len(summary), 1)
    for n, (src, row) in enumerate(summary.iterrows()):
        ax.bar(x + n * w, [row[c] for c in cols], w, label=str(src),
               color=["#7f7f7f", "#e377c2", "#1f77b4"][n % 3])
    ax.set_xticks(x + w * (len(summary) - 1) / 2, cols)
    ax.set_ylim(0, 1.05)
    return finish(ax, "How faithful are the explanations?", "check",
                  "share of explanations passing", takeaway)
