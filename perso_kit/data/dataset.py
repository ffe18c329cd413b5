"""The one data type every part of the kit speaks: :class:`Dataset`.

A dataset is three tables:

``interactions``
    one row per (user, item) event: ``user_id``, ``item_id``, ``rating`` (float; 1.0 where the
    source has no ratings) and ``timestamp`` (seconds since 1970, int64).
``items``
    the catalog, one row per item, *including items nobody interacted with*: ``item_id``,
    ``title``, ``year`` (nullable Int64), ``genres`` (a tuple of strings), ``description``
    (a string, empty where the source has none), plus any extra columns the source has.
``users``
    one row per user: ``user_id`` plus whatever the source knows (age, gender, ...).

A split (see :mod:`perso_kit.split`) returns *views* of one dataset: the same catalog and users,
different interactions. Because the catalog is shared, every view maps ids to the same dense
indices, so a model fitted on ``train`` scores items in the same columns as ``test``.

Example
-------
>>> from perso_kit import load_dataset
>>> ds = load_dataset("demo")
>>> ds.n_users, ds.n_items > 1000
(1000, True)
>>> X = ds.matrix()          # users x items, scipy CSR, 1.0 where the user interacted
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
ITEM_COLUMNS = ["item_id", "title", "year", "genres", "description"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Interactions, catalog and users of one recommendation data set (see the module docstring).

    Parameters
    ----------
    name : str
        A short name, e.g. ``"demo"`` or ``"ml-100k"``; split views append what they hold
        (``"ml-100k/train"``).
    interactions, items, users : pandas.DataFrame
        The three tables, with at least the columns described in the module docstring.
    description : str
        One or two sentences a student can read: where the data comes from.
    meta : dict
        Facts a source adds (the demo world's new releases and training cutoff, for instance).
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in INTERACTION_COLUMNS if c not in self.interactions.columns]
        if missing:
            raise ValueError(f"{self.name}: interactions lack columns {missing}")
        missing = [c for c in ITEM_COLUMNS if c not in self.items.columns]
        if missing:
            raise ValueError(f"{self.name}: items lack columns {missing}")
        if "user_id" not in self.users.columns:
            raise ValueError(f"{self.name}: users lack the column 'user_id'")
        if self.items["item_id"].duplicated().any():
            raise ValueError(f"{self.name}: item_id is not unique in the catalog")
        if self.users["user_id"].duplicated().any():
            raise ValueError(f"{self.name}: user_id is not unique in the users table")

    # ----------------------------------------------------------------------------- sizes
    @property
    def n_users(self) -> int:
        """Number of users in the users table (a split view keeps all of them)."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Number of items in the catalog, rated or not."""
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    @property
    def density(self) -> float:
        """Share of the user x item matrix that holds an interaction."""
        return self.n_interactions / max(1, self.n_users * self.n_items)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: {self.n_users:,} users, {self.n_items:,} items, "
                f"{self.n_interactions:,} interactions, density {self.density:.2%})")

    def summary(self) -> pd.Series:
        """Sizes and density as a small Series, for display in a notebook."""
        per_user = self.interactions.groupby("user_id").size()
        return pd.Series({
            "users": self.n_users,
            "items in catalog": self.n_items,
            "items with interactions": self.interactions["item_id"].nunique(),
            "interactions": self.n_interactions,
            "density": round(self.density, 5),
            "median interactions per user": float(per_user.median()) if len(per_user) else 0.0,
        }, name=self.name, dtype=object)

    # ----------------------------------------------------------------------------- indices
    @cached_property
    def user_ids(self) -> np.ndarray:
        """All user ids, in the order of the matrix rows."""
        return self.users["user_id"].to_numpy()

    @cached_property
    def item_ids(self) -> np.ndarray:
        """All item ids, in the order of the matrix columns."""
        return self.items["item_id"].to_numpy()

    @cached_property
    def _user_pos(self) -> pd.Index:
        return pd.Index(self.user_ids)

    @cached_property
    def _item_pos(self) -> pd.Index:
        return pd.Index(self.item_ids)

    def user_index(self, user_ids: Iterable) -> np.ndarray:
        """Dense row indices of ``user_ids``; raises ``KeyError`` naming unknown users."""
        ids = np.asarray(list(user_ids) if not isinstance(user_ids, (np.ndarray, pd.Series))
                         else user_ids)
        idx = self._user_pos.get_indexer(ids)
        if (idx < 0).any():
            bad = ids[idx < 0][:5].tolist()
            raise KeyError(f"{self.name}: unknown user ids {bad} (not in the users table)")
        return idx

    def item_index(self, item_ids: Iterable) -> np.ndarray:
        """Dense column indices of ``item_ids``; raises ``KeyError`` naming unknown items."""
        ids = np.asarray(list(item_ids) if not isinstance(item_ids, (np.ndarray, pd.Series))
                         else item_ids)
        idx = self._item_pos.get_indexer(ids)
        if (idx < 0).any():
            bad = ids[idx < 0][:5].tolist()
            raise KeyError(f"{self.name}: unknown item ids {bad} (not in the catalog)")
        return idx

    # ----------------------------------------------------------------------------- matrices
    def matrix(self, values: str | None = None) -> sp.csr_matrix:
        """The users x items interaction matrix (CSR, float32).

        ``values=None`` puts 1.0 where a user interacted with an item (implicit feedback);
        ``values="rating"`` puts the rating. Repeated (user, item) pairs are counted once.
        """
        cache = self.__dict__.setdefault("_matrix_cache", {})
        if values not in cache:
            u = self.user_index(self.interactions["user_id"].to_numpy())
            i = self.item_index(self.interactions["item_id"].to_numpy())
            data = (np.ones(len(u), dtype=np.float32) if values is None
                    else self.interactions[values].to_numpy(dtype=np.float32))
            m = sp.csr_matrix((data, (u, i)), shape=(self.n_users, self.n_items))
            m.sum_duplicates()
            if values is None:
                m.data[:] = 1.0
            cache[values] = m
        return cache[values]

    def item_popularity(self) -> pd.Series:
        """Number of distinct users per item, over the whole catalog (0 for unseen items)."""
        counts = np.asarray(self.matrix().sum(axis=0)).ravel()
        return pd.Series(counts.astype(np.int64), index=pd.Index(self.item_ids, name="item_id"),
                         name="popularity")

    def user_activity(self) -> pd.Series:
        """Number of distinct items per user, over all users (0 for users with none here)."""
        counts = np.asarray(self.matrix().sum(axis=1)).ravel()
        return pd.Series(counts.astype(np.int64), index=pd.Index(self.user_ids, name="user_id"),
                         name="activity")

    def genre_matrix(self) -> tuple[sp.csr_matrix, list[str]]:
        """Items x genres one-hot matrix (CSR) and the genre names, in column order."""
        names = sorted({g for gs in self.items["genres"] for g in gs})
        pos = {g: j for j, g in enumerate(names)}
        rows, cols = [], []
        for r, gs in enumerate(self.items["genres"]):
            for g in gs:
                rows.append(r)
                cols.append(pos[g])
        m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                          shape=(self.n_items, len(names)))
        return m, names

    def titles(self, item_ids: Iterable) -> list[str]:
        """Titles of ``item_ids``, in the order given."""
        return self.items["title"].to_numpy()[self.item_index(item_ids)].tolist()

    def history(self, user_id, n: int | None = None) -> pd.DataFrame:
        """One user's interactions joined with titles, oldest first (the last ``n`` if given)."""
        h = self.interactions[self.interactions["user_id"] == user_id].sort_values("timestamp")
        if n is not None:
            h = h.tail(n)
        return h.merge(self.items[["item_id", "title", "year", "genres"]], on="item_id",
                       how="left")

    # ----------------------------------------------------------------------------- views
    def with_interactions(self, interactions: pd.DataFrame, suffix: str) -> "Dataset":
        """A view with the same catalog and users but other interactions (used by splits)."""
        view = replace(self, name=f"{self.name}/{suffix}",
                       interactions=interactions.reset_index(drop=True))
        # share the id indices: they depend only on the catalog and the users
        for key in ("user_ids", "item_ids", "_user_pos", "_item_pos"):
            if key in self.__dict__:
                view.__dict__[key] = self.__dict__[key]
        return view


