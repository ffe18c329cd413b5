"""The LLM as ranker: parsing and grounding, fallbacks, position probes, aggregation, evaluation.

Mechanics are tested with small fake clients whose answers are known (echo the shown order,
answer garbage, name ids outside the list) and with the offline stand-in through the real SDK.
"""
from __future__ import annotations

import itertools
import os
import re

import numpy as np
import pandas as pd
import pytest

from live_checks import assert_calls_succeeded
from perso_kit.llm import Reply, get_llm
from perso_kit.llm import offline
from perso_kit.llm.reply import Usage
from perso_kit.recommenders import ALS, Popularity
from perso_kit.roles.ranker import (LLMReranker, aggregate_rankings, evaluate_reranking,
                                    listwise_messages, parse_ranking, place_at, position_bias,
                                    position_curve, shuffled, summarize_log)
from perso_kit.split import leave_last_n

_CAND = re.compile(r"^\[(\d+)\]", re.M)


class FakeLLM:
    """Answers each request with ``answer(shown_ids, request)``; records the requests."""

    def __init__(self, answer):
        self.answer, self.requests = answer, []

    def map(self, requests, concurrency=8, desc="", progress=True):
        out = []
        for r in requests:
            self.requests.append(r)
            shown = [int(x) for x in _CAND.findall(r["messages"][-1]["content"])]
            out.append(self.answer(shown, r))
        return out


def echo(shown, _):
    return Reply(data={"ranking": shown}, usage=Usage(10, 5), latency_s=0.01)


@pytest.fixture(scope="module")
def split(demo):
    return leave_last_n(demo, n=1)


@pytest.fixture(scope="module")
def users(split):
    return split.test_users[:6].tolist()


def test_parse_ranking_grounds_counts_and_fills():
    p = parse_ranking(Reply(data={"ranking": [9, 42, "5", 9]}), [5, 7, 9])
    assert p.order == [9, 5, 7] and p.status == "ok"
    assert (p.n_returned, p.n_outside, p.n_missing) == (4, 1, 1)
    p = parse_ranking(Reply(data={"ranking": [1, 2]}), [5, 7, 9])   # nothing usable
    assert p.order == [5, 7, 9] and p.status == "fallback" and p.n_outside == 2
    p = parse_ranking(Reply(error="invalid JSON answer: ...", error_kind="invalid_json"),
                      [5, 7, 9])
    assert p.order == [5, 7, 9] and p.status == "failed"
    assert parse_ranking(Reply(data={"ranking": "7, 5"}), [5, 7]).status == "fallback"


def test_unparseable_answers_fall_back_to_retriever_and_are_counted(split, users):
    bad = set(users[::2])
    calls = {"n": 0}

    def answer(shown, req):              # requests come in user order, one per user
        i = calls["n"]
        calls["n"] += 1
        if users[i] in bad:
            return Reply(error="invalid JSON answer: nope", error_kind="invalid_json",
                         usage=Usage(10, 3))
        return Reply(data={"ranking": shown[::-1]}, usage=Usage(10, 5))

    rr = LLMReranker(FakeLLM(answer), Popularity(), n_candidates=8, progress=False).fit(
        split.train)
    recs = rr.recommend(users, k=5)
    base = rr.candidates_
    for u in users:
        got = recs[recs.user_id == u]["item_id"].tolist()
        cands = base[base.user_id == u]["item_id"].tolist()
        assert len(got) == 5
        assert got == (cands[:5] if u in bad else cands[::-1][:5])
    log = rr.log_.set_index("user_id")
    assert (log.loc[list(bad), "status"] == "failed").all()
    assert (log.drop(index=list(bad))["status"] == "ok").all()
    s = summarize_log(rr.log_)
    assert s["parse_failure_rate"] == pytest.approx(len(bad) / len(users))
    assert s["tokens_per_user"] == pytest.approx((3 * 13 + 3 * 15) / 6)


def test_out_of_set_ids_through_the_stand_in_are_counted(split, users, monkeypatch):
    # a stand-in handler that answers ids that are not candidates (a planted hallucination)
    monkeypatch.setitem(offline._HANDLERS["schema"], "llm_ranking",
                        lambda req: {"ranking": [999_999, 999_998]})
    llm = get_llm("offline", cache_path="off")
    rr = LLMReranker(llm, Popularity(), n_candidates=6, progress=False).fit(split.train)
    recs = rr.recommend(users[:2], k=6)
    assert (rr.log_["status"] == "fallback").all()
    assert rr.log_["n_outside"].tolist() == [2, 2]
    assert summarize_log(rr.log_)["hallucination_rate"] == 1.0
    for u in users[:2]:                              # the retriever's order is kept
        assert recs[recs.user_id == u]["item_id"].tolist() == \
            rr.candidates_[rr.candidates_.user_id == u]["item_id"].tolist()


def test_place_at_puts_item_at_each_position():
    others = [1, 2, 3, 4]
    for p in range(5):
        out = place_at(others, 9, p)
        assert out.index(9) == p and [o for o in out if o != 9] == others
    with pytest.raises(ValueError):
        place_at(others, 9, 5)


