"""Recommenders, all behind one interface (:class:`~perso_kit.recommenders.base.Recommender`).

=====================  ====================================================================
model                  idea
=====================  ====================================================================
:class:`Popularity`    the most-watched items, for everyone (the floor)
:class:`ItemKNN`       items watched by the same people (shrunk cosine neighbourhoods)
:class:`EASE`          a linear item-to-item autoencoder with a closed form (Steck 2019)
:class:`HeadEASE`      EASE on the most popular items, the rest after them (large catalogs)
:class:`ALS`           matrix factorization with confidence weights (Hu et al. 2008)
:class:`BPR`           matrix factorization that learns to rank pairs (Rendle et al. 2009)
:class:`TwoStageRanker`  candidates from retrievers, re-ranked by LightGBM LambdaRank
:class:`MMR`           any model's candidates re-ranked for diversity (maximal marginal relevance)
=====================  ====================================================================

Every model follows scikit-learn's parameter protocol (``get_params``, ``set_params``,
``sklearn.base.clone``); :func:`sweep` makes one unfitted copy per parameter value.
"""
from __future__ import annotations

from .base import NotFittedError, Recommender, sweep
from .ease import EASE
from .head_ease import HeadEASE
from .itemknn import ItemKNN
from .ltr import TwoStageRanker
from .mf import ALS, BPR
from .mmr import MMR
from .popularity import Popularity

__all__ = ["Recommender", "NotFittedError", "Popularity", "ItemKNN", "EASE", "HeadEASE", "ALS", "BPR",
           "TwoStageRanker", "MMR", "sweep"]
