"""Ranking and beyond-accuracy metrics, vectorized over all users at once.

Every accuracy metric takes the same two inputs:

``hits``
    a boolean ``users x k`` array: ``hits[u, r]`` is True when the item at rank ``r + 1`` of
    user ``u``'s list is relevant (see :func:`hit_matrix`);
``n_relevant``
    how many relevant items each user has in the test data.

Definitions (binary relevance; a user's list may be shorter than ``k``):

=================  ==========================================================================
Precision@k        hits in the top k / k
Recall@k           hits in the top k / number of relevant items
NDCG@k             DCG / ideal DCG, with DCG = sum of 1 / log2(rank + 1) over the hits and the
                   ideal list holding min(relevant, k) hits (the "binary gain" variant used by
                   Microsoft Recommenders and most papers)
MAP@k              mean over users of AP@k = (1 / min(relevant, k)) * sum over hit ranks r of
                   Precision@r (so a perfect list scores 1; Microsoft Recommenders' ``map_at_k``
                   divides the same way; their ``map`` divides by the number of relevant items,
                   which gives smaller values)
MRR@k              1 / rank of the first hit, 0 when the top k holds none
HitRate@k          1 when the top k holds at least one relevant item
=================  ==========================================================================

Users with no relevant items are left out of the averages (the caller decides who is evaluated).

Beyond-accuracy metrics look at *what* is recommended: catalog coverage, average popularity,
long-tail share, Gini of exposure and novelty; see each function.

>>> import numpy as np
>>> hits = np.array([[True, False, True]])
>>> precision_at_k(hits, np.array([2])).round(4).tolist()
[0.6667]
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def hit_matrix(rec_idx: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Which recommended items are relevant.

    Parameters
    ----------
    rec_idx : int array, users x k
        Item column indices of each user's top-k, best first; ``-1`` pads a short list.
    relevant : CSR matrix, users x items
        Nonzero where the item is relevant to the user (rows aligned with ``rec_idx``).
    """
    rec_idx = np.asarray(rec_idx)
    rows = np.repeat(np.arange(rec_idx.shape[0]), rec_idx.shape[1])
    cols = rec_idx.ravel()
    valid = cols >= 0
    out = np.zeros(rec_idx.size, dtype=bool)
    out[valid] = np.asarray(relevant[rows[valid], cols[valid]]).ravel() != 0
    return out.reshape(rec_idx.shape)


def _check(hits: np.ndarray, n_relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hits = np.asarray(hits, dtype=bool)
    n_relevant = np.asarray(n_relevant, dtype=float)
    if hits.ndim != 2 or hits.shape[0] != n_relevant.shape[0]:
        raise ValueError("hits must be users x k and n_relevant one value per user")
    if hits.shape[1] < 1:
        raise ValueError("k must be at least 1")
    return hits, n_relevant


def precision_at_k(hits, n_relevant) -> np.ndarray:
    """Per-user Precision@k (k is the number of columns of ``hits``)."""
    hits, _ = _check(hits, n_relevant)
    return hits.sum(1) / hits.shape[1]


def recall_at_k(hits, n_relevant) -> np.ndarray:
    """Per-user Recall@k: hits / number of relevant items (0 where there are none)."""
    hits, n_rel = _check(hits, n_relevant)
    return np.divide(hits.sum(1), n_rel, out=np.zeros(len(n_rel)), where=n_rel > 0)


def ndcg_at_k(hits, n_relevant) -> np.ndarray:
    """Per-user NDCG@k with binary gains (see the module docstring)."""
    hits, n_rel = _check(hits, n_relevant)
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts
    ideal_cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cum[np.minimum(n_rel, k).astype(int)]
    return np.divide(dcg, idcg, out=np.zeros(len(n_rel)), where=idcg > 0)


def map_at_k(hits, n_relevant) -> np.ndarray:
    """Per-user AP@k, normalized by min(relevant, k) (see the module docstring)."""
    hits, n_rel = _check(hits, n_relevant)
    k = hits.shape[1]
    prec_at_r = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    denom = np.minimum(n_rel, k)
    return np.divide((prec_at_r * hits).sum(1), denom, out=np.zeros(len(n_rel)),
                     where=denom > 0)


def map_per_relevant_at_k(hits, n_relevant) -> np.ndarray:
    """Per-user AP@k divided by the number of relevant items (not by min(relevant, k)):
    Microsoft Recommenders' ``map``, which the MAP column of their published benchmark table
    reports. A user with more than k relevant items cannot reach 1, so the values are smaller
    than :func:`map_at_k`'s; the two agree for users with at most k relevant items.

    >>> hits = np.array([[True, False, True]])
    >>> map_per_relevant_at_k(hits, np.array([4])).round(4).tolist()   # (1/1 + 2/3) / 4
    [0.4167]
    >>> map_at_k(hits, np.array([4])).round(4).tolist()                # (1/1 + 2/3) / 3
    [0.5556]
    """
    hits, n_rel = _check(hits, n_relevant)
    k = hits.shape[1]
    prec_at_r = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    return np.divide((prec_at_r * hits).sum(1), n_rel, out=np.zeros(len(n_rel)),
                     where=n_rel > 0)


def mrr_at_k(hits, n_relevant) -> np.ndarray:
    """Per-user reciprocal rank of the first hit within the top k (0 if none)."""
    hits, _ = _check(hits, n_relevant)
    first = hits.argmax(1)
    return np.where(hits.any(1), 1.0 / (first + 1), 0.0)


def hit_rate_at_k(hits, n_relevant) -> np.ndarray:
    """Per-user HitRate@k: 1.0 when the top k holds at least one relevant item."""
    hits, _ = _check(hits, n_relevant)
    return hits.any(1).astype(float)


ACCURACY_METRICS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
    "mrr": mrr_at_k,
    "hit_rate": hit_rate_at_k,
}


