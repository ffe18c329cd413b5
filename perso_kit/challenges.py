"""Measuring where ID-based collaborative filtering struggles (notebook 04).

Each function turns one challenge of classic personalization into a number:

==============================  ==============================================================
function                        what it measures
==============================  ==============================================================
:func:`thin`                    a training set with only a share of its interactions (sparsity)
:func:`sparsity_curve`          NDCG@k as the training data is thinned
:func:`cold_item_report`        how much of each model's lists goes to items with no training
                                data, and how well it finds them
:func:`catalog_baseline`        the log's own popularity distribution, to compare lists against
:func:`because_you_watched`     the neighbour-based explanation of a recommendation: which
                                watched items contributed how much of its score
:func:`structured_filter`       how far column filters get with a request made of words
:func:`keyword_filter`          ... and a literal keyword search in the descriptions
:func:`request_funnel`          a request's words turned into filters, one step at a time
==============================  ==============================================================

The simulated users and feedback loops live in :mod:`perso_kit.simulate`.

>>> from perso_kit import load_dataset
>>> ds = load_dataset("demo")
>>> thin(ds, keep=0.5, seed=42).n_interactions == round(0.5 * ds.n_interactions)
True
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import config
from . import metrics as M
from .data.dataset import Dataset
from .evaluate import evaluate, evaluate_recommendations
from .recommenders.base import Recommender
from .split import Split


# ---------------------------------------------------------------------------- sparsity
def thin(ds: Dataset, keep: float, seed: int | None = None) -> Dataset:
    """A view of ``ds`` that keeps a random ``keep`` share of its interactions (all users and
    the whole catalog stay; a light user may lose every interaction).

    >>> from perso_kit import load_dataset
    >>> thin(load_dataset("demo"), keep=0.1).name
    'demo/10% kept'
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep is the share of interactions to keep, in (0, 1]; got {keep}")
    if keep == 1:
        return ds.with_interactions(ds.interactions, "100% kept")
    rng = np.random.default_rng(config.seed() if seed is None else seed)
    n = int(round(keep * ds.n_interactions))
    rows = np.sort(rng.choice(ds.n_interactions, size=n, replace=False))
    return ds.with_interactions(ds.interactions.iloc[rows], f"{keep:.0%} kept")


