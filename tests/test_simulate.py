"""Simulated users, the feedback loop and the exploration wrapper (perso_kit.simulate)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perso_kit.data.dataset import Dataset
from perso_kit.data.demo import DemoWorld, utility_to_rating
from perso_kit.recommenders import Popularity
from perso_kit.recommenders.base import Recommender
from perso_kit.simulate import (Exploration, LoopResult, SimulatedUsers, compare_feedback_loops,
                                feedback_loop)
from perso_kit.split import new_items


class GenreProfile(Recommender):
    """A tiny personalized model for these tests: score = the user's genre counts . item
    genres (scaled by log popularity so ties are rare). Sees only the Dataset it is given."""

    def fit(self, train: Dataset) -> "GenreProfile":
        super().fit(train)
        G, _ = train.genre_matrix()
        X = train.matrix()
        self.profile_ = np.asarray((X @ G).todense())
        self.G_ = G
        self.pop_ = np.log1p(np.asarray(X.sum(axis=0)).ravel())
        return self

    def _score(self, user_idx):
        return np.asarray(self.profile_[user_idx] @ self.G_.T) * (1 + self.pop_)


@pytest.fixture(scope="module")
def users(demo_world):
    return SimulatedUsers(demo_world, seed=7)


# ------------------------------------------------------------------------------ choice model
def test_acceptance_probability_matches_the_documented_formula(demo_world, users):
    recs = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 12], "rank": [1, 3, 7]})
    z = np.array([demo_world.true_utility(1, 10)[0, 0], demo_world.true_utility(1, 11)[0, 0],
                  demo_world.true_utility(2, 12)[0, 0]])
    expected = 1 / (1 + np.exp(-(z - 1.0) / 0.3)) / np.log2(np.array([1, 3, 7]) + 1)
    np.testing.assert_allclose(users.acceptance_probability(recs), expected, rtol=1e-6)
    # rank 1 is always looked at; rank 3 half of the time (1 / log2(4))
    flat = SimulatedUsers(demo_world, position_bias=False)
    p = flat.acceptance_probability(recs)
    np.testing.assert_allclose(users.acceptance_probability(recs)[1], p[1] / 2, rtol=1e-6)


def test_react_draws_with_the_stated_probability(demo_world, users):
    # one (user, item) pair repeated: the acceptance rate converges to its probability
    best = users.top_items(3, k=40)[-1]
    recs = pd.DataFrame({"user_id": 3, "item_id": best, "rank": 2}, index=range(20_000))
    p = users.acceptance_probability(recs.iloc[:1])[0]
    out = users.react(recs, np.random.default_rng(0))
    assert 0.05 < p < 0.95
    assert abs(out["accepted"].mean() - p) < 0.015
    assert (out["rating"] == utility_to_rating(out["utility"].to_numpy())).all()
    # seeded: the same generator state gives the same draws
    a = users.react(recs.iloc[:500], np.random.default_rng(5))["accepted"]
    b = users.react(recs.iloc[:500], np.random.default_rng(5))["accepted"]
    assert a.equals(b)


def test_utility_takes_pairs_and_checks_ids(demo_world, users):
    np.testing.assert_allclose(users.utility([1, 2, 1], [5, 5, 6]),
                               [demo_world.true_utility(1, 5)[0, 0],
                                demo_world.true_utility(2, 5)[0, 0],
                                demo_world.true_utility(1, 6)[0, 0]])
    with pytest.raises(ValueError, match="pairs"):
        users.utility([1, 2], [5])
    with pytest.raises(KeyError, match="unknown item"):
        users.utility([1], [999_999])
    with pytest.raises(TypeError, match="DemoWorld"):
        SimulatedUsers(demo_world.dataset)


# ------------------------------------------------------------------------------ answering questions
def test_likes_and_prefers_follow_the_ground_truth(demo_world, users):
    items = demo_world.dataset.item_ids[:30]
    ratings = demo_world.true_rating(5, items)[0]
    assert [users.likes(5, i) for i in items] == list(ratings >= 4)
    z = demo_world.true_utility(5, items)[0]
    assert users.prefers(5, items) == items[np.argmax(z)]
    assert users.prefers(5, [items[0]]) == items[0]
    with pytest.raises(ValueError, match="at least one"):
        users.prefers(5, [])


def test_attribute_preferences_are_mean_true_utilities(demo_world, users):
    ds = demo_world.dataset
    z = demo_world.true_utility(8, ds.item_ids)[0]
    comedy = ds.items["genres"].map(lambda g: "Comedy" in g).to_numpy()
    drama = ds.items["genres"].map(lambda g: "Drama" in g).to_numpy()
    prefs = users.attribute_preferences(8, "genre", ["Comedy", "Drama"])
    assert prefs["Comedy"] == pytest.approx(z[comedy].mean(), rel=1e-5)
    assert prefs["Drama"] == pytest.approx(z[drama].mean(), rel=1e-5)
    assert prefs.index[0] == ("Comedy" if z[comedy].mean() > z[drama].mean() else "Drama")
    assert users.prefers_value(8, "genre", ["Drama", "Comedy"]) == prefs.index[0]
    eras = users.attribute_preferences(8, "era")
    nineties = (ds.items["year"] // 10 == 199).to_numpy()
    assert eras["1990s"] == pytest.approx(z[nineties].mean(), rel=1e-5)
    assert list(eras) == sorted(eras, reverse=True)
    assert set(users.attribute_values("mood")) == set(ds.items["mood"])
    with pytest.raises(ValueError, match="unknown attribute"):
        users.attribute_preferences(8, "director")
    with pytest.raises(ValueError, match="no item has genre"):
        users.attribute_preferences(8, "genre", ["Telenovela"])


def test_noisy_answers_are_seeded(demo_world):
    a = SimulatedUsers(demo_world, answer_noise=1.0, seed=3)
    b = SimulatedUsers(demo_world, answer_noise=1.0, seed=3)
    items = demo_world.dataset.item_ids[:200]
    answers_a = [a.likes(4, i) for i in items]
    assert answers_a == [b.likes(4, i) for i in items]
    truthful = list(demo_world.true_rating(4, items)[0] >= 4)
    assert answers_a != truthful  # noise of one standard deviation flips some answers


def test_ideal_utility_is_the_mean_of_the_best_unseen(demo_world, users):
    ds = demo_world.dataset
    z = demo_world.true_utility(9, ds.item_ids)[0]
    seen = ds.interactions.loc[ds.interactions["user_id"] == 9, "item_id"]
    z_unseen = z[~np.isin(ds.item_ids, seen)]
    assert users.ideal_utility([9], k=5, exclude=ds)[0] == pytest.approx(
        np.sort(z_unseen)[-5:].mean(), rel=1e-5)
    assert users.ideal_utility([9], k=5)[0] == pytest.approx(np.sort(z)[-5:].mean(), rel=1e-5)
    top = users.top_items(9, k=5, exclude=ds)
    assert not np.isin(top, seen).any()


# ------------------------------------------------------------------------------ exploration
def test_exploration_keeps_the_base_model_at_epsilon_zero(demo):
    base = Popularity().fit(demo).recommend(users=[1, 2, 3], k=10)
    same = Exploration(Popularity(), epsilon=0).fit(demo).recommend(users=[1, 2, 3], k=10)
    pd.testing.assert_frame_equal(base, same)
    assert Exploration(Popularity()).name == "Popularity + exploration"
    with pytest.raises(ValueError, match="probability"):
        Exploration(Popularity(), epsilon=1.5)


def test_exploration_replaces_the_stated_share_with_unseen_items(demo):
    users = demo.user_ids[:300]
    model = Exploration(GenreProfile(), epsilon=0.3, seed=1).fit(demo)
    recs = model.recommend(users=users, k=10)
    assert len(recs) == 3000
    assert not recs.duplicated(["user_id", "item_id"]).any()
    seen = set(zip(demo.interactions["user_id"], demo.interactions["item_id"]))
    assert not any(pair in seen for pair in zip(recs["user_id"], recs["item_id"]))
    assert abs(recs["score"].isna().mean() - 0.3) < 0.03
    # fitted again on the same data: the same draws
    again = Exploration(GenreProfile(), epsilon=0.3, seed=1).fit(demo).recommend(users=users)
    pd.testing.assert_frame_equal(recs, again)
    # epsilon 1 among given candidates: every slot random, all from the candidates
    pool = demo.item_ids[:200]
    full = Exploration(Popularity(), epsilon=1.0).fit(demo).recommend(users=users[:20],
                                                                       items=pool)
    assert full["item_id"].isin(pool).all() and full["score"].isna().all()


# ------------------------------------------------------------------------------ the loop
def test_feedback_loop_adds_accepted_items_and_repeats(demo_world, users):
    ds = demo_world.dataset
    who = ds.user_ids[:200]
    result = feedback_loop(GenreProfile(), users, rounds=3, simulated=who, seed=11,
                           progress=False)
    assert isinstance(result, LoopResult)
    assert result.metrics["round"].tolist() == [1, 2, 3]
    took = result.reactions[result.reactions["accepted"]]
    assert result.data.n_interactions == ds.n_interactions + len(took)
    added = result.data.interactions.iloc[ds.n_interactions:]
    assert (added["timestamp"] > ds.interactions["timestamp"].max()).all()
    assert set(added["user_id"]) <= set(who)
    assert (added.groupby("timestamp").size().to_numpy()
            == took.groupby("round").size().to_numpy()).all()
    m = result.metrics.iloc[0]
    r1 = result.reactions[result.reactions["round"] == 1]
    assert m["utility_recommended"] == pytest.approx(r1["utility"].mean())
    assert m["accepted_per_user"] == pytest.approx(r1["accepted"].sum() / len(who))
    assert m["utility_ideal"] > m["utility_recommended"]
    again = feedback_loop(GenreProfile(), users, rounds=3, simulated=who, seed=11,
                          progress=False)
    pd.testing.assert_frame_equal(result.metrics.drop(columns=["fit_s", "seconds"]),
                                  again.metrics.drop(columns=["fit_s", "seconds"]))


def test_loop_directions_popularity_concentrates_and_exploration_reaches_cold_items(
        demo_world, users):
    start = new_items(demo_world.dataset).train          # new releases have no data yet
    table = compare_feedback_loops(
        {"Popularity": Popularity(), "GenreProfile": GenreProfile(),
         "GenreProfile + exploration": Exploration(GenreProfile(), epsilon=0.2)},
        users, start=start, rounds=6, progress=False)
    by = {m: t.set_index("round") for m, t in table.groupby("model")}
    # the log concentrates round after round under popularity
    assert (np.diff(by["Popularity"]["data_gini"]) > 0).all()
    # ID-free exploration is the only way the new releases ever get data
    assert (by["Popularity"]["cold_items_reached"] == 0).all()
    assert by["GenreProfile + exploration"]["cold_items_reached"].iloc[-1] > 0.2
    assert (by["GenreProfile + exploration"]["coverage"] > by["GenreProfile"]["coverage"]).all()
    assert (by["Popularity"]["exposure_gini"] > by["GenreProfile"]["exposure_gini"]).all()


def test_loop_checks_its_inputs(demo_world, users):
    other = demo_world.dataset.with_interactions(demo_world.dataset.interactions, "x")
    with pytest.raises(ValueError, match="at least 1"):
        feedback_loop(Popularity(), users, rounds=0, progress=False)
    small = pd.DataFrame({"item_id": [1, 2], "title": ["a", "b"], "year": [1990, 1991],
                          "genres": [("Drama",), ("Comedy",)], "description": ["", ""]})
    from dataclasses import replace
    with pytest.raises(ValueError, match="same catalog"):
        feedback_loop(Popularity(), users, start=replace(other, items=small), progress=False)
    with pytest.raises(KeyError, match="unknown user"):
        feedback_loop(Popularity(), users, simulated=[123_456], progress=False)


def test_ten_rounds_on_the_demo_world_run(demo_world, users):
    # no time limit here: a test's verdict must not depend on the machine's load
    from perso_kit.recommenders import EASE
    result = feedback_loop(EASE(), users, rounds=10, progress=False)
    assert len(result.metrics) == 10


# ------------------------------------------------------------------------------ the guard
class Spy(Recommender):
    """Wraps a model and records everything the simulation hands it."""

    def __init__(self, inner):
        self.inner = inner
        self.fit_args, self.recommend_args = [], []

    def fit(self, *args, **kwargs):
        self.fit_args.append((args, kwargs))
        super().fit(args[0])
        self.inner.fit(*args, **kwargs)
        return self

    def recommend(self, *args, **kwargs):
        self.recommend_args.append((args, kwargs))
        return self.inner.recommend(*args, **kwargs)


def _reachable(obj, depth=0, seen=None):
    """Every object reachable from ``obj`` through attributes, dict values and sequences."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    yield obj
    children = []
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        children = list(obj)
    elif isinstance(obj, pd.DataFrame):
        children = [obj[c].to_numpy() for c in obj.columns]
    elif hasattr(obj, "__dict__"):
        children = list(vars(obj).values())
    for child in children:
        yield from _reachable(child, depth + 1, seen)


