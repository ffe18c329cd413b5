"""The two-stage ranker: candidate retrieval, pair features, the ranker's gain on the demo world,
and that its labels never come from the test part."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import perso_kit as pk
from perso_kit.data.dataset import make_dataset
from perso_kit.recommenders import ALS, EASE, Recommender, TwoStageRanker
from perso_kit.recommenders.features import (build_features, genre_affinity_features,
                                             item_columns, item_popularity_features,
                                             pair_columns, time_features)
from perso_kit.recommenders.ltr import candidate_recall, model_scores, retrieve_candidates


class Fixed(Recommender):
    """Scores every user's items with one fixed vector (a stub retriever)."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=float)

    def _score(self, user_idx):
        return np.tile(self.scores, (len(user_idx), 1))


class ListOnly(Recommender):
    """A retriever that only returns lists (like an LLM re-ranker): no ``_score``."""

    def recommend(self, users=None, k=10, exclude_seen=True, items=None):
        return pd.DataFrame({"user_id": [1, 1], "item_id": [4, 2], "score": [9.0, 8.0],
                             "rank": [1, 2]})


@pytest.fixture(scope="module")
def small():
    inter = pd.DataFrame({"user_id": [1, 1, 2, 2, 2, 3],
                          "item_id": [1, 2, 1, 3, 4, 1],
                          "rating": [5, 3, 4, 4, 2, 1],
                          "timestamp": [0, 86400, 0, 10 * 86400, 100 * 86400, 50 * 86400]})
    items = pd.DataFrame({"item_id": [1, 2, 3, 4, 5], "title": list("abcde"),
                          "year": [1990, 1995, 1995, None, 1980],
                          "genres": [("Drama",), ("Comedy",), ("Drama", "Comedy"), (),
                                     ("Horror",)]})
    return make_dataset("small", inter, items)


# ------------------------------------------------------------------------------ retrieval
def test_candidates_are_the_union_with_ranks_and_misses(small):
    a = Fixed([5, 4, 3, 2, 1]).fit(small)      # user 1 saw items 1, 2 -> proposes 3, 4
    b = Fixed([1, 2, 3, 4, 5]).fit(small)      # proposes 5, 4
    c = retrieve_candidates({"A": a, "B": b}, users=[1], n=2)
    assert c["item_id"].tolist() == [3, 5, 4]  # by best rank, then item id
    assert c["A_rank"].tolist() == [1, 3, 2]   # 3 = n + 1: A did not propose item 5
    assert c["B_rank"].tolist() == [3, 1, 2]
    assert np.isnan(c.loc[c["item_id"] == 5, "A_score"]).all()
    assert c["n_retrievers"].tolist() == [1, 1, 2]


def test_model_scores_give_exact_ranks_among_unseen_items(small):
    a = Fixed([5, 4, 3, 2, 1]).fit(small)
    pairs = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [5, 3, 2]})
    out = model_scores({"A": a, "L": ListOnly().fit(small)}, pairs)
    assert set(out) == {"A_score", "A_rank"}      # the list-only model is skipped
    # user 1 saw items 1 and 2: unseen order 3, 4, 5; user 2 saw 1, 3, 4: unseen order 2, 5
    assert out["A_rank"].tolist() == [3, 1, 1]
    assert out["A_score"].tolist() == [1.0, 3.0, 4.0]


def test_list_only_retrievers_work_too(small):
    c = retrieve_candidates({"L": ListOnly().fit(small)}, users=[1], n=2)
    assert c["item_id"].tolist() == [4, 2] and c["L_rank"].tolist() == [1, 2]


def test_candidate_recall_by_hand(small):
    truth = small.with_interactions(small.interactions.iloc[[0, 1, 2]], "truth")
    # truth: user 1 -> {1, 2}, user 2 -> {1}
    cands = pd.DataFrame({"user_id": [1, 2, 2], "item_id": [2, 1, 5]})
    assert candidate_recall(cands, truth) == pytest.approx((0.5 + 1.0) / 2)