def collapse_duplicates(inter: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per (user, item) pair: the latest (largest ``timestamp``, the last given among
    equal ones), with a ``count`` column; returns it and how many rows were dropped. A frame
    without duplicate pairs comes back unchanged (no ``count`` column)."""
    dup = inter.duplicated(["user_id", "item_id"], keep=False)
    if not dup.any():
        return inter, 0
    order = inter.assign(_row=np.arange(len(inter))).sort_values(["timestamp", "_row"],
                                                                  kind="stable")
    counts = order.groupby(["user_id", "item_id"], sort=False)["_row"].transform("size")
    order["count"] = counts.to_numpy()
    latest = order[~order.duplicated(["user_id", "item_id"], keep="last")]
    latest = latest.sort_values("_row").drop(columns="_row")
    return latest, len(inter) - len(latest)


def make_dataset(name: str, interactions: pd.DataFrame, items: pd.DataFrame,
                 users: pd.DataFrame | None = None, description: str = "",
                 meta: dict | None = None) -> Dataset:
    """Build a :class:`Dataset` from raw tables, normalizing dtypes and filling optional columns.

    ``rating`` defaults to 1.0 and ``timestamp`` to 0 when missing; ``genres`` may be given as
    tuples, lists or ``"A|B"`` strings; ``description`` defaults to ``""``; ``users`` defaults to
    the users seen in ``interactions``.

    **Duplicate (user, item) pairs** are collapsed to one row, so that no split can put one pair
    on both sides: the *latest* row is kept (largest ``timestamp``; the last given among equal
    ones), and a ``count`` column says how many rows each pair had. A warning says how many rows
    were collapsed, and ``meta["duplicates_collapsed"]`` keeps the number. Data with no duplicate
    pair (the demo world, MovieLens) is left as it is, without a ``count`` column.

    >>> import warnings
    >>> rows = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [7, 7, 7],
    ...                      "rating": [2.0, 5.0, 3.0], "timestamp": [10, 20, 15]})
    >>> with warnings.catch_warnings(record=True):
    ...     ds = make_dataset("d", rows, pd.DataFrame({"item_id": [7], "title": ["x"],
    ...                                                "genres": [()]}))
    >>> ds.interactions[["user_id", "rating", "count"]].values.tolist(), ds.meta
    ([[1.0, 5.0, 2.0], [2.0, 3.0, 1.0]], {'duplicates_collapsed': 1})
    """
    inter = interactions.copy()
    if "rating" not in inter:
        inter["rating"] = 1.0
    if "timestamp" not in inter:
        inter["timestamp"] = 0
    inter, collapsed = collapse_duplicates(inter)
    if collapsed:
        meta = {**(meta or {}), "duplicates_collapsed": collapsed}
        warnings.warn(f"{name}: {collapsed:,} duplicate (user, item) rows collapsed into the "
                      "latest row of each pair (the 'count' column says how many rows each pair "
                      "had)", UserWarning, stacklevel=2)
    inter = inter[INTERACTION_COLUMNS + [c for c in inter.columns
                                         if c not in INTERACTION_COLUMNS]]
    inter["rating"] = inter["rating"].astype(np.float32)
    inter["timestamp"] = inter["timestamp"].astype(np.int64)

    it = items.copy()
    if "description" not in it:
        it["description"] = ""
    if "year" not in it:
        it["year"] = pd.NA
    it["year"] = it["year"].astype("Int64")
    it["genres"] = [tuple(g.split("|")) if isinstance(g, str) and g else
                    (tuple(g) if isinstance(g, (list, tuple)) else ()) for g in it["genres"]]
    it["description"] = it["description"].fillna("").astype(str)
    it = it[ITEM_COLUMNS + [c for c in it.columns if c not in ITEM_COLUMNS]]
    it = it.reset_index(drop=True)

    if users is None:
        users = pd.DataFrame({"user_id": np.sort(inter["user_id"].unique())})
    users = users.reset_index(drop=True)
    return Dataset(name=name, interactions=inter.reset_index(drop=True), items=it, users=users,
                   description=description, meta=dict(meta or {}))