def test_position_bias_probe_shows_target_at_every_position(split, users):
    fake = FakeLLM(echo)                            # ranks in the order shown
    rr = LLMReranker(fake, Popularity(), n_candidates=5, progress=False).fit(split.train)
    targets = {u: int(split.test.interactions.query("user_id == @u")["item_id"].iloc[0])
               for u in users[:3]}
    lists = {u: rr.candidates.recommend([u], k=5)["item_id"].tolist() for u in targets}
    probes = position_bias(rr, targets, lists)
    assert len(probes) == 3 * 5 and len(fake.requests) == 15
    for u in targets:
        assert sorted(probes[probes.user_id == u]["position"]) == [1, 2, 3, 4, 5]
    # the echo ranks the target exactly where it was shown: the probe placed it there
    assert (probes["rank"] == probes["position"]).all() and probes["ok"].all()
    assert (probes["n_calls"] == 1).all() and (probes["tokens"] == 15).all()
    for req, (_, row) in zip(fake.requests, probes.iterrows()):
        shown = [int(x) for x in _CAND.findall(req["messages"][-1]["content"])]
        assert shown.index(row["item_id"]) == row["position"] - 1
    curve = position_curve(probes, k=2)
    assert curve["top1_rate"].tolist() == [1.0, 0, 0, 0, 0]
    assert curve["top2_rate"].tolist() == [1.0, 1.0, 0, 0, 0]


def test_aggregation_is_order_invariant_and_hand_computed():
    rankings = [[1, 2, 3], [2, 1, 3], [2, 3, 1]]
    assert aggregate_rankings(rankings) == [2, 1, 3]           # points 6, 8, 4
    assert aggregate_rankings(rankings, "mean_rank") == [2, 1, 3]
    rng = np.random.default_rng(0)
    items = list(range(10))
    many = [list(rng.permutation(items)) for _ in range(5)]
    expected = aggregate_rankings(many)
    for perm in itertools.islice(itertools.permutations(many), 0, 120, 7):
        assert aggregate_rankings(list(perm)) == expected
        assert aggregate_rankings(list(perm), "mean_rank") == aggregate_rankings(many,
                                                                                 "mean_rank")
    assert aggregate_rankings([[1, 2], [2, 1]]) == [1, 2]        # tie: by item id


def test_permutations_are_ranked_and_aggregated(split, users):
    fake = FakeLLM(echo)
    rr = LLMReranker(fake, Popularity(), n_candidates=6, n_permutations=3, progress=False,
                     seed=7).fit(split.train)
    recs = rr.recommend(users[:2], k=6)
    assert len(fake.requests) == 6 and (rr.log_["n_calls"] == 3).all()
    for n, u in enumerate(users[:2]):
        shown = [[int(x) for x in _CAND.findall(r["messages"][-1]["content"])]
                 for r in fake.requests[3 * n:3 * n + 3]]
        cands = rr.candidates_[rr.candidates_.user_id == u]["item_id"].tolist()
        assert shown[0] == cands and sorted(shown[1]) == sorted(cands)
        assert recs[recs.user_id == u]["item_id"].tolist() == aggregate_rankings(shown)
    assert shuffled([1, 2, 3], 3, seed=1) == shuffled([1, 2, 3], 3, seed=1)


def test_prompt_variants(split, users):
    u = users[0]
    cands = [1, 2, 3]
    zero = listwise_messages(split.train, u, cands)[-1]["content"]
    assert "Candidates:\n[1] " in zero and "Examples" not in zero
    recency = listwise_messages(split.train, u, cands, "recency")[-1]["content"]
    last = split.train.history(u, n=1)["title"].iloc[0]
    assert "most recent watches were" in recency and last in recency.split("most recent")[1]
    fake = FakeLLM(echo)
    rr = LLMReranker(fake, Popularity(), n_candidates=4, variant="few-shot", n_examples=2,
                     progress=False).fit(split.train)
    rr.recommend([u], k=4)
    text = fake.requests[0]["messages"][-1]["content"]
    assert text.count("next watched:") == 2
    fake = FakeLLM(lambda shown, r: Reply(data={"score": 10 - shown[0] % 7}))
    rr = LLMReranker(fake, Popularity(), n_candidates=4, variant="pointwise",
                     progress=False).fit(split.train)
    recs = rr.recommend([u], k=4)
    assert len(fake.requests) == 4 and rr.log_["n_calls"].iloc[0] == 4
    cands = rr.candidates_["item_id"].tolist()
    want = sorted(range(4), key=lambda i: (-(10 - cands[i] % 7), i))
    assert recs["item_id"].tolist() == [cands[i] for i in want]
    with pytest.raises(ValueError, match="variant"):
        LLMReranker(fake, Popularity(), variant="chain-of-thought")


