"""Figures of notebook 06: item text vectors in two dimensions, and the cold-start table."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .style import color, finish, new_figure


def embedding_map(vectors: np.ndarray, genres, n_genres: int = 6, title: str | None = None,
                  takeaway: str | None = None, seed: int = 0, who=None):
    """Scatter the item vectors projected to 2-D by PCA, coloured by each item's first genre.

    Parameters
    ----------
    vectors : array (n_items x d)
    genres : sequence of tuples
        Each item's genres (the first one colours the point).
    n_genres : int
        The most common first genres get a colour each; the rest are grey.
    who : optional
        Who made the vectors (an LLM client, or a label such as "offline TF-IDF+SVD
        vectorizer"), stamped on the figure (:func:`perso_kit.plots.style.finish`).

    >>> fig = embedding_map(np.eye(4), [("A",), ("B",), ("A",), ()])   # doctest: +SKIP
    """
    from sklearn.decomposition import PCA

    V = np.asarray(vectors, dtype=float)
    xy = PCA(n_components=2, random_state=seed).fit_transform(V)
    first = pd.Series([g[0] if len(g) else "(none)" for g in genres])
    top = first.value_counts().index[:n_genres].tolist()
    fig, ax = new_figure(width=6.5, height=5)
    other = ~first.isin(top).to_numpy()
    ax.scatter(xy[other, 0], xy[other, 1], s=6, c="lightgrey", label="other genres")
    cmap = __import__("matplotlib").colormaps["tab10"]
    for j, g in enumerate(top):
        m = (first == g).to_numpy()
        ax.scatter(xy[m, 0], xy[m, 1], s=8, color=cmap(j), label=g, alpha=0.8)
    finish(ax, title or "Item text vectors, 2-D projection (PCA)", "component 1",
           "component 2", takeaway=takeaway, who=who)
    return fig


def cold_start_bars(table: pd.DataFrame, metric: str = "recall@10", title: str | None = None,
                    takeaway: str | None = None, who=None):
    """Grouped bars of ``metric`` per scenario (x) and model (colour), from
    :func:`perso_kit.roles.interpreter.cold_start_table`. ``who`` (the client that produced the
    attributes and vectors) is stamped on the figure."""
    scenarios = list(pd.unique(table["scenario"]))
    models = list(pd.unique(table["model"]))
    fig, ax = new_figure(width=7, height=4)
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(scenarios))
    for j, m in enumerate(models):
        vals = (table[table["model"] == m].set_index("scenario")[metric]
                .reindex(scenarios).to_numpy())
        ax.bar(x + (j - (len(models) - 1) / 2) * width, vals, width, label=m,
               color=color(m, None))
    ax.set_xticks(x, scenarios)
    finish(ax, title or f"{metric} by scenario", "scenario", metric, takeaway=takeaway, who=who)
    return fig