# ------------------------------------------------------------------------------ features
def test_pair_features_by_hand(small):
    pairs = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [3, 2, 5]})
    pop = item_popularity_features(pairs, small)
    np.testing.assert_allclose(pop["item_log_popularity"], np.log1p([1, 1, 0]))
    np.testing.assert_allclose(pop["item_mean_rating"], [4.0, 3.0, np.nan])
    g = genre_affinity_features(pairs, small)
    # user 1 watched Drama (item 1) and Comedy (item 2): shares 0.5 / 0.5; item 3 is both
    assert g["genre_affinity"][0] == pytest.approx(0.5)
    # user 2 watched items 1 (Drama), 3 (Drama, Comedy), 4 (none): Comedy share 1/3
    assert g["genre_affinity"][1] == pytest.approx(1 / 3)
    assert g["genre_affinity_max"][2] == 0.0          # nobody's Horror
    # user 1's items are from 1990 and 1995 (mean 1992.5); item 3 is from 1995
    assert g["year_gap"][0] == pytest.approx(2.5)
    t = time_features(pairs, small)
    # item 3 first appears at day 10; user 1 was last seen at day 1
    assert t["item_first_minus_user_last_days"][0] == pytest.approx(9.0)
    assert np.isnan(t["item_first_minus_user_last_days"][2])     # item 5 never seen


def test_extra_feature_tables_join_by_key(small):
    pairs = pd.DataFrame({"user_id": [1, 2], "item_id": [3, 5]})
    llm = item_columns(pd.DataFrame({"item_id": [3], "is_sequel": [1.0]}), prefix="llm_")
    text = pair_columns(pd.DataFrame({"user_id": [2], "item_id": [5], "sim": [0.7]}))
    out = build_features(pairs, small, [llm, text])
    assert out.columns.tolist() == ["user_id", "item_id", "llm_is_sequel", "sim"]
    np.testing.assert_allclose(out["llm_is_sequel"], [1.0, np.nan])
    np.testing.assert_allclose(out["sim"], [np.nan, 0.7])


def test_feature_functions_are_checked(small):
    pairs = pd.DataFrame({"user_id": [1, 2], "item_id": [3, 5]})
    with pytest.raises(ValueError, match="one per pair"):
        build_features(pairs, small, [lambda p, h: {"x": np.zeros(3)}])
    with pytest.raises(ValueError, match="already exists"):
        build_features(pairs, small, [lambda p, h: {"item_id": np.zeros(2)}])
    with pytest.raises(ValueError, match="repeats keys"):
        item_columns(pd.DataFrame({"item_id": [3, 3], "a": [1, 2]}))(pairs, small)


# ------------------------------------------------------------------------------ the ranker
def _ranker(**kw):
    kw = {"n_rounds": 2, "n_estimators": 100, **kw}
    return TwoStageRanker(retrievers={"ALS": ALS(), "EASE": EASE()}, n_candidates=50, **kw)


@pytest.fixture(scope="module")
def demo_split(demo):
    return pk.split.random_per_user(demo, test_fraction=0.25, seed=42)


@pytest.fixture(scope="module")
def fitted(demo_split):
    return _ranker().fit(demo_split.train)


def test_ranker_beats_its_own_retrievers_on_the_demo_world(demo_split, fitted):
    # the ranker's retrievers were refitted on the whole training part, like these
    retrievers = pk.evaluate({"ALS": ALS(), "EASE": EASE()}, demo_split, k=10, progress=False)
    ranker = pk.evaluate({"ranker": fitted}, demo_split, k=10, fit=False, progress=False)
    ndcg = pd.concat([retrievers, ranker]).set_index("model")["ndcg@10"]
    assert ndcg["ranker"] > max(ndcg["ALS"], ndcg["EASE"]) + 0.005, ndcg.round(4).to_dict()


def test_ranker_reports_recall_and_importances(fitted):
    assert 0.3 < fitted.validation_recall_ < 1.0
    imp = fitted.feature_importances()
    assert imp["gain"].is_monotonic_decreasing
    assert {"ALS_rank", "EASE_score", "ItemKNN_score", "genre_affinity"} <= set(imp["feature"])
    assert imp["feature"].iloc[0].startswith(("ALS", "EASE", "ItemKNN"))


