"""Measurement helpers of notebook 04 (perso_kit.challenges), on hand-made data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perso_kit import challenges as C
from perso_kit.data.dataset import make_dataset
from perso_kit.recommenders import Popularity
from perso_kit.recommenders.base import Recommender
from perso_kit.split import Split, cold_start_items, random_per_user


@pytest.fixture(scope="module")
def tiny():
    """4 users, 5 items; item 5 has no interactions at all."""
    inter = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 3, 3, 4],
                          "item_id": [1, 2, 3, 1, 2, 1, 4, 1],
                          "timestamp": np.arange(8)})
    items = pd.DataFrame({
        "item_id": [1, 2, 3, 4, 5],
        "title": ["Funny Bones", "The Funnyman", "Dark Water", "Sunny Day", "Quiet Night"],
        "year": [1991, 1987, 1988, 1999, 1993],
        "genres": ["Comedy", "Comedy|Drama", "Thriller", "Comedy", "Drama"],
        "description": ["A breezy comedy.", "A light-hearted romp.", "Grim.", "Playful and "
                        "light-hearted fun.", "Slow."],
        "runtime": [95, 120, 100, 88, 130],
        "mood": ["light-hearted", "light-hearted", "dark", "whimsical", "thoughtful"],
    })
    return make_dataset("tiny", inter, items)


class ItemToItem(Recommender):
    """An item-to-item model with a fixed weight matrix B (the EASE form: score = x_u B)."""

    def __init__(self, weights):
        self.weights = np.asarray(weights, dtype=float)

    def fit(self, train):
        super().fit(train)
        self.weights_ = self.weights
        return self

    def _score(self, user_idx):
        return np.asarray(self.train_.matrix()[user_idx] @ self.weights_)


def test_thin_keeps_the_stated_share_and_is_seeded(demo):
    half = C.thin(demo, 0.5, seed=1)
    assert half.n_interactions == round(0.5 * demo.n_interactions)
    assert half.n_items == demo.n_items and half.n_users == demo.n_users
    assert half.interactions.merge(demo.interactions).shape[0] == half.n_interactions
    assert C.thin(demo, 0.5, seed=1).interactions.equals(half.interactions)
    assert not C.thin(demo, 0.5, seed=2).interactions.equals(half.interactions)
    assert C.thin(demo, 1.0).n_interactions == demo.n_interactions
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="share of interactions"):
            C.thin(demo, bad)


def test_sparsity_curve_thins_only_the_training_part(demo):
    split = random_per_user(demo, seed=3)
    curve = C.sparsity_curve({"Popularity": Popularity()}, split, keeps=(1.0, 0.25), seed=3,
                             progress=False)
    assert curve["keep"].tolist() == [1.0, 0.25]
    assert curve["interactions"].tolist() == [split.train.n_interactions,
                                              round(0.25 * split.train.n_interactions)]
    assert curve["density"].iloc[1] == pytest.approx(curve["density"].iloc[0] / 4, rel=1e-3)


def test_cold_item_report_on_held_out_items(demo):
    split = cold_start_items(demo, fraction=0.05, seed=4)
    cold = split.test.interactions["item_id"].unique()
    report = C.cold_item_report({"Popularity": Popularity()}, split, cold)
    row = report.iloc[0]
    assert row["cold_share"] == 0 and row["users_shown_cold"] == 0
    assert row["recall@10"] == 0 and row["ndcg@10"] == 0
    assert row["cold_scores_tied"] == 1.0


def test_catalog_baseline_by_hand(tiny):
    base = C.catalog_baseline(tiny, head_share=0.2)
    # popularity: item1 4 users, item2 2, item3 1, item4 1, item5 0
    # interactions' items: 1,2,3,1,2,1,4,1 -> popularities 4,2,1,4,2,4,1,4
    assert base["avg_popularity"] == pytest.approx(22 / 8)
    # head = the top 20% of 5 items = 1 item (item 1): 4 of 8 interactions are in the tail
    assert base["long_tail_share"] == pytest.approx(0.5)
    assert base["coverage"] == pytest.approx(0.8)
    assert base["exposure_gini"] == pytest.approx(0.45)  # gini([0, 1, 1, 2, 4])


def test_because_you_watched_decomposes_the_score_exactly(tiny):
    rng = np.random.default_rng(0)
    B = rng.normal(size=(5, 5))
    np.fill_diagonal(B, 0)
    model = ItemToItem(B).fit(tiny)
    why = C.because_you_watched(model, 1, 4, n=10)     # user 1 watched items 1, 2, 3
    assert sorted(why["item_id"]) == [1, 2, 3]
    assert why["contribution"].sum() == pytest.approx(model.score([1], [4])[0, 0])
    assert why["share"].sum() == pytest.approx(1.0)
    assert list(why["contribution"]) == sorted(why["contribution"], reverse=True)
    np.testing.assert_allclose(why.set_index("item_id")["contribution"].loc[[1, 2, 3]],
                               B[[0, 1, 2], 3])
    assert len(C.because_you_watched(model, 1, 4, n=2)) == 2
    with pytest.raises(TypeError, match="item-to-item"):
        C.because_you_watched(Popularity().fit(tiny), 1, 4)
    empty = tiny.with_interactions(tiny.interactions[tiny.interactions["user_id"] != 4], "x")
    with pytest.raises(ValueError, match="no training interactions"):
        C.because_you_watched(ItemToItem(B).fit(empty), 4, 2)


def test_explanation_stats_reports_share_and_genre_overlap(tiny):
    B = np.zeros((5, 5))
    B[0, 4] = 2.0   # item 1 (Comedy) -> item 5 (Drama): the only reason, no shared genre
    B[1, 4] = 0.5   # item 2 (Comedy|Drama) -> item 5
    model = ItemToItem(B).fit(tiny)
    stats = C.explanation_stats(model, [2])             # user 2 watched items 1, 2
    row = stats.iloc[0]
    assert row["item_id"] == 5 and row["because"] == 1
    assert row["share"] == pytest.approx(2.0 / 2.5)
    assert not row["shares_genre"]


def test_structured_and_keyword_filters(tiny):
    items = tiny.items
    mask = C.structured_filter(items, genre="Comedy", years=(1990, 1999), max_runtime=100)
    assert items.loc[mask, "item_id"].tolist() == [1, 4]
    assert C.structured_filter(items, mood="dark").sum() == 1
    assert C.structured_filter(items).all()
    # whole words only: "Funny" in "Funny Bones", not in "Funnyman"
    assert items.loc[C.keyword_filter(items, ["funny"]), "item_id"].tolist() == [1]
    assert items.loc[C.keyword_filter(items, ["light-hearted"]), "item_id"].tolist() == [2, 4]
    movielens_like = items.drop(columns=["runtime", "mood"])
    with pytest.raises(KeyError, match="no 'runtime' column"):
        C.structured_filter(movielens_like, max_runtime=100)


def test_request_funnel_skips_what_the_catalog_cannot_express(tiny):
    steps = [("comedy", {"genre": "Comedy"}), ("90s", {"years": (1990, 1999)}),
             ("short", {"max_runtime": 100}), ("light-hearted", {"mood": "light-hearted"})]
    target = tiny.items["mood"] == "light-hearted"
    funnel = C.request_funnel(tiny.items, steps, target=target)
    assert funnel["items_left"].tolist() == [3, 2, 2, 1]
    assert funnel["applied"].all()
    np.testing.assert_allclose(funnel["share_fitting"], [2 / 3, 1 / 2, 1 / 2, 1.0])
    bare = C.request_funnel(tiny.items.drop(columns=["runtime", "mood"]), steps)
    assert bare["applied"].tolist() == [True, True, False, False]
    assert bare["items_left"].tolist() == [3, 2, 2, 2]       # the last two steps change nothing
    assert "share_fitting" not in bare


def test_split_view_used_by_the_sparsity_curve_keeps_the_test(demo):
    split = random_per_user(demo, seed=5)
    view = Split(C.thin(split.train, 0.1, seed=5), split.test, None, "x")
    assert view.test is split.test
