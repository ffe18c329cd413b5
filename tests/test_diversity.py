"""Intra-list diversity (metrics, evaluate) and the MMR re-ranker, on hand-computed examples
and planted catalogs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import perso_kit as pk
from perso_kit import metrics as M
from perso_kit.data import make_dataset
from perso_kit.evaluate import evaluate_recommendations
from perso_kit.recommenders import EASE, MMR, Popularity, Recommender
from perso_kit.recommenders.mmr import mmr_rerank, ranking_frame

# three items: {Drama, Comedy}, {Drama}, {Horror}
GENRES = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]])


# ------------------------------------------------------------------------------ the metric
def test_ild_on_genres_by_hand():
    # pairs: (0,1) share 1 of 2 genres -> distance 1/2; (0,2) and (1,2) share none -> 1
    ild = M.intra_list_diversity(np.array([[0, 1, 2], [0, 1, -1], [1, 0, 1], [2, -1, -1]]),
                                 GENRES)
    assert ild[0] == pytest.approx((0.5 + 1 + 1) / 3)
    assert ild[1] == pytest.approx(0.5)                   # the padded slot forms no pair
    assert ild[2] == pytest.approx((0.5 + 0 + 0.5) / 3)   # an item repeated: distance 0
    assert np.isnan(ild[3])                               # one item: no pair at all


def test_ild_accepts_a_sparse_genre_matrix():
    import scipy.sparse as sp
    rec = np.array([[0, 1, 2]])
    assert M.intra_list_diversity(rec, sp.csr_matrix(GENRES))[0] == pytest.approx(2.5 / 3)


def test_ild_on_vectors_by_hand():
    vecs = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [0.0, 0.0]])
    # cosines: (0,1) 0, (0,2) and (1,2) 1/sqrt(2) -> distances 1, 1 - 0.7071, 1 - 0.7071
    ild = M.intra_list_diversity(np.array([[0, 1, 2], [2, 2, 2], [0, 3, -1]]), vecs,
                                 metric="cosine")
    assert ild[0] == pytest.approx((1 + 2 * (1 - 2 ** -0.5)) / 3)
    assert ild[1] == pytest.approx(0.0)                   # parallel vectors: no diversity
    assert ild[2] == pytest.approx(1.0)                   # a zero vector is like nothing


def test_empty_genre_sets_count_as_equal():
    sims = M.list_similarities(np.array([[0, 1]]), np.zeros((2, 3)))
    assert sims[0].tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_bad_diversity_input_is_named():
    with pytest.raises(ValueError, match="metric must be one of"):
        M.intra_list_diversity(np.array([[0, 1]]), GENRES, metric="euclid")
    with pytest.raises(ValueError, match="only 3 rows"):
        M.intra_list_diversity(np.array([[0, 5]]), GENRES)
    with pytest.raises(ValueError, match="users x k"):
        M.intra_list_diversity(np.array([0, 1]), GENRES)


def test_ild_is_vectorized_in_batches_without_changing_values():
    rng = np.random.default_rng(0)
    feats = rng.integers(0, 2, size=(50, 6))
    rec = rng.integers(-1, 50, size=(37, 8))
    whole = M.intra_list_diversity(rec, feats)
    batched = M.intra_list_diversity(rec, feats, batch_size=5)
    np.testing.assert_allclose(whole, batched)
    # against a plain loop over pairs
    u = 3
    items = [i for i in rec[u] if i >= 0]
    d = [1 - len(set(np.flatnonzero(feats[a])) & set(np.flatnonzero(feats[b])))
         / max(1, len(set(np.flatnonzero(feats[a])) | set(np.flatnonzero(feats[b]))))
         if (feats[a].any() or feats[b].any()) else 0.0
         for n, a in enumerate(items) for b in items[n + 1:]]
    assert whole[u] == pytest.approx(np.mean(d))


# ------------------------------------------------------------------------------ in evaluate
@pytest.fixture(scope="module")
def tiny_split():
    """Four users; every user's test item is one of the three items they did not watch."""
    items = pd.DataFrame({"item_id": [1, 2, 3, 4, 5],
                          "title": list("ABCDE"),
                          "genres": ["Drama|Comedy", "Drama", "Horror", "Horror", "Comedy"]})
    train = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 4, 4],
                          "item_id": [4, 5, 4, 5, 4, 5, 4, 5]})
    test = pd.DataFrame({"user_id": [1, 2, 3, 4], "item_id": [1, 2, 3, 1]})
    inter = pd.concat([train.assign(timestamp=0), test.assign(timestamp=1)])
    ds = make_dataset("tiny", inter, items)
    return pk.split.leave_last_n(ds, n=1)