def test_ranker_lists_exclude_training_items_and_keep_user_order(demo_split, fitted):
    recs = fitted.recommend(users=[5, 3], k=10)
    assert recs["user_id"].drop_duplicates().tolist() == [5, 3]
    assert recs.groupby("user_id")["rank"].apply(list).map(lambda r: r == list(range(1, 11))).all()
    seen = demo_split.train.interactions[["user_id", "item_id"]]
    assert recs.merge(seen, on=["user_id", "item_id"]).empty


def test_ranker_learns_only_from_training_data(demo_split, fitted):
    """Plant a marker in the test part: lists of the least popular candidates. If the ranker
    used test labels, its lists would move toward the marker; they must not move at all."""
    train = demo_split.train
    pairs = fitted.training_pairs_
    # every label the ranker saw is a training interaction
    positives = pairs[pairs["label"] == 1][["user_id", "item_id"]]
    train_pairs = train.interactions[["user_id", "item_id"]]
    assert len(positives.merge(train_pairs, on=["user_id", "item_id"])) == len(positives)
    test_pairs = demo_split.test.interactions[["user_id", "item_id"]]
    assert positives.merge(test_pairs, on=["user_id", "item_id"]).empty

    users = demo_split.test_users[:120]
    cands = fitted.candidates(users)
    marker = (cands.sort_values(["user_id", "item_log_popularity"])
              .groupby("user_id").head(10)[["user_id", "item_id"]])
    planted = demo_split.test.with_interactions(
        marker.assign(rating=5.0, timestamp=0), "planted-test")
    planted_split = pk.split.Split(train, planted, None, "planted marker")

    honest = _ranker()
    recs_a = pk.evaluate_recommendations(fitted.recommend(users, k=10), planted_split, k=10)
    recs_b = honest.fit(planted_split.train).recommend(users, k=10)   # same train, other test
    pd.testing.assert_frame_equal(fitted.recommend(users, k=10), recs_b)

    leaky = _ranker(n_rounds=1).fit_from(train, planted)   # the trap: labels from the test
    recs_c = pk.evaluate_recommendations(leaky.recommend(users, k=10), planted_split, k=10)
    # the marker is detectable: a ranker shown it finds it, the honest ranker does not
    assert recs_c["precision@10"].iloc[0] > recs_a["precision@10"].iloc[0] + 0.2


def test_bad_ranker_arguments():
    with pytest.raises(ValueError, match="objective"):
        TwoStageRanker(objective="pointwise")
    with pytest.raises(ValueError, match="both retrievers and scorers"):
        TwoStageRanker(retrievers={"EASE": EASE()}, scorers={"EASE": EASE()})
    with pytest.raises(ValueError, match="n_candidates"):
        TwoStageRanker(n_candidates=0)


