"""Features of (user, candidate item) pairs, for the learning-to-rank stage.

A *feature function* takes the pairs to describe and the *history* it may look at, and returns
new columns, one value per pair::

    def my_feature(pairs: pd.DataFrame, history: Dataset) -> dict[str, np.ndarray]:
        ...

``pairs`` has at least ``user_id`` and ``item_id`` (and whatever columns were built before it,
e.g. the retrievers' scores). ``history`` is the data the features are allowed to see -- the
training interactions, never the labels the ranker is fitted to predict (see
:mod:`perso_kit.recommenders.ltr` for why this matters). :func:`build_features` runs a list of
feature functions; add your own to the list, or wrap a ready-made table with
:func:`item_columns`, :func:`user_columns` or :func:`pair_columns` (for instance, item attributes
computed elsewhere).

>>> from perso_kit import load_dataset
>>> ds = load_dataset("demo")
>>> pairs = pd.DataFrame({"user_id": [1, 1], "item_id": [10, 11]})
>>> build_features(pairs, ds).columns[:4].tolist()
['user_id', 'item_id', 'item_log_popularity', 'item_mean_rating']
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..data.dataset import Dataset

FeatureFunction = Callable[[pd.DataFrame, Dataset], "Mapping[str, np.ndarray] | pd.DataFrame"]

SECONDS_PER_YEAR = 365.25 * 24 * 3600


def _item_rows(pairs: pd.DataFrame, history: Dataset) -> np.ndarray:
    return history.item_index(pairs["item_id"].to_numpy())


def _user_rows(pairs: pd.DataFrame, history: Dataset) -> np.ndarray:
    return history.user_index(pairs["user_id"].to_numpy())


def item_popularity_features(pairs: pd.DataFrame, history: Dataset) -> dict:
    """How many users interacted with the item (log scale) and its average rating (NaN if
    nobody rated it in the history)."""
    i = _item_rows(pairs, history)
    pop = history.item_popularity().to_numpy().astype(float)
    sums = np.asarray(history.matrix("rating").sum(axis=0)).ravel()
    mean = np.divide(sums, pop, out=np.full(len(pop), np.nan), where=pop > 0)
    return {"item_log_popularity": np.log1p(pop[i]), "item_mean_rating": mean[i]}


def item_age_features(pairs: pd.DataFrame, history: Dataset) -> dict:
    """The item's release year, its age in years at the end of the history, and how long it
    has been in the log (years since its first interaction; NaN for items never seen)."""
    i = _item_rows(pairs, history)
    inter = history.interactions
    end = inter["timestamp"].max() if len(inter) else 0
    year = history.items["year"].to_numpy(dtype=float, na_value=np.nan)
    end_year = 1970 + end / SECONDS_PER_YEAR
    first = inter.groupby("item_id")["timestamp"].min()
    first_ts = first.reindex(history.item_ids).to_numpy(dtype=float)
    return {"item_year": year[i], "item_age_years": end_year - year[i],
            "item_years_in_log": (end - first_ts[i]) / SECONDS_PER_YEAR}


def user_activity_features(pairs: pd.DataFrame, history: Dataset) -> dict:
    """How many items the user interacted with (log scale) and the user's average rating."""
    u = _user_rows(pairs, history)
    act = history.user_activity().to_numpy().astype(float)
    sums = np.asarray(history.matrix("rating").sum(axis=1)).ravel()
    mean = np.divide(sums, act, out=np.full(len(act), np.nan), where=act > 0)
    return {"user_log_activity": np.log1p(act[u]), "user_mean_rating": mean[u]}


def genre_affinity_features(pairs: pd.DataFrame, history: Dataset) -> dict:
    """How much of the user's history falls in the item's genres.

    With ``share[u, g]`` the fraction of user ``u``'s items that carry genre ``g``:
    ``genre_affinity`` is the mean of ``share[u, g]`` over the item's genres and
    ``genre_affinity_max`` the largest. Also ``year_gap``: how far the item's year lies from the
    average year of the user's items.
    """
    u, i = _user_rows(pairs, history), _item_rows(pairs, history)
    G, _ = history.genre_matrix()                       # items x genres, one-hot
    X = history.matrix()
    counts = np.asarray((X @ G).todense())              # users x genres
    act = np.asarray(X.sum(axis=1)).ravel()
    share = counts / np.maximum(act, 1)[:, None]
    g_items = G[i]
    per_genre = g_items.multiply(share[u]).tocsr()      # pairs x genres, nonzero on item genres
    n_gen = np.diff(g_items.indptr)
    total = np.asarray(per_genre.sum(axis=1)).ravel()
    mean = np.divide(total, n_gen, out=np.zeros(len(n_gen)), where=n_gen > 0)
    best = np.asarray(per_genre.max(axis=1).todense()).ravel()
    year = history.items["year"].to_numpy(dtype=float, na_value=np.nan)
    known = ~np.isnan(year)
    year_sum = X[:, known] @ year[known]
    n_known = np.asarray(X[:, known].sum(axis=1)).ravel()
    user_year = np.divide(year_sum, n_known, out=np.full(len(n_known), np.nan),
                          where=n_known > 0)
    return {"genre_affinity": mean, "genre_affinity_max": best,
            "year_gap": np.abs(year[i] - user_year[u])}