def test_evaluate_reports_ild_beside_the_other_columns(tiny_split):
    recs = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 3, 3, 4],
                         "item_id": [1, 2, 3, 1, 2, 3, 1, 2],
                         "score": 1.0, "rank": [1, 2, 3, 1, 2, 1, 2, 1]})
    table, per_user = evaluate_recommendations(recs, tiny_split, k=3, return_per_user=True)
    ild = per_user.set_index("user_id")["ild@3"]
    assert ild[1] == pytest.approx(2.5 / 3)           # items 1, 2, 3: the example above
    assert ild[2] == pytest.approx(0.5)               # items 1, 2
    assert ild[3] == pytest.approx(1.0)               # items 3, 1
    assert np.isnan(ild[4])                           # a single item: left out of the mean
    assert table["ild@3"].iloc[0] == pytest.approx((2.5 / 3 + 0.5 + 1.0) / 3)
    cols = list(table.columns)
    assert cols.index("ild@3") == cols.index("novelty") + 1


def test_ild_leaves_the_existing_columns_as_they_were():
    split = pk.split.random_per_user(pk.load_dataset("demo"), seed=42)
    model = Popularity().fit(split.train)
    plain = pk.evaluate(model, split, k=10, fit=False)
    with_ci = pk.evaluate(model, split, k=10, fit=False, ci=0.95, seed=0)
    # the values a Popularity model gave before the column existed (pinned, 4 decimals)
    row = plain.iloc[0]
    assert row["ndcg@10"] == pytest.approx(with_ci["ndcg@10"].iloc[0])
    assert list(plain.columns[:9]) == ["model", "segment", "users", "precision@10", "recall@10",
                                       "ndcg@10", "map@10", "mrr@10", "hit_rate@10"]
    assert list(plain.columns[9:15]) == ["coverage", "avg_popularity", "long_tail_share",
                                         "exposure_gini", "novelty", "ild@10"]
    assert with_ci["ild@10_lo"].iloc[0] <= with_ci["ild@10"].iloc[0] \
        <= with_ci["ild@10_hi"].iloc[0]
    assert with_ci["ild@10"].iloc[0] == pytest.approx(row["ild@10"])


# ------------------------------------------------------------------------------ MMR
class Fixed(Recommender):
    """A planted base model: the same fixed score of every item for every user."""

    def __init__(self, scores=(5.0, 4.0, 3.0, 2.0, 1.0, 0.5)):
        self.scores = scores

    def _score(self, user_idx):
        return np.tile(np.asarray(self.scores, float), (len(user_idx), 1))


@pytest.fixture(scope="module")
def planted_catalog():
    """Six items: the four best are dramas, then a comedy and a horror film."""
    items = pd.DataFrame({"item_id": [10, 11, 12, 13, 14, 15],
                          "title": list("ABCDEF"),
                          "genres": ["Drama", "Drama", "Drama", "Drama", "Comedy", "Horror"]})
    inter = pd.DataFrame({"user_id": [1, 2], "item_id": [10, 11]})  # nobody is excluded below
    return make_dataset("planted", inter, items)


def test_lambda_one_returns_the_base_order(planted_catalog):
    base = Fixed().fit(planted_catalog)
    got = MMR(base, lambda_=1.0).recommend(users=[1, 2], k=4, exclude_seen=False)
    want = base.recommend(users=[1, 2], k=4, exclude_seen=False)
    assert got["item_id"].tolist() == want["item_id"].tolist()
    assert got["rank"].tolist() == want["rank"].tolist()


def test_lambda_zero_picks_the_most_different_items(planted_catalog):
    base = Fixed().fit(planted_catalog)
    recs = MMR(base, lambda_=0.0).recommend(users=[1], k=3, exclude_seen=False)
    # the base's best first, then the two items sharing no genre with the list
    assert recs["item_id"].tolist() == [10, 14, 15]
    # a middle lambda: relevance 1.0, 0.78, ... against a penalty of similarity 1 for dramas
    mid = MMR(base, lambda_=0.5).recommend(users=[1], k=3, exclude_seen=False)
    assert mid["item_id"].tolist()[:2] == [10, 14]


def test_vectors_work_like_genres(planted_catalog):
    base = Fixed().fit(planted_catalog)
    vecs = pd.DataFrame([[1, 0, 0]] * 4 + [[0, 1, 0], [0, 0, 1]],
                        index=planted_catalog.item_ids)
    recs = MMR(base, lambda_=0.0, similarity=vecs).recommend(users=[1], k=3, exclude_seen=False)
    assert recs["item_id"].tolist() == [10, 14, 15]
    arr = MMR(base, lambda_=0.0, similarity=vecs.to_numpy()).recommend(users=[1], k=3,
                                                                        exclude_seen=False)
    assert arr["item_id"].tolist() == [10, 14, 15]
    with pytest.raises(ValueError, match="one row per catalog item"):
        MMR(base, similarity=np.ones((2, 3))).recommend(users=[1], k=2)
    with pytest.raises(ValueError, match="no vector"):
        MMR(base, similarity=vecs.iloc[:3]).recommend(users=[1], k=2)


def test_mmr_respects_seen_items_and_candidates(planted_catalog):
    base = Fixed().fit(planted_catalog)
    recs = MMR(base, lambda_=0.0).recommend(users=[1], k=3)        # user 1 watched item 10
    assert 10 not in recs["item_id"].tolist() and recs["item_id"].iloc[0] == 11
    only = MMR(base, lambda_=0.0).recommend(users=[1], k=3, items=[12, 13, 15])
    assert set(only["item_id"]) == {12, 13, 15}