def sparsity_curve(recommenders: Mapping[str, Recommender], split: Split,
                   keeps: Iterable[float] = (1.0, 0.5, 0.25, 0.1), k: int = 10,
                   seed: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Evaluate each model after thinning ``split.train`` to each share in ``keeps``.

    The test part stays the same, so only the amount of training data changes.

    Returns
    -------
    DataFrame with one row per (model, keep): ``model``, ``keep``, ``interactions``,
    ``density`` (of the thinned training data), ``ndcg@k``, ``recall@k``, ``coverage``.
    """
    rows = []
    keeps = list(keeps)
    for keep in tqdm(keeps, desc="sparsity", disable=not progress):
        train = thin(split.train, keep, seed)
        view = Split(train, split.test, None, f"{split.description}; training thinned to "
                     f"{keep:.0%}", split.seed)
        table = evaluate(recommenders, view, k=k, progress=False)
        for _, r in table.iterrows():
            rows.append({"model": r["model"], "keep": keep, "interactions": train.n_interactions,
                         "density": train.density, f"ndcg@{k}": r[f"ndcg@{k}"],
                         f"recall@{k}": r[f"recall@{k}"], "coverage": r["coverage"]})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- cold items
def cold_item_report(recommenders: Mapping[str, Recommender], split: Split, cold_items,
                     k: int = 10, fit: bool = True) -> pd.DataFrame:
    """How each model treats items with no training data (``cold_items``).

    Each model is fitted on ``split.train`` (unless ``fit=False``) and recommends ``k`` items
    from the *whole* catalog to every user with a test interaction.

    Returns
    -------
    DataFrame, one row per model: ``cold_share`` (share of list slots given to cold items),
    ``users_shown_cold`` (share of users whose list holds at least one), ``recall@k`` and
    ``ndcg@k`` on the test interactions, and ``cold_scores_tied`` (share of users for whom the
    model gives every cold item the same score: it cannot tell them apart).
    """
    cold = np.asarray(list(cold_items))
    split.train.item_index(cold)  # unknown ids fail here
    users = split.test_users
    rows = []
    for name, model in recommenders.items():
        if fit:
            model.fit(split.train)
        recs = model.recommend(users=users, k=k)
        is_cold = recs["item_id"].isin(cold)
        scored = evaluate_recommendations(recs, split, k=k, users=users, model=name)
        scores = model.score(users, cold)
        rows.append({
            "model": name,
            "cold_share": float(is_cold.mean()) if len(recs) else 0.0,
            "users_shown_cold": float(recs.loc[is_cold, "user_id"].nunique() / len(users)),
            f"recall@{k}": float(scored[f"recall@{k}"].iloc[0]),
            f"ndcg@{k}": float(scored[f"ndcg@{k}"].iloc[0]),
            "cold_scores_tied": float(np.mean(np.ptp(scores, axis=1) == 0)),
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- popularity bias
def catalog_baseline(train: Dataset, head_share: float = 0.2) -> dict:
    """The log's own popularity distribution, in the units of :func:`perso_kit.evaluate`'s
    beyond-accuracy columns, so lists can be compared with what people actually watched.

    Returns a dict: ``avg_popularity`` (mean popularity of the item of a random interaction),
    ``long_tail_share`` (share of interactions on long-tail items), ``coverage`` (share of the
    catalog with any interaction) and ``exposure_gini`` (Gini of item popularity).
    """
    pop = train.item_popularity().to_numpy()
    idx = train.item_index(train.interactions["item_id"].to_numpy())
    return {
        "avg_popularity": float(pop[idx].mean()),
        "long_tail_share": float(M.long_tail_items(pop, head_share)[idx].mean()),
        "coverage": float((pop > 0).mean()),
        "exposure_gini": M.gini(pop),
    }


# ---------------------------------------------------------------------------- opaque reasons
def because_you_watched(model: Recommender, user_id, item_id, n: int = 3) -> pd.DataFrame:
    """The neighbour-based reason for recommending ``item_id`` to ``user_id``.

    For item-to-item models the score is a sum over the user's watched items
    (EASE: ``sum_i x_ui * B[i, j]``; item-kNN: ``sum_i x_ui * sim(i, j)``), so each watched
    item's contribution is exact. This is the only explanation such a model can give.

    Returns
    -------
    DataFrame of the ``n`` largest contributions: ``item_id``, ``title``, ``genres``,
    ``contribution`` and ``share`` (of the total score).

    Example
    -------
    >>> from perso_kit import load_dataset
    >>> from perso_kit.recommenders import EASE
    >>> model = EASE().fit(load_dataset("demo"))
    >>> top = model.recommend(users=[1], k=1)["item_id"][0]
    >>> because_you_watched(model, 1, top).columns.tolist()
    ['item_id', 'title', 'genres', 'contribution', 'share']
    """
    train = model._check_fitted()
    if hasattr(model, "weights_"):
        column = lambda j: np.asarray(model.weights_[:, j]).ravel()  # noqa: E731
    elif hasattr(model, "similarity_"):
        column = lambda j: model.similarity_[:, j].toarray().ravel()  # noqa: E731
    else:
        raise TypeError(f"{model.name} does not score items as a sum over watched items; "
                        "because_you_watched needs an item-to-item model (EASE, ItemKNN)")
    u = train.user_index([user_id])[0]
    j = train.item_index([item_id])[0]
    watched = train.matrix()[u].indices
    if len(watched) == 0:
        raise ValueError(f"user {user_id} has no training interactions: nothing to point at")
    contrib = column(j)[watched].astype(float)
    total = contrib.sum()
    order = np.argsort(-contrib, kind="stable")[:n]
    cols = watched[order]
    return pd.DataFrame({
        "item_id": train.item_ids[cols],
        "title": train.items["title"].to_numpy()[cols],
        "genres": train.items["genres"].to_numpy()[cols],
        "contribution": contrib[order],
        "share": contrib[order] / total if total else np.nan,
    })


def explanation_stats(model: Recommender, users, k: int = 1) -> pd.DataFrame:
    """For each user's top recommendation, how much its best "because you watched" item
    explains: ``share`` of the score, and whether the two share a genre. One row per user."""
    train = model._check_fitted()
    recs = model.recommend(users=users, k=k)
    recs = recs[recs["rank"] == 1]
    genres = dict(zip(train.item_ids, train.items["genres"]))
    rows = []
    for user, item in zip(recs["user_id"], recs["item_id"]):
        best = because_you_watched(model, user, item, n=1).iloc[0]
        rows.append({"user_id": user, "item_id": item, "because": best["item_id"],
                     "share": best["share"],
                     "shares_genre": bool(set(genres[item]) & set(genres[best["item_id"]]))})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- passivity
def structured_filter(items: pd.DataFrame, genre: str | None = None,
                      years: tuple[int, int] | None = None, max_runtime: int | None = None,
                      mood: str | None = None) -> pd.Series:
    """Boolean mask of catalog rows meeting column constraints (``None`` means no constraint).

    Each constraint needs a column: ``genres``, ``year``, ``runtime``, ``mood``. A catalog
    without the column cannot apply the constraint (MovieLens has no runtime and no mood):
    that raises a ``KeyError`` naming it.

    >>> from perso_kit import load_dataset
    >>> items = load_dataset("demo").items
    >>> int(structured_filter(items, genre="Comedy").sum()) > 0
    True
    """
    mask = pd.Series(True, index=items.index)
    need = {"genre": ("genres", genre), "years": ("year", years),
            "max_runtime": ("runtime", max_runtime), "mood": ("mood", mood)}
    for arg, (col, value) in need.items():
        if value is not None and col not in items.columns:
            raise KeyError(f"this catalog has no {col!r} column, so {arg}={value!r} cannot be "
                           "applied as a filter")
    if genre is not None:
        mask &= items["genres"].map(lambda gs: genre in gs)
    if years is not None:
        mask &= items["year"].between(years[0], years[1]).fillna(False).astype(bool)
    if max_runtime is not None:
        mask &= items["runtime"] <= max_runtime
    if mood is not None:
        mask &= items["mood"] == mood
    return mask


def keyword_filter(items: pd.DataFrame, words: Iterable[str]) -> pd.Series:
    """Boolean mask of items whose title or description contains one of ``words`` (whole
    words, case-insensitive): what a search box without understanding finds."""
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.I)
    text = items["title"].astype(str) + " " + items["description"].astype(str)
    return text.map(lambda t: bool(pattern.search(t)))


def request_funnel(items: pd.DataFrame, steps: list[tuple[str, dict]],
                   target: pd.Series | None = None) -> pd.DataFrame:
    """Apply a request's constraints one after the other and count what is left.

    Parameters
    ----------
    items : DataFrame
        The catalog.
    steps : list of (words, filter arguments)
        Each step adds the :func:`structured_filter` arguments that stand for some words of the
        request, e.g. ``("comedy", {"genre": "Comedy"})``. A step whose column the catalog
        lacks is reported and skipped.
    target : boolean Series, optional
        Items that truly fit the whole request; the table then says what share of what is left
        fits it.

    Returns
    -------
    DataFrame: ``words``, ``filter``, ``applied`` (False when the catalog has no column for it),
    ``items_left`` and, with ``target``, ``share_fitting``.

    Example
    -------
    >>> from perso_kit import load_dataset
    >>> items = load_dataset("demo").items
    >>> request_funnel(items, [("comedy", {"genre": "Comedy"})])["applied"].tolist()
    [True]
    """
    rows, applied = [], {}
    for words, kwargs in steps:
        try:
            mask = structured_filter(items, **{**applied, **kwargs})
            applied.update(kwargs)
            ok = True
        except KeyError:
            mask = structured_filter(items, **applied)
            ok = False
        row = {"words": words, "filter": ", ".join(f"{k}={v}" for k, v in kwargs.items()),
               "applied": ok, "items_left": int(mask.sum())}
        if target is not None:
            row["share_fitting"] = float(target[mask].mean()) if mask.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
