"""The LLM judge: prompts, structured answers, failure counting, and every probe proven.

Each probe of :mod:`perso_kit.roles.judge` is run on the planted judges of
:mod:`perso_kit.llm.planted` (through the real client) over real explanation pairs of the demo
world, at the notebook's SMALL size: it fires on its planted failure and stays quiet on the
clean control. Hand-made verdict tables pin the arithmetic of each measure.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from perso_kit.llm import get_llm
from perso_kit.llm.planted import JUDGE_KINDS, planted_judge, planted_llm
from perso_kit.recommenders import ItemKNN
from perso_kit.roles.explainer import explain_recommendations
from perso_kit.roles.judge import (JUDGE_MAX_TOKENS, PAIRWISE_SCHEMA, RATING_SCHEMA, RUBRIC,
                                   context_block, explanation_pairs, false_facts, judge_pairs,
                                   judge_probes, judge_usage, pad, pair_scores,
                                   pairwise_messages, parse_judge_prompt, rate_explanations,
                                   rating_messages, run_judge)
from perso_kit.split import leave_last_n

N_USERS, N_RECS, N_PAIRS = 8, 3, 8             # the notebook's SMALL size


@pytest.fixture(scope="module")
def world(demo):
    split = leave_last_n(demo, n=1)
    train = split.train
    knn = ItemKNN(n_neighbors=50).fit(train)
    rng = np.random.default_rng(42)
    users = np.sort(rng.choice(split.test_users, size=N_USERS, replace=False)).tolist()
    recs = knn.recommend(users, k=N_RECS)
    table = explain_recommendations(get_llm("offline", cache_path="off"), train, recs, knn,
                                    progress=False)
    return train, table


@pytest.fixture(scope="module")
def calibration(world):
    """The probes of every planted judge on the same pairs, as in notebook 08."""
    train, table = world
    own = table.loc[table.source == "LLM", "explanation"].tolist()
    return {k: run_judge(planted_judge(k, own_texts=own), train, table, N_PAIRS,
                         progress=False) for k in JUDGE_KINDS}


# ------------------------------------------------------------------------------ prompts
def test_prompts_carry_the_facts_and_the_texts(world):
    train, table = world
    p = explanation_pairs(table, 1).iloc[0]
    ctx = context_block(train, p.user_id, p.item_id)
    assert ctx.startswith("The viewer watched, oldest first:\n- ")
    assert "Recommended movie: " in ctx and "In one or two sentences" not in ctx
    parsed = parse_judge_prompt(pairwise_messages(ctx, p.own, p.other)[1]["content"])
    assert parsed["texts"] == {"A": p.own, "B": p.other}
    assert len(parsed["history"]) == 10
    assert parsed["item"][0] == train.items.set_index("item_id").loc[p.item_id, "title"]
    rating = rating_messages(ctx, "Fine.")[1]["content"]
    assert parse_judge_prompt(rating)["texts"] == {"to judge": "Fine."}
    assert all(k in rating for k in RUBRIC)


def test_pad_adds_only_content_free_words():
    assert pad("Because you watched Heat (1995).", 0) == "Because you watched Heat (1995)."
    padded = pad("Because you watched Heat (1995).", 12)
    assert len(padded.split()) == 5 + 12
    assert padded.startswith("Because you watched Heat (1995). All things considered,")
    with pytest.raises(ValueError, match="n_words"):
        pad("x", -1)


def test_false_facts_reads_titles_and_shared_claims():
    h = [("Alien (1979)", "Horror, Sci-Fi"), ("Heat (1995)", "Crime")]
    item = ("Saw (2004)", "genres: Horror; mood: tense")
    assert false_facts("Because you watched Alien (1979), and it is also Horror.", h, item) == 0
    # Heat lacks Horror: one false (film, attribute) pair
    assert false_facts("Saw (2004) shares Horror with Alien (1979) and Heat (1995).", h,
                       item) == 1
    # a title the history does not hold
    assert false_facts("Because you watched Zorblax (1987).", h, item) == 1
    # no word of sharing: no claim read
    assert false_facts("After Heat (1995), try this Horror film.", h, item) == 0


# ------------------------------------------------------------------------------ asking
def test_the_stand_in_answers_valid_json_from_the_prompt(world):
    train, table = world
    llm = get_llm("offline", cache_path="off")
    pairs = explanation_pairs(table, 3)
    rated = pairs.rename(columns={"own": "explanation"})
    ratings = rate_explanations(llm, train, rated, progress=False)
    assert ratings["judge_ok"].all()
    assert ratings[list(RUBRIC)].isin([1, 2, 3, 4, 5]).all().all()
    assert (ratings["judge_score"] == ratings[list(RUBRIC)].mean(axis=1)).all()
    v = judge_pairs(llm, train, pairs, progress=False)
    keys = ["own_first", "own_second", "pad_own_first", "pad_own_second"]
    assert v[keys].isin(["A", "B", "tie"]).all().all()
    # the requests are bounded and structured
    log = llm.call_log()
    assert len(log) == 3 + 12


def test_requests_are_bounded_and_use_the_schemas(world, monkeypatch):
    train, table = world
    llm = get_llm("offline", cache_path="off")
    seen = []
    real = llm.map

    def spy(requests, **kw):
        requests = list(requests)
        seen.extend(requests)
        return real(requests, **kw)

    monkeypatch.setattr(llm, "map", spy)
    run_judge(llm, train, table, 2, progress=False)
    assert len(seen) == 2 * 2 + 4 * 2
    assert {r["max_tokens"] for r in seen} == {JUDGE_MAX_TOKENS}
    assert [r["json_schema"]["title"] for r in seen].count("judge_rating") == 4
    assert [r["json_schema"] for r in seen].count(PAIRWISE_SCHEMA) == 8
    assert RATING_SCHEMA["required"] == list(RUBRIC)


def test_malformed_answers_are_counted_not_raised(world):
    """A model that cannot answer judge prompts (the ranking-only planted model answers HTTP
    400) gives failed replies: every score is NaN, every verdict None, and the counts say so."""
    train, table = world
    broken = planted_llm("control")
    probes, verdicts, ratings = run_judge(broken, train, table, 3, progress=False)
    assert judge_usage(verdicts, ratings) == {"pairwise_asked": 12, "pairwise_valid": 0,
                                              "ratings_asked": 6, "ratings_valid": 0}
    assert not ratings["judge_ok"].any() and ratings["judge_score"].isna().all()
    assert probes.loc["position", "n"] == 0 and not probes["fires"].any()


# ------------------------------------------------------------------------------ arithmetic
def _verdicts(rows):
    cols = ["own_first", "own_second", "pad_own_first", "pad_own_second", "padded",
            "faithful_own", "faithful_other"]
    return pd.DataFrame(rows, columns=cols)


def test_scores_by_hand():
    v = _verdicts([
        # a judge that picks A every time: follows the position; padded side keeps 1/2
        ["A", "A", "A", "A", "other", False, True],
        # own wins in both orders; padding "other" makes it win both: shift 0 -> 1
        ["A", "B", "B", "A", "other", False, True],
        # a tie in both orders, both faithful; padded own wins once: shift 1/2 -> 3/4
        ["tie", "tie", "A", "tie", "own", True, True],
    ])
    s = pair_scores(v)
    assert s["follows_position"].tolist() == [1.0, 0.0, 0.0]
    assert s["consistent"].tolist() == [0.0, 1.0, 1.0]
    assert s["own_win"].tolist() == [0.5, 1.0, 0.5]
    assert s["padded_before"].tolist() == [0.5, 0.0, 0.5]
    assert s["padded_after"].tolist() == [0.5, 1.0, 0.75]
    assert s["expected_own"].tolist() == [0.0, 0.0, 0.5]
    p = judge_probes(v, n_boot=200)
    assert p.loc["position", "value"] == pytest.approx(1 / 3)
    # agreement: discordant pairs 1 and 2; the faithful (other) text wins 1/2 and 0
    assert p.loc["agreement", "value"] == pytest.approx(0.25) and p.loc["agreement", "n"] == 2
    assert p.loc["verbosity", "value"] == pytest.approx((0 + 1 + 0.25) / 3)
    # self-preference: consistent pairs 2 and 3: (1 - 0) and (0.5 - 0.5)
    assert p.loc["self_preference", "value"] == pytest.approx(0.5)
    assert p.loc["self_preference", "n"] == 2


def test_missing_verdicts_are_left_out():
    v = _verdicts([[None, "B", None, None, "own", True, False],
                   ["A", "B", "A", "B", "own", True, False]])
    s = pair_scores(v)
    assert math.isnan(s["follows_position"].iloc[0]) and s["follows_position"].iloc[1] == 0
    p = judge_probes(v, n_boot=50)
    assert p.loc["position", "n"] == 1 and p.loc["verbosity", "n"] == 1
    # both pairs pick the faithful (own) text in every verdict given; the missing one is skipped
    assert p.loc["agreement", "value"] == 1.0 and p.loc["agreement", "n"] == 2


# ------------------------------------------------------------------------------ the probes, proven
@pytest.mark.parametrize("kind, probe", [("judge-prefers-first", "position"),
                                         ("judge-prefers-longer", "verbosity"),
                                         ("judge-prefers-own", "self_preference")])
def test_each_bias_probe_fires_on_its_planted_judge(calibration, kind, probe):
    probes = calibration[kind][0]
    assert probes.loc[probe, "fires"], probes
    assert probes.loc[probe, "n"] >= 6
    # the planted behaviour is total: the probe sees all of it
    assert probes.loc[probe, "value"] == pytest.approx(
        {"position": 1.0, "verbosity": 1.0, "self_preference": 0.8125}[probe], abs=1e-9)


def test_the_control_fires_no_bias_probe_and_agrees_with_the_checks(calibration):
    probes = calibration["judge-control"][0]
    for probe in ("position", "verbosity", "self_preference"):
        assert not probes.loc[probe, "fires"], probe
        assert probes.loc[probe, "value"] == 0.0
    assert probes.loc["agreement", "value"] == 1.0 and probes.loc["agreement", "fires"]
    assert probes.loc["rank_correlation", "low"] > 0.9
    assert probes.loc["agreement", "n"] == 5               # pairs where one text fails the checks


def test_off_the_diagonal(calibration):
    """What else each planted judge moves: the first-picker is at chance on agreement and
    moves nothing else; the self-lover moves nothing but self-preference; the length-lover
    also moves self-preference (the LLM texts are the longer ones: a stated confound)."""
    first, longer, own = (calibration[k][0] for k in JUDGE_KINDS[:3])
    assert first.loc["agreement", "value"] == 0.5 and not first.loc["agreement", "fires"]
    assert not first.loc["verbosity", "fires"] and first.loc["self_preference", "n"] == 0
    assert not own.loc["position", "fires"] and not own.loc["verbosity", "fires"]
    assert not longer.loc["position", "fires"]
    assert longer.loc["self_preference", "fires"]


def test_the_table_says_who_answered(calibration, world):
    assert (calibration["judge-control"][0]["judge"]
            == "model: planted:judge-control (scripted, not an LLM)").all()
    train, table = world
    probes, _, _ = run_judge(get_llm("offline", cache_path="off"), train, table, 2,
                             progress=False)
    assert (probes["judge"] == "offline stand-in, not an LLM").all()


def test_the_oracle_needs_its_texts():
    with pytest.raises(ValueError, match="own_texts"):
        planted_judge("judge-prefers-own")
    with pytest.raises(ValueError, match="kind must be one of"):
        planted_judge("judge-nope")


def test_the_figure_is_stamped_with_the_judge(calibration):
    import matplotlib
    matplotlib.use("Agg")
    from perso_kit.roles.judge import plot_judge_probes

    probes = calibration["judge-prefers-first"][0]
    fig = plot_judge_probes(probes, who="planted:judge-prefers-first (scripted, not an LLM)")
    texts = [t.get_text() for t in fig.texts]
    assert "model: planted:judge-prefers-first (scripted, not an LLM)" in texts
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == list(probes.index)[::-1]
    # the firing probe is drawn in red, the quiet ones in grey
    reds = [ln for ln in fig.axes[0].lines if ln.get_color() == "#c0392b"]
    assert len(reds) == 2 * int(probes["fires"].sum())


def test_no_pair_gives_empty_measures_not_an_error(world):
    """A table whose LLM rows all failed has no pair to judge: no call, NaN measures, no fire."""
    train, table = world
    only_template = table[table.source == "template"]
    llm = get_llm("offline", cache_path="off")
    probes, verdicts, ratings = run_judge(llm, train, only_template, 5, progress=False)
    assert len(llm.call_log()) == 0 and len(verdicts) == 0 and len(ratings) == 0
    assert probes["n"].tolist() == [0] * 5 and not probes["fires"].any()
    assert probes["value"].isna().all()


def test_the_stand_in_judge_reads_word_overlap_from_the_prompt_only():
    """By hand: the text made of the prompt's words wins in both orders; padding lowers the
    share of prompt words, so a padded copy loses to the original (a fact of the heuristic)."""
    llm = get_llm("offline", cache_path="off")
    facts = ("The viewer watched, oldest first:\n- Alien (1979) — Horror, Sci-Fi\n\n"
             "Recommended movie: Saw (2004) — genres: Horror")
    grounded = "Because you watched Alien (1979), and it is also Horror."
    vague = "A truly wonderful evening awaits you tonight."

    def verdict(a, b):
        return llm.chat(pairwise_messages(facts, a, b), json_schema=PAIRWISE_SCHEMA).data

    assert verdict(grounded, vague)["better"] == "A"
    assert verdict(vague, grounded)["better"] == "B"
    assert verdict(pad(grounded), grounded)["better"] == "B"
    assert verdict(grounded, grounded)["better"] == "tie"
    r = llm.chat(rating_messages(facts, grounded), json_schema=RATING_SCHEMA).data
    # words: watched, alien, 1979 (a number: dropped), horror -> all in the facts but "watched"
    assert r["grounded"] == 1 + round(4 * 2 / 3) and r["readable"] == 5


def test_calibration_check_proves_every_probe_on_these_pairs(calibration):
    from perso_kit.roles.judge import calibration_check

    proof = calibration_check({k: v[0] for k, v in calibration.items()})
    assert list(proof.index) == ["agreement", "rank_correlation", "position", "verbosity",
                                 "self_preference"]
    assert proof["proven"].all(), proof


def test_calibration_check_flags_a_probe_that_misfires_or_stays_blind(calibration):
    """Planted: the control fires self-preference (as a few pairs can make it do) and the
    length-lover's verbosity stays quiet (padding too weak for the texts): neither probe is
    proven; the others still are; and the figure labels the unproven rows."""
    import matplotlib
    matplotlib.use("Agg")
    from perso_kit.roles.judge import calibration_check, plot_judge_probes

    broken = {k: v[0].copy() for k, v in calibration.items()}
    broken["judge-control"].loc["self_preference", "fires"] = True
    broken["judge-prefers-longer"].loc["verbosity", "fires"] = False
    proof = calibration_check(broken)
    assert not proof.loc["self_preference", "proven"]
    assert not proof.loc["self_preference", "quiet_on_control"]
    assert not proof.loc["verbosity", "proven"]
    assert not proof.loc["verbosity", "fires_on_planted"]
    assert proof.loc[["agreement", "rank_correlation", "position"], "proven"].all()
    probes = broken["judge-control"].assign(proven=proof["proven"])
    fig = plot_judge_probes(probes, who="planted:judge-control (scripted, not an LLM)")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "verbosity (not proven)" in labels and "self_preference (not proven)" in labels
    assert "position" in labels
