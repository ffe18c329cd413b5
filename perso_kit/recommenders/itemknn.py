"""Item-based nearest neighbours: "people who watched this also watched".

Two items are similar when the same users interacted with both. With ``X`` the binary
users x items matrix, the *shrunk cosine* similarity of items ``i`` and ``j`` is::

    sim(i, j) = |users(i) & users(j)| / (sqrt(|users(i)|) * sqrt(|users(j)|) + shrinkage)

The shrinkage term (Koren 2008) pulls similarities that rest on few co-occurrences towards 0:
two items that share one viewer are not "perfectly similar". Each item keeps only its
``n_neighbors`` most similar items; a user's score for item ``j`` is the sum of the similarities
between ``j`` and the items the user interacted with, over the neighbourhoods that contain
``j`` (Deshpande & Karypis 2004)::

    score(u, j) = sum over items i of u, with j among i's neighbours, of sim(i, j)
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..data.dataset import Dataset
from .base import Recommender
from .similar import SimilarItemsMixin


class ItemKNN(SimilarItemsMixin, Recommender):
    """Item-kNN with shrunk cosine similarity (see the module docstring).

    Parameters
    ----------
    n_neighbors : int
        How many most similar items each item keeps (the neighbourhood size).
    shrinkage : float
        Added to the cosine denominator; larger values distrust rare co-occurrences more.
    block_size : int
        Items whose similarities are computed at once (bounds memory: block x n_items floats).

    Attributes
    ----------
    similarity_ : scipy.sparse.csr_matrix, items x items
        Row ``i`` holds item ``i``'s ``n_neighbors`` neighbours and their similarities.

    Example
    -------
    >>> from perso_kit import load_dataset
    >>> model = ItemKNN(n_neighbors=50, shrinkage=10).fit(load_dataset("demo"))
    >>> model.recommend(users=[1], k=5)["rank"].tolist()
    [1, 2, 3, 4, 5]
    """

    def __init__(self, n_neighbors: int = 100, shrinkage: float = 10.0, block_size: int = 1024):
        if n_neighbors < 1:
            raise ValueError(f"n_neighbors must be at least 1, got {n_neighbors}")
        if shrinkage < 0:
            raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
        self.n_neighbors = int(n_neighbors)
        self.shrinkage = float(shrinkage)
        self.block_size = int(block_size)

    def fit(self, train: Dataset) -> "ItemKNN":
        super().fit(train)
        X = train.matrix().astype(np.float64)
        self.X_ = X.tocsr()
        Xt = self.item_users_ = X.T.tocsr()                # items x users
        self.norms_ = np.sqrt(np.asarray(Xt.sum(axis=1)).ravel())
        n = Xt.shape[0]
        k = min(self.n_neighbors, n - 1)
        rows, cols, vals = [], [], []
        for start in range(0, n, self.block_size):
            block = np.arange(start, min(start + self.block_size, n))
            sim = self._cosine_rows(Xt, block)
            sim[np.arange(len(block)), block] = 0.0        # an item is not its own neighbour
            if k < n:
                top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(n), sim.shape)
            top_vals = np.take_along_axis(sim, top, axis=1)
            keep = top_vals > 0
            rows.append(np.repeat(block, top.shape[1])[keep.ravel()])
            cols.append(top[keep])
            vals.append(top_vals[keep])
        self.similarity_ = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        return self

    def _cosine_rows(self, Xt: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        """Dense shrunk-cosine similarities of the items ``rows`` to every item."""
        co = (Xt[rows] @ Xt.T).toarray()                    # co-occurrence counts
        denom = np.outer(self.norms_[rows], self.norms_) + self.shrinkage
        return np.divide(co, denom, out=np.zeros_like(co), where=denom > 0)

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.asarray((self.X_[user_idx] @ self.similarity_).todense())

    def _item_similarities(self, item_idx: int) -> np.ndarray:
        return self._cosine_rows(self.item_users_, np.array([item_idx]))[0]
