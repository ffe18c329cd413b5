"""EASE on the head of the catalog: what replaces EASE when the catalog is too large for it.

:class:`~perso_kit.recommenders.EASE` keeps a dense items x items matrix and inverts it: memory
grows with items^2 and time with items^3. At ML-25M's 62,423 movies that is 31 GB of float64
for one matrix and hours of one core for the inversion, so EASE refuses catalogs above
``max_items`` (20,000). Popularity is very uneven, though: a few thousand items hold most of the
interactions. ``HeadEASE`` therefore fits EASE on the ``n_head`` most popular items only (the
*head*), learning from every user's head interactions, and ranks the other items (the *tail*)
after the head, by popularity::

    score(u, j) = x_u[head] . B[:, j]                                 j in the head
    score(u, j) = min over head items h of score(u, h) - 1 + pop(j) / (max tail pop + 1)
                                                                      j in the tail

The tail scores sit below every head score of the same user (each is within ``(-1, 0)`` of one
less than the user's lowest head score) and keep the tail's popularity order, so a list
reaches the tail only when the user has seen every head item (or when ``recommend(items=...)``
restricts the candidates to the tail). What the head leaves out is measured by
:attr:`HeadEASE.head_share_`: the share of training interactions on head items. Lists can never
hold a tail item for most users, so the share of *test* interactions in the tail is a ceiling
on the hits the model gives up (``perso_kit.one_machine`` reports it).

Example
-------
>>> from perso_kit import load_dataset
>>> model = HeadEASE(n_head=500, l2=300).fit(load_dataset("demo"))
>>> model.weights_.shape, round(model.head_share_, 2)
((500, 500), 0.75)
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from ..data.dataset import Dataset
from .base import Recommender
from .ease import ease_weights
from .similar import SimilarItemsMixin


class HeadEASE(SimilarItemsMixin, Recommender):
    """EASE on the ``n_head`` most popular items, the tail ranked after it by popularity.

    Parameters
    ----------
    n_head : int
        How many of the most popular training items EASE is fitted on (ties: the lower item
        index first). Memory is ``n_head^2`` floats (8 bytes while inverting); time grows as
        ``n_head^3``. With ``n_head`` at least the catalog size it is exactly :class:`EASE`.
    l2 : float
        L2 regularization of ``B`` (as in :class:`EASE`).
    num_threads : int
        BLAS threads for the inversion (0: BLAS decides; one by default, as in EASE).

    Attributes
    ----------
    head_ : ndarray of int
        Column indices of the head items, most popular first.
    weights_ : ndarray, n_head x n_head
        EASE's ``B`` on the head (rows and columns in the order of ``head_``).
    head_share_ : float
        Share of the training interactions that are on head items.
    popularity_ : ndarray
        Training interactions per item (the whole catalog).
    """

    def __init__(self, n_head: int = 10_000, l2: float = 300.0, num_threads: int = 1):
        if n_head < 1:
            raise ValueError(f"n_head must be at least 1, got {n_head}")
        if l2 <= 0:
            raise ValueError(f"l2 must be positive (it makes X^T X + l2 I invertible), got {l2}")
        self.n_head = int(n_head)
        self.l2 = float(l2)
        self.num_threads = int(num_threads)

    def fit(self, train: Dataset) -> "HeadEASE":
        super().fit(train)
        X = train.matrix().tocsc()
        pop = np.diff(X.indptr).astype(np.float64)               # users per item
        self.popularity_ = pop
        order = np.lexsort((np.arange(len(pop)), -pop))         # most popular, then lower index
        self.head_ = order[:min(self.n_head, len(pop))]
        self.in_head_ = np.zeros(len(pop), dtype=bool)
        self.in_head_[self.head_] = True
        self.head_share_ = float(pop[self.head_].sum() / max(pop.sum(), 1.0))
        Xh = X[:, self.head_].tocsr()
        self.X_head_ = Xh
        self.weights_ = ease_weights(Xh, self.l2, self.num_threads)
        tail_pop = pop[~self.in_head_]
        self.tail_rank_ = tail_pop / ((tail_pop.max() if len(tail_pop) else 0.0) + 1.0)
        return self

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        with threadpool_limits(limits=self.num_threads or None, user_api="blas"):
            head = np.asarray(self.X_head_[user_idx] @ self.weights_, dtype=np.float64)
        scores = np.empty((len(user_idx), len(self.popularity_)), dtype=np.float64)
        scores[:, self.head_] = head
        floor = head.min(axis=1, keepdims=True) - 1.0
        scores[:, ~self.in_head_] = floor + self.tail_rank_[None, :]
        return scores

    def _item_similarities(self, item_idx: int) -> np.ndarray:
        # how strongly having this head item predicts each other head item; 0 for the tail
        sims = np.zeros(len(self.popularity_))
        if self.in_head_[item_idx]:
            row = int(np.flatnonzero(self.head_ == item_idx)[0])
            sims[self.head_] = self.weights_[row]
        return sims