def time_features(pairs: pd.DataFrame, history: Dataset) -> dict:
    """When the item was watched, compared with when the user was active.

    ``item_pop_near_user_30d`` (log scale): how many history interactions with the item fall
    within 30 days of the user's median interaction time -- what was being watched when this
    user was around. ``item_first_minus_user_last_days``: days from the user's last interaction
    to the item's first one (positive: the item appeared after the user left).
    """
    inter = history.interactions
    ts = inter["timestamp"].to_numpy(dtype=np.int64)
    ui = history.user_index(inter["user_id"].to_numpy())
    ii = history.item_index(inter["item_id"].to_numpy())
    u, i = _user_rows(pairs, history), _item_rows(pairs, history)
    by_user = pd.Series(ts).groupby(ui)
    median = by_user.median().reindex(range(history.n_users)).to_numpy()
    last = by_user.max().reindex(range(history.n_users)).to_numpy()
    first = pd.Series(ts).groupby(ii).min().reindex(range(history.n_items)).to_numpy()
    # one sorted key per interaction: item first, then time; count keys in a window per pair
    span = np.int64(ts.max() - ts.min() + 1 + 2 * 30 * 86400) if len(ts) else np.int64(1)
    base = np.int64(ts.min()) - 30 * 86400 if len(ts) else np.int64(0)
    keys = np.sort(ii.astype(np.int64) * span + (ts - base))
    centre = np.nan_to_num(median[u], nan=float(base)).astype(np.int64) - base
    lo = np.searchsorted(keys, i.astype(np.int64) * span + np.clip(centre - 30 * 86400, 0, None))
    hi = np.searchsorted(keys, i.astype(np.int64) * span + np.clip(centre + 30 * 86400, 0,
                                                                     span - 1), side="right")
    near = np.where(np.isnan(median[u]), np.nan, np.log1p(hi - lo))
    return {"item_pop_near_user_30d": near,
            "item_first_minus_user_last_days": (first[i] - last[u]) / 86400}


#: the features :class:`~perso_kit.recommenders.ltr.TwoStageRanker` uses by default
DEFAULT_FEATURES: tuple[FeatureFunction, ...] = (
    item_popularity_features, item_age_features, user_activity_features,
    genre_affinity_features, time_features,
)


def _join_columns(pairs: pd.DataFrame, table: pd.DataFrame, keys: list[str],
                  columns: Sequence[str] | None, prefix: str) -> dict:
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise ValueError(f"the feature table lacks its key columns {missing}")
    cols = [c for c in table.columns if c not in keys] if columns is None else list(columns)
    if table.duplicated(keys).any():
        raise ValueError(f"the feature table repeats keys {keys}: one row per key, please")
    joined = pairs[keys].merge(table[keys + cols], on=keys, how="left")
    return {f"{prefix}{c}": joined[c].to_numpy() for c in cols}


def item_columns(table: pd.DataFrame, columns: Sequence[str] | None = None,
                 prefix: str = "") -> FeatureFunction:
    """A feature function that looks up per-item columns of ``table`` (keyed by ``item_id``).

    Items missing from the table get NaN (LightGBM treats it as "unknown").

    >>> extra = item_columns(pd.DataFrame({"item_id": [10], "is_sequel": [1.0]}))
    >>> extra(pd.DataFrame({"user_id": [1, 1], "item_id": [10, 11]}), None)["is_sequel"]
    array([ 1., nan])
    """
    return lambda pairs, history: _join_columns(pairs, table, ["item_id"], columns, prefix)


def user_columns(table: pd.DataFrame, columns: Sequence[str] | None = None,
                 prefix: str = "") -> FeatureFunction:
    """A feature function that looks up per-user columns of ``table`` (keyed by ``user_id``)."""
    return lambda pairs, history: _join_columns(pairs, table, ["user_id"], columns, prefix)


def pair_columns(table: pd.DataFrame, columns: Sequence[str] | None = None,
                 prefix: str = "") -> FeatureFunction:
    """A feature function that looks up per-(user, item) columns of ``table``, e.g. a text
    similarity computed elsewhere; pairs missing from the table get NaN."""
    return lambda pairs, history: _join_columns(pairs, table, ["user_id", "item_id"], columns,
                                                prefix)


def build_features(pairs: pd.DataFrame, history: Dataset,
                   functions: Sequence[FeatureFunction] = DEFAULT_FEATURES) -> pd.DataFrame:
    """Add the columns of every feature function to ``pairs`` (a new frame, same row order).

    Parameters
    ----------
    pairs : DataFrame
        At least ``user_id`` and ``item_id``; existing columns are kept.
    history : Dataset
        What the features may look at (the training interactions, never the labels).
    functions : sequence of feature functions
        Each returns a dict (or DataFrame) of columns with one value per pair.

    Returns
    -------
    DataFrame: ``pairs`` plus the new columns, in order.
    """
    out = pairs.reset_index(drop=True).copy()
    for fn in functions:
        cols = fn(out, history)
        if isinstance(cols, pd.DataFrame):
            cols = {c: cols[c].to_numpy() for c in cols.columns}
        name = getattr(fn, "__name__", repr(fn))
        for col, values in cols.items():
            values = np.asarray(values)
            if len(values) != len(out):
                raise ValueError(f"feature function {name} returned {len(values)} values for "
                                 f"column {col!r}; expected one per pair ({len(out)})")
            if col in out.columns:
                raise ValueError(f"feature function {name} returned column {col!r}, which "
                                 "already exists; give it another name (prefix=...)")
            out[col] = values
    return out