def test_mmr_follows_the_parameter_protocol(planted_catalog):
    model = MMR(EASE(l2=50), lambda_=0.3, n_candidates=40)
    assert model.get_params()["base__l2"] == 50.0 and model.get_params()["lambda_"] == 0.3
    copy = clone(model)
    assert copy.lambda_ == 0.3 and copy.n_candidates == 40 and copy.base is not model.base
    assert not hasattr(copy.base, "train_")
    model.set_params(lambda_=0.9, base__l2=70)
    assert model.lambda_ == 0.9 and model.base.l2 == 70.0
    assert "lambda_=0.9" in repr(model) and model.name == "MMR(EASE, lambda=0.9)"
    for bad in ({"lambda_": 1.5}, {"lambda_": -0.1}, {"n_candidates": 0}):
        with pytest.raises(ValueError):
            model.set_params(**bad)
    with pytest.raises(ValueError, match="'genres'"):
        MMR(EASE(), similarity="moods")
    with pytest.raises(ValueError, match="more than n_candidates"):
        MMR(Fixed(), n_candidates=3).fit(planted_catalog).recommend(users=[1], k=4)


def test_mmr_over_a_plain_order():
    frame = ranking_frame({1: [10, 11, 12, 14]})
    items = np.array([10, 11, 12, 13, 14, 15])
    genres = np.array([[1, 0, 0]] * 4 + [[0, 1, 0], [0, 0, 1]])
    assert mmr_rerank(frame, genres, items, 1.0, 3)["item_id"].tolist() == [10, 11, 12]
    assert mmr_rerank(frame, genres, items, 0.0, 3)["item_id"].tolist() == [10, 14, 11]


def test_trading_accuracy_for_diversity_on_the_demo_world():
    split = pk.split.random_per_user(pk.load_dataset("demo"), seed=42)
    ease = EASE(l2=300).fit(split.train)
    lambdas = [1.0, 0.8, 0.6, 0.4, 0.0]
    table = pk.evaluate({lam: MMR(ease, lambda_=lam) for lam in lambdas}, split, k=10,
                        fit=False, progress=False).set_index("model")
    ild, ndcg = table["ild@10"].to_numpy(), table["ndcg@10"].to_numpy()
    plain = pk.evaluate(ease, split, k=10, fit=False).iloc[0]
    assert ndcg[0] == pytest.approx(plain["ndcg@10"]) and ild[0] == pytest.approx(plain["ild@10"])
    assert (np.diff(ild) > -0.005).all() and ild[-1] > ild[0] + 0.1, ild
    assert (np.diff(ndcg) < 0.005).all() and ndcg[-1] < ndcg[0] - 0.05, ndcg


def test_tradeoff_figures_name_their_points_and_who_answered():
    import matplotlib
    matplotlib.use("Agg")
    from perso_kit.plots.classic import plot_diversity_tradeoff
    from perso_kit.plots.llm_roles import plot_llm_diversity_tradeoff

    t = pd.DataFrame({"lambda": [1.0, 0.5, 0.0], "ndcg@10": [0.4, 0.35, 0.3],
                      "ndcg@10_lo": [0.38, 0.33, 0.28], "ndcg@10_hi": [0.42, 0.37, 0.32],
                      "ild@10": [0.8, 0.9, 0.95]})
    fig = plot_diversity_tradeoff({"EASE": t})
    labels = [a.get_text() for a in fig.axes[0].texts]
    assert labels == ["1", "0.5", "0"]
    assert any("0.400 -> 0.300" in x.get_text() for x in fig.texts)
    with pytest.raises(ValueError, match="lacks columns"):
        plot_diversity_tradeoff({"EASE": t.drop(columns="ild@10")})
    with pytest.raises(ValueError, match="who answered"):
        plot_llm_diversity_tradeoff({"LLM": t}, who=None)
    fig = plot_llm_diversity_tradeoff({"LLM": t}, who="offline")
    assert any(x.get_text() == "offline stand-in, not an LLM" for x in fig.texts)
    import matplotlib.pyplot as plt
    plt.close("all")


def test_diversity_tradeoff_reuses_given_orders(planted_catalog):
    from perso_kit.recommenders.mmr import diversity_tradeoff
    from perso_kit.split import Split
    # one user, held-out item 14 (the comedy): MMR at lambda 0 pulls it into the top 2
    train = planted_catalog
    test = make_dataset("t", pd.DataFrame({"user_id": [1], "item_id": [14]}), train.items)
    split = Split(train=train, test=test, validation=None, description="planted")
    curves = diversity_tradeoff({"order": {1: [11, 12, 13, 14, 15]}}, split, lambdas=[1.0, 0.0],
                                k=2, ci=None)
    t = curves["order"]
    assert t["lambda"].tolist() == [1.0, 0.0]
    assert t["ndcg@2"].tolist() == [0.0, pytest.approx(1 / np.log2(3))]
    assert t["ild@2"].tolist() == [0.0, 1.0]