# --------------------------------------------------------------------------- beyond accuracy
def gini(values) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, near 1 when one takes all.

    Used for the popularity of items in a log and for the *exposure* of items in
    recommendations (how many lists each catalog item appears in, zeros included).

    >>> gini([1, 1, 1, 1])
    0.0
    >>> round(gini([0, 0, 0, 4]), 2)
    0.75
    """
    x = np.sort(np.asarray(values, dtype=float))
    if x.size == 0 or x.sum() == 0:
        return 0.0
    if (x < 0).any():
        raise ValueError("gini needs non-negative values")
    n = x.size
    cum = np.cumsum(x) / x.sum()
    return float((n + 1 - 2 * cum.sum()) / n)


def lorenz_curve(values) -> tuple[np.ndarray, np.ndarray]:
    """Points of the Lorenz curve: share of items (x) against share of the total they hold (y)."""
    x = np.sort(np.asarray(values, dtype=float))
    y = np.concatenate([[0.0], np.cumsum(x) / max(x.sum(), 1e-12)])
    return np.linspace(0, 1, len(y)), y


def exposure(rec_idx: np.ndarray, n_items: int) -> np.ndarray:
    """How many recommendation lists each catalog item appears in (length ``n_items``)."""
    idx = np.asarray(rec_idx).ravel()
    return np.bincount(idx[idx >= 0], minlength=n_items)


def catalog_coverage(rec_idx: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one list."""
    return float((exposure(rec_idx, n_items) > 0).sum() / n_items)


def exposure_gini(rec_idx: np.ndarray, n_items: int) -> float:
    """Gini of :func:`exposure` over the whole catalog (items never shown count as 0)."""
    return gini(exposure(rec_idx, n_items))


def average_popularity(rec_idx: np.ndarray, popularity: np.ndarray) -> float:
    """Average recommendation popularity (ARP): mean over users of the mean training
    popularity (number of users) of the items in their list."""
    idx = np.asarray(rec_idx)
    pop = np.where(idx >= 0, np.asarray(popularity, float)[np.maximum(idx, 0)], np.nan)
    return float(np.nanmean(np.nanmean(pop, axis=1))) if idx.size else 0.0


def long_tail_items(popularity: np.ndarray, head_share: float = 0.2) -> np.ndarray:
    """Boolean mask of long-tail items: all but the ``head_share`` most popular items."""
    pop = np.asarray(popularity, float)
    n_head = int(np.ceil(head_share * len(pop)))
    order = np.argsort(-pop, kind="stable")
    tail = np.ones(len(pop), dtype=bool)
    tail[order[:n_head]] = False
    return tail


def long_tail_share(rec_idx: np.ndarray, popularity: np.ndarray, head_share: float = 0.2) -> float:
    """Share of recommended items that lie in the long tail (outside the top 20% by popularity)."""
    idx = np.asarray(rec_idx).ravel()
    idx = idx[idx >= 0]
    if idx.size == 0:
        return 0.0
    return float(long_tail_items(popularity, head_share)[idx].mean())


