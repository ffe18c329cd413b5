"""The popularity recommender: everyone gets the most-watched items they have not seen yet.

It ignores who the user is, so it is the floor every personalized model must beat -- and, on
data with a long tail, a surprisingly high floor.
"""
from __future__ import annotations

import numpy as np

from ..data.dataset import Dataset
from .base import Recommender


class Popularity(Recommender):
    """Score each item by how many training users interacted with it.

    >>> from perso_kit import load_dataset
    >>> model = Popularity().fit(load_dataset("demo"))
    >>> model.recommend(users=[1], k=3)["rank"].tolist()
    [1, 2, 3]
    """

    def fit(self, train: Dataset) -> "Popularity":
        super().fit(train)
        self.popularity_ = np.asarray(train.matrix().sum(axis=0), dtype=np.float64).ravel()
        return self

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(user_idx), len(self.popularity_)))
