"""Offline evaluation: the same code scores every recommender on the same split.

The protocol, spelled out so a number always says what it means:

1. fit each model on ``split.train``;
2. for every user with at least one test interaction, ask for the top ``k`` items, excluding
   items the user interacted with in training;
3. an item in a user's list is *relevant* when the user interacted with it in ``split.test``
   (with a rating of at least ``min_rating`` if one is given);
4. compute per-user metrics (:mod:`perso_kit.metrics`) and average them over users; the
   beyond-accuracy metrics describe all lists together.

>>> import perso_kit as pk
>>> from perso_kit.recommenders import Popularity
>>> split = pk.split.random_per_user(pk.load_dataset("demo"), seed=42)
>>> table = pk.evaluate({"Popularity": Popularity()}, split, k=10)
>>> list(table.columns[:4])
['model', 'segment', 'users', 'precision@10']
"""
from __future__ import annotations

import time
from typing import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from . import metrics as M
from .recommenders.base import Recommender
from .split import Split

#: default activity buckets (training interactions per user) for ``by="activity"``
ACTIVITY_BINS = (0, 5, 20, 50, np.inf)


def activity_segments(split: Split, bins=ACTIVITY_BINS) -> pd.Series:
    """Label each user by how many training interactions they have: "<=5", "6-20", ...

    Returns a Series indexed by ``user_id`` (an ordered categorical), usable as ``by=``.
    """
    activity = split.train.user_activity()
    labels = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        labels.append(f"<={int(hi)}" if lo == 0 else f">{int(lo)}" if np.isinf(hi)
                      else f"{int(lo) + 1}-{int(hi)}")
    cut = pd.cut(activity, bins=list(bins), labels=labels, include_lowest=True)
    return cut.rename("segment")


def recommendation_matrix(recs: pd.DataFrame, users: np.ndarray, split: Split,
                          k: int) -> np.ndarray:
    """Turn a recommendation frame into a users x k array of item column indices (-1 pads).

    Checks what a recommender returned: unknown items, unknown users and repeated items in one
    list are errors that name the offenders.
    """
    missing = [c for c in ("user_id", "item_id") if c not in recs.columns]
    if missing:
        raise ValueError(f"recommendations lack columns {missing}; expected user_id, item_id, "
                         "score, rank")
    catalog = split.train
    bad_items = ~recs["item_id"].isin(catalog.item_ids)
    if bad_items.any():
        raise ValueError(f"recommendations name {int(bad_items.sum())} unknown item ids, e.g. "
                         f"{recs.loc[bad_items, 'item_id'].unique()[:5].tolist()}: every "
                         "recommended item must be in the catalog")
    dup = recs.duplicated(["user_id", "item_id"])
    if dup.any():
        raise ValueError(f"recommendations repeat an item in one list, e.g. "
                         f"{recs.loc[dup, ['user_id', 'item_id']].head(3).to_dict('records')}")
    order = ["user_id", "rank"] if "rank" in recs.columns else ["user_id"]
    recs = recs.sort_values(order, kind="stable")
    pos = recs.groupby("user_id", sort=False).cumcount().to_numpy()
    keep = pos < k
    row_of = pd.Index(users).get_indexer(recs["user_id"].to_numpy())
    keep &= row_of >= 0
    out = np.full((len(users), k), -1, dtype=np.int64)
    out[row_of[keep], pos[keep]] = catalog.item_index(recs["item_id"].to_numpy()[keep])
    return out


def score_lists(rec_idx: np.ndarray, users: np.ndarray, split: Split,
                min_rating: float | None = None) -> pd.DataFrame:
    """Per-user accuracy metrics of ready-made lists (``rec_idx`` from
    :func:`recommendation_matrix`). One row per user."""
    test = split.test.interactions
    if min_rating is not None:
        test = test[test["rating"] >= min_rating]
    rows = pd.Index(users).get_indexer(test["user_id"].to_numpy())
    ok = rows >= 0
    relevant = sp.csr_matrix(
        (np.ones(ok.sum(), np.float32), (rows[ok], split.test.item_index(test["item_id"][ok]))),
        shape=(len(users), split.test.n_items))
    relevant.sum_duplicates()
    n_rel = np.diff(relevant.indptr)
    hits = M.hit_matrix(rec_idx, relevant)
    k = rec_idx.shape[1]
    table = {"user_id": users, "n_relevant": n_rel}
    for name, fn in M.ACCURACY_METRICS.items():
        table[f"{name}@{k}"] = fn(hits, n_rel)
    return pd.DataFrame(table)


