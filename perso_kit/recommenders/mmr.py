"""Re-ranking for diversity: Maximal Marginal Relevance (MMR; Carbonell and Goldstein, 1998).

An accurate recommender often fills a list with near-copies: ten dramas for a drama fan. MMR
is the classic third stage after retrieval and scoring: take a model's top ``n_candidates``
and build the list greedily, each time adding the candidate that is relevant *and* unlike what
is already in the list:

.. math:: i^* = \\arg\\max_{i \\in C \\setminus S} \\; \\lambda \\, \\mathrm{rel}(i)
          - (1 - \\lambda) \\max_{j \\in S} \\mathrm{sim}(i, j)

where ``C`` is the user's candidates, ``S`` the items picked so far (the max is 0 while ``S``
is empty), ``rel`` the base model's score rescaled to [0, 1] over the user's candidates (best
1, worst 0), and ``sim`` the similarity of two items: Jaccard of their genre sets, or cosine of
item vectors (:func:`perso_kit.metrics.list_similarities`). ``lambda = 1`` keeps the base
order; ``lambda = 0`` ignores relevance after the first pick and keeps adding the candidate
least like the list so far. The intra-list diversity ``ild@k`` of
:func:`perso_kit.evaluate` measures what the trade costs and buys.

>>> import perso_kit as pk
>>> from perso_kit.recommenders import EASE
>>> split = pk.split.random_per_user(pk.load_dataset("demo"), seed=42)
>>> ease = EASE().fit(split.train)
>>> MMR(ease, lambda_=0.5).recommend(users=[1], k=3)["rank"].tolist()
[1, 2, 3]
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from .. import metrics as M
from ..data.dataset import Dataset
from .base import RECOMMENDATION_COLUMNS, Recommender


def candidate_arrays(recs: pd.DataFrame, item_ids: np.ndarray):
    """A recommendation frame as arrays: ``(user_ids, idx, scores)`` with ``idx`` a
    users x C array of catalog row indices (``-1`` pads) in each user's order (by ``rank``,
    else as given) and ``scores`` the matching ``score`` column (NaN pads)."""
    missing = [c for c in ("user_id", "item_id", "score") if c not in recs.columns]
    if missing:
        raise ValueError(f"candidates lack columns {missing}; expected user_id, item_id, "
                         "score, rank")
    if "rank" in recs.columns:
        recs = recs.sort_values(["user_id", "rank"], kind="stable")
    users = pd.unique(recs["user_id"])
    row = pd.Index(users).get_indexer(recs["user_id"].to_numpy())
    pos = recs.groupby("user_id", sort=False).cumcount().to_numpy()
    col = pd.Index(item_ids).get_indexer(recs["item_id"].to_numpy())
    if (col < 0).any():
        bad = recs["item_id"].to_numpy()[col < 0][:5].tolist()
        raise ValueError(f"candidates name items that are not in the catalog: {bad}")
    width = int(pos.max()) + 1 if len(pos) else 0
    idx = np.full((len(users), width), -1, dtype=np.int64)
    scores = np.full((len(users), width), np.nan)
    idx[row, pos] = col
    scores[row, pos] = recs["score"].to_numpy(dtype=float)
    return np.asarray(users), idx, scores


def mmr_select(idx: np.ndarray, scores: np.ndarray, features, lambda_: float, k: int,
               metric: str = "jaccard", batch_size: int = 256):
    """Greedy MMR over candidate arrays (from :func:`candidate_arrays`), all users at once.

    Returns ``(picks, gains)``: users x min(k, C) arrays of positions into each user's
    candidates (``-1`` when a user has fewer candidates) and the MMR value of each pick.
    Ties go to the candidate the base ranked higher, so ``lambda_ = 1`` returns the base order.
    """
    n_users, width = idx.shape
    k = min(k, width)
    picks = np.full((n_users, k), -1, dtype=np.int64)
    gains = np.full((n_users, k), np.nan)
    for start in range(0, n_users, batch_size):
        b_idx, b_scores = idx[start:start + batch_size], scores[start:start + batch_size]
        valid = b_idx >= 0
        lo = np.nanmin(np.where(valid, b_scores, np.nan), axis=1, keepdims=True)
        hi = np.nanmax(np.where(valid, b_scores, np.nan), axis=1, keepdims=True)
        span = hi - lo
        rel = np.divide(b_scores - lo, span, out=np.ones_like(b_scores),
                        where=span > 0)                        # all tied: every candidate 1
        sim = np.nan_to_num(M.list_similarities(b_idx, features, metric), nan=0.0)
        max_sim = np.zeros(b_idx.shape)
        free = valid.copy()
        rows = np.arange(len(b_idx))
        for t in range(k):
            obj = np.where(free, lambda_ * rel - (1 - lambda_) * max_sim, -np.inf)
            best = obj.argmax(axis=1)                          # first of equals: base order
            ok = np.isfinite(obj[rows, best])
            picks[start + rows[ok], t] = best[ok]
            gains[start + rows[ok], t] = obj[rows[ok], best[ok]]
            free[rows[ok], best[ok]] = False
            max_sim[ok] = np.maximum(max_sim[ok], sim[rows[ok], :, best[ok]])
    return picks, gains


def mmr_rerank(candidates: pd.DataFrame, features, item_ids: np.ndarray, lambda_: float,
               k: int, metric: str = "jaccard") -> pd.DataFrame:
    """Re-rank ready-made candidate lists with MMR (see the module docstring).

    Parameters
    ----------
    candidates : DataFrame ``user_id, item_id, score[, rank]``
        Each user's candidates with the base model's scores (higher is better); any source,
        e.g. a classic model's ``recommend(k=100)`` or an LLM's order (:func:`ranking_frame`).
    features : items x features array or sparse matrix, rows in ``item_ids`` order
        Genre indicators (``metric="jaccard"``) or item vectors (``metric="cosine"``).
    item_ids : the catalog's item ids, in the row order of ``features``
    lambda_ : float in [0, 1]
        Weight of relevance against novelty within the list.
    k : int
        Length of each re-ranked list.

    Returns
    -------
    DataFrame ``user_id, item_id, score, rank``: ``score`` is the MMR value at the time of
    the pick (it need not decrease down the list).
    """
    _check_lambda(lambda_)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    users, idx, scores = candidate_arrays(candidates, item_ids)
    picks, gains = mmr_select(idx, scores, features, lambda_, k, metric)
    keep = picks >= 0
    rows = np.repeat(np.arange(len(users)), picks.shape[1]).reshape(picks.shape)
    chosen = idx[rows[keep], picks[keep]]
    return pd.DataFrame({
        "user_id": users[rows[keep]],
        "item_id": np.asarray(item_ids)[chosen],
        "score": gains[keep],
        "rank": np.broadcast_to(np.arange(1, picks.shape[1] + 1), picks.shape)[keep],
    }, columns=RECOMMENDATION_COLUMNS)


def ranking_frame(ranked: dict) -> pd.DataFrame:
    """Ordered lists ``{user_id: [item ids, best first]}`` as a candidate frame whose score
    is ``n - position`` (the best of ``n`` items scores ``n``): how an order with no scores,
    such as an LLM's answer, enters :func:`mmr_rerank`.

    >>> ranking_frame({7: ["b", "a"]})[["item_id", "score", "rank"]].values.tolist()
    [['b', 2.0, 1], ['a', 1.0, 2]]
    """
    frames = [pd.DataFrame({"user_id": u, "item_id": list(items),
                            "score": np.arange(len(items), 0, -1, dtype=float),
                            "rank": np.arange(1, len(items) + 1)})
              for u, items in ranked.items() if len(items)]
    if not frames:
        return pd.DataFrame(columns=RECOMMENDATION_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _check_lambda(lambda_) -> None:
    if isinstance(lambda_, bool) or not isinstance(lambda_, (int, float, np.number)) \
            or not 0 <= lambda_ <= 1:
        raise ValueError(f"lambda_ weighs relevance against diversity and must lie in [0, 1], "
                         f"got {lambda_!r}")


class MMR(Recommender):
    """Diversify any recommender's lists by Maximal Marginal Relevance (module docstring).

    Parameters
    ----------
    base : Recommender
        The model whose top ``n_candidates`` are re-ranked. ``fit`` fits it; a ``base``
        already fitted can be wrapped and used at once, without ``fit``.
    lambda_ : float in [0, 1]
        1 keeps the base order; lower values trade relevance for diversity.
    n_candidates : int
        How many of the base's items per user MMR chooses from (at least ``k``).
    similarity : "genres", or an items x d array / DataFrame of item vectors
        ``"genres"``: Jaccard similarity of the catalog's genre sets. An array: one row per
        catalog item, in the training catalog's order (``train.item_ids``); a DataFrame: rows
        indexed by item id. Vectors are compared by cosine.

    >>> from perso_kit.recommenders import EASE
    >>> MMR(EASE(), lambda_=0.5).get_params()["base__l2"]
    300.0
    """

    def __init__(self, base: Recommender, lambda_: float = 0.7, n_candidates: int = 100,
                 similarity="genres"):
        if not isinstance(base, Recommender):
            raise ValueError(f"base must be a Recommender, got {type(base).__name__}")
        _check_lambda(lambda_)
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, (int, np.integer)) \
                or n_candidates < 1:
            raise ValueError(f"n_candidates must be a whole number of at least 1, got "
                             f"{n_candidates!r}")
        if isinstance(similarity, str) and similarity != "genres":
            raise ValueError(f"similarity must be 'genres' or an items x d array of item "
                             f"vectors, got {similarity!r}")
        self.base = base
        self.lambda_ = float(lambda_)
        self.n_candidates = int(n_candidates)
        self.similarity = similarity

    @property
    def name(self) -> str:
        return getattr(self, "_name", None) or f"MMR({self.base.name}, lambda={self.lambda_:g})"

    @name.setter
    def name(self, value: str | None) -> None:
        self._name = value

    def __repr__(self) -> str:
        sim = self.similarity if isinstance(self.similarity, str) else \
            f"<{type(self.similarity).__name__} {np.shape(self.similarity)}>"
        return (f"MMR(base={self.base!r}, lambda_={self.lambda_!r}, "
                f"n_candidates={self.n_candidates!r}, similarity={sim!r})")

    def fit(self, train: Dataset) -> "MMR":
        super().fit(train)
        self.base.fit(train)
        return self

    def _check_fitted(self) -> Dataset:
        return self.base._check_fitted()          # the base's catalog is the one re-ranked

    def features(self, train: Dataset):
        """``(features, metric)`` for :func:`mmr_rerank` on ``train``'s catalog."""
        if isinstance(self.similarity, str):
            return train.genre_matrix()[0], "jaccard"
        if isinstance(self.similarity, pd.DataFrame):
            vecs = self.similarity.reindex(train.item_ids)
            if vecs.isna().any(axis=None):
                lost = train.item_ids[vecs.isna().any(axis=1).to_numpy()][:5].tolist()
                raise ValueError(f"similarity has no vector for catalog items {lost}")
            return vecs.to_numpy(dtype=float), "cosine"
        vecs = np.asarray(self.similarity, dtype=float)
        if vecs.ndim != 2 or vecs.shape[0] != train.n_items:
            raise ValueError(f"similarity vectors must be an items x d array with one row per "
                             f"catalog item ({train.n_items}), got shape {vecs.shape}")
        return vecs, "cosine"

    def recommend(self, users: Iterable | None = None, k: int = 10, exclude_seen: bool = True,
                  items: Iterable | None = None) -> pd.DataFrame:
        """The base's top ``n_candidates`` per user, re-ranked by MMR and cut at ``k``."""
        train = self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if k > self.n_candidates:
            raise ValueError(f"k={k} is more than n_candidates={self.n_candidates}: MMR picks "
                             "the list among the base's candidates; raise n_candidates")
        cands = self.base.recommend(users=users, k=self.n_candidates,
                                    exclude_seen=exclude_seen, items=items)
        features, metric = self.features(train)
        return mmr_rerank(cands, features, train.item_ids, self.lambda_, k, metric)


