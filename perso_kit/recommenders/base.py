"""The one interface every recommender in the kit follows, classic or LLM-based.

A recommender is fitted on a training :class:`~perso_kit.data.Dataset` and recommends the
top ``k`` items for given users as a DataFrame with columns ``user_id, item_id, score, rank``::

    model = SomeRecommender(...).fit(split.train)
    recs = model.recommend(users=[1, 2, 3], k=10)       # excludes items seen in training

Most models score every catalog item for a user; they implement only
:meth:`Recommender._score` (a users x items array) and inherit ranking, the exclusion of seen
items, candidate restriction and batching from this base class. Models that work differently
(a re-ranker that calls an LLM) override :meth:`recommend` itself.

Fitted state ends in an underscore (``train_``), as in scikit-learn. The constructor's
arguments are the model's parameters, with scikit-learn's protocol: ``get_params()``,
``set_params(**params)`` and ``sklearn.base.clone(model)`` (an unfitted copy with the same
parameters). A sweep over a parameter is one line with :func:`sweep`::

    table = pk.evaluate(sweep(EASE(), l2=[30, 300, 3000]), split, k=10)
"""
from __future__ import annotations

import copy
import inspect
import itertools
from abc import ABC
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..data.dataset import Dataset

RECOMMENDATION_COLUMNS = ["user_id", "item_id", "score", "rank"]


class NotFittedError(RuntimeError):
    """Raised when a recommender is used before :meth:`Recommender.fit`."""