# ------------------------------------------------------------------------------ early stopping
def _synthetic_candidates(ranker, flip_watched: bool, n_users=300, per_user=30, seed=0):
    """Candidate rows whose label follows a noisy sum of four features; with ``flip_watched``
    the users watched for early stopping get the opposite rule (their best lists are the
    trained model's worst), so every added tree makes their NDCG worse."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(1, n_users + 1), per_user)
    feats = rng.normal(size=(len(users), 4))
    signal = feats.sum(axis=1) + rng.normal(scale=1.0, size=len(users))
    if flip_watched:
        watched = ranker._early_stopping_users(np.arange(1, n_users + 1))
        signal = np.where(np.isin(users, watched), -signal, signal)
    frame = pd.DataFrame(feats, columns=["f1", "f2", "f3", "f4"])
    frame.insert(0, "item_id", np.tile(np.arange(per_user), n_users))
    frame.insert(0, "user_id", users)
    order = pd.Series(signal).groupby(users).rank(ascending=False, method="first")
    frame["label"] = (order <= 3).astype(np.int64).to_numpy()
    return frame


def _fit_synthetic(flip_watched: bool, **kw):
    kw = {"early_stopping_fraction": 0.2, **kw}
    ranker = TwoStageRanker(n_estimators=300, early_stopping_rounds=20, seed=0, **kw)
    ranker._recalls = [1.0]
    ranker._fit_ranker([_synthetic_candidates(ranker, flip_watched)])
    return ranker


def test_early_stopping_fires_when_more_trees_hurt_the_watched_users():
    planted = _fit_synthetic(flip_watched=True)
    clean = _fit_synthetic(flip_watched=False)
    # planted: the watched NDCG is best after the first tree; only that tree is kept
    assert planted.best_iteration_ == 1
    assert planted.model_.booster_.current_iteration() == 1
    # clean control: the watched users keep gaining from new trees for a long while
    assert clean.best_iteration_ > 30
    # without a watched share, every tree is kept and every user is trained on
    none = _fit_synthetic(flip_watched=True, early_stopping_fraction=0)
    assert none.best_iteration_ == 300 and len(none.early_stopping_users_) == 0
    assert none.training_pairs_["user_id"].nunique() == 300


def _tied_candidates(candidate_order_is_item_order: bool, n_users=200, per_user=30):
    """Lists whose three positives come first in candidate order, with features that carry
    no signal (constant), so every model ties all of a user's candidates. Planted: candidate
    order is the reverse of item order (the positives are the highest item ids); control: the
    two orders agree."""
    users = np.repeat(np.arange(1, n_users + 1), per_user)
    position = np.tile(np.arange(per_user), n_users)
    items = position if candidate_order_is_item_order else per_user - 1 - position
    return pd.DataFrame({"user_id": users, "item_id": items, "f1": 1.0, "f2": 0.0,
                         "label": (position < 3).astype(np.int64)})


@pytest.mark.parametrize("candidate_order_is_item_order, negative_fraction, serving_ndcg",
                         [(False, 1.0, 0.0), (True, 1.0, 1.0), (False, 0.1, 0.0)])
def test_early_stopping_scores_tied_lists_in_the_order_serving_shows(
        candidate_order_is_item_order, negative_fraction, serving_ndcg):
    # serving breaks score ties by item id; LightGBM's NDCG breaks them by row order. Every
    # score ties here, so serving shows items 0, 1, 2, ... first: with the positives at the
    # highest ids (planted) its NDCG@10 is 0 (hand-computed), though candidate order has them
    # first (NDCG 1). The watched NDCG must be the serving one, in both cases; and the watched
    # lists stay whole when training drops negatives (27 negatives still sit above the three
    # positives: had a tenth of them been kept, the positives would enter the top 10).
    ranker = TwoStageRanker(n_estimators=5, early_stopping_fraction=0.2, seed=0,
                            objective="binary", negative_fraction=negative_fraction)
    ranker._recalls = [1.0]
    ranker._fit_ranker([_tied_candidates(candidate_order_is_item_order)])
    watched_ndcg = next(iter(ranker.model_.evals_result_.values()))["ndcg@10"]
    np.testing.assert_allclose(watched_ndcg, serving_ndcg)


def test_negative_fraction_keeps_every_positive_and_a_seeded_share_of_negatives():
    full = _fit_synthetic(flip_watched=False, early_stopping_fraction=0)
    thin = _fit_synthetic(flip_watched=False, early_stopping_fraction=0, negative_fraction=0.3)
    again = _fit_synthetic(flip_watched=False, early_stopping_fraction=0, negative_fraction=0.3)
    pos = lambda r: r.training_pairs_[r.training_pairs_["label"] == 1]  # noqa: E731
    neg = lambda r: r.training_pairs_[r.training_pairs_["label"] == 0]  # noqa: E731
    pd.testing.assert_frame_equal(pos(thin).reset_index(drop=True),
                                  pos(full).reset_index(drop=True))
    n_neg = len(neg(full))                                # 300 users x 27 negatives
    assert n_neg == 8100
    sd = (n_neg * 0.3 * 0.7) ** 0.5
    assert abs(len(neg(thin)) - 0.3 * n_neg) < 4 * sd
    assert neg(thin).merge(neg(full)).shape[0] == len(neg(thin))  # a subset of the negatives
    pd.testing.assert_frame_equal(thin.training_pairs_, again.training_pairs_)   # seeded
    with pytest.raises(ValueError, match="negative_fraction"):
        TwoStageRanker(negative_fraction=0)
    with pytest.raises(ValueError, match="negative_fraction"):
        TwoStageRanker(negative_fraction=1.5)


def test_watched_users_are_a_seeded_share_never_trained_on(demo_split, fitted):
    # the default watches nobody: every labelled user is trained on, every tree kept
    assert len(fitted.early_stopping_users_) == 0 and fitted.best_iteration_ == 100
    lean = _ranker(n_rounds=1, early_stopping_fraction=0.2).fit(demo_split.train)
    watched = lean.early_stopping_users_
    trained = lean.training_pairs_["user_id"].unique()
    assert len(watched) > 0 and not np.isin(watched, trained).any()
    assert len(watched) == round(0.2 * (len(watched) + len(trained)))
    assert 1 <= lean.best_iteration_ <= 100
    again = lean._early_stopping_users(np.sort(np.concatenate([watched, trained])))
    np.testing.assert_array_equal(again, watched)


def test_bad_early_stopping_arguments():
    with pytest.raises(ValueError, match="early_stopping_fraction"):
        TwoStageRanker(early_stopping_fraction=1.0)
    with pytest.raises(ValueError, match="early_stopping_rounds"):
        TwoStageRanker(early_stopping_rounds=0)


# ------------------------------------------------------------------------------ the lean preset
def test_lean_preset_is_its_named_settings_and_leaves_the_defaults_alone():
    lean = TwoStageRanker.lean(n_candidates=50)
    for name, value in TwoStageRanker.LEAN_SETTINGS.items():
        assert getattr(lean, name) == value, name
    assert lean.n_candidates == 50
    assert lean.retrievers["ALS"].num_threads == 1 and set(lean.retrievers) == {"ALS", "EASE"}
    assert TwoStageRanker.lean(n_rounds=5).n_rounds == 5              # any setting overridable
    mine = {"EASE": EASE()}
    assert TwoStageRanker.lean(retrievers=mine).retrievers == mine
    d = TwoStageRanker()                                             # the defaults stay
    assert (d.n_rounds, d.validation_fraction, d.early_stopping_fraction, d.objective,
            d.n_estimators, d.lgbm_params, d.negative_fraction) == (3, 0.1, 0.0, "lambdarank",
                                                                   150, {}, 1.0)
    assert d.retrievers["ALS"].num_threads == 0


def test_als_gives_the_same_factors_with_one_thread_or_all(demo):
    # why the lean preset may fit ALS on one thread: only the time changes
    one, every = ALS(num_threads=1).fit(demo), ALS(num_threads=0).fit(demo)
    np.testing.assert_array_equal(one.user_factors_, every.user_factors_)
    np.testing.assert_array_equal(one.item_factors_, every.item_factors_)


def test_lean_ranker_stops_early_and_still_beats_its_retrievers(demo_split):
    lean = TwoStageRanker.lean(n_candidates=50, show_progress=False).fit(demo_split.train)
    assert lean.model_.objective == "binary"
    assert sorted(lean.training_pairs_["round"].unique()) == [0, 1, 2]   # three carves
    watched, trained = lean.early_stopping_users_, lean.training_pairs_["user_id"].unique()
    assert len(watched) == round(0.2 * (len(watched) + len(trained)))
    assert not np.isin(watched, trained).any()
    # early stopping kept 109 of the 150 trees on this world (seed 42; 69 with every negative)
    assert lean.best_iteration_ == lean.model_.booster_.num_trees() == 109
    retrievers = pk.evaluate({"ALS": ALS(), "EASE": EASE()}, demo_split, k=10, progress=False)
    ranker = pk.evaluate({"lean": lean}, demo_split, k=10, fit=False, progress=False)
    ndcg = pd.concat([retrievers, ranker]).set_index("model")["ndcg@10"]
    assert ndcg["lean"] > max(ndcg["ALS"], ndcg["EASE"]) + 0.005, ndcg.round(4).to_dict()
