"""Edges of the evaluation protocol that an off-by-one or a first/last mix-up would move:
relevance at ``min_rating`` (inclusive) and the visible interactions of cold-start users."""
from __future__ import annotations

import pandas as pd
import pytest

from perso_kit.data import make_dataset
from perso_kit.evaluate import evaluate_recommendations
from perso_kit.split import Split, cold_start_users


def _ds(inter):
    items = pd.DataFrame({"item_id": range(1, 9), "title": list("ABCDEFGH"),
                          "genres": [("Drama",)] * 8})
    return make_dataset("edge", pd.DataFrame(inter), items)


@pytest.fixture
def split():
    """User 1 holds out items 3 (rated 3), 4 (rated 4) and 5 (rated 5); user 2 holds out item 6
    rated 3 only; both trained on item 1."""
    train = _ds({"user_id": [1, 2], "item_id": [1, 1], "rating": [5, 5], "timestamp": [1, 1]})
    test = _ds({"user_id": [1, 1, 1, 2], "item_id": [3, 4, 5, 6], "rating": [3, 4, 5, 3],
                "timestamp": [2, 3, 4, 2]})
    return Split(train, test, None, "hand-made", 0)


def _recs(lists):
    return pd.DataFrame([{"user_id": u, "item_id": i, "score": -r, "rank": r + 1}
                         for u, items in lists.items() for r, i in enumerate(items)])


def test_min_rating_counts_a_rating_equal_to_the_threshold(split):
    # user 1's list: 4 (rated exactly 4) first, then 3 (rated 3), then 2 (not held out)
    recs = _recs({1: [4, 3, 2], 2: [6, 7, 8]})
    table = evaluate_recommendations(recs, split, k=1, min_rating=4)
    # relevant for user 1 at min_rating=4: items 4 and 5 (4 >= 4 counts); user 2 has none
    assert table["users"].iloc[0] == 1
    assert table["hit_rate@1"].iloc[0] == 1.0            # item 4 is relevant: >=, not >
    assert table["recall@1"].iloc[0] == pytest.approx(1 / 2)
    strict = evaluate_recommendations(recs, split, k=1, min_rating=4.5)
    assert strict["hit_rate@1"].iloc[0] == 0.0            # only item 5 is relevant now


def test_without_min_rating_every_held_out_item_is_relevant(split):
    recs = _recs({1: [3, 2, 7], 2: [6, 7, 8]})
    table = evaluate_recommendations(recs, split, k=1)
    assert table["users"].iloc[0] == 2
    assert table["hit_rate@1"].iloc[0] == 1.0
    assert table["recall@1"].iloc[0] == pytest.approx((1 / 3 + 1) / 2)


def test_cold_start_users_keep_exactly_their_first_n_visible_interactions():
    # rows deliberately out of time order: user 1's first watches by time are 5, 2, 7;
    # user 2's are 2, 3, 1
    inter = {"user_id": [1] * 5 + [2] * 3, "item_id": [1, 2, 5, 7, 8, 1, 2, 3],
             "rating": [4] * 8, "timestamp": [50, 20, 10, 30, 40, 3, 1, 2]}
    ds = _ds(inter)
    for seed in (0, 1):     # one seed holds out each user
        _check_first_two(cold_start_users(ds, fraction=0.5, n_visible=2, seed=seed))


def _check_first_two(split):
    held = split.test.interactions["user_id"].unique()
    assert len(held) == 1
    user = held[0]
    kept = split.train.interactions.query("user_id == @user").sort_values("timestamp")
    gone = split.test.interactions.sort_values("timestamp")
    if user == 1:
        assert kept["item_id"].tolist() == [5, 2]          # the earliest two, not the latest
        assert gone["item_id"].tolist() == [7, 8, 1]
    else:
        assert kept["item_id"].tolist() == [2, 3]
        assert gone["item_id"].tolist() == [1]
    assert len(kept) == 2                                  # exactly n_visible, not n +/- 1


def test_cold_start_users_without_visible_interactions_hold_out_everything():
    inter = {"user_id": [1, 1, 2, 2], "item_id": [1, 2, 3, 4], "rating": [4] * 4,
             "timestamp": [2, 1, 4, 3]}
    split = cold_start_users(_ds(inter), fraction=0.5, n_visible=0, seed=3)
    user = split.test.interactions["user_id"].unique()
    assert len(user) == 1
    assert user[0] not in split.train.interactions["user_id"].to_numpy()
    assert len(split.test.interactions) == 2
