"""HeadEASE (EASE on the most popular items, the tail after it) and the one-machine tools.

The hand example: five users, items A-D. A is watched by 4 users, B by 3, C and D by 1.
With ``n_head=2`` the head is [A, B]; its Gram matrix is ``[[4, 2], [2, 3]]`` (A and B are
watched together twice). EASE's closed form on a 2 x 2 head gives
``B[A -> B] = g_AB / (g_AA + l2)`` and ``B[B -> A] = g_AB / (g_BB + l2)``: with ``l2 = 1``,
0.4 and 0.5.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perso_kit import load_dataset
from perso_kit import split as splits
from perso_kit.data import make_dataset
from perso_kit.evaluate import evaluate
from perso_kit.one_machine import evaluate_in_chunks, measure, sample_users, tail_share
from perso_kit.recommenders import EASE, Popularity
from perso_kit.recommenders.head_ease import HeadEASE

A, B, C, D = 10, 20, 30, 40
WATCHED = {1: [A, B], 2: [A, B], 3: [A, C], 4: [B, D], 5: [A]}


def hand_dataset():
    rows = [(u, i) for u, items in WATCHED.items() for i in items]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id"])
    items = pd.DataFrame({"item_id": [A, B, C, D], "title": list("ABCD"), "genres": [()] * 4})
    return make_dataset("hand", inter, items)


def test_the_head_weights_are_the_hand_computed_closed_form():
    model = HeadEASE(n_head=2, l2=1.0).fit(hand_dataset())
    assert model.train_.item_ids[model.head_].tolist() == [A, B]        # most popular first
    np.testing.assert_allclose(model.weights_, [[0.0, 0.4], [0.5, 0.0]], rtol=1e-6)
    assert model.head_share_ == pytest.approx(7 / 9)                    # 4 + 3 of 9 watches


def test_tail_items_rank_below_every_head_item_in_popularity_order():
    model = HeadEASE(n_head=2, l2=1.0).fit(hand_dataset())
    # user 3 has {A, C}: A -> B gives B 0.4, A itself 0; the tail sits at
    # min(0, 0.4) - 1 + pop / (max tail pop + 1) = -1 + 1/2 = -0.5
    np.testing.assert_allclose(model.score([3], [A, B, C, D]), [[0.0, 0.4, -0.5, -0.5]])
    # user 4 has {B, D}: B -> A gives A 0.5
    np.testing.assert_allclose(model.score([4], [A, B, C, D]), [[0.5, 0.0, -0.5, -0.5]])
    recs = model.recommend(users=[3, 4], k=2)
    assert recs.groupby("user_id")["item_id"].apply(list).to_dict() == {3: [B, D], 4: [A, C]}
    # restricted to the tail, the tail comes back in popularity order (ties: lower index)
    assert model.recommend(users=[5], k=2, items=[C, D])["item_id"].tolist() == [C, D]


def test_with_the_whole_catalog_in_the_head_it_is_ease():
    ds = load_dataset("demo")
    head = HeadEASE(n_head=ds.n_items, l2=300).fit(ds)
    full = EASE(l2=300).fit(ds)
    users = np.arange(50)
    np.testing.assert_allclose(head._score(users), full._score(users), atol=1e-5)
    assert head.head_share_ == 1.0
    pd.testing.assert_frame_equal(head.recommend(users=ds.user_ids[:20], k=10)[
        ["user_id", "item_id", "rank"]], full.recommend(users=ds.user_ids[:20], k=10)[
        ["user_id", "item_id", "rank"]])


def test_a_catalog_ease_refuses_is_fitted_on_its_head():
    ds = load_dataset("demo", n_items=1200)
    with pytest.raises(ValueError, match="above max_items=1,000"):
        EASE(max_items=1000).fit(ds)
    model = HeadEASE(n_head=300).fit(ds)
    assert model.weights_.shape == (300, 300)
    pop = np.asarray(ds.matrix().sum(axis=0)).ravel()
    assert pop[model.head_].min() >= np.sort(pop)[::-1][299]          # the 300 most popular
    recs = model.recommend(users=ds.user_ids[:100], k=10)
    assert recs["item_id"].isin(ds.item_ids[model.head_]).all()      # nobody sees the tail


def test_head_ease_similar_items_are_head_weights_and_nothing_for_the_tail():
    model = HeadEASE(n_head=2, l2=1.0).fit(hand_dataset())
    sims = model.similar_items(A, k=3)
    assert sims["item_id"].tolist()[0] == B and sims["similarity"].tolist()[0] == \
        pytest.approx(0.4)
    assert (model._item_similarities(model.train_.item_index([C])[0]) == 0).all()


@pytest.mark.parametrize("kwargs, message", [({"n_head": 0}, "n_head must be at least 1"),
                                             ({"l2": 0}, "l2 must be positive")])
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HeadEASE(**kwargs)


# ------------------------------------------------------------------------ one_machine tools
@pytest.fixture(scope="module")
def demo_split():
    return splits.random_per_user(load_dataset("demo"), seed=0)


@pytest.mark.parametrize("chunk_size", [1, 7, 10_000])
def test_chunks_do_not_change_the_numbers(demo_split, chunk_size):
    model = EASE(l2=300).fit(demo_split.train)
    users = sample_users(demo_split, 60, seed=1)
    chunked = evaluate_in_chunks(model, demo_split, users=users, chunk_size=chunk_size,
                                 progress=False)
    whole = evaluate(model, demo_split, users=users, fit=False, progress=False)
    for col in ("users", "ndcg@10", "recall@10", "map@10", "coverage", "ild@10"):
        assert chunked.loc[0, col] == pytest.approx(whole.loc[0, col]), col


def test_sample_users_is_seeded_and_only_has_test_users(demo_split):
    a, b = sample_users(demo_split, 100, seed=3), sample_users(demo_split, 100, seed=3)
    assert (a == b).all() and len(np.unique(a)) == 100
    assert np.isin(a, demo_split.test.interactions["user_id"]).all()
    assert not (a == sample_users(demo_split, 100, seed=4)).all()
    with pytest.raises(ValueError, match="n must be at least 1"):
        sample_users(demo_split, 0)


def test_tail_share_counts_test_interactions_outside_the_head():
    ds = hand_dataset()
    test = ds.with_interactions(ds.interactions[ds.interactions["user_id"].isin([3, 4])],
                                "test")
    train = ds.with_interactions(ds.interactions[~ds.interactions["user_id"].isin([3, 4])],
                                 "train")
    s = splits.Split(train, test, None, "hand")
    # test: (3, A), (3, C), (4, B), (4, D): two of four are outside {A, B}
    assert tail_share(s, [A, B]) == 0.5 and tail_share(s, [A, B, C, D]) == 0.0


def test_measure_reports_cpu_beside_wall_and_the_peak():
    with measure() as cost:
        block = np.ones(5_000_000)          # 40 MB, touched
        block.sum()
    assert set(cost) == {"cpu_s", "wall_s", "peak_mb"}
    assert cost["peak_mb"] >= 40 and cost["cpu_s"] > 0


def test_popularity_through_chunks_matches_hand_counts():
    s = splits.Split(hand_dataset().with_interactions(
        pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 5], "item_id": [A, B, A, B, A, A],
                      "rating": 1.0, "timestamp": 0}), "train"),
        hand_dataset().with_interactions(pd.DataFrame(
            {"user_id": [3, 5], "item_id": [B, C], "rating": 1.0, "timestamp": 0}), "test"),
        None, "hand")
    table = evaluate_in_chunks(Popularity().fit(s.train), s, k=1, chunk_size=1,
                               progress=False)
    # user 3 (saw A) gets B: a hit; user 5 (saw A) gets B, wanted C: a miss
    assert table.loc[0, "users"] == 2 and table.loc[0, "hit_rate@1"] == 0.5
