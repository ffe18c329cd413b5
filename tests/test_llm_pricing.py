"""The price table, token estimates and the budget, on hand-computed numbers."""
from __future__ import annotations

import threading

import pandas as pd
import pytest

from perso_kit.llm.pricing import (PRICE_FILE, Budget, PriceTable, estimate_prompt_tokens,
                                   estimate_tokens, load_prices)


def test_the_shipped_table_is_dated_and_says_it_is_a_snapshot():
    table = load_prices()
    assert {"model", "input_usd_per_1m", "output_usd_per_1m", "as_of", "source"} <= set(table)
    assert pd.to_datetime(table["as_of"]).notna().all()
    text = PRICE_FILE.read_text()
    assert "SNAPSHOT" in text and "CHECK THEM" in text
    assert (table["input_usd_per_1m"] >= 0).all() and not table["model"].duplicated().any()


def test_lookup_exact_then_longest_prefix(tmp_path):
    prices = PriceTable()
    assert prices.lookup("gpt-4o-mini").model == "gpt-4o-mini"
    assert prices.lookup("gpt-4o-mini-2024-07-18").model == "gpt-4o-mini"  # not "gpt-4o"
    assert prices.lookup("gpt-4o-2024-08-06").model == "gpt-4o"
    assert prices.lookup("llama3.2") is None
    own = tmp_path / "p.csv"
    own.write_text("# mine\nmodel,input_usd_per_1m,output_usd_per_1m,as_of\n"
                   "my-model,1,2,2025-01-01\n")
    p = PriceTable(own).lookup("my-model")
    # 1,000 prompt + 500 completion tokens: (1000 * 1 + 500 * 2) / 1e6 dollars
    assert p.cost(1000, 500) == pytest.approx(0.002)


def test_provider_cached_tokens_use_the_cached_rate():
    p = PriceTable().lookup("gpt-4o-mini")   # 0.15 in, 0.075 cached in, 0.60 out per 1M
    assert p.cost(1_000_000, 0, cached_prompt_tokens=400_000) == pytest.approx(
        0.6 * 0.15 + 0.4 * 0.075)
    assert p.cost(0, 1_000_000) == pytest.approx(0.60)


def test_token_estimates():
    assert [estimate_tokens(t) for t in ("", "abcd", "abcde")] == [0, 1, 2]
    msgs = [{"role": "user", "content": "x" * 40}]
    assert estimate_prompt_tokens(msgs) == 10 + 4            # 40 chars / 4 + 4 per message
    assert estimate_prompt_tokens(msgs, safe=True) == 14 + 4  # / 3, rounded up: safer


def test_budget_books_worst_cases_and_settles_actual_costs():
    b = Budget(1.0)
    assert b.reserve(0.6) and not b.reserve(0.5) and b.refused == 1
    b.settle(0.6, 0.1)                       # the call cost less than its worst case
    assert b.spent_usd == pytest.approx(0.1) and b.remaining_usd == pytest.approx(0.9)
    assert b.reserve(0.9) and not b.reserve(0.01)
    with pytest.raises(ValueError):
        Budget(-1)
    unlimited = Budget(None)
    assert unlimited.reserve(1e9) and unlimited.remaining_usd == float("inf")


def test_budget_is_safe_across_threads():
    b = Budget(1.0)
    granted = []

    def worker():
        for _ in range(100):
            if b.reserve(0.01):
                granted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 100 and b.refused == 700
