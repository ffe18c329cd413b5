"""Measuring where ID-based collaborative filtering struggles (notebook 04).

Each function turns one challenge of classic personalization into a number:

==============================  ==============================================================
function                        what it measures
==============================  ==============================================================
:func:`watch_versus_taste`      lists scored two ways: held-out watches (offline NDCG) and the
                                users' true taste (demo world); :func:`true_taste_lists` builds
                                the lists a taste-optimizing recommender would show
:func:`thin`                    a training set with only a share of its interactions (sparsity);
                                :func:`thinned_away` is the rest, :func:`thin_split` both
:func:`sparsity_curve`          NDCG@k as the training data is thinned, the thinned-away
                                interactions set aside as seen (:func:`recommend_excluding`)
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
from .evaluate import evaluate_recommendations, recommendation_matrix, score_lists
from .recommenders.base import Recommender
from .split import Split


# ---------------------------------------------------------------------------- sparsity
def _kept_rows(n: int, keep: float, seed: int | None) -> np.ndarray:
    """Sorted positions of the ``round(keep * n)`` rows :func:`thin` keeps (seeded)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep is the share of interactions to keep, in (0, 1]; got {keep}")
    if keep == 1:
        return np.arange(n)
    rng = np.random.default_rng(config.seed() if seed is None else seed)
    return np.sort(rng.choice(n, size=int(round(keep * n)), replace=False))


def thin(ds: Dataset, keep: float, seed: int | None = None) -> Dataset:
    """A view of ``ds`` that keeps a random ``keep`` share of its interactions (all users and
    the whole catalog stay; a light user may lose every interaction).

    To *evaluate* on thinned training data, use :func:`thin_split`: it also says what was
    thinned away, which the evaluation must set aside (see :func:`sparsity_curve`).

    >>> from perso_kit import load_dataset
    >>> thin(load_dataset("demo"), keep=0.1).name
    'demo/10% kept'
    """
    rows = _kept_rows(ds.n_interactions, keep, seed)
    return ds.with_interactions(ds.interactions.iloc[rows], f"{keep:.0%} kept")


def thinned_away(ds: Dataset, keep: float, seed: int | None = None) -> Dataset:
    """The interactions of ``ds`` that :func:`thin` with the same arguments drops (its
    complement: the two together are ``ds``)."""
    dropped = np.ones(ds.n_interactions, dtype=bool)
    dropped[_kept_rows(ds.n_interactions, keep, seed)] = False
    return ds.with_interactions(ds.interactions[dropped], f"{1 - keep:.0%} thinned away")


def _drop_pairs(part: Dataset, pairs: Dataset, suffix: str) -> Dataset:
    """``part`` without the interactions whose (user, item) pair is in ``pairs``."""
    key = ["user_id", "item_id"]
    hit = pd.MultiIndex.from_frame(part.interactions[key]).isin(
        pd.MultiIndex.from_frame(pairs.interactions[key]))
    return part.with_interactions(part.interactions[~hit], suffix)


def thin_split(split: Split, keep: float, seed: int | None = None,
               exclude_thinned: bool = True) -> tuple[Split, Dataset]:
    """Thin the training part of ``split`` to a ``keep`` share, for a sparsity experiment.

    Returns
    -------
    (view, removed)
        ``view`` is a :class:`~perso_kit.split.Split` whose ``train`` is :func:`thin` of
        ``split.train``; ``removed`` holds the training interactions thinned away
        (:func:`thinned_away`). With ``exclude_thinned`` (the default), ``view.test`` also
        drops any test interaction on a (user, item) pair in ``removed``, so those pairs are
        never counted as relevant; recommend with :func:`recommend_excluding` (``removed``)
        so they are never candidates either. Without it, ``view.test`` is ``split.test``.
    """
    train = thin(split.train, keep, seed)
    removed = thinned_away(split.train, keep, seed)
    test = _drop_pairs(split.test, removed, "test") if exclude_thinned else split.test
    how = "set aside as seen" if exclude_thinned else "left in the candidates"
    view = Split(train, test, None, f"{split.description}; training thinned to {keep:.0%} "
                 f"(the rest {how})", split.seed)
    return view, removed


