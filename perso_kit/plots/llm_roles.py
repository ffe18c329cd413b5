"""Figures of the LLM-as-ranker and LLM-as-explainer lessons (notebooks 07 and 08).

Every figure of LLM results takes ``who`` (an LLM client, a call log or a label) and stamps it
on the figure (:func:`~perso_kit.plots.style.finish`), so a figure lifted onto a slide still
says who answered: a language model, the offline stand-in, or a planted test model.

>>> import pandas as pd
>>> curve = pd.DataFrame({"top1_rate": [0.5, 0.2], "top3_rate": [0.8, 0.5],
...                       "mean_rank": [2.0, 3.5], "within_user_se": [0.3, 0.4]}, index=[1, 2])
>>> fig = plot_position_bias({"one presentation": curve}, who="offline")
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .style import color, finish, new_figure

_PALETTE = ["#e377c2", "#1f77b4", "#2ca02c", "#ff7f0e", "#7f7f7f", "#9467bd"]


def plot_position_bias(curves: dict, k: int = 3, takeaway: str | None = None, who=None,
                       metric: str = "mean_rank", title: str | None = None):
    """How the position a known-relevant candidate was shown at changes its rank; one colour
    per curve (``{label: position_curve(...)}``).

    ``metric="mean_rank"`` (default): the mean rank it was given, with a 95% band (+- 1.96
    within-user standard errors, ``within_user_se``: the uncertainty of the differences
    between positions, see :func:`~perso_kit.roles.ranker.position_curve`), and a dotted
    diagonal where a ranker that simply follows the shown order would lie; an order-blind
    ranker gives a flat line.
    ``metric="rates"``: the share of probes ranked first (solid) and in the top ``k``
    (dashed). ``who`` is stamped on the figure.
    """
    if metric not in ("mean_rank", "rates"):
        raise ValueError(f"metric must be 'mean_rank' or 'rates', got {metric!r}")
    fig, ax = new_figure(width=7)
    if metric == "rates":
        for n, (label, curve) in enumerate(curves.items()):
            c = _PALETTE[n % len(_PALETTE)]
            ax.plot(curve.index, curve["top1_rate"], "-o", color=c, ms=3,
                    label=f"{label}: top-1")
            ax.plot(curve.index, curve[f"top{k}_rate"], "--", color=c, label=f"{label}: top-{k}")
        ax.set_ylim(-0.02, 1.02)
        return finish(ax, title or "Does the shown position change the answer?",
                      "position the relevant candidate was shown at (1 = first)",
                      "share of probes ranked first / in top-k", takeaway, who=who)
    top = max(float(curve.index.max()) for curve in curves.values())
    ax.plot([1, top], [1, top], ":", color="0.5", lw=1, label="rank = position shown")
    for n, (label, curve) in enumerate(curves.items()):
        c = _PALETTE[n % len(_PALETTE)]
        x, y = curve.index.to_numpy(float), curve["mean_rank"].to_numpy(float)
        ax.plot(x, y, "-o", color=c, ms=3, label=label)
        se_col = "within_user_se" if "within_user_se" in curve else "mean_rank_se"
        if se_col in curve:
            se = np.nan_to_num(curve[se_col].to_numpy(float))
            ax.fill_between(x, y - 1.96 * se, y + 1.96 * se, color=c, alpha=0.18, lw=0)
    return finish(ax, title or "Does the shown position change the rank it gets?",
                  "position the relevant candidate was shown at (1 = first)",
                  "mean rank given (1 = first); 95% band within users", takeaway,
                  who=who)


def plot_popularity_promoted(table: pd.DataFrame, column: str = "avg_popularity",
                             takeaway: str | None = None, low: str | None = None,
                             high: str | None = None, reference: float | None = None,
                             xlabel: str = "mean number of training interactions of "
                                           "recommended items",
                             title: str = "Popularity of what each ranker promotes", who=None):
    """One horizontal bar per row of ``table`` (e.g. an
    :func:`~perso_kit.roles.ranker.evaluate_reranking` table): ``column``, with error bars
    from the ``low``/``high`` columns when given, and a vertical line at ``reference`` (e.g.
    0 for a difference). ``who`` is stamped on the figure."""
    fig, ax = new_figure(width=7)
    names = list(table.index)
    values = table[column].to_numpy(float)
    err = None
    if low is not None and high is not None:
        err = np.vstack([values - table[low].to_numpy(float),
                         table[high].to_numpy(float) - values])
    ax.barh(names, values, xerr=err, capsize=3, color=[color(n, "#e377c2") for n in names])
    if reference is not None:
        ax.axvline(reference, color="0.3", lw=1)
    ax.invert_yaxis()
    return finish(ax, title, xlabel, "ranker", takeaway, who=who)


def plot_cost_quality(table: pd.DataFrame, metric: str = "ndcg@10", takeaway: str | None = None,
                      who=None):
    """Quality against tokens per user, one point per model; with ``<metric>_lo``/``_hi``
    columns (``evaluate_reranking(..., ci=0.95)``), vertical intervals. ``who`` is stamped
    on the figure."""
    fig, ax = new_figure()
    for n, (name, row) in enumerate(table.iterrows()):
        c = color(name, "#e377c2")
        if f"{metric}_lo" in table:
            ax.vlines(row["tokens_per_user"], row[f"{metric}_lo"], row[f"{metric}_hi"],
                      color=c, lw=1, alpha=0.6)
        ax.scatter(row["tokens_per_user"], row[metric], s=50, color=c)
        short = name.replace("LLM reranker (", "").rstrip(")") if name.startswith("LLM") else name
        ax.annotate(short, (row["tokens_per_user"], row[metric]), fontsize=8,
                    xytext=(6, 4 + 11 * (n % 3)), textcoords="offset points",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5})
    ax.margins(x=0.15, y=0.2)
    return finish(ax, "What each prompt costs and buys", "tokens per user", metric, takeaway,
                  who=who)


def plot_faithfulness(summary: pd.DataFrame, takeaway: str | None = None, who=None):
    """Grouped bars of the faithfulness shares per explanation source (a
    :func:`~perso_kit.roles.explainer.faithfulness_summary` table): citations in the history,
    attributes true of the item, claims of a shared attribute true of the cited films, all
    three (``faithful``), and citing the top kNN driver. ``who`` (the LLM client or a label)
    is stamped on the figure: it says who wrote the LLM explanations."""
    cols = [c for c in ("history_ok", "attributes_ok", "relation_ok", "faithful",
                        "cites_top_driver") if c in summary]
    fig, ax = new_figure(width=7.5)
    x = np.arange(len(cols))
    w = 0.8 / max(len(summary), 1)
    for n, (src, row) in enumerate(summary.iterrows()):
        ax.bar(x + n * w, [row[c] for c in cols], w, label=str(src),
               color=["#7f7f7f", "#e377c2", "#1f77b4"][n % 3])
    ax.set_xticks(x + w * (len(summary) - 1) / 2, cols)
    ax.set_ylim(0, 1.05)
    return finish(ax, "How faithful are the explanations?", "check",
                  "share of explanations passing", takeaway, who=who)


def plot_llm_diversity_tradeoff(curves: dict, who, metric: str = "ndcg@10",
                                diversity: str = "ild@10", title: str | None = None,
                                takeaway: str | None = None):
    """The accuracy-diversity trade-off of MMR over an LLM's ranking and over its retriever's
    order of the same candidates (:func:`~perso_kit.plots.classic.plot_diversity_tradeoff`);
    ``who`` answered the LLM's ranking and is stamped on the figure (required)."""
    from .classic import plot_diversity_tradeoff

    if who is None:
        raise ValueError("say who answered the LLM's ranking: pass who= (an LLM client or a "
                         "label)")
    return plot_diversity_tradeoff(curves, metric, diversity,
                                   title=title or "Accuracy against diversity, same candidates",
                                   takeaway=takeaway, who=who)
