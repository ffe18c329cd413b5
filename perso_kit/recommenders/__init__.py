"""Recommenders, all behind one interface (:class:`~perso_kit.recommenders.base.Recommender`)."""
from __future__ import annotations

from .base import NotFittedError, Recommender
from .popularity import Popularity

__all__ = ["Recommender", "NotFittedError", "Popularity"]