def diversity_tradeoff(orders: dict, split, lambdas=(1.0, 0.7, 0.5, 0.3, 0.0), k: int = 10,
                       users=None, features=None, metric: str = "jaccard",
                       ci: float | None = 0.95, n_boot: int = 1000, seed: int | None = 0) -> dict:
    """The accuracy-diversity trade-off of rankers that already ranked the same candidates.

    For each ranker's lists (``{name: {user_id: [item ids, best first]}}``, e.g. an LLM
    re-ranker's ``ranked_`` and its retriever's order) and each ``lambda``, re-rank with MMR
    (relevance from the rank: :func:`ranking_frame`, so scored and unscored orders are treated
    alike) and score the top ``k`` with :func:`~perso_kit.evaluate.evaluate_recommendations`.
    Nothing is asked of any model: the orders are re-used as they are.

    Returns ``{name: table}``, one row per lambda (column ``lambda``) with the evaluation's
    columns (``ndcg@k``, ``ild@k``, with ``_lo``/``_hi`` intervals when ``ci`` is given), ready
    for :func:`~perso_kit.plots.classic.plot_diversity_tradeoff`. ``features`` defaults to
    the catalog's genres (Jaccard).
    """
    from ..evaluate import evaluate_recommendations

    train = split.train
    if features is None:
        features, metric = train.genre_matrix()[0], "jaccard"
    out = {}
    for name, ranked in orders.items():
        frame = ranking_frame(ranked)
        rows = []
        for lam in lambdas:
            recs = mmr_rerank(frame, features, train.item_ids, lam, k, metric)
            table = evaluate_recommendations(recs, split, k=k, users=users, model=str(name),
                                             ci=ci, n_boot=n_boot, seed=seed)
            rows.append(table.iloc[0].to_dict() | {"lambda": float(lam)})
        out[name] = pd.DataFrame(rows)
    return out