def _beyond_accuracy(rec_idx: np.ndarray, split: Split) -> dict:
    pop = split.train.item_popularity().to_numpy()
    n_items = split.train.n_items
    return {
        "coverage": M.catalog_coverage(rec_idx, n_items),
        "avg_popularity": M.average_popularity(rec_idx, pop),
        "long_tail_share": M.long_tail_share(rec_idx, pop),
        "exposure_gini": M.exposure_gini(rec_idx, n_items),
        "novelty": M.novelty(rec_idx, pop, split.train.n_users),
    }


def evaluate_recommendations(recs: pd.DataFrame, split: Split, k: int = 10, users=None,
                             by: str | pd.Series | None = None, min_rating: float | None = None,
                             model: str = "model") -> pd.DataFrame:
    """Score a ready-made recommendation frame (from any source) with the standard protocol.

    The same code :func:`evaluate` uses after calling ``recommend``; handy for lists produced
    outside a :class:`~perso_kit.recommenders.base.Recommender` (say, re-ranked by an LLM).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    users = _eval_users(split, users, min_rating)
    rec_idx = recommendation_matrix(recs, users, split, k)
    per_user = score_lists(rec_idx, users, split, min_rating)
    segments = _segments(split, by, users)
    rows = []
    for seg_name, mask in segments:
        if not mask.any():
            continue
        row = {"model": model, "segment": seg_name, "users": int(mask.sum())}
        row.update(per_user.loc[mask, per_user.columns[2:]].mean().to_dict())
        row.update(_beyond_accuracy(rec_idx[mask], split))
        rows.append(row)
    return pd.DataFrame(rows)


def _eval_users(split: Split, users, min_rating) -> np.ndarray:
    test = split.test.interactions
    if min_rating is not None:
        test = test[test["rating"] >= min_rating]
    with_test = np.sort(test["user_id"].unique())
    if users is None:
        return with_test
    users = np.asarray(list(users))
    split.train.user_index(users)  # unknown users fail here, with their ids
    return users[np.isin(users, with_test)]


def _segments(split: Split, by, users: np.ndarray):
    yield "all", np.ones(len(users), dtype=bool)
    if by is None:
        return
    labels = activity_segments(split) if isinstance(by, str) and by == "activity" else by
    if not isinstance(labels, pd.Series):
        raise ValueError("by must be 'activity' or a Series mapping user_id to a segment label")
    lab = labels.reindex(users)
    categories = (lab.cat.categories if isinstance(lab.dtype, pd.CategoricalDtype)
                  else pd.unique(lab.dropna()))
    for c in categories:
        yield str(c), (lab == c).to_numpy()


def evaluate(recommenders: Mapping[str, Recommender] | Recommender, split: Split, k: int = 10,
             users=None, by: str | pd.Series | None = None, min_rating: float | None = None,
             fit: bool = True, items=None, progress: bool | None = None) -> pd.DataFrame:
    """Fit and score recommenders on one split with the protocol in the module docstring.

    Parameters
    ----------
    recommenders : dict of name -> Recommender, or one Recommender
    split : Split
    k : int
        List length (at least 1).
    users : ids, optional
        Evaluate only these users (those without test interactions are skipped).
    by : "activity" or Series user_id -> label, optional
        Add one row per segment (``"activity"``: training-interaction buckets <=5, 6-20,
        21-50, >50) below the ``"all"`` row of each model.
    min_rating : float, optional
        Count a test interaction as relevant only with this rating or more.
    fit : bool
        Fit each model on ``split.train`` first (set False for models already fitted on it).
    items : ids, optional
        Recommend only among these items (e.g. the new releases of a cold-start split).
    progress : bool, optional
        Show a progress bar over models (default: when there is more than one).

    Returns
    -------
    DataFrame, one row per (model, segment): ``users``, the accuracy metrics at ``k``
    (precision, recall, ndcg, map, mrr, hit_rate), the beyond-accuracy metrics (coverage,
    avg_popularity, long_tail_share, exposure_gini, novelty), and ``fit_s``/``recommend_s``
    seconds.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if isinstance(recommenders, Recommender):
        recommenders = {recommenders.name: recommenders}
    eval_users = _eval_users(split, users, min_rating)
    if len(eval_users) == 0:
        raise ValueError("no user to evaluate: none of the requested users has a relevant "
                         "test interaction in this split")
    show = len(recommenders) > 1 if progress is None else progress
    tables = []
    for name, model in tqdm(recommenders.items(), desc="evaluate", disable=not show):
        t0 = time.perf_counter()
        if fit:
            model.fit(split.train)
        t1 = time.perf_counter()
        recs = model.recommend(users=eval_users, k=k, items=items)
        t2 = time.perf_counter()
        table = evaluate_recommendations(recs, split, k=k, users=eval_users, by=by,
                                         min_rating=min_rating, model=name)
        table["fit_s"] = t1 - t0
        table["recommend_s"] = t2 - t1
        tables.append(table)
    return pd.concat(tables, ignore_index=True)
