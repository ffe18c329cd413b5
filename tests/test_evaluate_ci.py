"""Bootstrap confidence intervals over users and paired differences (perso_kit.evaluate)."""
from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import perso_kit as pk
from perso_kit.data import make_dataset
from perso_kit.evaluate import (Interval, bootstrap_indices, bootstrap_interval,
                                paired_difference, resampled_means)
from perso_kit.recommenders import ItemKNN, Popularity, Recommender


class Fixed(Recommender):
    """Recommends a fixed frame."""

    def __init__(self, recs):
        self.recs = recs

    def recommend(self, users=None, k=10, exclude_seen=True, items=None):
        return self.recs


def two_users():
    """User 1 saw items 1-6, user 2 items 3-6; each user's last item (6) is held out."""
    inter = pd.DataFrame({"user_id": [1] * 6 + [2] * 4,
                          "item_id": [1, 2, 3, 4, 5, 6, 3, 4, 5, 6],
                          "timestamp": [0, 1, 2, 3, 4, 5, 100, 101, 102, 103]})
    items = pd.DataFrame({"item_id": range(1, 7), "title": list("abcdef"), "genres": [""] * 6})
    return pk.split.leave_last_n(make_dataset("two", inter, items), n=1)


def recs_frame(lists: dict) -> pd.DataFrame:
    rows = [(u, i, len(items) - r, r + 1) for u, items in lists.items()
            for r, i in enumerate(items)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "score", "rank"])


# ------------------------------------------------------------------------ hand-computed
def test_identical_values_give_a_zero_width_interval():
    iv = bootstrap_interval(np.full(40, 0.3), ci=0.95, n_boot=500, seed=1)
    assert iv.lo == iv.hi
    assert iv.estimate == pytest.approx(0.3) and iv.lo == pytest.approx(0.3)
    # through evaluate: both users hit at rank 1, so every resample has NDCG 1
    s = two_users()
    t = pk.evaluate({"m": Fixed(recs_frame({1: [6, 1], 2: [6, 3]}))}, s, k=2, ci=0.95)
    row = t.iloc[0]
    assert row["ndcg@2"] == row["ndcg@2_lo"] == row["ndcg@2_hi"] == 1.0


def test_two_users_by_hand():
    # values 0 and 1: a resample of 2 users holds {0,0}, {0,1} or {1,1}, so its mean is
    # 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4
    means = resampled_means(np.array([0.0, 1.0]), bootstrap_indices(2, 20_000, seed=7))
    for value, p in [(0.0, 0.25), (0.5, 0.5), (1.0, 0.25)]:
        assert np.mean(means == value) == pytest.approx(p, abs=0.015)
    # the 2.5% and 97.5% quantiles fall in the outer quarters; the 30% and 70% ones in the
    # middle half
    assert bootstrap_interval([0.0, 1.0], ci=0.95, n_boot=2000) == Interval(0.5, 0.0, 1.0)
    assert bootstrap_interval([0.0, 1.0], ci=0.40, n_boot=2000) == Interval(0.5, 0.5, 0.5)
    # through evaluate: user 1 hits at rank 1 (NDCG 1, precision 1/2), user 2 misses (0)
    s = two_users()
    t = pk.evaluate({"m": Fixed(recs_frame({1: [6, 1], 2: [3, 5]}))}, s, k=2, ci=0.95,
                    n_boot=2000)
    row = t.iloc[0]
    assert (row["ndcg@2"], row["ndcg@2_lo"], row["ndcg@2_hi"]) == (0.5, 0.0, 1.0)
    assert (row["precision@2"], row["precision@2_lo"], row["precision@2_hi"]) == (0.25, 0.0, 0.5)


def test_paired_difference_of_a_model_with_itself_is_exactly_zero():
    rng = np.random.default_rng(0)
    a = rng.random(300)
    assert paired_difference(a, a.copy(), seed=5) == Interval(0.0, 0.0, 0.0)
    assert not paired_difference(a, a).excludes_zero
    # the same recommendations under two names, scored by evaluate
    s = two_users()
    same = recs_frame({1: [6, 1], 2: [3, 5]})
    _, per_user = pk.evaluate({"a": Fixed(same), "b": Fixed(same)}, s, k=2, ci=0.9,
                              return_per_user=True)
    scores = per_user.pivot(index="user_id", columns="model", values="ndcg@2")
    assert paired_difference(scores["a"], scores["b"]) == Interval(0.0, 0.0, 0.0)