def test_recommenders_never_receive_the_ground_truth(demo_world, users):
    truth = demo_world._utility
    spy = Spy(GenreProfile())
    feedback_loop(spy, users, rounds=2, simulated=demo_world.dataset.user_ids[:100],
                  progress=False)
    assert len(spy.fit_args) == 2
    for args, kwargs in spy.fit_args:
        assert not kwargs and len(args) == 1 and isinstance(args[0], Dataset)
        data = args[0]
        # the same tables a recommender sees in the world's dataset: nothing added
        assert list(data.items.columns) == list(demo_world.dataset.items.columns)
        assert list(data.users.columns) == list(demo_world.dataset.users.columns)
        assert list(data.interactions.columns) == list(
            demo_world.dataset.interactions.columns)
        for obj in _reachable(data):
            assert not isinstance(obj, (DemoWorld, SimulatedUsers))
            if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
                assert not np.shares_memory(obj, truth)
                assert obj.shape != truth.shape
    for args, kwargs in spy.recommend_args:
        assert not args and set(kwargs) == {"users", "k"}
    # the model itself holds nothing of the truth after the loop
    for obj in _reachable(spy):
        assert not isinstance(obj, (DemoWorld, SimulatedUsers))
        if isinstance(obj, np.ndarray):
            assert not np.shares_memory(obj, truth)


def test_simulated_users_hand_out_no_world(users):
    public = {k: v for k, v in vars(users).items() if not k.startswith("_")}
    assert not any(isinstance(v, (DemoWorld, np.ndarray)) for v in public.values())
    assert not any(isinstance(getattr(type(users), k, None), property)
                   and isinstance(getattr(users, k), DemoWorld) for k in dir(type(users)))


def test_the_loop_shows_a_progress_bar(users, capsys):
    feedback_loop(Popularity(), users, rounds=1, progress=True)
    assert "feedback loop: Popularity" in capsys.readouterr().err
