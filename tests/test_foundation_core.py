"""The demo world, splits, the Recommender interface and evaluate()."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import perso_kit as pk
from perso_kit import metrics as M
from perso_kit.data import make_dataset
from perso_kit.data.demo import make_world
from perso_kit.recommenders import NotFittedError, Popularity, Recommender


# ------------------------------------------------------------------------------ demo world
def test_demo_world_size_and_long_tail(demo):
    assert demo.n_users == 1000
    assert 1500 <= demo.n_items <= 2000
    assert 90_000 <= demo.n_interactions <= 110_000
    g = M.gini(demo.item_popularity())
    assert 0.55 <= g <= 0.70, g  # MovieLens-100K: 0.63
    assert set(demo.interactions["rating"].unique()) <= {1, 2, 3, 4, 5}


def test_demo_world_is_deterministic():
    # its generation time is measured by benchmarks/evaluate_speed.py, not asserted here
    a = make_world(seed=7)
    b = make_world(seed=7)
    pd.testing.assert_frame_equal(a.dataset.interactions, b.dataset.interactions)
    c = make_world(seed=8)
    assert not a.dataset.interactions.equals(c.dataset.interactions)


def test_demo_descriptions_carry_attributes(demo):
    row = demo.items.iloc[0]
    text = row["description"].lower()
    assert str(row["year"]) in text
    assert f"{row['year'] // 10 * 10}s" in text
    assert len([s for s in row["description"].split(". ") if s]) >= 3
    assert demo.meta["synthetic"] is True and "not real data" in demo.description


def test_new_releases_have_no_interactions_before_the_cutoff(demo):
    new = demo.meta["new_item_ids"]
    assert len(new) > 0
    inter = demo.interactions[demo.interactions["item_id"].isin(new)]
    assert (inter["timestamp"] >= demo.meta["cutoff"]).all()
    assert demo.items.set_index("item_id").loc[new, "year"].eq(1998).all()


def test_ground_truth_stays_off_the_dataset(demo_world):
    ds = demo_world.dataset
    shape = (ds.n_users, ds.n_items)
    for value in list(vars(ds).values()) + list(ds.meta.values()):
        assert getattr(value, "shape", None) != shape
    # watched items are ones users truly like more than average
    inter = ds.interactions.sample(2000, random_state=0)
    z = demo_world.true_utility(inter["user_id"].unique(), ds.item_ids)
    assert z.mean() == pytest.approx(0, abs=1e-3)
    watched = demo_world._utility[ds.user_index(inter["user_id"]), ds.item_index(inter["item_id"])]
    assert watched.mean() > 0.5


# ------------------------------------------------------------------------------ datasets
def test_unknown_dataset_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown dataset 'ml-10k'.*demo"):
        pk.load_dataset("ml-10k")


def test_dataset_indices_and_unknown_ids(demo):
    assert demo.item_index([demo.item_ids[5]]).tolist() == [5]
    with pytest.raises(KeyError, match="unknown item ids \\[999999\\]"):
        demo.item_index([999999])
    m = demo.matrix()
    assert m.shape == (demo.n_users, demo.n_items) and m.nnz == demo.n_interactions


# ------------------------------------------------------------------------------ splits
def tiny() -> pk.Dataset:
    """User 1 saw items 1-6 at times 0-5; user 2 saw items 3-6 at times 100-103."""
    inter = pd.DataFrame({"user_id": [1] * 6 + [2] * 4,
                          "item_id": [1, 2, 3, 4, 5, 6, 3, 4, 5, 6],
                          "timestamp": [0, 1, 2, 3, 4, 5, 100, 101, 102, 103]})
    items = pd.DataFrame({"item_id": range(1, 7), "title": list("abcdef"), "genres": [""] * 6})
    return make_dataset("tiny", inter, items)


def test_random_per_user_holds_out_the_share_of_each_user(demo):
    s = pk.split.random_per_user(demo, test_fraction=0.25, seed=1)
    n = demo.interactions.groupby("user_id").size()
    n_test = s.test.interactions.groupby("user_id").size().reindex(n.index, fill_value=0)
    expected = np.minimum(np.round(n * 0.25), n - 1)
    assert (n_test == expected).all()
    assert s.train.n_interactions + s.test.n_interactions == demo.n_interactions
    again = pk.split.random_per_user(demo, test_fraction=0.25, seed=1)
    pd.testing.assert_frame_equal(s.test.interactions, again.test.interactions)
    assert "25%" in s.description and "seed 1" in s.description


def test_validation_is_carved_from_training(demo):
    s = pk.split.random_per_user(demo, test_fraction=0.2, validation_fraction=0.1, seed=1)
    tr = set(map(tuple, s.train.interactions[["user_id", "item_id"]].to_numpy()))
    va = set(map(tuple, s.validation.interactions[["user_id", "item_id"]].to_numpy()))
    te = set(map(tuple, s.test.interactions[["user_id", "item_id"]].to_numpy()))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert len(tr) + len(va) + len(te) == demo.n_interactions


def test_leave_last_n_takes_the_latest():
    ds = tiny()
    s = pk.split.leave_last_n(ds, n=1, validation_n=1)
    assert sorted(map(tuple, s.test.interactions[["user_id", "timestamp"]].to_numpy())) == \
        [(1, 5), (2, 103)]
    assert sorted(s.validation.interactions["timestamp"]) == [4, 102]


def test_temporal_and_new_items(demo):
    s = pk.split.temporal(demo, test_fraction=0.2)
    assert s.train.interactions["timestamp"].max() < s.test.interactions["timestamp"].min()
    n = pk.split.new_items(demo)
    assert set(n.test.interactions["item_id"]) <= set(demo.meta["new_item_ids"])
    assert not n.train.interactions["item_id"].isin(demo.meta["new_item_ids"]).any()


def test_cold_start_users_and_items(demo):
    s = pk.split.cold_start_users(demo, fraction=0.1, n_visible=3, seed=3)
    held = s.test.interactions["user_id"].unique()
    assert (s.train.user_activity().loc[held] <= 3).all()
    c = pk.split.cold_start_items(demo, fraction=0.1, seed=3)
    held_items = c.test.interactions["item_id"].unique()
    assert not c.train.interactions["item_id"].isin(held_items).any()


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5])
def test_a_split_that_leaves_nothing_is_an_error(demo, bad):
    with pytest.raises(ValueError, match="leaves nothing"):
        pk.split.random_per_user(demo, test_fraction=bad)


def test_temporal_cutoff_after_everything_is_an_error(demo):
    with pytest.raises(ValueError, match="nothing to test on"):
        pk.split.temporal(demo, cutoff=2_000_000_000)


# ------------------------------------------------------------------------------ evaluate
class Fixed(Recommender):
    """Recommends a fixed frame, to test evaluate() by hand."""

    def __init__(self, recs):
        self.recs = recs

    def recommend(self, users=None, k=10, exclude_seen=True, items=None):
        return self.recs


def test_evaluate_by_hand():
    ds = tiny()
    s = pk.split.leave_last_n(ds, n=1)  # test: user 1 -> item 6, user 2 -> item 6
    recs = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [6, 1, 3, 5],
                         "score": [2, 1, 2, 1], "rank": [1, 2, 1, 2]})
    t = pk.evaluate({"fixed": Fixed(recs)}, s, k=2)
    row = t.iloc[0]
    assert row["users"] == 2
    assert row["precision@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert row["ndcg@2"] == pytest.approx(0.5)
    assert row["mrr@2"] == pytest.approx(0.5)
    assert row["coverage"] == pytest.approx(4 / 6)


def test_evaluate_rejects_bad_recommendations_and_k():
    s = pk.split.leave_last_n(tiny(), n=1)
    unknown = pd.DataFrame({"user_id": [1], "item_id": [77], "score": [1.0], "rank": [1]})
    with pytest.raises(ValueError, match="unknown item ids.*77"):
        pk.evaluate({"bad": Fixed(unknown)}, s, k=2)
    twice = pd.DataFrame({"user_id": [1, 1], "item_id": [6, 6], "score": [1, 1], "rank": [1, 2]})
    with pytest.raises(ValueError, match="repeat an item"):
        pk.evaluate({"bad": Fixed(twice)}, s, k=2)
    with pytest.raises(ValueError, match="k must be a whole number of at least 1"):
        pk.evaluate({"pop": Popularity()}, s, k=0)


def test_popularity_excludes_seen_and_respects_candidates(demo):
    s = pk.split.random_per_user(demo, seed=0)
    model = Popularity().fit(s.train)
    recs = model.recommend(users=[1, 2], k=10)
    seen = s.train.interactions
    for u, g in recs.groupby("user_id"):
        assert not set(g["item_id"]) & set(seen.loc[seen["user_id"] == u, "item_id"])
        assert g["rank"].tolist() == list(range(1, 11))
        assert g["score"].is_monotonic_decreasing
    only = model.recommend(users=[1], k=5, items=demo.item_ids[:3])
    assert set(only["item_id"]) <= set(demo.item_ids[:3])
    with pytest.raises(NotFittedError, match="fit"):
        Popularity().recommend(users=[1])


def test_evaluate_segments_by_activity(demo):
    s = pk.split.random_per_user(demo, seed=0)
    t = pk.evaluate({"Popularity": Popularity()}, s, k=10, by="activity")
    assert t["segment"].tolist() == ["all", "<=5", "6-20", "21-50", ">50"]
    assert t.loc[1:, "users"].sum() == t.loc[0, "users"]
    # popularity is worse for light users, who share less of the crowd's taste
    assert t.loc[t.segment == ">50", "ndcg@10"].item() > t.loc[t.segment == "<=5", "ndcg@10"].item()


def test_recommending_for_an_unknown_user_is_an_error(demo):
    model = Popularity().fit(demo)
    with pytest.raises(KeyError, match="unknown user ids"):
        model.recommend(users=[123456])