def novelty(rec_idx: np.ndarray, popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information -log2(p) of recommended items, p = (users who saw it + 1) /
    (users + 1): recommending what few people know scores high."""
    idx = np.asarray(rec_idx).ravel()
    idx = idx[idx >= 0]
    if idx.size == 0:
        return 0.0
    p = (np.asarray(popularity, float)[idx] + 1) / (n_users + 1)
    return float(np.mean(-np.log2(p)))


# --------------------------------------------------------------------------- diversity
#: how two items are compared by :func:`list_similarities` and :func:`intra_list_diversity`
SIMILARITY_METRICS = ("jaccard", "cosine")


def _gather(features, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (any shape, ``-1`` allowed) of an items x features table, as dense floats
    of shape ``idx.shape + (n_features,)``; padded positions get a row of zeros."""
    flat = np.asarray(idx).ravel()
    rows = np.maximum(flat, 0)
    out = (features[rows].toarray() if sp.issparse(features)
           else np.asarray(features, dtype=float)[rows]).astype(float)
    out[flat < 0] = 0.0
    return out.reshape(*np.shape(idx), features.shape[1])


def list_similarities(rec_idx: np.ndarray, features, metric: str = "jaccard") -> np.ndarray:
    """Similarity of every pair of items within each list: a ``users x k x k`` array.

    Parameters
    ----------
    rec_idx : int array, users x k
        Item row indices of ``features`` (``-1`` pads a short list; its pairs are NaN).
    features : items x features array or sparse matrix
        With ``metric="jaccard"``, a 0/1 matrix such as ``Dataset.genre_matrix()[0]``: two
        items' similarity is |A & B| / |A | B| over their sets (two empty sets count as equal,
        similarity 1, as in ``scipy.spatial.distance.jaccard``). With ``metric="cosine"``,
        item vectors (embeddings, factors): similarity is the cosine of the two vectors (0
        when either is all zeros).

    >>> genres = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]])      # {A,B}, {A}, {C}
    >>> list_similarities(np.array([[0, 1, 2]]), genres)[0].round(2).tolist()
    [[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    if metric not in SIMILARITY_METRICS:
        raise ValueError(f"metric must be one of {SIMILARITY_METRICS}, got {metric!r}")
    idx = np.asarray(rec_idx)
    if idx.ndim != 2:
        raise ValueError("rec_idx must be users x k (one row of item indices per user)")
    n_items = features.shape[0]
    if idx.size and idx.max() >= n_items:
        raise ValueError(f"rec_idx names item row {idx.max()} but features has only "
                         f"{n_items} rows (one per catalog item)")
    x = _gather(features, idx)                                    # users x k x f
    if metric == "jaccard":
        x = (x != 0).astype(float)
        inter = np.einsum("ukf,ulf->ukl", x, x)
        size = x.sum(-1)
        union = size[:, :, None] + size[:, None, :] - inter
        sim = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
    else:
        norm = np.linalg.norm(x, axis=-1, keepdims=True)
        x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
        sim = np.einsum("ukf,ulf->ukl", x, x)
    pad = idx < 0
    sim[pad[:, :, None] | pad[:, None, :]] = np.nan
    return sim


def intra_list_diversity(rec_idx: np.ndarray, features, metric: str = "jaccard",
                         batch_size: int = 512) -> np.ndarray:
    """Per-user intra-list diversity (ILD@k): the mean distance over all pairs of items in
    the user's list, distance = 1 - similarity (see :func:`list_similarities`):

    .. math:: \\mathrm{ILD}(L) = \\frac{2}{|L|(|L|-1)} \\sum_{i < j} (1 - \\mathrm{sim}(i, j))

    0 when every item of the list is alike (same genres, parallel vectors); 1 for Jaccard when
    no two items share a genre. A list with fewer than two items has no pair: NaN.

    >>> genres = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]])      # {A,B}, {A}, {C}
    >>> intra_list_diversity(np.array([[0, 1, 2], [0, 1, -1]]), genres).round(4).tolist()
    [0.8333, 0.5]
    """
    idx = np.asarray(rec_idx)
    if idx.ndim != 2:
        raise ValueError("rec_idx must be users x k (one row of item indices per user)")
    out = np.full(idx.shape[0], np.nan)
    k = idx.shape[1]
    if k < 2:
        return out
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    for start in range(0, idx.shape[0], batch_size):
        sim = list_similarities(idx[start:start + batch_size], features, metric)
        dist = (1.0 - sim)[:, upper]                              # users x pairs, NaN on pads
        n_pairs = np.isfinite(dist).sum(1)
        total = np.nansum(dist, axis=1)
        out[start:start + batch_size] = np.divide(total, n_pairs, out=np.full(len(total), np.nan),
                                                  where=n_pairs > 0)
    return out