# ------------------------------------------------------------------------ behaviour
def test_seeded_draws_repeat_and_other_seeds_differ(demo):
    s = pk.split.random_per_user(demo, seed=0)
    model = Popularity().fit(s.train)
    one = pk.evaluate({"P": model}, s, k=10, fit=False, ci=0.95, n_boot=300, seed=11)
    two = pk.evaluate({"P": model}, s, k=10, fit=False, ci=0.95, n_boot=300, seed=11)
    other = pk.evaluate({"P": model}, s, k=10, fit=False, ci=0.95, n_boot=300, seed=12)
    bounds = ["ndcg@10_lo", "ndcg@10_hi", "map@10_lo", "recall@10_hi"]
    pd.testing.assert_frame_equal(one[bounds], two[bounds])
    assert not np.allclose(one[bounds].to_numpy(), other[bounds].to_numpy(), rtol=0, atol=1e-9)
    # a different seed moves the bounds a little, not the estimate
    assert one["ndcg@10"].item() == other["ndcg@10"].item()
    assert np.allclose(one[bounds].to_numpy(), other[bounds].to_numpy(), atol=0.01)


def test_default_output_is_unchanged_without_ci(demo):
    s = pk.split.random_per_user(demo, seed=0)
    model = Popularity().fit(s.train)
    plain = pk.evaluate({"P": model}, s, k=10, fit=False, by="activity")
    with_ci = pk.evaluate({"P": model}, s, k=10, fit=False, by="activity", ci=0.9, n_boot=200)
    assert not [c for c in plain.columns if c.endswith(("_lo", "_hi"))]
    assert list(plain.columns[:4]) == ["model", "segment", "users", "precision@10"]
    same = [c for c in plain.columns if not c.endswith("_s")]
    pd.testing.assert_frame_equal(plain[same], with_ci[same])
    # every segment row has an interval around its own mean
    for m in ("precision@10", "ndcg@10", "map@10", "hit_rate@10"):
        assert (with_ci[f"{m}_lo"] <= with_ci[m]).all() and (with_ci[m] <= with_ci[f"{m}_hi"]).all()
    assert (with_ci["ndcg@10_hi"] > with_ci["ndcg@10_lo"]).all()


def shifted_split():
    """40 users, each saw items 1-6 in order; items 5 and 6 are held out; 7-10 nobody saw."""
    users = np.arange(1, 41)
    inter = pd.DataFrame({"user_id": np.repeat(users, 6), "item_id": np.tile(np.arange(1, 7), 40),
                          "timestamp": np.tile(np.arange(6), 40)})
    items = pd.DataFrame({"item_id": range(1, 11), "title": list("abcdefghij"),
                          "genres": [""] * 10})
    return pk.split.leave_last_n(make_dataset("shifted", inter, items), n=2), users


def test_one_resampling_is_shared_across_models():
    # model A hits (item 5) for a third of the users; model B also puts item 6 first, so every
    # user's precision@2 under B is exactly A's + 1/2. With one shared resampling of users, B's
    # interval is A's shifted by 1/2; separate resamplings would move the bounds apart.
    s, users = shifted_split()
    lucky = users % 3 == 0
    a = recs_frame({u: [5 if l else 7, 8] for u, l in zip(users, lucky)})
    b = recs_frame({u: [6, 5 if l else 7] for u, l in zip(users, lucky)})
    t, per_user = pk.evaluate({"A": Fixed(a), "B": Fixed(b)}, s, k=2, ci=0.9, n_boot=500,
                              seed=3, return_per_user=True)
    A, B = t.iloc[0], t.iloc[1]
    assert A["precision@2"] == pytest.approx(lucky.mean() / 2)
    assert A["precision@2_hi"] > A["precision@2_lo"]
    for bound in ("precision@2", "precision@2_lo", "precision@2_hi"):
        assert B[bound] - A[bound] == pytest.approx(0.5, abs=1e-12)
    p = per_user.pivot(index="user_id", columns="model", values="precision@2")
    d = paired_difference(p["B"], p["A"], seed=3)
    assert (d.estimate, d.lo, d.hi) == pytest.approx((0.5, 0.5, 0.5), abs=1e-12)


def test_paired_difference_catches_a_planted_gap_and_stays_quiet_on_a_control():
    rng = np.random.default_rng(2024)
    n = 800
    base = rng.beta(2, 3, n)                      # per-user NDCG of model A
    noise = rng.normal(0, 0.05, n)                # user-by-user disagreement of model B
    planted = np.clip(base + 0.01 + noise, 0, 1)  # B better by ~0.01 for the same users
    control = np.clip(base + noise, 0, 1)         # B no better
    gap = paired_difference(planted, base, seed=1)
    quiet = paired_difference(control, base, seed=1)
    assert gap.excludes_zero and gap.lo > 0
    assert gap.estimate == pytest.approx(0.01, abs=0.005)
    assert not quiet.excludes_zero
    # pairing is what makes the gap visible: the two models' own intervals overlap
    own_a, own_b = bootstrap_interval(base, seed=1), bootstrap_interval(planted, seed=1)
    assert own_b.lo < own_a.hi


