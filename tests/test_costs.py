"""Cost at scale, cache savings and the frontier, on hand-computed numbers."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from perso_kit import costs
from perso_kit.llm import get_llm
from perso_kit.llm.pricing import PriceTable, estimate_prompt_tokens, estimate_tokens

PRICES = """provider,model,kind,input_usd_per_1m,cached_input_usd_per_1m,output_usd_per_1m,\
as_of,source
x,cheap,chat,1.00,,2.00,2025-01-01,hand
x,dear,chat,10.00,1.00,40.00,2025-01-01,hand
x,emb,embedding,0.5,,0,2025-01-01,hand
"""


@pytest.fixture
def prices(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(PRICES)
    return PriceTable(path)


def test_usage_per_user_from_call_and_user_logs():
    calls = pd.DataFrame({"user_id": [1, 1, 2, 3], "prompt_tokens": [100, 200, 300, 600],
                          "completion_tokens": [10, 10, 10, 30], "latency_s": [1, 1, 1, 1.0]})
    u = costs.usage_per_user(calls)
    assert u == {"calls_per_user": 4 / 3, "prompt_tokens_per_user": 400.0,
                 "completion_tokens_per_user": 20.0, "latency_s_per_user": 4 / 3}
    per_user = pd.DataFrame({"user_id": [1, 2], "n_calls": [3, 5], "prompt_tokens": [10, 30],
                             "completion_tokens": [0, 4]})
    u = costs.usage_per_user(per_user)
    assert u["calls_per_user"] == 4.0 and u["prompt_tokens_per_user"] == 20.0
    assert np.isnan(u["latency_s_per_user"])
    with pytest.raises(ValueError, match="n_users"):
        costs.usage_per_user(per_user.drop(columns="user_id"))
    with pytest.raises(ValueError, match="prompt_tokens"):
        costs.usage_per_user(pd.DataFrame({"user_id": [1]}))


def test_cost_at_scale_by_hand_and_linear(prices):
    usage = {"rerank": {"prompt_tokens_per_user": 1500, "completion_tokens_per_user": 100},
             "classic": {"prompt_tokens_per_user": 0, "completion_tokens_per_user": 0}}
    t = costs.cost_at_scale(usage, n_users=1_000_000, prices=prices)
    assert t["model"].unique().tolist() == ["cheap", "dear"]          # chat models only
    got = t.set_index(["method", "model"])["cost_usd"]
    assert got["rerank", "cheap"] == pytest.approx(1500 * 1.0 + 100 * 2.0)   # = 1700 USD
    assert got["rerank", "dear"] == pytest.approx(1500 * 10.0 + 100 * 40.0)  # = 19000 USD
    assert got["classic", "dear"] == 0.0
    # linear in users and in requests per user
    small = costs.cost_at_scale(usage, n_users=1000, prices=prices).set_index(
        ["method", "model"])["cost_usd"]
    assert got["rerank", "dear"] == pytest.approx(1000 * small["rerank", "dear"])
    monthly = costs.cost_at_scale(usage, n_users=1000, prices=prices, requests_per_user=30)
    assert monthly["cost_usd"].max() == pytest.approx(30 * small.max())
    grid = costs.cost_grid(t)
    assert list(grid.index) == ["rerank", "classic"] and list(grid.columns) == ["cheap", "dear"]
    with pytest.raises(ValueError, match="not in the price table"):
        costs.cost_at_scale(usage, models=["no-such-model"], prices=prices)


def test_shipped_table_price_of_a_million_users():
    usage = {"m": {"prompt_tokens_per_user": 1000, "completion_tokens_per_user": 200}}
    t = costs.cost_at_scale(usage, models=["gpt-4o-mini"])
    # gpt-4o-mini: 0.15 in, 0.60 out per million tokens (data/llm_prices.csv)
    assert t.loc[0, "cost_usd"] == pytest.approx(1e6 * (1000 * 0.15 + 200 * 0.60) / 1e6)
    assert t.loc[0, "cost_per_user_usd"] == pytest.approx(270 / 1e6)


def test_serving_hours():
    assert costs.serving_hours(1.0, 7200) == 2.0
    assert costs.serving_hours(1.0, 7200, concurrency=4) == 0.5
    with pytest.raises(ValueError):
        costs.serving_hours(1.0, 10, concurrency=0)


def test_cache_savings_by_hand(prices):
    log = pd.DataFrame({"prompt_tokens": [1000, 1000, 2000], "completion_tokens": [100, 100, 0],
                        "cached": [False, True, True]})
    s = costs.cache_savings(log, "cheap", prices=prices)
    assert s["calls"] == 3 and s["cached_calls"] == 2
    assert s["cost_without_cache_usd"] == pytest.approx((4000 * 1 + 200 * 2) / 1e6)
    assert s["cost_with_cache_usd"] == pytest.approx((1000 * 1 + 100 * 2) / 1e6)
    assert s["saved_usd"] == pytest.approx((3000 * 1 + 100 * 2) / 1e6)
    assert s["saved_share"] == pytest.approx(3200 / 4400)


def test_offline_log_counts_estimated_tokens_and_cache_hits_cost_zero(tmp_path):
    llm = get_llm(cache_path=tmp_path / "cache.sqlite")
    msgs = [{"role": "user", "content": "Liked: Alien (1979). Suggest one film."}]
    first = llm.chat(msgs)
    again = llm.chat(msgs)
    assert not first.cached and again.cached and again.cost_usd == 0.0
    log = llm.call_log()
    assert log["prompt_tokens"].tolist() == [estimate_prompt_tokens(msgs)] * 2
    assert estimate_prompt_tokens(msgs) == estimate_tokens(msgs[0]["content"]) + 4
    assert len(llm.sent_log()) == 1                    # the hit sent nothing
    s = costs.cache_savings(log, "gpt-4o-mini")
    assert s["saved_share"] == pytest.approx(0.5)


def test_pareto_front_and_frontier_table(prices):
    assert costs.pareto_front(np.array([0.2, 0.2, 0.3, 0.1]),
                              np.array([0.0, 1.0, 5.0, 0.0])).tolist() == [True, False, True,
                                                                           False]
    usage = {"llm": {"calls_per_user": 1.0, "prompt_tokens_per_user": 1000.0,
                     "completion_tokens_per_user": 0.0, "latency_s_per_user": 2.0}}
    t = costs.frontier_table({"classic": 0.3, "llm": 0.25}, usage, model="cheap", prices=prices,
                             quality_name="ndcg@10")
    assert t.loc["llm", "cost_per_million_users_usd"] == pytest.approx(1000.0)
    assert t.loc["classic", "cost_per_million_users_usd"] == 0.0
    assert t["on_front"].tolist() == [True, False]     # the LLM row is dearer and worse
    from perso_kit.plots.costs import plot_cost_at_scale, plot_frontier
    fig = plot_frontier(t, "ndcg@10", "cost_per_million_users_usd", note="hand-made")
    assert "hand-made" in fig.axes[0].get_title()
    grid = costs.cost_grid(costs.cost_at_scale(usage, prices=prices))
    fig = plot_cost_at_scale(grid)
    assert len(fig.axes[0].patches) == 2


# ----------------------------------------------------------------------------- uncertainty
def test_frontier_table_carries_intervals_and_checks_them(prices):
    usage = {"llm": {"calls_per_user": 1.0, "prompt_tokens_per_user": 1000.0,
                     "completion_tokens_per_user": 0.0, "latency_s_per_user": 2.0}}
    quality = pd.Series({"classic": 0.30, "llm": 0.25})          # a Series works like a dict
    bounds = pd.DataFrame({"lo": [0.20, 0.10], "hi": [0.40, 0.35]}, index=quality.index)
    t = costs.frontier_table(quality, usage, model="cheap", prices=prices,
                             quality_name="ndcg@10", intervals=bounds)
    assert list(t.columns[:3]) == ["ndcg@10", "ndcg@10_lo", "ndcg@10_hi"]
    assert t.loc["llm", ["ndcg@10_lo", "ndcg@10_hi"]].tolist() == [0.10, 0.35]
    assert t["on_front"].tolist() == [True, False]               # still on point estimates
    same = costs.frontier_table(quality, usage, model="cheap", prices=prices,
                                quality_name="ndcg@10",
                                intervals={"classic": (0.2, 0.4), "llm": (0.1, 0.35)})
    pd.testing.assert_frame_equal(t, same)
    with pytest.raises(ValueError, match="no interval for method 'llm'"):
        costs.frontier_table(quality, usage, prices=prices, intervals={"classic": (0.2, 0.4)})
    with pytest.raises(ValueError, match="does not hold its quality"):      # hi, lo swapped
        costs.frontier_table(quality, usage, prices=prices,
                             intervals={"classic": (0.4, 0.2), "llm": (0.1, 0.35)})


def _toy_split():
    """Three users, one held-out item each; user 3 held out an item nobody recommends."""
    from perso_kit.data import Dataset
    from perso_kit.split import Split

    items = pd.DataFrame({"item_id": [10, 11, 12, 13], "title": list("abcd"),
                          "genres": [("Drama",)] * 4, "year": 1990, "description": ""})
    train = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [13, 13, 13], "rating": 4.0,
                          "timestamp": 0})
    test = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [10, 11, 12], "rating": 4.0,
                         "timestamp": 1})
    full = pd.concat([train, test], ignore_index=True)
    ds = Dataset("toy", full, items, pd.DataFrame({"user_id": [1, 2, 3]}))
    return Split(ds.with_interactions(train, "train"), ds.with_interactions(test, "test"),
                 None, "toy")


def test_score_methods_by_hand_with_segments_and_paired_differences():
    split = _toy_split()
    # A puts each user's held-out item first (NDCG 1) for users 1 and 2, misses user 3;
    # B puts user 1's item second (NDCG 1/log2(3)) and misses the others.
    a = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [10, 11, 10], "rank": [1, 1, 1]})
    b = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [11, 10, 10, 10],
                      "rank": [1, 2, 1, 1]})
    seg = pd.Series({1: "cold", 2: "cold", 3: "warm"})
    table, per_user = costs.score_methods({"A": a, "B": b}, split, users=[1, 2, 3], k=2,
                                          by=seg, ci=0.95, seed=0)
    got = table.set_index(["model", "segment"])
    assert got.loc[("A", "all"), "ndcg@2"] == pytest.approx(2 / 3)
    assert got.loc[("A", "cold"), "ndcg@2"] == pytest.approx(1.0)
    assert got.loc[("A", "warm"), "ndcg@2"] == pytest.approx(0.0)
    assert got.loc[("B", "all"), "ndcg@2"] == pytest.approx(1 / np.log2(3) / 3)
    assert got.loc[("A", "cold"), "users"] == 2
    assert (got["ndcg@2_lo"] <= got["ndcg@2"]).all() and (got["ndcg@2"] <= got["ndcg@2_hi"]).all()
    view = costs.interval_view(table, "ndcg@2", digits=2)
    assert list(view.index) == ["A", "B"]
    assert list(view.columns) == ["all (3 users)", "cold (2 users)", "warm (1 users)"]
    assert view.loc["A", "warm (1 users)"] == "0.00 [0.00, 0.00]"
    scores = per_user.pivot(index="user_id", columns="model", values="ndcg@2")
    d = costs.paired_differences(scores, reference="B", seed=0)
    assert d.loc["A", "difference"] == pytest.approx(2 / 3 - 1 / np.log2(3) / 3)
    assert d.loc["A", "lo"] <= d.loc["A", "difference"] <= d.loc["A", "hi"]
    with pytest.raises(ValueError, match="no column 'C'"):
        costs.paired_differences(scores, reference="C")
    with pytest.raises(ValueError, match="score it with a confidence level"):
        costs.interval_view(table.drop(columns=["ndcg@2_lo"]), "ndcg@2")


def test_paired_differences_call_a_planted_gain_and_stay_quiet_on_a_copy():
    rng = np.random.default_rng(0)
    ref = rng.random(200)
    scores = pd.DataFrame({"ref": ref, "copy": ref,
                           "noise": ref + rng.normal(0, 0.2, 200) - 0.0,
                           "planted": ref + 0.1})
    d = costs.paired_differences(scores, "ref", seed=0)
    assert d.loc["planted", "distinguishable"]
    assert d.loc["planted", "difference"] == pytest.approx(0.1)
    assert not d.loc["copy", "distinguishable"] and d.loc["copy", "difference"] == 0.0
    assert d.loc["noise", "lo"] < 0.02 and d.loc["noise", "hi"] > -0.02


def test_frontier_figure_draws_error_bars_and_says_who_answered(prices):
    from matplotlib.collections import LineCollection

    from perso_kit.plots.costs import plot_cost_at_scale, plot_frontier

    t = costs.frontier_table({"classic": 0.30, "llm": 0.25},
                             {"llm": {"prompt_tokens_per_user": 1000.0}}, model="cheap",
                             prices=prices, quality_name="ndcg@10",
                             intervals={"classic": (0.2, 0.4), "llm": (0.1, 0.35)})
    fig = plot_frontier(t, "ndcg@10", "cost_per_million_users_usd", who="offline")
    bars = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    spans = sorted(tuple(np.round(seg[:, 1], 6)) for b in bars for seg in b.get_segments())
    assert spans == [(0.1, 0.35), (0.2, 0.4)]                  # one bar per method, lo to hi
    assert [x.get_text() for x in fig.texts] == ["offline stand-in, not an LLM"]
    assert "interval" in fig.axes[0].get_ylabel()
    # without intervals: no bars, and no stamp unless asked
    fig = plot_frontier(t.drop(columns=["ndcg@10_lo", "ndcg@10_hi"]), "ndcg@10",
                        "cost_per_million_users_usd")
    assert not [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    assert fig.texts == []
    grid = costs.cost_grid(costs.cost_at_scale({"llm": {"prompt_tokens_per_user": 10.0}},
                                               prices=prices))
    fig = plot_cost_at_scale(grid, who={"backend": "compatible", "model": "SmolLM2"})
    assert [x.get_text() for x in fig.texts] == ["model: SmolLM2"]
