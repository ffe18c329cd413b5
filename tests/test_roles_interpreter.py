"""Content interpretation: item texts, content and hybrid recommenders, ranker features, and
the cold-start directions on the demo world."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import load_benchmark

import perso_kit as pk
from perso_kit.data.dataset import make_dataset
from perso_kit.recommenders import ALS, Recommender
from perso_kit.roles.interpreter import (ContentRecommender, HybridRecommender,
                                         content_features, embed_items, item_text,
                                         user_vectors)
from perso_kit.split import new_items, random_per_user


def _tiny():
    items = pd.DataFrame({"item_id": [10, 11, 12], "title": ["A (1990)", "B (1991)", "C (1992)"],
                          "genres": [("Drama",), ("Drama", "Comedy"), ()],
                          "description": ["sad", "", ""]})
    inter = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 11],
                          "rating": [5.0, 3.0, 4.0]})
    return make_dataset("tiny", inter, items)


V3 = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])


def test_item_text_and_attributes():
    ds = _tiny()
    t = item_text(ds.items)
    assert t.loc[10] == "A (1990). Genres: Drama. sad"
    assert t.loc[12] == "C (1992)."
    attrs = pd.DataFrame({"item_id": [12], "genres": [("Horror",)], "mood": ["dark"],
                          "themes": [("revenge",)], "audience": [""], "keywords": [()],
                          "summary": [""]})
    assert item_text(ds.items, attrs).loc[12] == "C (1992). Mood: dark. Themes: revenge."


def test_user_vectors_weight_ratings_hand_computed():
    ds = _tiny()
    U = user_vectors(ds, V3)
    # user 1: mean rating 4 -> weights 1.5 (rated 5) and 0.5 (rated 3)
    expected = 1.5 * V3[0] + 0.5 * V3[1]
    np.testing.assert_allclose(U[0], expected / np.linalg.norm(expected))
    np.testing.assert_allclose(U[1], V3[1])


def test_content_scores_are_cosines_and_cold_items_get_scores():
    ds = _tiny()
    model = ContentRecommender(vectors=V3).fit(ds)
    assert isinstance(model, Recommender)
    S = model.score([2], [10, 11, 12])
    np.testing.assert_allclose(S, [[0.6, 1.0, 0.8]])
    recs = model.recommend(users=[2], k=2)
    assert recs["item_id"].tolist() == [12, 10]          # item 12 was never interacted with
    with pytest.raises(ValueError, match="one row per catalog item"):
        ContentRecommender(vectors=V3[:2]).fit(ds)


def test_hybrid_orders_unseen_items_by_content_only():
    ds = _tiny()
    hyb = HybridRecommender(content=ContentRecommender(vectors=V3), content_weight=0.2,
                            cold_prior=0.5).fit(ds)
    assert hyb.cold_items_.tolist() == [False, False, True]
    s = hyb._score(np.array([1]))
    zt = hyb.content_._score(np.array([1]))
    zt = (zt - zt.mean()) / zt.std()
    assert s[0, 2] == pytest.approx(0.8 * 0.5 + zt[0, 2])
    with pytest.raises(ValueError, match="content_weight"):
        HybridRecommender(content_weight=1.5)


def test_content_features_hand_computed():
    ds = _tiny()
    attrs = pd.DataFrame({"item_id": [10, 11, 12], "mood": ["dark", "dark", "tense"],
                          "genres": [("Drama",), ("Comedy",), ("Drama",)]})
    f = content_features(V3, attrs)
    pairs = pd.DataFrame({"user_id": [2, 2, 1], "item_id": [12, 10, 12]})
    out = f(pairs, ds)
    np.testing.assert_allclose(out["text_sim_max"], [0.8, 0.6, 0.8])
    np.testing.assert_allclose(out["text_sim_profile"][:2], [0.8, 0.6])
    np.testing.assert_allclose(out["mood_match"], [0.0, 1.0, 0.0])
    # user 1 watched items 10 (Drama) and 11 (Comedy): Drama share 1/2
    np.testing.assert_allclose(out["llm_genre_match"], [0.0, 0.0, 0.5])


@pytest.fixture(scope="module")
def demo_vectors(demo):
    return embed_items(item_text(demo.items))


def test_cold_start_directions_on_the_demo_world(demo, demo_vectors):
    """The issue's "done when": content and hybrid reach new releases, ALS cannot."""
    split = new_items(demo)
    new = demo.meta["new_item_ids"]
    models = {"ALS": ALS(), "Content": ContentRecommender(vectors=demo_vectors),
              "Hybrid": HybridRecommender(content=ContentRecommender(vectors=demo_vectors))}
    t = pk.evaluate(models, split, k=10, items=new, progress=False).set_index("model")
    assert t.loc["Content", "recall@10"] > t.loc["ALS", "recall@10"] + 0.1
    assert t.loc["Hybrid", "recall@10"] > t.loc["ALS", "recall@10"] + 0.1
    users = split.test_users
    share = {n: m.recommend(users, k=10)["item_id"].isin(new).mean() for n, m in models.items()}
    assert share["ALS"] == 0.0
    assert share["Content"] > 0 and share["Hybrid"] > 0


def test_hybrid_stays_close_to_als_on_warm_users(demo, demo_vectors):
    split = random_per_user(demo, seed=42)
    t = pk.evaluate({"ALS": ALS(), "Hybrid": HybridRecommender(
        content=ContentRecommender(vectors=demo_vectors))}, split, k=10,
        by="activity", progress=False)
    t = t[t["segment"] == "all"].set_index("model")
    for metric in ("recall@10", "ndcg@10"):
        assert t.loc["Hybrid", metric] >= 0.94 * t.loc["ALS", metric], metric


@pytest.mark.movielens
def test_benchmark_table_on_movielens_100k():
    """The benchmark's table on real ML-100K (runs when PERSO_KIT_DATA_DIR holds ml-100k)."""
    import os
    from pathlib import Path

    root = os.environ.get("PERSO_KIT_DATA_DIR")
    if not root or not (Path(root) / "ml-100k" / "u.data").exists():
        pytest.skip("set PERSO_KIT_DATA_DIR to a folder with ml-100k/ to run this benchmark")
    bench = load_benchmark("cold_start_movielens")
    t = bench.run("ml-100k").set_index(["scenario", "model"])
    assert "not an LLM" in t.attrs["embedder"]
    new = t.loc["new items"]
    assert new.loc["Content", "recall@10"] > 2 * new.loc["ALS", "recall@10"]
    assert new.loc["ALS", "new_item_share"] == 0.0 < new.loc["Hybrid", "new_item_share"]
    warm = t.loc["warm users"]
    assert warm.loc["Hybrid", "ndcg@10"] >= 0.94 * warm.loc["ALS", "ndcg@10"]
