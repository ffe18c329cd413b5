"""Figures of Act 1 (notebooks 01-03): the data's long tail, model comparisons, sweeps and the
ranker's features.

Every function draws one figure that answers one question, gives it a title, labelled axes and
a one-line takeaway computed from the numbers it shows (pass ``takeaway=`` to replace it), and
returns the figure.

>>> from perso_kit import load_dataset
>>> fig = plot_long_tail(load_dataset("demo"))          # or a list of datasets side by side
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .. import metrics as M
from ..data.dataset import Dataset
from .style import color, finish, new_figure


def _axes(ax):
    return new_figure()[1] if ax is None else ax


def head_share(popularity, top: float = 0.1) -> float:
    """Share of all interactions that go to the ``top`` share of items (by popularity)."""
    pop = np.sort(np.asarray(popularity, dtype=float))[::-1]
    n = max(1, int(np.ceil(top * len(pop))))
    return float(pop[:n].sum() / max(pop.sum(), 1e-12))


# ----------------------------------------------------------------------------- notebook 01
def _datasets(data) -> list[Dataset]:
    """One dataset, or several (a list, or a dict of name -> dataset) to draw side by side."""
    if isinstance(data, Dataset):
        return [data]
    if isinstance(data, Mapping):
        return list(data.values())
    return list(data)


def plot_long_tail(data, ax=None, takeaway: str | None = None):
    """Item popularity against popularity rank, on log-log axes (rated items only), for one
    dataset or several side by side; the takeaway describes the first."""
    ax = _axes(ax)
    sets = _datasets(data)
    for ds in sets:
        pop = np.sort(ds.item_popularity().to_numpy())[::-1]
        pop = pop[pop > 0]
        ax.loglog(np.arange(1, len(pop) + 1), pop, label=ds.name, lw=2)
    share = head_share(sets[0].item_popularity(), 0.1)
    return finish(ax, "Item popularity by rank (the long tail)", "item rank (1 = most popular)",
                  "users who interacted",
                  takeaway or f"{sets[0].name}: the 10% most popular items take {share:.0%} of "
                              "all interactions.")


def plot_lorenz(data, ax=None, takeaway: str | None = None):
    """Lorenz curve of item popularity over the whole catalog, with the Gini coefficient in
    the legend, for one dataset or several."""
    ax = _axes(ax)
    sets = _datasets(data)
    for ds in sets:
        pop = ds.item_popularity().to_numpy()
        x, y = M.lorenz_curve(pop)
        ax.plot(x, y, lw=2, label=f"{ds.name} (Gini {M.gini(pop):.2f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect equality")
    g = M.gini(sets[0].item_popularity().to_numpy())
    return finish(ax, "Lorenz curve of item popularity", "share of items (least popular first)",
                  "share of interactions",
                  takeaway or f"{sets[0].name}: Gini {g:.2f}, attention concentrates on a few "
                              "items.")


def plot_user_activity(data, ax=None, takeaway: str | None = None):
    """Histogram of interactions per user (log-spaced bins), for one dataset or several."""
    ax = _axes(ax)
    sets = _datasets(data)
    acts = [ds.user_activity().to_numpy() for ds in sets]
    acts = [a[a > 0] for a in acts]
    bins = np.logspace(0, np.log10(max(a.max() for a in acts) + 1), 30)
    for ds, act in zip(sets, acts):
        ax.hist(act, bins=bins, alpha=0.5, label=ds.name)
    ax.set_xscale("log")
    med, top = float(np.median(acts[0])), int(acts[0].max())
    return finish(ax, "Interactions per user", "interactions (log scale)", "users",
                  takeaway or f"{sets[0].name}: median {med:.0f} interactions per user, the "
                              f"busiest user {top}.")


def plot_ratings(data, ax=None, takeaway: str | None = None):
    """Share of interactions at each rating value, for one dataset or several."""
    ax = _axes(ax)
    sets = _datasets(data)
    width = 0.8 / len(sets)
    for j, ds in enumerate(sets):
        counts = ds.interactions["rating"].value_counts(normalize=True).sort_index()
        ax.bar(counts.index.astype(float) + (j - (len(sets) - 1) / 2) * width, counts.to_numpy(),
               width=width, alpha=0.8, label=ds.name)
    mean = float(sets[0].interactions["rating"].mean())
    return finish(ax, "Rating distribution", "rating", "share of interactions",
                  takeaway or f"{sets[0].name}: mean rating {mean:.2f}; people mostly rate what "
                              "they chose to watch.")


def plot_activity_over_time(data, ax=None, takeaway: str | None = None):
    """Interactions per week over each log's time span; the takeaway gives the first log's
    span and its largest change from one week to the next."""
    ax = _axes(ax)
    sets = _datasets(data)
    for ds in sets:
        t = pd.to_datetime(ds.interactions["timestamp"], unit="s")
        weekly = t.dt.to_period("W").value_counts().sort_index()
        ax.plot(weekly.index.to_timestamp(), weekly.to_numpy(), lw=1.5, label=ds.name)
    ax.figure.autofmt_xdate()
    t0 = pd.to_datetime(sets[0].interactions["timestamp"], unit="s")
    weekly = t0.dt.to_period("W").value_counts().sort_index()
    weekly = weekly.reindex(pd.period_range(weekly.index[0], weekly.index[-1], freq="W"),
                            fill_value=0)
    text = f"{sets[0].name}: {t0.min().date()} to {t0.max().date()}"
    if len(weekly) > 1:
        step = int(np.argmax(np.abs(np.diff(weekly.to_numpy())))) + 1
        text += (f"; biggest weekly change {weekly.iloc[step - 1]:,} -> {weekly.iloc[step]:,} "
                 f"(week of {weekly.index[step].start_time.date()})")
    return finish(ax, "Interactions per week", "week", "interactions", takeaway or text + ".")


# ----------------------------------------------------------------------------- notebook 02
def plot_metric_bars(table: pd.DataFrame, metric: str = "ndcg@10", ax=None,
                     takeaway: str | None = None):
    """One bar per model (rows of an :func:`~perso_kit.evaluate.evaluate` table, segment
    "all"), in the course colours. When the table holds bootstrap intervals
    (``evaluate(..., ci=0.95)``: columns ``<metric>_lo`` and ``<metric>_hi``), each bar gets
    its interval as a whisker. Overlapping whiskers do not settle a comparison: two models
    scored on the same users are compared by the interval of their paired difference
    (:func:`~perso_kit.evaluate.paired_difference`), which the default takeaway cannot know;
    pass ``takeaway=`` with its verdict."""
    ax = _axes(ax)
    t = table[table["segment"] == "all"] if "segment" in table else table
    names = t["model"].tolist()
    vals = t[metric].to_numpy()
    has_ci = f"{metric}_lo" in t and f"{metric}_hi" in t
    err = None
    if has_ci:
        err = np.vstack([vals - t[f"{metric}_lo"].to_numpy(), t[f"{metric}_hi"].to_numpy() - vals])
    ax.bar(names, vals, color=[color(n, "#444444") for n in names], yerr=err, capsize=4,
           error_kw={"lw": 1, "ecolor": "#222222"})
    tops = vals if err is None else vals + err[1]
    for x, (v, top) in enumerate(zip(vals, tops)):
        ax.text(x, top, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    ax.tick_params(axis="x", rotation=20)
    i = int(np.argmax(vals))
    if has_ci:
        default = (f"{names[i]} has the highest {metric} ({vals[i]:.3f}); whiskers: bootstrap "
                   "intervals over users.")
    else:
        default = f"{names[i]} has the highest {metric} on this split (no interval shown)."
    title = f"{metric} by model" + (", with bootstrap intervals" if has_ci else "")
    return finish(ax, title, "model", metric, takeaway or default)


def plot_accuracy_vs_popularity(table: pd.DataFrame, metric: str = "ndcg@10", ax=None,
                                takeaway: str | None = None):
    """Accuracy against the average popularity of what each model recommends."""
    ax = _axes(ax)
    t = table[table["segment"] == "all"] if "segment" in table else table
    for _, row in t.iterrows():
        ax.scatter(row["avg_popularity"], row[metric], s=60, color=color(row["model"], "#444444"),
                   label=row["model"])
    return finish(ax, "Accuracy against the popularity of recommendations",
                  "average popularity of recommended items (training users)", metric,
                  takeaway or "Beating popularity does not mean leaving the head of the catalog.")


def plot_sweep(results: pd.DataFrame, param: str, metric: str = "ndcg@10", by: str = "model",
               ax=None, logx: bool = False, title: str | None = None,
               takeaway: str | None = None):
    """A metric against one hyperparameter, one line per value of ``by`` (e.g. per model)."""
    ax = _axes(ax)
    groups = results.groupby(by, sort=False) if by in results else [(None, results)]
    for name, g in groups:
        g = g.sort_values(param)
        ax.plot(g[param], g[metric], marker="o", label=name,
                color=color(str(name), None) if name is not None else None)
    if logx:
        ax.set_xscale("log")
    best = results.loc[results[metric].idxmax()]
    return finish(ax, title or f"{metric} against {param}", param, metric,
                  takeaway or f"Best {metric} {best[metric]:.3f} at {param}={best[param]:g}.")


def plot_diversity_tradeoff(curves: Mapping[str, pd.DataFrame], metric: str = "ndcg@10",
                            diversity: str = "ild@10", param: str = "lambda", ax=None,
                            title: str | None = None, takeaway: str | None = None, who=None):
    """The accuracy-diversity trade-off: ``metric`` against ``diversity``, one line per ranker
    and one point per value of ``param`` (e.g. MMR's lambda), labelled with that value.

    ``curves`` maps a ranker's name to a table with the columns ``param``, ``metric`` and
    ``diversity`` (an :func:`~perso_kit.evaluate.evaluate` table whose ``model`` column holds
    the lambdas, renamed to ``param``). Columns ``<metric>_lo``/``_hi`` and
    ``<diversity>_lo``/``_hi`` (``evaluate(..., ci=0.95)``) draw intervals. Points up and to
    the right are better on both; a ranker's curve shows what each step of diversity costs.
    ``who`` (for LLM results) is stamped on the figure.

    >>> t = pd.DataFrame({"lambda": [1.0, 0.0], "ndcg@10": [0.4, 0.3], "ild@10": [0.8, 0.95]})
    >>> fig = plot_diversity_tradeoff({"EASE": t})
    """
    ax = _axes(ax)
    palette = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#e377c2", "#7f7f7f"]
    for n, (name, t) in enumerate(curves.items()):
        missing = [c for c in (param, metric, diversity) if c not in t]
        if missing:
            raise ValueError(f"the table of {name!r} lacks columns {missing}")
        t = t.sort_values(param, ascending=False)
        c = color(str(name), palette[n % len(palette)])
        x, y = t[diversity].to_numpy(float), t[metric].to_numpy(float)
        xerr = yerr = None
        if f"{metric}_lo" in t and f"{metric}_hi" in t:
            yerr = np.vstack([y - t[f"{metric}_lo"].to_numpy(float),
                              t[f"{metric}_hi"].to_numpy(float) - y])
        if f"{diversity}_lo" in t and f"{diversity}_hi" in t:
            xerr = np.vstack([x - t[f"{diversity}_lo"].to_numpy(float),
                              t[f"{diversity}_hi"].to_numpy(float) - x])
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, marker="o", ms=5, lw=1.5, capsize=2,
                    color=c, label=str(name))
        for xi, yi, v in zip(x, y, t[param]):
            ax.annotate(f"{v:g}", (xi, yi), fontsize=7, color=c, xytext=(4, 4),
                        textcoords="offset points")
    first = next(iter(curves.values())).sort_values(param, ascending=False)
    name = next(iter(curves))
    default = (f"{name}: {metric} {first[metric].iloc[0]:.3f} -> {first[metric].iloc[-1]:.3f}, "
               f"{diversity} {first[diversity].iloc[0]:.2f} -> {first[diversity].iloc[-1]:.2f} "
               f"from {param}={first[param].iloc[0]:g} to {first[param].iloc[-1]:g}.")
    return finish(ax, title or f"Accuracy against diversity ({param} on each point)",
                  f"{diversity} (intra-list diversity: higher = more varied lists)", metric,
                  takeaway or default, who=who)


# ----------------------------------------------------------------------------- notebook 03
def plot_feature_importance(importances: pd.DataFrame, ax=None, top: int = 15,
                            takeaway: str | None = None):
    """Horizontal bars of total gain per feature (from ``TwoStageRanker.feature_importances``)."""
    ax = _axes(ax)
    imp = importances.sort_values("gain", ascending=False).head(top).iloc[::-1]
    share = imp["gain"] / max(importances["gain"].sum(), 1e-12)
    ax.barh(imp["feature"], share, color=color("LightGBM ranker"))
    first = imp["feature"].iloc[-1]
    lead = ("a retrieval signal leads" if first.endswith(("_score", "_rank"))
            else "a pair feature leads, not a retriever")
    return finish(ax, "What the ranker relies on", "share of total gain", "feature",
                  takeaway or f"{first} carries the most gain: {lead}.")


def plot_candidate_recall(recall: Mapping[int, float] | pd.Series, ax=None,
                          takeaway: str | None = None):
    """Candidate recall against the number of candidates per retriever."""
    ax = _axes(ax)
    s = pd.Series(recall).sort_index()
    ax.plot(s.index, s.to_numpy(), marker="o", color=color("LightGBM ranker"))
    ax.set_ylim(0, 1)
    return finish(ax, "Candidate recall caps the ranker", "candidates per retriever",
                  "recall of the candidate set",
                  takeaway or f"With {s.index[-1]} candidates per retriever, "
                              f"{s.iloc[-1]:.0%} of test items are reachable.")
