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