def recommend_excluding(model: Recommender, users, k: int, exclude: Dataset) -> pd.DataFrame:
    """``model``'s top ``k`` for ``users``, leaving out the (user, item) pairs in ``exclude``
    as well as the items seen in the model's training data.

    Works for any recommender: it asks for ``k + m`` items, ``m`` being the most pairs any of
    these users has in ``exclude``, drops the excluded pairs and keeps the first ``k`` of each
    list (re-ranked 1..k). For a model whose lists are prefixes of its longer lists (every
    model that ranks by a score) this is exactly its top ``k`` among the allowed items.

    >>> from perso_kit import load_dataset
    >>> from perso_kit.recommenders import Popularity
    >>> ds = load_dataset("demo")
    >>> model = Popularity().fit(thin(ds, 0.5, seed=1))
    >>> recs = recommend_excluding(model, [1], 10, thinned_away(ds, 0.5, seed=1))
    >>> bool(recs["item_id"].isin(ds.interactions.query("user_id == 1")["item_id"]).any())
    False
    """
    users = np.asarray(list(users))
    ex = exclude.interactions[["user_id", "item_id"]].drop_duplicates()
    ex = ex[ex["user_id"].isin(users)]
    m = int(ex.groupby("user_id").size().max()) if len(ex) else 0
    recs = model.recommend(users=users, k=k + m)
    if m:
        pairs = pd.MultiIndex.from_frame(ex)
        recs = recs[~pd.MultiIndex.from_frame(recs[["user_id", "item_id"]]).isin(pairs)]
        recs = recs.sort_values(["user_id", "rank"], kind="stable")
    recs = recs.assign(rank=recs.groupby("user_id", sort=False).cumcount() + 1)
    return recs[recs["rank"] <= k].reset_index(drop=True)


def sparsity_curve(recommenders: Mapping[str, Recommender], split: Split,
                   keeps: Iterable[float] = (1.0, 0.5, 0.25, 0.1), k: int = 10,
                   seed: int | None = None, exclude_thinned: bool = True,
                   progress: bool = True) -> pd.DataFrame:
    """Evaluate each model after thinning ``split.train`` to each share in ``keeps``.

    **The protocol.** Only the training data may change with ``keep``; the question asked at
    test time must stay the same. So the interactions thinned away are treated as *seen*:

    1. each model is fitted on the thinned training data (:func:`thin_split`);
    2. it recommends ``k`` items to every test user, excluding the items of her *full*
       training history: those kept (as always) and those thinned away
       (:func:`recommend_excluding`);
    3. a thinned-away (user, item) pair is never relevant (in a split that holds each pair
       once, as :func:`perso_kit.split.random_per_user` does, none of them is in the test
       part anyway).

    The candidates and the relevant items are then those of the full-data run at every
    ``keep``, and a model whose ranking does not depend on the amount of data keeps its score.

    **Why not simply evaluate on the thinned split?** (``exclude_thinned=False``, the naive
    protocol.) The items thinned away stay in the candidate pool, yet the user watched them, so
    they are not in her test part: a model that ranks them high fills its list with sure misses.
    Popularity, whose ranking hardly changes when a random half of the log goes, then "loses"
    NDCG only because each user's popular, already-watched items come back into her list. The
    naive curve mixes "less to learn from" with "a harder test", and the second effect grows as
    ``keep`` shrinks.

    Parameters
    ----------
    recommenders : dict of name -> Recommender
        Fitted afresh at each ``keep``.
    split : Split
        Its ``train`` is thinned; its ``test`` is kept (minus thinned-away pairs).
    keeps : shares of the training interactions to keep, each in (0, 1]
    k : int
        List length.
    seed : int, optional
        Seeds the thinning (default :func:`perso_kit.config.seed`); the same draw for every
        model.
    exclude_thinned : bool
        True (default): the protocol above. False: the naive protocol, for comparison only.
    progress : bool
        Show a progress bar over ``keeps``.

    Returns
    -------
    DataFrame with one row per (model, keep): ``model``, ``keep``, ``interactions``,
    ``density`` (of the thinned training data), ``ndcg@k`` and ``ndcg@k_se`` (its standard
    error over users), ``recall@k``, ``coverage`` and ``exclude_thinned`` (the protocol used).
    """
    rows = []
    keeps = list(keeps)
    for keep in tqdm(keeps, desc="sparsity", disable=not progress):
        view, removed = thin_split(split, keep, seed, exclude_thinned=exclude_thinned)
        users = view.test_users
        for name, model in recommenders.items():
            model.fit(view.train)
            if exclude_thinned:
                recs = recommend_excluding(model, users, k, removed)
            else:
                recs = model.recommend(users=users, k=k)
            rec_idx = recommendation_matrix(recs, users, view, k)
            ndcg = score_lists(rec_idx, users, view)[f"ndcg@{k}"]
            r = evaluate_recommendations(recs, view, k=k, users=users, model=name).iloc[0]
            rows.append({"model": name, "keep": keep, "interactions": view.train.n_interactions,
                         "density": view.train.density, f"ndcg@{k}": r[f"ndcg@{k}"],
                         f"ndcg@{k}_se": _standard_error(ndcg),
                         f"recall@{k}": r[f"recall@{k}"], "coverage": r["coverage"],
                         "exclude_thinned": exclude_thinned})
    return pd.DataFrame(rows)


