"""Measurement helpers of notebook 04 (perso_kit.challenges), on hand-made data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perso_kit import challenges as C
from perso_kit.data.dataset import make_dataset
from perso_kit.data.demo import DemoWorld
from perso_kit.recommenders import Popularity
from perso_kit.recommenders.base import Recommender
from perso_kit.simulate import SimulatedUsers
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
    assert curve["exclude_thinned"].all()


def test_thinned_away_is_the_complement_of_thin(demo):
    kept, gone = C.thin(demo, 0.3, seed=7), C.thinned_away(demo, 0.3, seed=7)
    assert kept.n_interactions + gone.n_interactions == demo.n_interactions
    both = pd.concat([kept.interactions, gone.interactions])
    assert not both.duplicated().any()
    assert both.merge(demo.interactions).shape[0] == demo.n_interactions
    assert C.thinned_away(demo, 1.0).n_interactions == 0


class FixedOrder(Recommender):
    """Scores every item by a fixed number, whatever the training data: its ranking cannot
    change when the data is thinned (only the user's seen items are left out)."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=float)

    def _score(self, user_idx):
        return np.broadcast_to(self.scores, (len(user_idx), len(self.scores)))


@pytest.fixture(scope="module")
def stacked():
    """6 users, 6 items. Every user trained on items 1 and 2 (the two the model ranks first)
    and then watched item 3 (held out): with all the data, a fixed-order model puts item 3
    first in every list."""
    users = np.arange(1, 7)
    items = pd.DataFrame({"item_id": np.arange(1, 7), "title": list("abcdef"),
                          "year": 1990, "genres": "Drama", "description": ""})
    train = pd.DataFrame({"user_id": np.repeat(users, 2), "item_id": np.tile([1, 2], 6)})
    test = pd.DataFrame({"user_id": users, "item_id": 3})
    ds = make_dataset("stacked", pd.concat([train, test], ignore_index=True), items)
    split = Split(ds.with_interactions(ds.interactions.iloc[:12], "train"),
                  ds.with_interactions(ds.interactions.iloc[12:], "test"), None, "by hand")
    return split, FixedOrder([6, 5, 4, 3, 2, 1])     # item 1 first, item 6 last


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_ranking_that_ignores_the_data_keeps_its_ndcg_only_with_the_thinned_set_aside(
        stacked, seed):
    split, model = stacked
    curve = C.sparsity_curve({"fixed": model}, split, keeps=(1.0, 0.5), k=2, seed=seed,
                             progress=False)
    ndcg = curve.set_index("keep")["ndcg@2"]
    assert ndcg[1.0] == 1.0 and ndcg[0.5] == 1.0     # item 3 first in every list, as before
    # naive: a user who lost one of items 1, 2 gets it back at rank 1 (a sure miss) and item 3
    # at rank 2 (NDCG 1/log2(3)); a user who lost both gets [1, 2] (NDCG 0)
    naive = C.sparsity_curve({"fixed": model}, split, keeps=(0.5,), k=2, seed=seed,
                             exclude_thinned=False, progress=False)["ndcg@2"].iloc[0]
    lost = C.thinned_away(split.train, 0.5, seed).interactions.groupby("user_id").size()
    lost = lost.reindex(range(1, 7), fill_value=0)
    expected = lost.map({0: 1.0, 1: 1 / np.log2(3), 2: 0.0}).mean()
    assert naive == pytest.approx(expected)
    assert naive < 0.75                               # 6 of 12 interactions gone: a big drop


def test_thinned_away_pairs_are_neither_candidates_nor_relevant(tiny):
    # user 1 trained on items 1, 2 and watched item 2 again later (a test interaction on a
    # pair that is also in training); thinning away (1, 2) must not make it relevant
    inter = pd.DataFrame({"user_id": [1, 1, 1, 2], "item_id": [1, 2, 2, 3],
                          "rating": 4.0, "timestamp": [0, 1, 2, 3]})
    ds = tiny.with_interactions(inter, "x")
    split = Split(ds.with_interactions(inter.iloc[:2], "train"),
                  ds.with_interactions(inter.iloc[2:], "test"), None, "by hand")
    for seed in range(20):                            # find a draw that drops (1, 2)
        if (C.thinned_away(split.train, 0.5, seed).interactions["item_id"] == 2).any():
            break
    view, removed = C.thin_split(split, 0.5, seed)
    assert removed.interactions[["user_id", "item_id"]].values.tolist() == [[1, 2]]
    assert view.test.interactions[["user_id", "item_id"]].values.tolist() == [[2, 3]]
    naive_view, _ = C.thin_split(split, 0.5, seed, exclude_thinned=False)
    assert naive_view.test is split.test
    model = FixedOrder([1, 5, 4, 3, 2]).fit(view.train)   # item 2 first, then 3, 4, 5, 1
    recs = C.recommend_excluding(model, [1, 2], 2, removed)
    # user 1: item 1 is kept-seen, item 2 thinned away -> items 3, 4; user 2 has nothing seen
    assert recs.values[:, [0, 1, 3]].tolist() == [[1, 3, 1], [1, 4, 2], [2, 2, 1], [2, 3, 2]]


def test_popularity_keeps_its_ndcg_on_half_the_demo_log(demo):
    """Popularity's ranking hardly changes under random thinning: with the thinned-away items
    set aside its NDCG stays within sampling noise; the naive protocol drops it by a third."""
    split = random_per_user(demo, seed=42)
    fair = C.sparsity_curve({"Popularity": Popularity()}, split, keeps=(1.0, 0.5), seed=42,
                            progress=False).set_index("keep")
    naive = C.sparsity_curve({"Popularity": Popularity()}, split, keeps=(0.5,), seed=42,
                             exclude_thinned=False, progress=False)
    full, half = fair.loc[1.0, "ndcg@10"], fair.loc[0.5, "ndcg@10"]
    assert abs(half - full) < fair.loc[1.0, "ndcg@10_se"]          # within one standard error
    assert 0.004 < fair.loc[1.0, "ndcg@10_se"] < 0.015
    assert naive["ndcg@10"].iloc[0] < full - 0.07


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


# ---------------------------------------------------------------------------- will watch vs likes
@pytest.fixture(scope="module")
def tiny_world(tiny):
    """The tiny catalog with a hand-written ground truth (users x items, z-scores)."""
    utility = np.array([[0.0, 0.5, 2.5, 1.0, -1.0],      # user 1
                        [0.2, 0.1, 1.2, -0.5, 2.2],      # user 2
                        [1.5, 0.0, 0.0, 0.3, 0.9],       # user 3
                        [0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    return SimulatedUsers(DemoWorld(dataset=tiny, _utility=utility, seed=0), seed=0)


@pytest.fixture(scope="module")
def tiny_split(tiny):
    # tiny's interactions: user 1 -> 1, 2, 3; user 2 -> 1, 2; user 3 -> 1, 4; user 4 -> 1
    inter = tiny.interactions
    is_test = ((inter["user_id"] == 1) & (inter["item_id"] == 3)) | \
              ((inter["user_id"] == 2) & (inter["item_id"] == 2)) | \
              ((inter["user_id"] == 3) & (inter["item_id"] == 4))
    return Split(tiny.with_interactions(inter[~is_test], "train"),
                 tiny.with_interactions(inter[is_test], "test"), None, "by hand")


def test_true_taste_lists_are_the_truly_best_unseen_items(tiny_world, tiny_split):
    lists = C.true_taste_lists(tiny_world, [1, 2], k=2, exclude=tiny_split.train)
    # user 1 trained on 1, 2 -> best of 3, 4, 5 by truth: 3 (2.5), 4 (1.0)
    # user 2 trained on 1 -> best of 2..5: 5 (2.2), 3 (1.2)
    assert lists.values.tolist() == [[1, 3, 1], [1, 4, 2], [2, 5, 1], [2, 3, 2]]


def test_watch_versus_taste_by_hand(tiny_world, tiny_split):
    recs = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3], "item_id": [3, 4, 3, 4, 2, 4],
                         "rank": [1, 2, 1, 2, 1, 2]})
    table = C.watch_versus_taste({"by hand": recs}, tiny_split, tiny_world, k=2)
    row = table.iloc[0]
    # held out: user 1 -> 3 (rank 1: NDCG 1), user 2 -> 2 (missed: 0), user 3 -> 4 (rank 2)
    ndcg = np.array([1.0, 0.0, 1 / np.log2(3)])
    assert row["ndcg@2"] == pytest.approx(ndcg.mean())
    assert row["ndcg_se"] == pytest.approx(ndcg.std(ddof=1) / np.sqrt(3))
    # true utility of the listed items: user 1 (2.5 + 1.0) / 2, user 2 (1.2 - 0.5) / 2,
    # user 3 (0.0 + 0.3) / 2
    per_user = np.array([1.75, 0.35, 0.15])
    assert row["true_utility"] == pytest.approx(per_user.mean())
    assert row["true_utility_se"] == pytest.approx(per_user.std(ddof=1) / np.sqrt(3))
    # 4 stars or more is a utility of at least 0.95: 2.5, 1.0 and 1.2 of the six items
    assert row["liked_share"] == pytest.approx(3 / 6)


def test_a_list_can_win_on_watches_and_lose_on_taste(tiny_world, tiny_split):
    """The point of the measure: the truly best list and the watch-predicting list differ."""
    watched = tiny_split.test.interactions[["user_id", "item_id"]].assign(rank=1)
    best = C.true_taste_lists(tiny_world, tiny_split.test_users, k=1, exclude=tiny_split.train)
    table = C.watch_versus_taste({"watches": watched, "taste": best}, tiny_split, tiny_world,
                                 k=1).set_index("list")
    assert table.loc["watches", "ndcg@1"] == 1.0
    assert table.loc["taste", "ndcg@1"] == pytest.approx(1 / 3)   # only user 1's best was watched
    assert table.loc["taste", "true_utility"] > table.loc["watches", "true_utility"]


def test_sparsity_figure_draws_one_standard_error_either_side():
    import matplotlib
    matplotlib.use("Agg")
    from perso_kit.plots.challenges import plot_sparsity

    curve = pd.DataFrame({"model": ["EASE"] * 2, "keep": [1.0, 0.5], "ndcg@10": [0.4, 0.3],
                          "ndcg@10_se": [0.01, 0.02]})
    ax = plot_sparsity(curve).axes[0]
    (bars,) = ax.containers
    segments = sorted(bars.lines[2][0].get_segments(), key=lambda s: s[0][0])
    # x runs over the shares in percent; each bar spans value - se .. value + se
    np.testing.assert_allclose([s[:, 1] for s in segments], [[0.28, 0.32], [0.39, 0.41]])
