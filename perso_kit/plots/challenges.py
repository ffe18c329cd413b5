"""Figures of notebook 04: the challenges of classic personalization, one question per figure.

>>> import pandas as pd
>>> table = pd.DataFrame({"model": ["EASE", "EASE"], "segment": ["<=5", ">50"],
...                       "ndcg@10": [0.1, 0.6]})
>>> fig = plot_ndcg_by_activity(table)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import metrics as M
from .style import color, finish, new_figure


def _style(model: str) -> dict:
    """Course colour by model; a dashed line for a wrapped (mitigated) model."""
    return {"color": color(model, "#444444"), "linestyle": "--" if "+" in model else "-"}


def plot_ndcg_by_activity(table: pd.DataFrame, metric: str = "ndcg@10",
                          takeaway: str | None = None):
    """Grouped bars: ``metric`` per user-activity segment (rows of :func:`perso_kit.evaluate`
    with ``by="activity"``), one bar per model. The ``"all"`` rows are left out."""
    seg = table[table["segment"] != "all"]
    segments = list(dict.fromkeys(seg["segment"]))
    models = list(dict.fromkeys(seg["model"]))
    fig, ax = new_figure(width=7)
    width = 0.8 / max(1, len(models))
    x = np.arange(len(segments))
    for j, model in enumerate(models):
        vals = seg[seg["model"] == model].set_index("segment")[metric].reindex(segments)
        ax.bar(x + (j - (len(models) - 1) / 2) * width, vals.to_numpy(), width, label=model,
               color=color(model))
    users = seg.drop_duplicates("segment").set_index("segment")
    labels = [f"{s}\n({int(users.loc[s, 'users'])} users)" if "users" in users else s
              for s in segments]
    ax.set_xticks(x, labels)
    return finish(ax, f"{metric.upper()} by how much a user has rated",
                  "training interactions of the user", metric.upper(), takeaway=takeaway)


def plot_cold_items(report: pd.DataFrame, true_share: float, catalog_share: float,
                    takeaway: str | None = None):
    """Bars: share of list slots given to items with no training data, per model, beside the
    share such items take in users' *true* top-k and in the catalog."""
    fig, ax = new_figure(width=7)
    names = list(report["model"]) + ["users' true top 10", "catalog"]
    values = list(report["cold_share"]) + [true_share, catalog_share]
    colors = [color(m, "#444444") for m in report["model"]] + ["#000000", "#bbbbbb"]
    bars = ax.bar(names, values, color=colors)
    for b, v in zip(bars, values):
        ax.annotate(f"{v:.1%}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                    fontsize=9)
    ax.set_ylim(0, max(values) * 1.25 + 1e-3)
    return finish(ax, "New releases: what models show vs what users would like",
                  "", "share of items that are new releases", takeaway=takeaway)


def plot_watch_versus_taste(table: pd.DataFrame, metric: str = "ndcg@10",
                            takeaway: str | None = None):
    """Scatter: each list's offline score on held-out watches (x) against the mean true
    utility of its items (y), with one standard error either way (a row per list, from
    :func:`perso_kit.challenges.watch_versus_taste`)."""
    fig, ax = new_figure(width=6.5, height=4.5)
    for _, row in table.iterrows():
        ax.errorbar(row[metric], row["true_utility"], xerr=row["ndcg_se"],
                    yerr=row["true_utility_se"], fmt="o", ms=8, capsize=3,
                    color=color(row["list"], "#000000"), label=row["list"])
    ax.axhline(0, color="#bbbbbb", lw=1, linestyle=":")
    ax.annotate("the user's average item", (ax.get_xlim()[0], 0), xytext=(4, 3),
                textcoords="offset points", fontsize=8, color="#777777")
    return finish(ax, "Will watch vs truly likes", f"{metric.upper()} on held-out watches "
                  "(what offline evaluation rewards)", "mean true utility of the list",
                  takeaway=takeaway)


def plot_sparsity(curve: pd.DataFrame, metric: str = "ndcg@10", takeaway: str | None = None):
    """Lines: ``metric`` against the share of training interactions kept (from
    :func:`perso_kit.challenges.sparsity_curve`); the x axis runs from all data to little.
    With a ``<metric>_se`` column, each point gets a bar of one standard error."""
    fig, ax = new_figure()
    for model, part in curve.groupby("model", sort=False):
        part = part.sort_values("keep")
        err = part[f"{metric}_se"] if f"{metric}_se" in part else None
        ax.errorbar(part["keep"] * 100, part[metric], yerr=err, marker="o", capsize=3,
                    label=model, **_style(model))
    ax.set_xscale("log")
    ticks = sorted(curve["keep"].unique() * 100)
    ax.set_xticks(ticks, [f"{t:g}%" for t in ticks])
    ax.invert_xaxis()
    return finish(ax, "Thinner data, weaker personalization", "training interactions kept",
                  metric.upper(), takeaway=takeaway)


def plot_exposure_lorenz(exposures: dict, log_popularity, takeaway: str | None = None):
    """Lorenz curves: how unequally each model's lists spread over the catalog (``exposures``:
    name -> per-item count of lists), against the log's own popularity (black)."""
    fig, ax = new_figure(width=5.5, height=5)
    x, y = M.lorenz_curve(log_popularity)
    ax.plot(x, y, color="black", lw=2, label=f"the log itself (Gini {M.gini(log_popularity):.2f})")
    for name, e in exposures.items():
        x, y = M.lorenz_curve(e)
        ax.plot(x, y, label=f"{name} (Gini {M.gini(e):.2f})", **_style(name))
    ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=1, linestyle=":", label="perfect equality")
    return finish(ax, "Whom the lists give attention to", "share of items (least shown first)",
                  "cumulative share of exposure", takeaway=takeaway)


#: (column, panel title, y label) of the feedback-loop figure
LOOP_PANELS = [
    ("exposure_gini", "Concentration of the lists", "Gini of exposure (this round)"),
    ("coverage", "Catalog coverage", "share of catalog recommended"),
    ("data_gini", "Concentration of the log", "Gini of item popularity in the data"),
    ("utility_recommended", "Users' true satisfaction", "mean true utility of the lists"),
]


def plot_feedback_loop(metrics: pd.DataFrame, panels=LOOP_PANELS, takeaway: str | None = None):
    """One panel per metric of :func:`perso_kit.simulate.feedback_loop` (two per row), rounds
    on the x axis, one line per model, one legend above the panels."""
    import matplotlib.pyplot as plt

    nrows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(nrows, 2, figsize=(11, 3.6 * nrows + 0.8), squeeze=False)
    axes = axes.ravel()
    for ax, (col, title, ylabel) in zip(axes, panels):
        for model, part in metrics.groupby("model", sort=False):
            ax.plot(part["round"], part[col], marker=".", label=model, **_style(model))
        finish(ax, title, "round", ylabel, legend=False)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    finish(axes[len(panels) - 1], panels[-1][1], "round", panels[-1][2], takeaway=takeaway,
           legend=False)
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
    fig.subplots_adjust(top=1 - 0.7 / fig.get_figheight())
    return fig
