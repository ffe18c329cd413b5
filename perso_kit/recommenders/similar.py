"""``similar_items``: the sanity check a student can read ("similar to Star Wars").

Models that learn something per item -- a neighbourhood, a weight matrix, a factor vector --
can say which items they consider closest to a given one. Those models mix in
:class:`SimilarItemsMixin` and implement ``_item_similarities(item_idx)``; this module turns the
similarities into a small table with titles.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


class SimilarItemsMixin:
    """Adds :meth:`similar_items` to a fitted recommender that implements
    ``_item_similarities(item_idx) -> array over the catalog``."""

    def _item_similarities(self, item_idx: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def similar_items(self, item_id, k: int = 10) -> pd.DataFrame:
        """The ``k`` items the model finds most similar to ``item_id`` (itself excluded).

        Parameters
        ----------
        item_id
            An item id of the catalog.
        k : int
            How many neighbours to return.

        Returns
        -------
        DataFrame with columns ``item_id, title, similarity`` (best first). Items the model
        knows nothing about (no training interactions) are never returned.

        Example
        -------
        >>> from perso_kit import load_dataset
        >>> from perso_kit.recommenders import ItemKNN
        >>> ds = load_dataset("demo")
        >>> ItemKNN().fit(ds).similar_items(ds.item_ids[0], k=3).columns.tolist()
        ['item_id', 'title', 'similarity']
        """
        train = self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        idx = int(train.item_index([item_id])[0])
        sims = np.array(self._item_similarities(idx), dtype=np.float64, copy=True)
        known = np.asarray(train.matrix().sum(axis=0)).ravel() > 0
        sims[~known] = -np.inf
        sims[idx] = -np.inf
        k = min(k, int(np.isfinite(sims).sum()))
        top = np.argsort(-sims, kind="stable")[:k]
        return pd.DataFrame({"item_id": train.item_ids[top],
                             "title": train.items["title"].to_numpy()[top],
                             "similarity": sims[top]})
