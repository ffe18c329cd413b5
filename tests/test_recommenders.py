"""Classic recommenders: hand-computed examples, the protocol's ordering on the demo world,
similar_items, determinism and argument checks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import dataset_from_pairs as tiny

import perso_kit as pk
from perso_kit.recommenders import ALS, BPR, EASE, ItemKNN, NotFittedError, Popularity


# ------------------------------------------------------------------------------- EASE
def test_ease_two_items_by_hand():
    # X = [[1,1],[1,0],[1,1]]: G = X^T X = [[3,2],[2,2]]. With diag(B) = 0 and two items,
    # column j is a one-variable ridge regression of item j on the other item i:
    # B[i, j] = G[i, j] / (G[i, i] + l2), so B[0,1] = 2 / (3 + 1) and B[1,0] = 2 / (2 + 1).
    # (The closed form agrees: P = inv([[4,2],[2,3]]) = [[3,-2],[-2,4]] / 8 and
    # B[i, j] = -P[i, j] / P[j, j].)
    ds = tiny([(1, 1), (1, 2), (2, 1), (3, 1), (3, 2)])
    B = EASE(l2=1.0).fit(ds).weights_
    np.testing.assert_allclose(B, [[0.0, 2 / 4], [2 / 3, 0.0]], rtol=1e-6)


def test_ease_matches_constrained_least_squares():
    rng = np.random.default_rng(0)
    X = (rng.random((30, 6)) < 0.4).astype(float)
    pairs = [(u + 1, i + 1) for u, i in zip(*np.nonzero(X))]
    ds = tiny(pairs, n_items=6)
    X = ds.matrix().toarray().astype(float)
    l2 = 2.0
    B = EASE(l2=l2).fit(ds).weights_
    for j in range(6):  # column j: ridge regression of item j on the other items
        others = [i for i in range(6) if i != j]
        A = X[:, others]
        b = np.linalg.solve(A.T @ A + l2 * np.eye(5), A.T @ X[:, j])
        np.testing.assert_allclose(B[others, j], b, rtol=1e-4, atol=1e-6)
        assert B[j, j] == 0
    # scores are x_u B
    model = EASE(l2=l2).fit(ds)
    np.testing.assert_allclose(model.score([1], ds.item_ids)[0], X[0] @ B, rtol=1e-5)


# ------------------------------------------------------------------------------- item-kNN
KNN_PAIRS = [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 1), (3, 3), (4, 3)]
# item 1: users {1,2,3}; item 2: {1,2}; item 3: {2,3,4}
S12 = 2 / (np.sqrt(3) * np.sqrt(2) + 1)   # 0.5798
S13 = 2 / (np.sqrt(3) * np.sqrt(3) + 1)   # 0.5
S23 = 1 / (np.sqrt(2) * np.sqrt(3) + 1)   # 0.2899


def test_itemknn_shrunk_cosine_by_hand():
    model = ItemKNN(n_neighbors=2, shrinkage=1.0).fit(tiny(KNN_PAIRS))
    expected = np.array([[0, S12, S13], [S12, 0, S23], [S13, S23, 0]])
    np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=1e-6)
    # user 1 saw items 1 and 2: score(3) = S13 + S23
    np.testing.assert_allclose(model.score([1], [3])[0, 0], S13 + S23, rtol=1e-6)


def test_itemknn_keeps_only_the_nearest_neighbours():
    model = ItemKNN(n_neighbors=1, shrinkage=1.0).fit(tiny(KNN_PAIRS))
    S = model.similarity_.toarray()
    # each item keeps one neighbour: 1 -> 2 (0.58 > 0.5), 2 -> 1, 3 -> 1
    np.testing.assert_allclose(S, [[0, S12, 0], [S12, 0, 0], [S13, 0, 0]], rtol=1e-6)
    # item 3 is in nobody's neighbourhood but its own row, so user 1 (items 1, 2) scores 0
    assert model.score([1], [3])[0, 0] == 0


def test_shrinkage_pulls_rare_cooccurrences_down():
    no_shrink = ItemKNN(n_neighbors=2, shrinkage=0).fit(tiny(KNN_PAIRS)).similarity_.toarray()
    shrunk = ItemKNN(n_neighbors=2, shrinkage=10).fit(tiny(KNN_PAIRS)).similarity_.toarray()
    np.testing.assert_allclose(no_shrink[0, 1], 2 / np.sqrt(6), rtol=1e-6)  # plain cosine
    assert (shrunk[no_shrink > 0] < no_shrink[no_shrink > 0]).all()


# ------------------------------------------------------------------------------- MF
def test_als_confidence_is_one_plus_alpha():
    ds = tiny(KNN_PAIRS)
    C = ALS(alpha=4.0)._user_items(ds)
    assert C.shape == (4, 3) and np.allclose(C.data, 5.0)


def _triple_arrays(rows):
    """CSR arrays of a users x items 0/1 matrix given as lists of item indices per user."""
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int32)
    indices = np.concatenate([sorted(r) for r in rows]).astype(np.int32)
    users = np.repeat(np.arange(len(rows)), [len(r) for r in rows]).astype(np.int32)
    return indptr, indices, users


def test_bpr_epoch_one_step_by_hand():
    # user 0 has seen item 0; triple (user 0, item 0, item 1). u = (1, 1) with its bias entry
    # 1; v_0 = (0.5, 0), v_1 = (0, 0.2): x = 1 * (0.5 - 0) + 1 * (0 - 0.2) = 0.3, z = 1 / (1 +
    # e^0.3). With lr 0.1, reg 0: u_0 += 0.1 z (0.5 - 0); the bias entry of u stays 1;
    # v_0 += 0.1 z u; v_1 -= 0.1 z u.
    from perso_kit.recommenders.mf import bpr_epoch
    indptr, indices, users = _triple_arrays([[0]])
    U = np.array([[1.0, 1.0]], np.float32)
    V = np.array([[0.5, 0.0], [0.0, 0.2]], np.float32)
    correct, skipped = bpr_epoch(U, V, indptr, indices, users, np.array([0]), np.array([1]),
                                 0.1, 0.0)
    z = 1 / (1 + np.exp(0.3))
    np.testing.assert_allclose(U, [[1 + 0.1 * z * 0.5, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(V, [[0.5 + 0.1 * z, 0.1 * z], [-0.1 * z, 0.2 - 0.1 * z]],
                               rtol=1e-6)
    assert (correct, skipped) == (1, 0)           # x > 0: the pair was already in order


def test_bpr_epoch_skips_a_negative_the_user_has_seen():
    # planted: user 1 has seen items 0, 2 and 3; the drawn "negative" 3 is one of them, so
    # the triple is skipped and nothing moves; the control (negative 1, unseen) updates
    from perso_kit.recommenders.mf import _compiled_bpr_epoch, bpr_epoch
    indptr, indices, users = _triple_arrays([[1], [0, 2, 3]])
    for epoch in (bpr_epoch, _compiled_bpr_epoch()):
        U = np.ones((2, 3), np.float32)
        V = np.full((4, 3), 0.1, np.float32)
        assert epoch(U, V, indptr, indices, users, np.array([1]), np.array([3]), 0.1,
                     0.0) == (0, 1)
        assert (U == 1).all() and (V == np.float32(0.1)).all()
        assert epoch(U, V, indptr, indices, users, np.array([1]), np.array([1]), 0.1,
                     0.0) == (0, 0)              # x = 0: z = 0.5, not counted as correct
        assert V[0, 0] > 0.1 and V[1, 0] < 0.1 and V[2:].tolist() == [[np.float32(0.1)] * 3] * 2


def test_compiled_bpr_epoch_agrees_with_the_python_loop():
    from perso_kit.recommenders.mf import _compiled_bpr_epoch, bpr_epoch
    rng = np.random.default_rng(3)
    rows = [sorted(rng.choice(12, size=rng.integers(1, 6), replace=False)) for _ in range(8)]
    indptr, indices, users = _triple_arrays(rows)
    pos = rng.integers(0, len(indices), 200).astype(np.int32)
    neg = rng.integers(0, 12, 200).astype(np.int32)
    U0 = rng.normal(0, 0.1, (8, 5)).astype(np.float32)
    V0 = rng.normal(0, 0.1, (12, 5)).astype(np.float32)
    U0[:, -1] = 1
    out = []
    for epoch in (bpr_epoch, _compiled_bpr_epoch()):
        U, V = U0.copy(), V0.copy()
        out.append((epoch(U, V, indptr, indices, users, pos, neg, 0.05, 0.01), U, V))
    assert out[0][0] == out[1][0] and out[0][0][1] > 0      # same counts; some skipped
    np.testing.assert_allclose(out[0][1], out[1][1], atol=1e-5)
    np.testing.assert_allclose(out[0][2], out[1][2], atol=1e-5)


def test_bpr_learns_a_planted_block_structure():
    # two groups of 20 users, two blocks of 10 items; each user has seen 6 of their own
    # block's items and none of the other's. Uniform BPR must score the 4 unseen items of the
    # user's own block above all 10 items of the other block, for every user; one epoch (the
    # control) does not get there.
    rng = np.random.default_rng(0)
    pairs, own, other = [], {}, {}
    for u in range(40):
        block = np.arange(10) + (10 if u >= 20 else 0)
        seen = rng.choice(block, 6, replace=False)
        pairs += [(u + 1, i + 1) for i in seen]
        own[u] = sorted(set(block) - set(seen))
        other[u] = (block + 10) % 20

    def separated(model):
        s = model.user_factors_ @ model.item_factors_.T
        return sum(s[u, own[u]].min() > s[u, other[u]].max() for u in range(40))

    ds = tiny(pairs, n_items=20)
    params = dict(factors=4, learning_rate=0.05, regularization=0.05, show_progress=False,
                  seed=1)
    model = BPR(iterations=200, **params).fit(ds)
    assert separated(model) == 40
    assert separated(BPR(iterations=1, **params).fit(ds)) < 20
    assert model.correct_share_[-1] > 0.85 and model.correct_share_[0] < 0.65


def test_uniform_bpr_draws_as_many_triples_as_interactions(monkeypatch):
    # the epoch is not inflated: each epoch draws nnz triples, negatives spread evenly over
    # the catalog (the most popular item is drawn no more than any other)
    from perso_kit.recommenders import mf
    drawn = []

    def spy(U, V, indptr, indices, users, pos, neg, lr, reg):
        drawn.append((len(pos), neg.copy()))
        return 0, 0

    monkeypatch.setattr(mf, "_compiled_bpr_epoch", lambda: spy)
    ds = tiny([(u, 1) for u in range(1, 400)] + [(u, 2 + u % 9) for u in range(1, 400)])
    BPR(factors=2, iterations=3, show_progress=False).fit(ds)
    assert [n for n, _ in drawn] == [ds.n_interactions] * 3
    counts = np.bincount(np.concatenate([neg for _, neg in drawn]), minlength=ds.n_items)
    expected = 3 * ds.n_interactions / ds.n_items
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected), counts


def test_factor_models_are_deterministic_for_a_seed(demo):
    split = pk.split.random_per_user(demo, seed=1)
    a = ALS(factors=8, iterations=3, seed=7).fit(split.train)
    b = ALS(factors=8, iterations=3, seed=7).fit(split.train)
    c = ALS(factors=8, iterations=3, seed=8).fit(split.train)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    assert not np.allclose(a.item_factors_, c.item_factors_)
    p = BPR(factors=8, iterations=3, seed=7).fit(split.train)
    q = BPR(factors=8, iterations=3, seed=7).fit(split.train)
    r = BPR(factors=8, iterations=3, seed=8).fit(split.train)
    np.testing.assert_array_equal(p.item_factors_, q.item_factors_)
    assert not np.allclose(p.item_factors_, r.item_factors_)
    assert p.user_factors_.shape == (demo.n_users, 9)    # 8 factors and the bias column
    pd.testing.assert_frame_equal(p.recommend(users=[1, 2], k=5), q.recommend(users=[1, 2], k=5))


# ------------------------------------------------------------------------------- the protocol
@pytest.fixture(scope="module")
def demo_table(demo):
    split = pk.split.random_per_user(demo, test_fraction=0.25, seed=42)
    # BPR trains for 20 epochs instead of 50 here, to keep the suite fast
    models = {"Popularity": Popularity(), "ItemKNN": ItemKNN(), "EASE": EASE(), "ALS": ALS(),
              "BPR": BPR(iterations=20),
              "BPR popularity negatives": BPR(iterations=20, negatives="popularity")}
    return pk.evaluate(models, split, k=10, progress=False).set_index("model")


def test_every_personalized_model_beats_popularity_on_the_demo_world(demo_table):
    ndcg = demo_table["ndcg@10"]
    for name in ("ItemKNN", "EASE", "ALS", "BPR"):
        assert ndcg[name] > ndcg["Popularity"] + 0.02, (name, ndcg.round(3).to_dict())
    assert ndcg["EASE"] > ndcg["ItemKNN"]
    # every model recommends more of the catalog than popularity does
    assert (demo_table["coverage"].drop("Popularity") > demo_table.loc["Popularity",
                                                                         "coverage"]).all()


def test_popularity_weighted_negatives_push_popular_items_down(demo_table):
    uni, pop = demo_table.loc["BPR"], demo_table.loc["BPR popularity negatives"]
    assert pop["avg_popularity"] < 0.8 * uni["avg_popularity"]
    assert pop["ndcg@10"] < uni["ndcg@10"]


def test_recommendations_exclude_training_items(demo):
    model = EASE().fit(demo)
    recs = model.recommend(users=[1, 2, 3], k=20)
    seen = demo.interactions[["user_id", "item_id"]]
    assert recs.merge(seen, on=["user_id", "item_id"]).empty
    assert recs.groupby("user_id").size().tolist() == [20, 20, 20]


# ------------------------------------------------------------------------------- similar_items
@pytest.mark.parametrize("make", [lambda: ItemKNN(), lambda: EASE(), lambda: ALS()],
                         ids=["ItemKNN", "EASE", "ALS"])
def test_similar_items_share_genres_more_than_chance(demo, make):
    model = make().fit(demo)
    genres = dict(zip(demo.item_ids, demo.items["genres"].map(set)))
    popular = demo.item_popularity().sort_values(ascending=False).index[:30]
    shares = []
    for item in popular:
        sim = model.similar_items(item, k=10)
        assert len(sim) == 10 and item not in set(sim["item_id"])
        assert sim["similarity"].is_monotonic_decreasing
        shares.append(np.mean([bool(genres[item] & genres[j]) for j in sim["item_id"]]))
    base = np.mean([bool(genres[a] & genres[b]) for a in popular for b in demo.item_ids[:300]])
    assert np.mean(shares) > base + 0.1, (np.mean(shares), base)


def test_similar_items_never_returns_items_without_training_data():
    ds = tiny(KNN_PAIRS, n_items=5)                  # items 4 and 5 nobody saw
    sim = ItemKNN().fit(ds).similar_items(1, k=10)
    assert set(sim["item_id"]) == {2, 3}
    assert sim["title"].tolist() == ["item 2", "item 3"]


# ------------------------------------------------------------------------------- errors
def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="n_neighbors"):
        ItemKNN(n_neighbors=0)
    with pytest.raises(ValueError, match="l2"):
        EASE(l2=0)
    with pytest.raises(ValueError, match="weighting"):
        ALS(weighting="tfidf")
    with pytest.raises(ValueError, match="negatives"):
        BPR(negatives="hard")
    with pytest.raises(ValueError, match="max_items"):
        EASE(max_items=2).fit(tiny(KNN_PAIRS))
    with pytest.raises(NotFittedError, match="fit"):
        EASE().recommend(users=[1])
    with pytest.raises(KeyError, match="unknown item"):
        ItemKNN().fit(tiny(KNN_PAIRS)).similar_items(99)


# ------------------------------------------------------------------------------- scikit-learn's parameter protocol
def test_clone_keeps_the_parameters_and_drops_the_fit():
    from sklearn.base import clone

    fitted = EASE(l2=300, max_items=500).fit(tiny(KNN_PAIRS))
    copy = clone(fitted)
    assert type(copy) is EASE and copy is not fitted
    assert copy.get_params() == {"l2": 300.0, "max_items": 500, "num_threads": 1}
    assert not hasattr(copy, "train_")            # unfitted, like any scikit-learn clone
    assert clone(Popularity()).get_params() == {}


def test_clone_of_a_model_holding_models_clones_them_too():
    from sklearn.base import clone

    from perso_kit.recommenders import TwoStageRanker

    ranker = TwoStageRanker(retrievers={"EASE": EASE(l2=50)}, n_estimators=7)
    copy = clone(ranker)
    assert copy.n_estimators == 7
    assert copy.retrievers["EASE"] is not ranker.retrievers["EASE"]
    assert copy.retrievers["EASE"].l2 == 50.0


def test_set_params_sets_converts_and_checks():
    from perso_kit.simulate import Exploration

    model = EASE()
    assert model.set_params(l2=50) is model and model.l2 == 50.0
    outer = Exploration(EASE(l2=5), epsilon=0.1)
    assert outer.get_params()["base__l2"] == 5.0          # deep: the inner model's parameters
    outer.set_params(base__l2=7, epsilon=0.3)
    assert outer.base.l2 == 7.0 and outer.epsilon == 0.3


def test_set_params_with_an_unknown_or_invalid_value_says_what_is_wrong():
    model = EASE(l2=300)
    with pytest.raises(ValueError, match=r"EASE has no parameter 'lambda_'.*l2, max_items"):
        model.set_params(lambda_=3)
    with pytest.raises(ValueError, match="l2"):
        model.set_params(l2=0)                               # the constructor's own check
    assert model.l2 == 300.0                                 # nothing changed on a refusal
    with pytest.raises(ValueError, match="not a model"):
        model.set_params(l2__x=1)


def test_a_sweep_is_one_line_and_each_model_differs_only_where_asked(demo):
    from perso_kit.recommenders import sweep

    split = pk.split.random_per_user(demo, test_fraction=0.25, seed=42)
    table = pk.evaluate(sweep(EASE(), l2=[30, 3000]), split, k=10)
    assert table["model"].tolist() == ["EASE(l2=30)", "EASE(l2=3000)"]
    assert table["ndcg@10"].nunique() == 2                   # the parameter reached the fit
    with pytest.raises(ValueError, match="at least one parameter"):
        sweep(EASE())


# ------------------------------------------------------------------------------- the README's example
def test_the_readme_bring_your_own_data_example_runs(capsys):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Bring your own data\n.*?```python\n(.*?)```", readme, re.S)
    assert block, "README.md lost its 'Bring your own data' example"
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    recs = namespace["model"].recommend(users=[1], k=2)
    assert sorted(recs["item_id"]) == [12, 13]               # user 1 saw 10 and 11
    assert namespace["ds"].n_users == 4 and namespace["ds"].n_items == 4
    assert "EASE" in capsys.readouterr().out