def test_coverage_on_normal_samples():
    # 400 samples of 50 draws from N(0, 1): a 90% interval should hold the true mean 0 about
    # 90% of the time (the percentile bootstrap runs a little short at n = 50)
    rng = np.random.default_rng(99)
    hits = [bootstrap_interval(rng.normal(0, 1, 50), ci=0.9, n_boot=1000, seed=i)
            for i in range(400)]
    coverage = np.mean([iv.lo <= 0 <= iv.hi for iv in hits])
    assert 0.84 <= coverage <= 0.95, coverage
    # and its width is close to 2 * 1.645 / sqrt(50)
    width = np.mean([iv.hi - iv.lo for iv in hits])
    assert width == pytest.approx(2 * 1.645 / np.sqrt(50), rel=0.08)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="confidence level"):
        bootstrap_interval([1.0, 2.0], ci=95)
    with pytest.raises(ValueError, match="same order"):
        paired_difference([1.0, 2.0], [1.0])
    a = pd.Series([0.1, 0.2], index=[1, 2])
    with pytest.raises(ValueError, match="different users"):
        paired_difference(a, pd.Series([0.1, 0.2], index=[1, 3]))
    with pytest.raises(ValueError, match="confidence level"):
        pk.evaluate({"m": Fixed(recs_frame({1: [6], 2: [6]}))}, two_users(), k=1, ci=1.5)


def test_series_are_aligned_on_user_ids():
    a = pd.Series([1.0, 0.0, 0.5], index=[10, 20, 30])
    b = pd.Series([0.5, 1.0, 0.0], index=[30, 10, 20])   # the same values, another order
    assert paired_difference(a, b) == Interval(0.0, 0.0, 0.0)


def test_evaluate_recommendations_takes_the_same_options(demo):
    s = pk.split.random_per_user(demo, seed=0)
    knn = ItemKNN().fit(s.train)
    users = s.test_users[:200]
    recs = knn.recommend(users=users, k=10)
    t, per_user = pk.evaluate_recommendations(recs, s, k=10, users=users, ci=0.95, seed=4,
                                              model="knn", return_per_user=True)
    via_evaluate = pk.evaluate({"knn": knn}, s, k=10, users=users, fit=False, ci=0.95, seed=4)
    cols = ["ndcg@10", "ndcg@10_lo", "ndcg@10_hi"]
    pd.testing.assert_frame_equal(t[cols], via_evaluate[cols])
    assert len(per_user) == 200 and set(per_user["model"]) == {"knn"}
    assert per_user["ndcg@10"].mean() == pytest.approx(t["ndcg@10"].item())


def test_module_examples_run():
    import sys
    result = doctest.testmod(sys.modules["perso_kit.evaluate"])
    assert result.attempted >= 8 and result.failed == 0


def test_the_bar_figure_draws_each_interval(demo):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.container import BarContainer

    from perso_kit.plots import classic as P

    s = pk.split.random_per_user(demo, seed=0)
    t = pk.evaluate({"Popularity": Popularity(), "ItemKNN": ItemKNN()}, s, k=10, ci=0.95,
                    n_boot=200, progress=False)
    fig = P.plot_metric_bars(t, "ndcg@10")
    ax = fig.axes[0]
    bars = next(c for c in ax.containers if isinstance(c, BarContainer))
    segments = bars.errorbar.lines[2][0].get_segments()   # one vertical whisker per bar
    got = sorted((float(seg[0][1]), float(seg[1][1])) for seg in segments)
    want = sorted(zip(t["ndcg@10_lo"], t["ndcg@10_hi"]))
    assert np.allclose(got, want)
    assert "interval" in ax.get_title()
    # without intervals: no whiskers, and the takeaway says none is shown
    plain = P.plot_metric_bars(pk.evaluate({"Popularity": Popularity()}, s, k=10), "ndcg@10")
    assert [c.errorbar for c in plain.axes[0].containers if isinstance(c, BarContainer)] == [None]
    assert any("no interval" in x.get_text() for x in plain.texts)


def test_weekly_takeaway_names_the_demo_cliff(demo):
    import matplotlib
    matplotlib.use("Agg")
    from perso_kit.plots import classic as P

    fig = P.plot_activity_over_time(demo)
    text = " ".join(x.get_text() for x in fig.texts)
    # flat near 4,900 a week, then the release cut-off of 1998-02-01: only new releases remain
    assert "(week of 1998-02-02)" in text
    change = text.split("biggest weekly change ")[1].split(" (")[0]
    before, after = (int(x.replace(",", "")) for x in change.split(" -> "))
    assert before > 4000 and after < 300
