"""Every probe of the ranker lesson fires on its planted failure and stays quiet on the control.

The planted models (:mod:`perso_kit.llm.planted`) answer through the real client (SDK, JSON
validation, call log) from a script with one known behaviour each. At the size the notebook
tests run (10 candidates per user, top-5, a dozen users) each instrument must separate its
planted failure from the clean control by a margin, and must refuse a size at which it could
never fire (top-k of k candidates).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perso_kit.llm import get_llm
from perso_kit.llm.grounding import ground_text, grounding_rate
from perso_kit.llm.planted import (KINDS, Control, FollowsOrder, InventsItems, PromotesPopular,
                                   invented_title, parse_candidates, planted_llm)
from perso_kit.recommenders import ALS
from perso_kit.roles.ranker import (RANKING_SCHEMA, RELEVANCE_SCHEMA, LLMReranker,
                                    evaluate_reranking, hallucination_effect, mean_interval,
                                    popularity_effect, popularity_probe, popularity_summary,
                                    position_bias, position_curve, position_effect,
                                    probe_verdicts, summarize_log)
from perso_kit.split import leave_last_n

N_CANDIDATES, K, N_USERS = 10, 5, 12          # the notebook's SMALL size


@pytest.fixture(scope="module")
def split(demo):
    return leave_last_n(demo, n=1)


@pytest.fixture(scope="module")
def setup(split):
    rng = np.random.default_rng(42)
    users = np.sort(rng.choice(split.test_users, size=N_USERS, replace=False)).tolist()
    retriever = ALS(factors=16, iterations=5, seed=42).fit(split.train)
    lists = {u: retriever.recommend([u], k=N_CANDIDATES)["item_id"].tolist() for u in users}
    test = split.test.interactions
    targets = {u: int(test.loc[test.user_id == u, "item_id"].iloc[0]) for u in users}
    return users, retriever, lists, targets


def reranker(llm, split, retriever):
    return LLMReranker(llm, retriever, N_CANDIDATES, progress=False).fit(split.train)


@pytest.fixture(scope="module")
def verdicts(split, setup):
    """The three probes run on every planted model (and the stand-in), as in notebook 07."""
    users, retriever, lists, targets = setup
    pop = split.train.item_popularity()
    out, raw = {}, {}
    for kind in KINDS:
        rr = reranker(planted_llm(kind, popularity=pop), split, retriever)
        probes = position_bias(rr, targets, lists)
        table = popularity_probe(rr, lists, k=K)
        out[kind] = probe_verdicts(probes, table)
        raw[kind] = (probes, table)
    return pd.DataFrame(out).T, raw


# ----------------------------------------------------------------------------- the models
PROMPT = ("This viewer watched, oldest first:\n- Alien (1979) — Horror\n\nCandidates:\n"
          "[5] Heat (1995) — Crime\n[7] Up (2009) — Animation\n[9] Jaws (1975) — Thriller\n"
          "[11] Big (1988) — Comedy\n\nRank all 4 candidates.")


def test_planted_models_answer_through_the_real_client():
    llm = planted_llm("follows-order")
    r = llm.chat(PROMPT, json_schema=RANKING_SCHEMA)
    assert r.ok and r.data == {"ranking": [5, 7, 9, 11]}
    assert not r.stand_in and r.model == "planted:follows-order (scripted, not an LLM)"
    assert r.cost_usd == 0.0 and r.usage.prompt_tokens > 0
    log = llm.call_log()
    assert len(log) == 1 and log["ok"].all() and llm.planted.requests == 1
    # a prompt it does not understand is a failed call, reported as such (HTTP 400)
    bad = llm.chat("Tell me a joke.")
    assert not bad.ok and bad.error_kind == "bad_request"


def test_each_planted_behaviour_on_a_hand_example():
    cands = parse_candidates(PROMPT)
    assert [(c.id, c.title, c.position) for c in cands][:2] == [(5, "Heat (1995)", 0),
                                                                (7, "Up (2009)", 1)]
    assert [c.id for c in FollowsOrder().order(cands)] == [5, 7, 9, 11]
    popular = PromotesPopular({5: 10, 7: 300, 9: 40, 11: 2})
    assert [c.id for c in popular.order(cands)] == [7, 9, 5, 11]
    assert popular.score(cands[1]) == 10 and popular.score(cands[3]) == 2   # log scale 0-10
    # the control's order depends on the candidate set only, never on the order shown
    ctl = Control(seed=3)
    first = [c.id for c in ctl.order(cands)]
    shown_reversed = parse_candidates("\n".join(f"[{c.id}] {c.title}" for c in cands[::-1]))
    assert [c.id for c in ctl.order(shown_reversed)] == first
    # invents-items: round(0.5 * 4) = 2 of the 4 returned ids are not candidates
    ids = InventsItems(rate=0.5).answer_ids(ctl.order(cands), request_id=1)
    assert len(ids) == 4 and sum(i not in {5, 7, 9, 11} for i in ids) == 2
    assert all(i >= 9_000_000 for i in ids if i not in {5, 7, 9, 11})


def test_promotes_popular_needs_its_table_and_says_so():
    with pytest.raises(ValueError, match="planted oracle"):
        planted_llm("promotes-popular")
    with pytest.raises(ValueError, match="kind"):
        planted_llm("clever")


# ----------------------------------------------------------------------------- position
def test_position_probe_fires_on_follows_order_and_not_on_control(verdicts):
    table, raw = verdicts
    f = table.loc["follows-order"]
    assert f["position_slope"] == 1.0 and f["position_low"] == 1.0 and f["position_fires"]
    for quiet in ("control", "promotes-popular"):    # neither reads the position shown
        q = table.loc[quiet]
        assert q["position_slope"] == 0.0 and not q["position_fires"]
    # the curve: the follower ranks the item where it was shown, the control flat
    probes, _ = raw["follows-order"]
    curve = position_curve(probes)
    assert curve["mean_rank"].tolist() == list(map(float, range(1, N_CANDIDATES + 1)))
    assert (curve["within_user_se"] == 0).all() and (curve["n"] == N_USERS).all()
    flat = position_curve(raw["control"][0])["mean_rank"]
    assert flat.max() - flat.min() == 0.0


def test_position_probe_detects_a_partial_bias_with_a_margin(split, setup):
    """A weaker planted bias: the follower on half of the users, the control on the rest.
    The probe still fires at 12 users; the slope estimates the share of followers."""
    users, retriever, lists, targets = setup
    half = set(users[::2])
    follower, control = planted_llm("follows-order"), planted_llm("control")
    rows = []
    for model, group in ((follower, half), (control, set(users) - half)):
        rr = reranker(model, split, retriever)
        rows.append(position_bias(rr, {u: targets[u] for u in group}, lists))
    effect = position_effect(pd.concat(rows))
    assert effect["slope"] == pytest.approx(0.5) and effect["fires"]
    assert effect["low"] > 0.1


def test_mean_rank_standard_errors_are_hand_computed():
    # user 1 ranks its item 1 then 3, user 2 ranks its item 5 then 5 (user means 2 and 5)
    probes = pd.DataFrame({"user_id": [1, 2, 1, 2, 2], "position": [1, 1, 2, 2, 3],
                           "rank": [1, 5, 3, 5, 9], "ok": [True, True, True, True, False]})
    curve = position_curve(probes, k=2)
    assert curve["mean_rank"].tolist() == [3.0, 4.0] and curve["n"].tolist() == [2, 2]
    # plain: sd(1, 5) / sqrt(2) = 2; within users: deviations (-1, 0) and (1, 0) -> 0.5
    assert curve["mean_rank_se"].tolist() == pytest.approx([2.0, 1.0])
    assert curve["within_user_se"].tolist() == pytest.approx([0.5, 0.5])
    assert curve["top2_rate"].tolist() == [0.5, 0.0]


# ----------------------------------------------------------------------------- popularity
def test_popularity_probe_fires_on_the_promoter_and_not_on_control(verdicts):
    table, raw = verdicts
    p, c = table.loc["promotes-popular"], table.loc["control"]
    assert p["popularity_fires"] and p["popularity_low"] > 50          # interactions
    assert not c["popularity_fires"] and c["popularity_low"] < 0 < c["popularity_high"]
    assert p["popularity_low"] > c["popularity_high"] + 20       # the intervals are apart
    # the promoter's top-5 is exactly the 5 most popular candidates of each list
    _, promoter = raw["promotes-popular"]
    _, ctl = raw["control"]
    assert (promoter["reranked"] >= ctl["reranked"]).all()


def test_popularity_probe_false_alarm_rate_on_control(split, setup):
    """The control over 20 seeds: a 95% interval should exclude 0 about once in 20."""
    users, retriever, lists, _ = setup
    fired = []
    for seed in range(20):
        rr = reranker(planted_llm("control", seed=seed), split, retriever)
        fired.append(popularity_effect(popularity_probe(rr, lists, k=K, seed=seed))["fires"])
    assert sum(fired) <= 2


def test_following_a_shuffled_order_is_popularity_blind(split, setup):
    """Shown in a shuffled order, a ranker that follows the order picks a random top-K: over 20
    shuffles the probe fires about as rarely as on the control (one seed alone may fire, as any
    95% interval excludes 0 one time in 20)."""
    users, retriever, lists, _ = setup
    follower = reranker(planted_llm("follows-order"), split, retriever)
    fired = [popularity_effect(popularity_probe(follower, lists, k=K, seed=seed))["fires"]
             for seed in range(20)]
    assert sum(fired) <= 3


def test_popularity_comparison_refuses_a_top_k_that_cannot_move(split, setup):
    """The finding behind this test: at top-10 of 10 candidates the re-ranked list *is* the
    candidate list, so a ranker that always promotes famous titles showed the same average
    popularity as the retriever (315.7 vs 315.7 in notebook 07). The probe refuses that size,
    the evaluation warns, and at top-5 of 10 the same planted ranker is seen."""
    users, retriever, lists, _ = setup
    promoter = reranker(planted_llm("promotes-popular",
                                    popularity=split.train.item_popularity()), split, retriever)
    with pytest.raises(ValueError, match="whole list"):
        popularity_probe(promoter, lists, k=N_CANDIDATES)
    with pytest.warns(UserWarning, match="whole candidate list"):
        whole = evaluate_reranking({"promoter": promoter}, split, users, k=N_CANDIDATES)
    assert whole["avg_popularity"].iloc[1] == pytest.approx(whole["avg_popularity"].iloc[0])
    top5 = evaluate_reranking({"promoter": promoter}, split, users, k=K)
    pop = split.train.item_popularity()
    most_popular_5 = np.mean([np.sort(pop.reindex(lists[u]).to_numpy())[-K:].mean()
                              for u in users])
    assert top5["avg_popularity"].iloc[1] == pytest.approx(most_popular_5)
    assert top5["avg_popularity"].iloc[1] > top5["avg_popularity"].iloc[0] + 30


def test_retriever_order_is_not_a_popularity_blind_baseline(verdicts):
    """Why the probe compares with the candidate pool and not with the retriever's top-k: ALS
    puts popular candidates first, so the control (popularity-blind by construction) has a
    top-5 less popular than ALS's, which a chart of 'LLM vs ALS' would read as a preference
    for less popular items."""
    _, raw = verdicts
    _, table = raw["control"]
    est, low, _ = mean_interval(table["retriever"] - table["pool"])
    assert low > 0                                   # ALS's top-5 is above its pool's mean
    assert popularity_effect(table)["vs_retriever"] < 0 < est


# ----------------------------------------------------------------------------- hallucination
def test_hallucination_rate_fires_on_the_inventor_and_not_on_control(verdicts, split, setup):
    table, raw = verdicts
    # 10 candidates per answer, round(0.3 * 10) = 3 invented ids in every answer
    assert table.loc["invents-items", "hallucination_rate"] == pytest.approx(0.3)
    assert table.loc["invents-items", "hallucination_fires"]
    for quiet in ("control", "follows-order", "promotes-popular"):
        assert table.loc[quiet, "hallucination_rate"] == 0.0
        assert not table.loc[quiet, "hallucination_fires"]
    # the re-ranker's own log counts the same share, and keeps every user's list full
    users, retriever, _, _ = setup
    rr = reranker(planted_llm("invents-items", rate=0.3), split, retriever)
    recs = rr.recommend(users, k=K)
    assert summarize_log(rr.log_)["hallucination_rate"] == pytest.approx(0.3)
    assert (recs.groupby("user_id").size() == K).all()
    assert hallucination_effect(rr.log_)["n_outside"] == 3 * N_USERS


def test_grounding_rate_catches_invented_titles(split, setup):
    users, retriever, lists, _ = setup
    items = split.train.items
    titles = items.set_index("item_id")["title"]
    rates = {}
    for kind in ("invents-items", "control"):
        llm = planted_llm(kind, rate=0.4)
        grounded = []
        for u in users:
            prompt = ("Candidates:\n" + "\n".join(f"[{i}] {titles[i]}" for i in lists[u])
                      + "\n\nRecommend 5 movies from the candidates.")
            r = llm.chat(prompt)
            assert r.ok and len(r.text.splitlines()) == 5
            grounded.append(ground_text(r.text, items))
        rates[kind] = grounding_rate(pd.concat(grounded))
    assert rates["control"] == 1.0
    assert rates["invents-items"] == pytest.approx(1 - 2 / 5)     # round(0.4 * 5) = 2 of 5
    assert invented_title(1, 2) == invented_title(1, 2) != invented_title(1, 3)


def test_pointwise_prompts_get_planted_scores(split, setup):
    users, retriever, lists, _ = setup
    pop = split.train.item_popularity()
    rr = LLMReranker(planted_llm("promotes-popular", popularity=pop), retriever, N_CANDIDATES,
                     variant="pointwise", progress=False).fit(split.train)
    recs = rr.recommend(users[:3], k=N_CANDIDATES)
    for u in users[:3]:                              # scores rise with popularity
        got = pop.reindex(recs[recs.user_id == u]["item_id"]).to_numpy()
        assert got[0] == got.max()
    r = planted_llm("follows-order").chat(PROMPT.replace("Candidates", "Candidate"),
                                          json_schema=RELEVANCE_SCHEMA)
    assert r.data == {"score": 5}


# ----------------------------------------------------------------------------- intervals
def test_t_interval_hand_computed():
    est, low, high = mean_interval([1.0, 2.0, 3.0])        # 2 +- t(2, 0.975) * 1 / sqrt(3)
    assert (est, round(low, 3), round(high, 3)) == (2.0, -0.484, 4.484)
    assert mean_interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert np.isnan(mean_interval([1.0])[1])


def test_ndcg_intervals_of_the_reranking_table(split, setup):
    users, retriever, _, _ = setup
    follow = reranker(planted_llm("follows-order"), split, retriever)
    ctl = reranker(planted_llm("control"), split, retriever)
    table = evaluate_reranking({"follows": follow, "control": ctl}, split, users, k=K, ci=0.95)
    # following the shown order reproduces the retriever: a zero-width paired interval
    assert table.loc["follows", "ndcg@5"] == table.iloc[0]["ndcg@5"]
    assert table.loc["follows", ["ndcg_gain", "ndcg_gain_lo", "ndcg_gain_hi"]].tolist() == \
        [0.0, 0.0, 0.0]
    for name in table.index:
        row = table.loc[name]
        assert row["ndcg@5_lo"] <= row["ndcg@5"] <= row["ndcg@5_hi"]
        assert row["ndcg_gain_lo"] <= row["ndcg_gain"] <= row["ndcg_gain_hi"]
    assert table.loc["control", "ndcg_gain"] == pytest.approx(
        table.loc["control", "ndcg@5"] - table.iloc[0]["ndcg@5"])
    # without ci the table has no interval columns (as notebook 11 uses it)
    plain = evaluate_reranking({"follows": follow}, split, users, k=K)
    assert not [c for c in plain.columns if c.endswith(("_lo", "_hi"))]


def test_popularity_summary_rows(verdicts):
    _, raw = verdicts
    summary = popularity_summary({k: raw[k][1] for k in ("control", "promotes-popular")},
                                 retriever="ALS")
    assert list(summary.index) == ["ALS (its own order)", "control", "promotes-popular"]
    assert summary["fires"].tolist() == [True, False, True]
    assert summary.loc["promotes-popular", "lift"] == pytest.approx(
        (raw["promotes-popular"][1]["reranked"] - raw["promotes-popular"][1]["pool"]).mean())


def test_the_stand_in_is_not_a_planted_model():
    assert get_llm("offline", cache_path="off").chat(PROMPT, json_schema=RANKING_SCHEMA).stand_in
    assert not planted_llm("control").chat(PROMPT, json_schema=RANKING_SCHEMA).stand_in


@pytest.mark.parametrize("variant", ["zero-shot", "pointwise"])
def test_echoed_order_and_tied_scores_are_flagged_per_answer(split, setup, variant):
    """follows-order answers every list in the order shown (listwise) and gives every item
    the score 5 (pointwise); the control ranks: its answers are neither echoes nor ties."""
    users, retriever, _, _ = setup
    rates = {}
    for kind in ("follows-order", "control"):
        rr = LLMReranker(planted_llm(kind), retriever, N_CANDIDATES, variant=variant,
                         progress=False).fit(split.train)
        rr.recommend(users[:4], k=K)
        assert rr.log_["n_presentations"].tolist() == [1] * 4
        rates[kind] = summarize_log(rr.log_)
    assert rates["follows-order"]["echo_rate"] == 1.0
    assert rates["follows-order"]["tie_rate"] == (1.0 if variant == "pointwise" else 0.0)
    assert rates["control"]["echo_rate"] == 0.0 and rates["control"]["tie_rate"] == 0.0