def _standard_error(values) -> float:
    """Standard error of the mean of per-user values (how far the mean could move with
    another sample of users of the same kind)."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else np.nan


# ---------------------------------------------------------------------------- will watch vs likes
def true_taste_lists(users, user_ids, k: int = 10, exclude: Dataset | None = None
                     ) -> pd.DataFrame:
    """Each user's ``k`` truly best items not in ``exclude``, as a recommendation frame
    (``user_id, item_id, rank``): the list of a recommender that optimizes true taste, which
    only the demo world's ground truth can build (``users`` is a
    :class:`~perso_kit.simulate.SimulatedUsers`)."""
    rows = [(u, item, rank) for u in user_ids
            for rank, item in enumerate(users.top_items(u, k=k, exclude=exclude), start=1)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])


def watch_versus_taste(lists: Mapping[str, pd.DataFrame], split: Split, users,
                       k: int = 10) -> pd.DataFrame:
    """Score lists two ways: will the user *watch* them, and does she truly *like* them?

    *Will watch* is what offline evaluation rewards: NDCG@k against the user's held-out
    interactions in ``split.test`` (the protocol of :mod:`perso_kit.evaluate`). *Truly likes*
    is what the demo world's private ground truth knows: the true utility of each listed item
    for its user, asked through ``users`` (a :class:`~perso_kit.simulate.SimulatedUsers`;
    utility is a z-score, 0 is the user's average item). The two differ because the world's
    users watch what they like *and* what they hear about (its items' buzz).

    Parameters
    ----------
    lists : dict of name -> recommendation frame
        ``user_id, item_id, rank`` (from ``recommend`` or :func:`true_taste_lists`).
    split : Split
        Users with a test interaction are scored.
    users : SimulatedUsers
    k : int
        List length.

    Returns
    -------
    DataFrame, one row per list: ``ndcg@k`` and ``ndcg_se`` (its standard error over users),
    ``true_utility`` (mean over users of the mean true utility of the list) and
    ``true_utility_se``, and ``liked_share`` (share of listed items the user would rate 4 stars
    or more, by the ground truth).
    """
    from .data.demo import utility_to_rating

    who = split.test_users
    rows = []
    for name, recs in lists.items():
        rec_idx = recommendation_matrix(recs, who, split, k)
        ndcg = score_lists(rec_idx, who, split)[f"ndcg@{k}"].to_numpy()
        shown = rec_idx >= 0
        z = np.full(rec_idx.shape, np.nan)
        rows_, cols = np.nonzero(shown)
        z[rows_, cols] = users.utility(who[rows_], split.train.item_ids[rec_idx[shown]])
        per_user = np.nanmean(z, axis=1)
        per_user = per_user[np.isfinite(per_user)]
        rows.append({"list": name, f"ndcg@{k}": float(ndcg.mean()),
                     "ndcg_se": _standard_error(ndcg),
                     "true_utility": float(per_user.mean()),
                     "true_utility_se": _standard_error(per_user),
                     "liked_share": float((utility_to_rating(z[shown]) >= 4).mean())})
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
