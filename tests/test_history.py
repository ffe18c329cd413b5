"""Long histories in a limited context (perso_kit.history): each strategy keeps to its token
budget and picks what it says it picks (hand-computed on a tiny catalog), and the comparison
runs every strategy on the same users and candidates."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perso_kit import history as H
from perso_kit.data import make_dataset
from perso_kit.llm import get_llm
from perso_kit.recommenders import ALS
from perso_kit.split import leave_last_n


@pytest.fixture(scope="module")
def tiny():
    """User 1 watched items 1-4 in that order (Drama, Comedy, Horror, Drama); items 5 (Horror)
    and 6 (Comedy) are left as candidates. Every item line is 3 tokens (``- A — Drama``)
    except the Horror and Comedy ones, 4."""
    inter = pd.DataFrame({"user_id": [1, 1, 1, 1, 2, 2], "item_id": [1, 2, 3, 4, 5, 6],
                          "timestamp": [10, 20, 30, 40, 1, 2]})
    items = pd.DataFrame({"item_id": [1, 2, 3, 4, 5, 6], "title": list("ABCDEF"),
                          "genres": [("Drama",), ("Comedy",), ("Horror",), ("Drama",),
                                     ("Horror",), ("Comedy",)]})
    return make_dataset("tiny", inter, items)


def test_token_counting_and_fitting():
    assert H.line_tokens("- A — Drama") == 3            # 12 characters with the line break
    assert H.line_tokens("- C — Horror") == 4           # 13
    assert H.fit_lines(["a" * 7, "b" * 7, "c" * 7], 4) == ["a" * 7, "b" * 7]
    assert H.fit_lines(["a" * 7], 1) == []
    assert H.block_tokens(["a" * 7, "b" * 7]) == 4
    with pytest.raises(ValueError, match=">= 0"):
        H.fit_lines(["x"], -1)


def test_last_n_keeps_the_most_recent_lines_that_fit(tiny):
    # newest first: D (3 tokens), C (4), B (4), A (3): 7 tokens hold D and C, shown oldest first
    assert H.truncate_history(tiny, 1, 7) == ["- C — Horror", "- D — Drama"]
    assert H.truncate_history(tiny, 1, 6) == ["- D — Drama"]
    assert H.truncate_history(tiny, 1, 100) == ["- A — Drama", "- B — Comedy", "- C — Horror",
                                                "- D — Drama"]
    assert H.truncate_history(tiny, 1, 2) == []          # nothing fits
    with pytest.raises(ValueError, match="no history"):
        H.truncate_history(tiny, 99, 10)


def test_summary_profile_counts_the_whole_history(tiny):
    facts = H.profile_facts(tiny, 1)
    assert facts["n"] == 4 and facts["genres"] == {"Drama": 2, "Comedy": 1, "Horror": 1}
    # the mean vector leans to Drama: items 4 and 1 first (the more recent first), then the rest
    assert H.representative_items(tiny, 1) == [4, 1, 3, 2]
    lines = H.summary_profile(tiny, 1, budget=100)
    assert lines[:2] == ["4 watches in all.",
                         "Top genres: Drama (50%), Comedy (25%), Horror (25%)."]
    assert lines[2:] == ["Most typical titles:", "- D — Drama", "- A — Drama", "- C — Horror",
                         "- B — Comedy"]
    assert H.block_tokens(lines) <= 100
    # a budget that holds the profile and one title; one that holds only the counts
    head = H.block_tokens(lines[:2]) + H.line_tokens("Most typical titles:")
    assert H.summary_profile(tiny, 1, head + 3)[2:] == ["Most typical titles:", "- D — Drama"]
    assert H.summary_profile(tiny, 1, head) == lines[:2]           # no header without a title
    assert H.summary_profile(tiny, 1, 5) == ["4 watches in all."]


def test_retrieval_picks_the_items_closest_to_each_candidate(tiny):
    # candidate 5 (Horror) -> item 3 first; candidate 6 (Comedy) -> item 2; then ties: the more
    # recent first (4, then 1). Shown oldest first.
    assert H.retrieve_history(tiny, 1, [5, 6], budget=8) == ["- B — Comedy", "- C — Horror"]
    assert H.retrieve_history(tiny, 1, [5, 6], budget=4) == ["- C — Horror"]
    assert H.retrieve_history(tiny, 1, [6, 5], budget=4) == ["- B — Comedy"]
    assert H.retrieve_history(tiny, 1, [5, 6], budget=11) == ["- B — Comedy", "- C — Horror",
                                                              "- D — Drama"]
    assert len(H.retrieve_history(tiny, 1, [5, 6], budget=100)) == 4   # each item once
    assert H.shown_items(tiny, 1, H.retrieve_history(tiny, 1, [5, 6], budget=8)) == [2, 3]
    assert H.shown_items(tiny, 1, H.summary_profile(tiny, 1, budget=100)) == [4, 1, 3, 2]
    # the control: last-N at the same budget shows the two most recent watches instead
    assert H.truncate_history(tiny, 1, 8) == ["- C — Horror", "- D — Drama"]


def test_history_lines_rejects_an_unknown_strategy(tiny):
    with pytest.raises(ValueError, match="strategy must be one of"):
        H.history_lines(tiny, 1, "everything", 10)
    with pytest.raises(ValueError, match="strategy must be one of"):
        H.HistoryReranker(get_llm("offline", cache_path="off"), ALS(), "everything")
    with pytest.raises(ValueError, match="at least 1 token"):
        H.HistoryReranker(get_llm("offline", cache_path="off"), ALS(), "last-n", 0)


def test_the_reranker_shows_the_strategys_lines(tiny):
    llm = get_llm("offline", cache_path="off")
    rr = H.HistoryReranker(llm, ALS(factors=2, iterations=2, seed=0), "retrieval", 4,
                           n_candidates=2, progress=False).fit(tiny)
    text = rr.messages(1, [6, 5])[1]["content"]
    assert text.startswith(H.HEADERS["retrieval"] + "\n- B — Comedy\n\nCandidates:\n[6] F")
    assert rr.history_tokens_[1] == 4
    # shown [6, 5], the budget holds the Comedy line (closest to 6, which takes the first
    # turn); shown [5, 6], the Horror one. The stand-in (word overlap) then ranks the
    # candidate that shares the retrieved genre first, whatever the order shown
    ranked, log = rr.rank_lists({1: [6, 5], (1, "other order"): [5, 6]})
    assert ranked[1] == [6, 5] and ranked[(1, "other order")] == [5, 6]
    assert "- C — Horror" in rr.messages(1, [5, 6])[1]["content"]
    assert log["status"].tolist() == ["ok", "ok"]
    # last-N at 7 tokens shows C (Horror) and D (Drama): candidate 5 (Horror) comes first,
    # against the order shown -- the ranking reads the strategy's lines
    last = H.HistoryReranker(llm, ALS(factors=2, iterations=2, seed=0), "last-n", 7,
                             n_candidates=2, progress=False).fit(tiny)
    assert last.rank_lists({1: [6, 5]})[0][1] == [5, 6]


def test_compare_strategies_on_the_same_candidates(demo):
    split = leave_last_n(demo, n=1)
    long = H.long_history_users(split.train, split.test_users, min_items=100)
    assert len(long) == 285 and all(split.train.user_activity()[u] >= 100 for u in long)
    users = long[:4]
    llm = get_llm("offline", cache_path="off")
    table = H.compare_strategies(llm, ALS(factors=8, iterations=3, seed=0), split, users,
                                 budgets=[40, 120], n_candidates=8, k=4, n_boot=200)
    assert table["strategy"].tolist() == ["retriever"] + list(H.STRATEGIES) * 2
    body = table.iloc[1:]
    assert (body["history_tokens"] <= body["budget"]).all()
    assert (body["history_tokens"] > body["budget"] - 20).all()     # the budget is used
    assert (body["calls_per_user"] == 1).all() and (body["parse_failure_rate"] == 0).all()
    # more budget, more tokens per user, for every strategy
    for s, g in body.groupby("strategy"):
        assert g["tokens_per_user"].is_monotonic_increasing, s
    # last-N against itself: a paired difference of exactly 0
    last = body[body["strategy"] == "last-n"]
    assert (last[["vs_last_n", "vs_last_n_lo", "vs_last_n_hi"]] == 0).all().all()
    lo, hi = body["ndcg@4_lo"], body["ndcg@4_hi"]
    assert (lo <= body["ndcg@4"]).all() and (body["ndcg@4"] <= hi).all()


def test_plot_budgets_draws_one_line_per_strategy_and_names_who_answered():
    import matplotlib
    matplotlib.use("Agg")
    table = pd.DataFrame({"strategy": ["retriever"] + ["last-n", "summary", "retrieval"] * 3,
                          "budget": [0] + [50] * 3 + [100] * 3 + [200] * 3,
                          "tokens_per_user": [0] + [100] * 3 + [150] * 3 + [250] * 3,
                          "ndcg@10": np.linspace(0, 0.3, 10)})
    fig = H.plot_budgets(table, who="offline")
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.get_lines()] == ["last-n", "summary", "retrieval",
                                                         "retriever (no tokens)"]
    assert all(len(ln.get_xdata()) == 3 for ln in ax.get_lines()[:3])
    assert any("stand-in" in t.get_text() for t in fig.texts)