class Recommender(ABC):
    """Base class: ``fit(train)`` then ``recommend(users, k)`` (see the module docstring)."""

    #: how many users to score at once (bounds memory: batch x n_items floats)
    batch_size: int = 1024

    @property
    def name(self) -> str:
        """A readable name for tables and plots (the class name unless set)."""
        return getattr(self, "_name", None) or type(self).__name__

    @name.setter
    def name(self, value: str | None) -> None:
        self._name = value

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        """The constructor's named arguments: the model's parameters (sorted)."""
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values() if p.name != "self"
                      and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The model's parameters as a dict (scikit-learn's protocol). With ``deep``, a
        parameter that is itself a model adds its own as ``name__param``.

        >>> from perso_kit.recommenders import EASE
        >>> EASE(l2=50).get_params()["l2"]
        50.0
        """
        params = {}
        for key in self._param_names():
            value = getattr(self, key)
            if deep and isinstance(value, Recommender):
                params.update((f"{key}__{k}", v) for k, v in value.get_params().items())
            params[key] = value
        return params

    def set_params(self, **params) -> "Recommender":
        """Set parameters (``l2=100``, or ``base__l2=100`` for a model inside this one);
        returns ``self``. A name the model does not have raises a ``ValueError`` that lists
        the ones it has. Refit afterwards: the fitted state is not updated.

        >>> from perso_kit.recommenders import EASE
        >>> EASE().set_params(l2=50)
        EASE(l2=50.0, max_items=20000, num_threads=1)
        """
        valid = self._param_names()
        own, nested = {}, {}
        for key, value in params.items():
            head, _, rest = key.partition("__")
            if head not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {head!r}; its "
                                 f"parameters are: {', '.join(valid) or 'none'}")
            if rest and not isinstance(getattr(self, head), Recommender):
                raise ValueError(f"{type(self).__name__}.{head} is not a model, so "
                                 f"{key!r} cannot be set; set {head!r} itself")
            if rest:
                nested.setdefault(head, {})[rest] = value
            else:
                own[head] = value
        if own:  # the constructor checks and converts the new values (EASE(l2=0) is refused)
            checked = type(self)(**{**self.get_params(deep=False), **own})
            for key in own:
                setattr(self, key, getattr(checked, key))
        for head, inner in nested.items():
            getattr(self, head).set_params(**inner)
        return self

    def __sklearn_clone__(self) -> "Recommender":
        """An unfitted copy with the same parameters (what ``sklearn.base.clone`` returns).
        Models inside it are cloned too, other values deep-copied; an object that cannot be
        copied (an LLM client with its open cache) is shared."""
        return type(self)(**{k: _clone_value(v) for k, v in self.get_params(deep=False).items()})

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.startswith("_")
                  and not k.endswith("_")}
        inner = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({inner})"

    # ------------------------------------------------------------------ to implement
    def fit(self, train: Dataset) -> "Recommender":
        """Learn from ``train``; returns ``self``. Subclasses call ``super().fit(train)``."""
        self.train_ = train
        return self

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        """Scores of every catalog item for the users at these row indices (users x items).
        Higher is better; ``-inf`` means "never recommend"."""
        raise NotImplementedError(f"{self.name} does not score all items; it overrides "
                                  "recommend() instead")

    # ------------------------------------------------------------------ provided
    def _check_fitted(self) -> Dataset:
        if not hasattr(self, "train_"):
            raise NotFittedError(f"{self.name} is not fitted yet: call .fit(split.train) first")
        return self.train_

    def score(self, users: Iterable, items: Iterable) -> np.ndarray:
        """Scores of ``items`` for ``users`` (a users x items array), e.g. to re-rank
        candidates. Seen items are *not* excluded here."""
        train = self._check_fitted()
        u = train.user_index(users)
        i = train.item_index(items)
        return self._score(u)[:, i]

    def recommend(self, users: Iterable | None = None, k: int = 10, exclude_seen: bool = True,
                  items: Iterable | None = None) -> pd.DataFrame:
        """Top-``k`` items for each user.

        Parameters
        ----------
        users : ids, optional
            Users to recommend for (default: every user in the training data's users table).
        k : int
            Length of each list (at least 1).
        exclude_seen : bool
            Leave out items the user interacted with in the training data.
        items : ids, optional
            Recommend only among these items (candidates, or a filter such as "new releases").

        Returns
        -------
        DataFrame with columns ``user_id, item_id, score, rank`` (rank 1 is best), sorted by
        user then rank. A list is shorter than ``k`` only when fewer items are eligible.
        """
        train = self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        user_ids = train.user_ids if users is None else np.asarray(list(users))
        u_idx = train.user_index(user_ids)
        allowed = None
        if items is not None:
            allowed = np.zeros(train.n_items, dtype=bool)
            allowed[train.item_index(items)] = True
        seen = train.matrix() if exclude_seen else None

        frames = []
        for start in range(0, len(u_idx), self.batch_size):
            rows = u_idx[start:start + self.batch_size]
            scores = np.array(self._score(rows), dtype=np.float64, copy=True)
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            if seen is not None:
                s = seen[rows]
                scores[np.repeat(np.arange(len(rows)), np.diff(s.indptr)), s.indices] = -np.inf
            frames.append(_top_k_frame(scores, user_ids[start:start + self.batch_size],
                                       train.item_ids, k))
        if not frames:
            return pd.DataFrame(columns=RECOMMENDATION_COLUMNS)
        return pd.concat(frames, ignore_index=True)


def _clone_value(value):
    """A parameter's value for a clone (see :meth:`Recommender.__sklearn_clone__`)."""
    if isinstance(value, Recommender):
        return value.__sklearn_clone__()
    if isinstance(value, dict):
        return {k: _clone_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone_value(v) for v in value)
    try:
        return copy.deepcopy(value)
    except (TypeError, ValueError, AttributeError):  # locks, open connections: share it
        return value


def sweep(model: Recommender, **grid: Iterable) -> dict[str, Recommender]:
    """Unfitted copies of ``model``, one per combination of the values in ``grid``, named by
    what they change: ready for :func:`perso_kit.evaluate`, so a sweep is one line::

        pk.evaluate(sweep(EASE(), l2=[30, 300, 3000]), split, k=10)

    >>> from perso_kit.recommenders import EASE
    >>> list(sweep(EASE(), l2=[30, 300], max_items=[500]))
    ['EASE(l2=30, max_items=500)', 'EASE(l2=300, max_items=500)']
    """
    if not grid:
        raise ValueError("sweep() needs at least one parameter with its values, "
                         "e.g. sweep(EASE(), l2=[30, 300])")
    keys = list(grid)
    models = {}
    for values in itertools.product(*(list(grid[k]) for k in keys)):
        changes = dict(zip(keys, values))
        label = ", ".join(f"{k}={v!r}" for k, v in changes.items())
        models[f"{model.name}({label})"] = model.__sklearn_clone__().set_params(**changes)
    return models


def _top_k_frame(scores: np.ndarray, user_ids: np.ndarray, item_ids: np.ndarray,
                 k: int) -> pd.DataFrame:
    """Turn a users x items score array into the tidy top-k frame (ties: lower column first)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    # sort by score, then by column index, so ties break the same way every run
    order = np.lexsort((part, -part_scores), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    top_scores = np.take_along_axis(part_scores, order, axis=1)
    keep = np.isfinite(top_scores)
    rank = np.broadcast_to(np.arange(1, k + 1), top.shape)
    return pd.DataFrame({
        "user_id": np.repeat(user_ids, k)[keep.ravel()],
        "item_id": item_ids[top[keep]],
        "score": top_scores[keep],
        "rank": rank[keep],
    })
