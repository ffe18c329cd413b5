"""Matrix factorization for implicit feedback, through the ``implicit`` library (CPU models).

Both models give every user and every item a vector of ``factors`` numbers and score a
(user, item) pair by their dot product; they differ in what they fit.

:class:`ALS` -- weighted matrix factorization (Hu, Koren & Volinsky 2008)
    Every cell of the users x items matrix is a target: 1 where the user interacted, 0
    elsewhere. Observed cells weigh ``1 + alpha`` (confidence), unobserved cells weigh 1, and
    alternating least squares solves for users, then items, then users again.

:class:`BPR` -- Bayesian Personalized Ranking (Rendle et al. 2009)
    Learns to *rank*: for sampled triples (user, item seen, item not seen), stochastic gradient
    steps push the seen item above the unseen one. *Which* unseen items are drawn matters.
    Rendle et al. draw negatives uniformly over the catalog (``negatives="uniform"``, the
    default here), which is what the published MovieLens numbers use; the kit runs that SGD
    loop itself (:func:`bpr_epoch`, a plain Python loop compiled by ``numba``). ``implicit``
    draws the negative item from the log itself, so popular items are drawn more often and get
    pushed down more (``negatives="popularity"``, fitted by ``implicit``).

Conventions of ``implicit`` 0.7 handled here: ``fit`` takes a *users x items* CSR matrix;
OpenBLAS's own threads are switched off while fitting (``implicit`` asks for it: the two
thread pools would fight); ``random_state`` seeds the initial factors. ALS solves each user
independently, so it is deterministic for a seed with any number of threads; BPR's parallel
updates race with each other, so :class:`BPR` uses one thread by default to stay deterministic
(the kit's own uniform-negative loop always runs on one thread).
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from .. import config
from ..data.dataset import Dataset
from .base import Recommender
from .similar import SimilarItemsMixin


class FactorModel(SimilarItemsMixin, Recommender):
    """A model that scores by user and item vectors (``user_factors_``, ``item_factors_``, set
    by ``fit``): a user's score for an item is the dot product of their vectors, and two items
    are as similar as the cosine of theirs."""

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        with threadpool_limits(limits=1, user_api="blas"):  # small products: one thread
            return self.user_factors_[user_idx] @ self.item_factors_.T

    def _item_similarities(self, item_idx: int) -> np.ndarray:
        # cosine between item vectors
        f = self.item_factors_
        norms = np.linalg.norm(f, axis=1)
        return (f @ f[item_idx]) / np.maximum(norms * norms[item_idx], 1e-12)


class _ImplicitMF(FactorModel):
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


def bpr_epoch(U, V, indptr, indices, users, pos, neg, lr, reg):
    """One pass of BPR's SGD over the given triples (updates ``U`` and ``V`` in place).

    Triple ``s`` is (user ``users[pos[s]]``, seen item ``indices[pos[s]]``, unseen item
    ``neg[s]``): ``pos`` indexes the interactions of the users x items CSR matrix
    (``indptr``, ``indices``, rows sorted), ``users`` gives the user of each interaction. A
    triple whose "unseen" item the user has in fact seen is skipped (a binary search in the
    user's row). The last column of ``U`` is 1 and the last column of ``V`` is the item's bias,
    as in ``implicit``. For the triple, with ``x = u . (v_i - v_j)`` and ``z = 1 / (1 + e^x)``
    (how wrong the order is), each step is the gradient of ``log sigmoid(x)`` minus the L2
    penalty. Returns (triples already in the right order, triples skipped).
    """
    n_f = U.shape[1]
    lr, reg, one = np.float32(lr), np.float32(reg), np.float32(1.0)   # float32 all through
    correct = 0
    skipped = 0
    for s in range(pos.shape[0]):
        p = pos[s]
        u = users[p]
        i = indices[p]
        j = neg[s]
        lo, hi = indptr[u], indptr[u + 1]
        while lo < hi:                       # first position in the row with an item >= j
            mid = (lo + hi) // 2
            if indices[mid] < j:
                lo = mid + 1
            else:
                hi = mid
        if lo < indptr[u + 1] and indices[lo] == j:
            skipped += 1
            continue
        uu, vi, vj = U[u], V[i], V[j]        # views: the updates write into U and V
        x = np.float32(0.0)
        for f in range(n_f):
            x += uu[f] * (vi[f] - vj[f])
        z = one / (one + np.exp(x))
        if z < 0.5:
            correct += 1
        for f in range(n_f):
            uf = uu[f]
            if f < n_f - 1:                  # the user's last entry stays 1 (the item bias)
                uu[f] += lr * (z * (vi[f] - vj[f]) - reg * uf)
            vi[f] += lr * (z * uf - reg * vi[f])
            vj[f] += lr * (-z * uf - reg * vj[f])
    return correct, skipped


_COMPILED: dict = {}
#: triples drawn at once (bounds the memory of the random draws: 8 bytes a triple)
BPR_BLOCK = 1 << 20


def _compiled_bpr_epoch():
    """:func:`bpr_epoch` compiled by ``numba`` (once per process; cached on disk)."""
    if "epoch" not in _COMPILED:
        import numba
        _COMPILED["epoch"] = numba.njit(cache=True, nogil=True, fastmath=True)(bpr_epoch)
    return _COMPILED["epoch"]


class BPR(_ImplicitMF):
    """Bayesian Personalized Ranking by SGD over sampled triples (see the module docstring).

    Parameters
    ----------
    factors : int
        Length of the vectors (one more entry holds an item bias, as in ``implicit``).
    learning_rate : float
        SGD step size.
    regularization : float
        L2 penalty on the vectors.
    iterations : int
        Epochs (each samples as many triples as there are interactions).
    negatives : {"uniform", "popularity"}
        How the item not seen of each triple is drawn: uniformly over the catalog (as in
        Rendle et al.; better accuracy on MovieLens; the kit's own loop, :func:`bpr_epoch`) or
        in proportion to popularity (``implicit``'s own sampling; pushes popular items down,
        recommends more of the tail).
    seed : int, optional
        Seeds the initial factors and the sampling (default :func:`perso_kit.config.seed`).
    num_threads : int
        Threads for ``implicit``'s SGD (``negatives="popularity"``); more than 1 is faster but
        not reproducible (updates race). The uniform-negative loop runs on one thread.
    show_progress : bool
        Show a progress bar over the epochs while fitting.

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

    def fit(self, train: Dataset) -> "BPR":
        if self.negatives == "popularity":
            return super().fit(train)
        Recommender.fit(self, train)
        X = train.matrix().tocsr()
        X.sort_indices()
        n_users, n_items = X.shape
        rng = np.random.default_rng(config.seed() if self.seed is None else self.seed)
        # initial vectors as in implicit: small uniform values, item bias last, user's last 1;
        # items nobody interacted with start at zero
        V = (rng.random((n_items, self.factors + 1), dtype=np.float32) - 0.5) / self.factors
        V[np.diff(X.tocsc().indptr) == 0] = 0.0
        U = (rng.random((n_users, self.factors + 1), dtype=np.float32) - 0.5) / self.factors
        U[:, self.factors] = 1.0
        idx = np.int64 if X.nnz >= 2**31 else np.int32
        indptr, indices = X.indptr.astype(idx), X.indices.astype(idx)
        users = np.repeat(np.arange(n_users, dtype=idx), np.diff(indptr))
        nnz = len(indices)
        epoch = _compiled_bpr_epoch()
        from tqdm.auto import tqdm
        bar = tqdm(range(self.iterations), desc="BPR", disable=not self.show_progress)
        self.correct_share_ = []       # share of drawn pairs already in the right order
        for _ in bar:
            correct = skipped = 0
            for start in range(0, nnz, BPR_BLOCK):   # an epoch draws as many triples as nnz
                size = min(BPR_BLOCK, nnz - start)
                pos = rng.integers(0, nnz, size, dtype=idx)      # an interaction: (user, seen)
                neg = rng.integers(0, n_items, size, dtype=idx)  # an item drawn uniformly
                c, k = epoch(U, V, indptr, indices, users, pos, neg,
                             self.learning_rate, self.regularization)
                correct, skipped = correct + c, skipped + k
            self.correct_share_.append(correct / max(nnz - skipped, 1))
            bar.set_postfix(correct=f"{self.correct_share_[-1]:.1%}", skipped=skipped)
        self.model_ = None
        self.user_factors_, self.item_factors_ = U, V
        return self
