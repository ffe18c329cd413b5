"""Matrix factorization for implicit feedback, through the ``implicit`` library (CPU models).

Both models give every user and every item a vector of ``factors`` numbers and score a
(user, item) pair by their dot product; they differ in what they fit.

:class:`ALS` -- weighted matrix factorization (Hu, Koren & Volinsky 2008)
    Every cell of the users x items matrix is a target: 1 where the user interacted, 0
    elsewhere. Observed cells weigh ``1 + alpha`` (confidence), unobserved cells weigh 1, and
    alternating least squares solves for users, then items, then users again.

:class:`BPR` -- Bayesian Personalized Ranking (Rendle et al. 2009)
    Learns to *rank*: for sampled triples (user, item seen, item not seen), stochastic gradient
    steps push the seen item above the unseen one. *Which* unseen items are drawn matters:
    ``implicit`` draws the negative item from the log itself, so popular items are drawn more
    often and get pushed down more (``negatives="popularity"``). Rendle et al. draw negatives
    uniformly over the catalog (``negatives="uniform"``, the default here), which is what the
    published MovieLens numbers use. To get uniform draws out of ``implicit`` we append one
    placeholder user whose row lists every item just often enough that all items are equally
    frequent in the log; the placeholder has seen every item, so ``implicit`` skips every
    triple that starts from it, and its row only evens out the negative draw. The price is
    time: each epoch also draws (and skips) those placeholder entries.

Conventions of ``implicit`` 0.7 handled here: ``fit`` takes a *users x items* CSR matrix;
OpenBLAS's own threads are switched off while fitting (``implicit`` asks for it: the two
thread pools would fight); ``random_state`` seeds the initial factors. ALS solves each user
independently, so it is deterministic for a seed with any number of threads; BPR's parallel
updates race with each other, so :class:`BPR` uses one thread by default to stay deterministic.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from .. import config
from ..data.dataset import Dataset
from .base import Recommender
from .similar import SimilarItemsMixin


class _ImplicitMF(SimilarItemsMixin, Recommender):
    """Shared plumbing: build the ``implicit`` model, fit it on users x items, score by dot."""

    def _make_model(self):  # pragma: no cover - interface
        raise NotImplementedError

    def _user_items(self, train: Dataset):
        return train.matrix()

    def fit(self, train: Dataset) -> "_ImplicitMF":
        super().fit(train)
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._make_model()
            model.fit(self._user_items(train).tocsr(), show_progress=self.show_progress)
        self.model_ = model
        # rows past the real users are placeholders (see BPR); they are not kept
        self.user_factors_ = np.asarray(model.user_factors)[:train.n_users]
        self.item_factors_ = np.asarray(model.item_factors)
        return self

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        with threadpool_limits(limits=1, user_api="blas"):  # small products: one thread
            return self.user_factors_[user_idx] @ self.item_factors_.T

    def _item_similarities(self, item_idx: int) -> np.ndarray:
        # cosine between item vectors
        f = self.item_factors_
        norms = np.linalg.norm(f, axis=1)
        return (f @ f[item_idx]) / np.maximum(norms * norms[item_idx], 1e-12)


class ALS(_ImplicitMF):
    """Implicit-feedback ALS with confidence weighting (see the module docstring).

    Parameters
    ----------
    factors : int
        Length of the user and item vectors.
    regularization : float
        L2 penalty on the vectors.
    alpha : float
        Confidence of an observed interaction is ``1 + alpha`` (unobserved cells weigh 1).
    iterations : int
        Alternating sweeps (users then items).
    weighting : {"none", "bm25"}
        ``"bm25"`` rescales observed cells by BM25 before the confidence (damps heavy users
        and very popular items; often helps).
    seed : int, optional
        Seeds the initial factors (default :func:`perso_kit.config.seed`).
    num_threads : int
        Threads for ``implicit`` (0: all cores). Results do not depend on it.
    show_progress : bool
        Show ``implicit``'s progress bar while fitting.

    Example
    -------
    >>> from perso_kit import load_dataset
    >>> model = ALS(factors=32, iterations=5).fit(load_dataset("demo"))
    >>> model.user_factors_.shape
    (1000, 32)
    """

    def __init__(self, factors: int = 32, regularization: float = 10.0, alpha: float = 1.0,
                 iterations: int = 15, weighting: str = "none", seed: int | None = None,
                 num_threads: int = 0, show_progress: bool = False):
        if weighting not in ("none", "bm25"):
            raise ValueError(f"weighting must be 'none' or 'bm25', got {weighting!r}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.factors = int(factors)
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.iterations = int(iterations)
        self.weighting = weighting
        self.seed = seed
        self.num_threads = int(num_threads)
        self.show_progress = show_progress

    def _make_model(self):
        from implicit.cpu.als import AlternatingLeastSquares
        return AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization, alpha=1.0,
            iterations=self.iterations, num_threads=self.num_threads,
            random_state=config.seed() if self.seed is None else self.seed)

    def _user_items(self, train: Dataset):
        X = train.matrix().astype(np.float32)
        if self.weighting == "bm25":
            from implicit.nearest_neighbours import bm25_weight
            X = bm25_weight(X, K1=100, B=0.8).tocsr().astype(np.float32)
        C = X.copy()
        C.data = 1.0 + self.alpha * C.data    # confidence of observed cells
        return C


class BPR(_ImplicitMF):
    """Bayesian Personalized Ranking by SGD over sampled triples (see the module docstring).

    Parameters
    ----------
    factors : int
        Length of the vectors (``implicit`` adds one for an item bias).
    learning_rate : float
        SGD step size.
    regularization : float
        L2 penalty on the vectors.
    iterations : int
        Epochs (each samples as many triples as there are interactions).
    negatives : {"uniform", "popularity"}
        How the item not seen of each triple is drawn: uniformly over the catalog (as in
        Rendle et al.; better accuracy on MovieLens, slower) or in proportion to popularity
        (``implicit``'s own sampling; pushes popular items down, recommends more of the tail).
    seed : int, optional
        Seeds the initial factors and the sampling (default :func:`perso_kit.config.seed`).
    num_threads : int
        Threads for the SGD; more than 1 is faster but not reproducible (updates race).
    show_progress : bool
        Show ``implicit``'s progress bar while fitting.

    Example
    -------
    >>> from perso_kit import load_dataset
    >>> model = BPR(factors=32, iterations=20).fit(load_dataset("demo"))
    >>> model.item_factors_.shape          # 32 factors + the item bias
    (1800, 33)
    """

    def __init__(self, factors: int = 64, learning_rate: float = 0.05,
                 regularization: float = 0.01, iterations: int = 50, negatives: str = "uniform",
                 seed: int | None = None, num_threads: int = 1, show_progress: bool = True):
        if negatives not in ("uniform", "popularity"):
            raise ValueError(f"negatives must be 'uniform' or 'popularity', got {negatives!r}")
        self.factors = int(factors)
        self.learning_rate = float(learning_rate)
        self.regularization = float(regularization)
        self.iterations = int(iterations)
        self.negatives = negatives
        self.seed = seed
        self.num_threads = int(num_threads)
        self.show_progress = show_progress

    def _make_model(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        return BayesianPersonalizedRanking(
            factors=self.factors, learning_rate=self.learning_rate,
            regularization=self.regularization, iterations=self.iterations,
            num_threads=self.num_threads, verify_negative_samples=True,
            random_state=config.seed() if self.seed is None else self.seed)

    def _user_items(self, train: Dataset):
        X = train.matrix().tocsr()
        if self.negatives == "popularity":
            return X
        # placeholder user: item i listed (max count + 1 - count_i) times, so every item
        # appears equally often in the log and negatives are drawn uniformly
        counts = np.diff(X.tocsc().indptr)
        extra = np.repeat(np.arange(X.shape[1]), counts.max() + 1 - counts)
        indices = np.concatenate([X.indices, extra]).astype(X.indices.dtype)
        indptr = np.append(X.indptr, X.indptr[-1] + len(extra))
        return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                             shape=(X.shape[0] + 1, X.shape[1]))
