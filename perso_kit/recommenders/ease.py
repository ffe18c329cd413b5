"""EASE: a shallow linear autoencoder with a closed-form solution (Steck 2019).

EASE learns an items x items weight matrix ``B`` that reconstructs each user's row of the
binary matrix ``X`` from the *other* items of that row::

    minimize  ||X - X B||^2 + l2 * ||B||^2   subject to  diag(B) = 0

The constraint stops the trivial answer ``B = I`` (an item predicting itself). The solution is
closed form: with ``P = (X^T X + l2 * I)^-1``,

    B[i, j] = -P[i, j] / P[j, j]   for i != j,      B[j, j] = 0,

so fitting is one matrix inversion (items x items) and a user's scores are ``x_u B``. Simple,
and on MovieLens one of the strongest classic baselines.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from ..data.dataset import Dataset
from .base import Recommender
from .similar import SimilarItemsMixin


class EASE(SimilarItemsMixin, Recommender):
    """Embarrassingly Shallow AutoEncoder (see the module docstring).

    Parameters
    ----------
    l2 : float
        L2 regularization of ``B``; larger values shrink the weights (a few hundred suits
        MovieLens-sized data; sweep it).
    max_items : int
        Refuse catalogs larger than this (``B`` is dense: items^2 floats).
    num_threads : int
        BLAS threads for the inversion (0: BLAS decides). One thread is the default: on a
        small machine shared with other work, a second BLAS thread often slows the inversion
        down many times over; raise it for large catalogs on a machine of your own.

    Attributes
    ----------
    weights_ : ndarray, items x items
        ``B``: ``weights_[i, j]`` is how much having item ``i`` raises the score of ``j``.

    Example
    -------
    >>> from perso_kit import load_dataset
    >>> model = EASE(l2=300).fit(load_dataset("demo"))
    >>> model.weights_.shape
    (1800, 1800)
    """

    def __init__(self, l2: float = 300.0, max_items: int = 20_000, num_threads: int = 1):
        if l2 <= 0:
            raise ValueError(f"l2 must be positive (it makes X^T X + l2 I invertible), got {l2}")
        self.l2 = float(l2)
        self.max_items = int(max_items)
        self.num_threads = int(num_threads)

    def fit(self, train: Dataset) -> "EASE":
        super().fit(train)
        if train.n_items > self.max_items:
            raise ValueError(f"EASE keeps a dense {train.n_items:,} x {train.n_items:,} matrix; "
                             f"that is above max_items={self.max_items:,}. Filter rare items "
                             "first or raise max_items if you have the memory.")
        self.X_ = train.matrix()
        self.weights_ = ease_weights(self.X_, self.l2, self.num_threads)
        return self

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        with threadpool_limits(limits=self.num_threads or None, user_api="blas"):
            return np.asarray(self.X_[user_idx] @ self.weights_)

    def _item_similarities(self, item_idx: int) -> np.ndarray:
        # how strongly having this item predicts each other item
        return self.weights_[item_idx]


def ease_weights(X, l2: float, num_threads: int = 1) -> np.ndarray:
    """EASE's item-item matrix ``B`` for the users x items matrix ``X`` (float32).

    ``P = (X^T X + l2 I)^-1``, then ``B = -P / diag(P)`` column by column, with a zero diagonal
    (an item never predicts itself). ``num_threads`` BLAS threads invert ``P`` (0: BLAS decides).

    >>> import scipy.sparse as sp
    >>> ease_weights(sp.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0]])), l2=1.0).round(3)
    array([[0.   , 0.333],
           [0.5  , 0.   ]], dtype=float32)
    """
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices_from(G)] += l2
    with threadpool_limits(limits=num_threads or None, user_api="blas"):
        P = scipy.linalg.inv(G, overwrite_a=True, check_finite=False)
    B = -P / np.diag(P)[None, :]
    B[np.diag_indices_from(B)] = 0.0
    return B.astype(np.float32)
