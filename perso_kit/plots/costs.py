"""Figures of the cost lesson (notebook 12): the quality/cost frontier and cost at scale.

>>> import pandas as pd
>>> t = pd.DataFrame({"ndcg@10": [0.1, 0.2], "cost_per_million_users_usd": [0.0, 300.0],
...                   "on_front": [True, True]}, index=["Popularity", "LLM reranker"])
>>> fig = plot_frontier(t, "ndcg@10", "cost_per_million_users_usd", who="offline")
>>> [x.get_text() for x in fig.texts]
['offline stand-in, not an LLM']
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .style import color, finish, new_figure


def plot_frontier(table: pd.DataFrame, quality: str, cost: str, note: str = "",
                  takeaway: str | None = None, xlabel: str | None = None,
                  ylabel: str | None = None, who=None):
    """Quality against cost, one point per method (rows of a
    :func:`~perso_kit.costs.frontier_table`); points on the Pareto front are joined by a line.
    The x axis is symmetric-log so that zero-cost classic methods show beside paid ones.

    When the table has ``<quality>_lo`` and ``<quality>_hi`` columns (``frontier_table(...,
    intervals=...)``), each point gets a vertical error bar from ``lo`` to ``hi``: two methods
    whose bars overlap may not differ at all. ``note`` is added to the title (e.g. where the
    quality numbers come from); ``who`` (an LLM client, a call log or a label) is stamped on the
    figure: it says who produced the quality of the LLM points.
    """
    from matplotlib.transforms import offset_copy

    fig, ax = new_figure(width=7.5, height=4.5)
    lo, hi = f"{quality}_lo", f"{quality}_hi"
    bars = lo in table.columns and hi in table.columns
    # methods at the same cost (the zero-cost classic ones) are spread sideways by a few points
    same = table.groupby(cost, sort=False).cumcount()
    size = table.groupby(cost, sort=False)[cost].transform("size")
    for n, (name, row) in enumerate(table.iterrows()):
        c = color(str(name), "#e377c2")
        dx = 9.0 * (same.iloc[n] - (size.iloc[n] - 1) / 2) if bars else 0.0
        shifted = offset_copy(ax.transData, fig=fig, x=dx, y=0, units="points")
        if bars:
            ax.errorbar(row[cost], row[quality],
                        yerr=[[row[quality] - row[lo]], [row[hi] - row[quality]]],
                        fmt="none", ecolor=c, elinewidth=1.2, capsize=3, alpha=0.8, zorder=2,
                        transform=shifted)
        ax.scatter(row[cost], row[quality], s=60, color=c, transform=shifted,
                   edgecolor="black" if row.get("on_front", False) else "none", zorder=3)
        ax.annotate(str(name), (row[cost], row[quality]), fontsize=8,   # alternate: less overlap
                    xytext=(dx + 6, 5 if n % 2 == 0 else -11), textcoords="offset points")
    # the shifted artists do not count in the axes' limits: give them the points and bars
    ys = [table[quality]] + ([table[lo], table[hi]] if bars else [])
    ax.update_datalim(np.column_stack([np.tile(table[cost].to_numpy(float), len(ys)),
                                       np.concatenate([y.to_numpy(float) for y in ys])]))
    ax.autoscale_view()
    if "on_front" in table:
        front = table[table["on_front"]].sort_values(cost)
        ax.plot(front[cost], front[quality], "--", color="grey", lw=1, zorder=2,
                label="Pareto front (point estimates)")
    positive = table[cost][table[cost] > 0]
    ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
    title = "Quality against cost" + (f" ({note})" if note else "")
    if ylabel is None:
        ylabel = quality + (" (bars: confidence interval)" if bars else "")
    return finish(ax, title, xlabel or cost.replace("_", " "), ylabel, takeaway, who=who)


def plot_cost_at_scale(grid: pd.DataFrame, n_users: int = 1_000_000,
                       takeaway: str | None = None, who=None):
    """Dollars to serve ``n_users`` (log scale): one group of bars per model, one bar per method
    (a :func:`~perso_kit.costs.cost_grid` table, methods x models). Zero-cost methods are not
    drawn (a log axis has no zero). ``who`` (the client whose calls the tokens were counted
    from) is stamped on the figure: answer tokens are that backend's."""
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
                  "model (price table)", "USD (log scale)", takeaway, who=who)