def test_stand_in_reranking_end_to_end(split, users):
    llm = get_llm("offline", cache_path="off")
    rr = LLMReranker(llm, ALS(factors=16, iterations=5, seed=42), n_candidates=10,
                     progress=False).fit(split.train)
    table = evaluate_reranking({"LLM reranker": rr}, split, users, k=5)
    assert list(table.index) == ["ALS (candidates)", "LLM reranker"]
    assert table["users"].tolist() == [len(users)] * 2
    assert table["parse_failure_rate"].iloc[1] == 0 and table["tokens_per_user"].iloc[1] > 0
    assert ((table["ndcg@5"] >= 0) & (table["ndcg@5"] <= 1)).all()
    recs = rr.recommend(users, k=5)
    for u in users:   # the re-ranked list is drawn from the user's candidates only
        assert set(recs[recs.user_id == u]["item_id"]) <= \
            set(rr.candidates_[rr.candidates_.user_id == u]["item_id"])


def test_stand_in_handler_reads_only_the_prompt():
    llm = get_llm("offline", cache_path="off")
    from perso_kit.roles.ranker import RANKING_SCHEMA
    r = llm.chat("This viewer watched:\n- Space Station Horror (1990) — Horror, Sci-Fi\n\n"
                 "Candidates:\n[3] Toy Farm (1995) — Comedy\n[7] Horror in Space (1992) — "
                 "Horror, Sci-Fi\n", json_schema=RANKING_SCHEMA)
    assert r.data == {"ranking": [7, 3]} and r.stand_in


# ----------------------------------------------------------------------------- live (opt-in)
BASE_URL = os.environ.get("PERSO_KIT_LIVE_BASE_URL")


@pytest.mark.live
@pytest.mark.skipif(not BASE_URL, reason="set PERSO_KIT_LIVE_BASE_URL to run")
def test_live_reranking_completes(split, users, tmp_path):
    llm = get_llm("compatible", base_url=BASE_URL, model=os.environ.get("PERSO_KIT_LIVE_MODEL"),
                  api_key=os.environ.get("PERSO_KIT_LIVE_API_KEY"),
                  cache_path=str(tmp_path / "cache.sqlite"), timeout_s=120)
    rr = LLMReranker(llm, Popularity(), n_candidates=8, progress=False).fit(split.train)
    recs = rr.recommend(users[:3], k=5)
    assert recs.groupby("user_id").size().tolist() == [5, 5, 5]   # answer or fallback
    assert set(rr.log_["status"]) <= {"ok", "fallback", "failed"}
    assert isinstance(pd.DataFrame(rr.log_), pd.DataFrame) and len(rr.log_) == 3
    assert rr.log_["n_failed_calls"].sum() < rr.log_["n_calls"].sum() / 2, rr.log_.to_string()
    assert_calls_succeeded(llm)


def test_prose_answers_from_a_server_fall_back(split, users, tmp_path):
    """Fault injection over HTTP: a server that answers prose instead of JSON (after the
    client's repair attempts) leaves every user with the retriever's order, counted."""
    from perso_kit.llm.testing import LocalServer
    with LocalServer() as server:
        server.plan("*", ["bad_json"] * 50)
        llm = get_llm("compatible", base_url=server.base_url, model="any",
                      cache_path=str(tmp_path / "c.sqlite"), max_retries=0)
        rr = LLMReranker(llm, Popularity(), n_candidates=5, progress=False).fit(split.train)
        recs = rr.recommend(users[:2], k=5)
    assert (rr.log_["status"] == "failed").all() and (rr.log_["n_failed_calls"] == 1).all()
    assert recs["item_id"].tolist() == rr.candidates_["item_id"].tolist()
    assert summarize_log(rr.log_)["parse_failure_rate"] == 1.0


def test_flag_non_ranking_hand_examples():
    from perso_kit.roles.ranker import ParsedRanking, flag_non_ranking
    shown = [5, 7, 9]
    assert flag_non_ranking(parse_ranking(Reply(data={"ranking": [5, 7, 9]}), shown), shown).echo
    # a prefix in the shown order leaves the rest in place: still the shown order
    assert flag_non_ranking(parse_ranking(Reply(data={"ranking": [5]}), shown), shown).echo
    assert not flag_non_ranking(parse_ranking(Reply(data={"ranking": [9, 5]}), shown),
                                shown).echo
    assert not flag_non_ranking(ParsedRanking(shown, "fallback"), shown).echo  # counted apart
    tied = flag_non_ranking(ParsedRanking(shown, "ok", 3), shown, scores=[3, 3, 3])
    assert tied.tie and tied.echo
    assert not flag_non_ranking(ParsedRanking([9, 7, 5], "ok", 3), shown, [1, 2, 3]).tie
    log = pd.DataFrame({"status": ["ok", "ok"], "n_returned": [3, 3], "n_outside": [0, 0],
                        "n_calls": [1, 1], "n_presentations": [2, 2], "n_echo": [1, 0],
                        "n_tie": [0, 0], "prompt_tokens": [1, 1], "completion_tokens": [1, 1],
                        "cost_usd": [0.0, 0.0], "latency_s": [0.0, 0.0]})
    s = summarize_log(log)
    assert s["echo_rate"] == 0.25 and s["tie_rate"] == 0.0
