"""Figures of the cost lesson (notebook 11): the quality/cost frontier and cost at scale.

>>> import pandas as pd
>>> t = pd.DataFrame({"ndcg@10": [0.1, 0.2], "cost_per_million_users_usd": [0.0, 300.0],
...                   "on_front": [True, True]}, index=["Popularity", "LLM reranker"])
>>> fig = plot_frontier(t, "ndcg@10", "cost_per_million_users_usd")
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .style import color, finish, new_figure


def plot_frontier(table: pd.DataFrame, quality: str, cost: str, note: str = "",
                  takeaway: str | None = None, xlabel: str | None = None):
    """Quality against cost, one point per method (rows of a
    :func:`~perso_kit.costs.frontier_table`); points on the Pareto front are joined by a line.
    The x axis is symmetric-log so that zero-cost classic methods show beside paid ones.
    ``note`` is added to the title (e.g. where the quality numbers come from)."""
    fig, ax = new_figure(width=7.5, height=4.5)
    for n, (name, row) in enumerate(table.iterrows()):
        ax.scatter(row[cost], row[quality], s=60, color=color(str(name), "#e377c2"),
                   edgecolor="black" if row.get("on_front", False) else "none", zorder=3)
        ax.annotate(str(name), (row[cost], row[quality]), fontsize=8,   # alternate: less overlap
                    xytext=(5, 5 if n % 2 == 0 else -11), textcoords="offset points")
    if "on_front" in table:
        front = table[table["on_front"]].sort_values(cost)
        ax.plot(front[cost], front[quality], "--", color="grey", lw=1, zorder=2,
                label="Pareto front")
    positive = table[cost][table[cost] > 0]
    ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
    title = "Quality against cost" + (f" ({note})" if note else "")
    return finish(ax, title, xlabel or cost.replace("_", " "), quality, takeaway)


def plot_cost_at_scale(grid: pd.DataFrame, n_users: int = 1_000_000,
                       takeaway: str | None = None):
    """Dollars to serve ``n_users`` (log scale): one group of bars per model, one bar per method
    (a :func:`~perso_kit.costs.cost_grid` table, methods x models). Zero-cost methods are not
    drawn (a log axis has no zero)."""
    grid = grid.loc[(grid > 0).any(axis=1)]
    fig, ax = new_figure(width=8.5, height=4.5)
    x = np.arange(grid.shape[1])
    w = 0.8 / max(len(grid), 1)
    colors = [color(str(m)) for m in grid.index]
    if len(set(colors)) < len(colors) or None in colors:   # shared model colour: tell apart
        colors = [plt.get_cmap("tab10")(n % 10) for n in range(len(grid))]
    for n, (method, row) in enumerate(grid.iterrows()):
        ax.bar(x + n * w - 0.4 + w / 2, row.to_numpy(), w, label=str(method), color=colors[n])
    ax.set_yscale("log")
    ax.set_ylim(top=float(np.nanmax(grid.to_numpy())) * 30)   # room for the legend
    ax.set_xticks(x)
    ax.set_xticklabels(grid.columns, rotation=35, ha="right", fontsize=8)
    return finish(ax, f"What the prompts would cost for {n_users:,} users at table prices",
                  "model (price table)", "USD (log scale)", takeaway)
