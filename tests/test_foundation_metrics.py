"""Each metric pinned by a hand-computed example."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from perso_kit import metrics as M

# one user, k = 5; relevant items in the test data: 3; hits at ranks 1, 3 and 4
HITS = np.array([[True, False, True, True, False]])
N_REL = np.array([3])


def test_precision_recall_hit_rate_by_hand():
    assert M.precision_at_k(HITS, N_REL)[0] == pytest.approx(3 / 5)
    assert M.recall_at_k(HITS, N_REL)[0] == pytest.approx(3 / 3)
    assert M.hit_rate_at_k(HITS, N_REL)[0] == 1.0


def test_ndcg_binary_gain_by_hand():
    dcg = 1 / math.log2(2) + 1 / math.log2(4) + 1 / math.log2(5)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg_at_k(HITS, N_REL)[0] == pytest.approx(dcg / idcg)


def test_ndcg_ideal_list_is_capped_at_k():
    # 10 relevant items, k = 2, both hits: a perfect list
    assert M.ndcg_at_k(np.array([[True, True]]), np.array([10]))[0] == pytest.approx(1.0)


def test_map_divides_by_min_relevant_k():
    # precision at hit ranks: 1/1, 2/3, 3/4; min(3, 5) = 3
    assert M.map_at_k(HITS, N_REL)[0] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # 10 relevant, k = 2, hit only at rank 2: (1/2) / min(10, 2)
    assert M.map_at_k(np.array([[False, True]]), np.array([10]))[0] == pytest.approx(0.25)


def test_mrr_first_hit():
    hits = np.array([[False, False, True], [False, False, False]])
    assert M.mrr_at_k(hits, np.array([1, 2])).tolist() == pytest.approx([1 / 3, 0.0])


def test_users_without_relevant_items_score_zero_not_nan():
    hits = np.zeros((1, 3), bool)
    for fn in M.ACCURACY_METRICS.values():
        assert fn(hits, np.array([0]))[0] == 0.0


def test_k_below_one_is_an_error():
    with pytest.raises(ValueError, match="k must be at least 1"):
        M.ndcg_at_k(np.zeros((2, 0), bool), np.array([1, 1]))


def test_hit_matrix_ignores_padding():
    relevant = sp.csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 0, 0]]))
    rec = np.array([[1, 2, -1], [3, 0, -1]])
    assert M.hit_matrix(rec, relevant).tolist() == [[True, False, False], [False, True, False]]


def test_gini_by_hand():
    assert M.gini([1, 1, 1, 1]) == 0.0
    # sorted x = 0,0,0,4: G = (n + 1 - 2 * sum(cum share)) / n = (5 - 2 * 1) / 4
    assert M.gini([0, 0, 0, 4]) == pytest.approx(0.75)
    assert M.gini([1, 2, 3]) == pytest.approx(2 / 9)


def test_beyond_accuracy_by_hand():
    rec = np.array([[0, 1], [0, 2]])
    pop = np.array([10, 4, 1, 0, 0])  # head (top 20% of 5 items = 1 item) is item 0
    assert M.catalog_coverage(rec, 5) == pytest.approx(3 / 5)
    assert M.exposure(rec, 5).tolist() == [2, 1, 1, 0, 0]
    assert M.average_popularity(rec, pop) == pytest.approx(((10 + 4) / 2 + (10 + 1) / 2) / 2)
    assert M.long_tail_share(rec, pop) == pytest.approx(2 / 4)
    expected = np.mean([-math.log2(11 / 11), -math.log2(5 / 11), -math.log2(11 / 11),
                        -math.log2(2 / 11)])
    assert M.novelty(rec, pop, n_users=10) == pytest.approx(expected)
    assert M.exposure_gini(rec, 5) == pytest.approx(M.gini([2, 1, 1, 0, 0]))


def test_lorenz_curve_ends():
    x, y = M.lorenz_curve([1, 1, 2])
    assert (x[0], y[0], x[-1], y[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert y[1] == pytest.approx(0.25)
