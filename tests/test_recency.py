"""Warm and cold targets, the recency check, and the order of the demo world's watches.

The recency check is an instrument: it must fire on a world whose watches are ordered by a
moving interest (the demo world, ``drift=1``) and stay quiet on a clean control (the same world
with a random order within each user, ``drift=0``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perso_kit.data import make_dataset
from perso_kit.data.demo import make_world
from perso_kit.recency import (COLD, WARM, attribute_vectors, last_n, recency_check, rerank,
                               target_kinds)
from perso_kit.recommenders import ALS, Popularity
from perso_kit.split import leave_last_n


@pytest.fixture(scope="module")
def tiny():
    """Three users; user 1's last watch is item 4 (a new release), user 2's is item 2."""
    inter = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 2, 3, 3],
                          "item_id": [1, 2, 4, 3, 1, 2, 1, 3],
                          "rating": [5, 4, 3, 2, 5, 4, 3, 3],
                          "timestamp": [10, 20, 30, 5, 15, 25, 1, 2]})
    items = pd.DataFrame({"item_id": [1, 2, 3, 4], "title": list("ABCD"),
                          "genres": [("Drama",), ("Comedy",), ("Drama", "Comedy"), ("Horror",)]})
    return make_dataset("tiny", inter, items)


def test_target_kinds_label_each_held_out_item(tiny):
    split = leave_last_n(tiny, n=1)
    kinds = target_kinds(split, new_item_ids=[4])
    assert kinds.to_dict() == {1: COLD, 2: WARM, 3: WARM}
    assert set(target_kinds(split, new_item_ids=[]).unique()) == {WARM}


def test_last_n_keeps_the_most_recent_watches_of_each_user(tiny):
    recent = last_n(tiny, 2).interactions.sort_values(["user_id", "timestamp"])
    assert recent.groupby("user_id")["item_id"].apply(list).to_dict() == {
        1: [2, 4], 2: [1, 2], 3: [1, 3]}
    assert last_n(tiny, 2).n_items == tiny.n_items         # same catalog
    with pytest.raises(ValueError, match="at least 1"):
        last_n(tiny, 0)


def test_rerank_orders_each_users_candidates_by_the_scorer(tiny):
    pop = Popularity().fit(tiny)                    # item 1: 3 users, 2 and 3: 2, 4: 1
    cands = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [4, 3, 1]})
    out = rerank(pop, cands)
    assert out["item_id"].tolist() == [1, 3, 4]
    assert out["rank"].tolist() == [1, 2, 3]


def test_rerank_needs_a_scorer_of_the_whole_catalog(tiny):
    from perso_kit.recommenders.base import Recommender

    class ListsOnly(Recommender):          # recommends, but scores no arbitrary item
        pass

    with pytest.raises(ValueError, match="whole catalog"):
        rerank(ListsOnly().fit(tiny), pd.DataFrame({"user_id": [1], "item_id": [3]}))


def test_attribute_vectors_are_unit_rows_over_the_catalog_columns(tiny):
    V = attribute_vectors(tiny.items)
    assert V.shape == (4, 3)                        # genres: Comedy, Drama, Horror
    assert np.allclose(np.linalg.norm(V, axis=1), 1)
    assert V[2].max() == pytest.approx(1 / np.sqrt(2))


@pytest.fixture(scope="module")
def checks():
    """The recency check on the demo world (drift) and on its clean control (no drift)."""
    out = {}
    for drift in (1.0, 0.0):
        ds = make_world(seed=42, drift=drift).dataset
        split = leave_last_n(ds, n=1)
        table = recency_check(split, ALS(factors=32, iterations=10, seed=42),
                              ds.meta["new_item_ids"], n_candidates=20, recent=10, k=10)
        out[drift] = table.xs("content, last 10 watches (recency-aware)", level="model")
    return out


def test_the_default_world_drifts():
    assert make_world(seed=42, n_users=50, n_items=100).dataset.interactions.equals(
        make_world(seed=42, n_users=50, n_items=100, drift=1).dataset.interactions)


def test_recency_check_fires_on_warm_targets_of_the_drifting_world(checks):
    warm = checks[1.0].loc[WARM]
    assert warm["gain_lo"] > 0                      # the interval excludes 0
    assert warm["gain"] == pytest.approx(0.031, abs=0.01)
    assert warm["users"] == pytest.approx(277, abs=15)


def test_recency_check_stays_quiet_on_the_clean_control(checks):
    warm = checks[0.0].loc[WARM]
    assert warm["gain_hi"] < 0.005                  # no gain from a random order
    assert checks[0.0].loc[WARM, "gain"] < checks[1.0].loc[WARM, "gain"] - 0.03


def test_drift_changes_only_the_order_within_each_user():
    a = make_world(seed=42, n_users=150, n_items=300, drift=1).dataset.interactions
    b = make_world(seed=42, n_users=150, n_items=300, drift=0).dataset.interactions
    key = ["user_id", "item_id"]
    both = a.merge(b, on=key, suffixes=("_a", "_b"))
    assert len(both) == len(a) == len(b)
    assert (both["rating_a"] == both["rating_b"]).all()
    assert (both["timestamp_a"] != both["timestamp_b"]).mean() > 0.5
    same_times = (a.groupby("user_id")["timestamp"].apply(sorted)
                  == b.groupby("user_id")["timestamp"].apply(sorted))
    assert same_times.all()


def test_demo_world_of_any_catalog_size_has_unique_titles():
    ds = make_world(seed=1, n_users=20, n_items=4000).dataset
    assert ds.n_items == 4000
    assert not ds.items["title"].duplicated().any()
    assert ds.items["title"].str.contains(": Part ").any()   # sequels once words run out


def test_demo_world_refuses_sizes_it_cannot_build():
    with pytest.raises(ValueError, match="at least 1 user"):
        make_world(n_users=0)
    with pytest.raises(ValueError, match="new_share"):
        make_world(new_share=1.0)
