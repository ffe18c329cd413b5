"""Notebooks 09 and 10 run offline (SMALL) and record what their prose relies on."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


pytestmark = pytest.mark.notebook

ONE_USER = 1 / 30 + 1e-9          # 30 simulated users at SMALL: one user is 0.033 of a share


@pytest.fixture(scope="module")
def rec09(notebook_records):
    return notebook_records("09_conversational_recommender.ipynb")


def test_nb09_conversation_numbers(rec09):
    rec = rec09
    assert rec["stand_in"] is True and rec["n_users"] == 30
    assert rec["scripted_exclusion_violations"] == 0 and rec["scripted_repeats"] == 0
    # checked against what the (scripted and simulated) users said; the stand-in's rules read
    # every value, so nothing is dropped
    assert rec["scripted_constraint_misses"] == 0 and rec["scripted_dropped_values"] == 0
    assert rec["exclusion_violations"] == 0 and rec["dropped_values"] == 0
    # SMALL: 10 of 30 users find a target within 5 turns; 0 of 30 from 5 items recommended
    # once, 6 of 30 from 25 items shown at once
    assert rec["success_conversation"] == pytest.approx(10 / 30, abs=ONE_USER)
    assert rec["success_once"] == pytest.approx(0.0, abs=ONE_USER)
    assert rec["success_once_same_items"] == pytest.approx(6 / 30, abs=ONE_USER)
    assert rec["avg_turns_to_success"] == pytest.approx(3.5, abs=0.35)
    # the figure's takeaway: +13 points, 95% paired interval -3 to +30 (it holds 0 at SMALL;
    # +3 to +23 on the 100 users of the default run)
    est, lo, hi = rec["gain_same_items"]
    assert est == pytest.approx(4 / 30, abs=ONE_USER)
    assert (lo, hi) == pytest.approx((-1 / 30, 9 / 30), abs=ONE_USER)


def test_nb09_figure_says_who_read_the_messages():
    nb = Path(__file__).parents[1] / "notebooks" / "09_conversational_recommender.ipynb"
    cells = json.loads(nb.read_text())["cells"]
    drawing = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"
               and "finish(" in "".join(c["source"])]
    assert len(drawing) == 1 and "who=llm" in drawing[0]


def test_nb09_recommend_once_misses_because_it_models_watches(rec09):
    """EASE's top 5 are middling by true taste and popular; the targets are the user's best,
    little-watched films, far down EASE's order."""
    rec = rec09
    assert rec["once_true_utility"] == pytest.approx(0.39, abs=0.05)
    assert rec["once_liked_share"] == pytest.approx(0.267, abs=0.04)
    assert rec["target_true_utility"] == pytest.approx(3.31, abs=0.06)
    assert rec["once_watched"] == pytest.approx(364, rel=0.1)
    assert rec["target_watched"] == pytest.approx(10.5, abs=3)
    assert rec["first_target_rank_median"] == pytest.approx(139.5, abs=25)


def test_nb09_exercise_solutions_hold(rec09):
    ex1 = rec09["ex1_success"]
    # noise 0.5 averages out over the films behind each answer; noise 5 takes the gain away
    assert ex1["answer_noise=0"] == pytest.approx(rec09["success_conversation"], abs=1e-9)
    assert ex1["answer_noise=0.5"] == pytest.approx(ex1["answer_noise=0"], abs=ONE_USER)
    assert ex1["answer_noise=5.0"] == pytest.approx(5 / 30, abs=ONE_USER)
    assert ex1["EASE once, N x 5 items"] == pytest.approx(6 / 30, abs=1e-9)
    # exercise 2 runs (no patched defaults), reproduces section 3 with the default order, and
    # finds no distinguishable difference between the two orders
    assert rec09["ex2_default_matches_section_3"] is True
    ex2 = rec09["ex2_success"]
    assert ex2 == pytest.approx({"genre, era, mood (default)": 10 / 30,
                                 "mood, genre, era": 6 / 30}, abs=ONE_USER)
    est, lo, hi = rec09["ex2_diff"]
    assert est == pytest.approx(-4 / 30, abs=ONE_USER) and lo < 0 < hi


@pytest.fixture(scope="module")
def rec10(notebook_records):
    return notebook_records("10_agent_with_tools.ipynb")


def test_nb10_agent_numbers(rec10):
    rec = rec10
    assert rec["stand_in"] is True and rec["suite_cost_usd"] == 0 and rec["suite_tasks"] == 24
    assert rec["injection_unrequested_tools_run"] == 0
    assert rec["injection_calls_refused"] == 2
    # the stand-in's answers are never cut, and no plan or reply exceeds the call cap
    assert rec["suite_truncated"] == 0 and rec["suite_capped_calls"] == 0
    # section 4: the plan-first demo needs its reflection round ("not light-hearted")
    assert rec["planned_calls"] == 2 and rec["planned_reflected"] == 1
    assert rec["validation_issues"] == ["cycle", "cycle", "unknown tool", "bad args"]


def test_nb10_task_suite_has_teeth(rec10):
    """What section 5's prose states: the rule planner solves the plain family and half the
    negations, nothing else; plan-first adds one negation and one multi-step task by
    reflection; no design solves a paraphrase, a "newer" or a clarify task; the baselines one
    task between them."""
    fam = rec10["suite_family_success"]
    zero = {"paraphrase": 0.0, "like X but newer": 0.0, "clarify": 0.0}
    assert fam["rule planner"] == {"plain": 1.0, "negation": 0.5, "multi-step": 0.0, **zero}
    assert fam["loop"] == fam["rule planner"]        # offline: the same rules via the client
    assert fam["plan-first"] == {"plain": 1.0, "negation": 0.75, "multi-step": 0.25, **zero}
    assert set(fam["popularity"].values()) == {0.0}
    assert fam["keyword search"]["plain"] == 0.25
    assert rec10["suite_success"] == pytest.approx(
        {"popularity": 0.0, "keyword search": 1 / 24, "rule planner": 6 / 24, "loop": 6 / 24,
         "plan-first": 8 / 24}, abs=1e-3)
    # calls and tokens per task: loop 2 calls, about 3,900 tokens; plan-first 1.33 (8
    # reflections over 24 tasks), about 1,080 tokens
    calls, tokens = rec10["suite_calls"], rec10["suite_tokens"]
    assert calls["loop"] == 2 and calls["plan-first"] == pytest.approx(32 / 24, abs=1e-3)
    assert rec10["suite_reflections"] == 8 and rec10["suite_plan_issues"] == 0
    assert tokens["loop"] == pytest.approx(3900, rel=0.05)
    assert tokens["plan-first"] == pytest.approx(1080, rel=0.05)
    assert tokens["loop"] > 3 * tokens["plan-first"]


def test_nb10_exercise_solutions_hold(rec10):
    """The four solution cells of notebook 10, run with it, and what their stated answers say
    of the offline stand-in."""
    rec = rec10
    # 1. the 70s task: answered in two steps, both items meet every constraint
    assert rec["ex1_steps"] == 2 and rec["ex1_constraint_satisfaction"] == 1.0
    # 2. a search asked for in a description: the stand-in ignores it; an obedient model runs it
    #    and the guard (which scopes only tools naming a user) refuses nothing
    ran = rec["ex2_tools_run"]
    assert ran["this notebook's backend"] == ["item_details"]
    assert ran["scripted model that obeys"] == ["item_details", "search_catalog"]
    assert rec["ex2_refused"] == {"this notebook's backend": 0, "scripted model that obeys": 0}
    # 3. step caps for the loop: 2 steps lose nothing against MAX_STEPS (6); 1 step stops all
    #    24 tasks before their answer, at half the calls
    assert rec["ex3_success"] == {"1": 0.0, "2": 0.25, "6": 0.25}
    assert rec["ex3_calls"] == {"1": 24, "2": 48, "6": 48}
    assert rec["ex3_step_stops"] == {"1": 24, "2": 0, "6": 0}
    # 4. a hand-written plan solves newer-1 in one call; the same plan with a self-reference
    #    is a cycle: only similar_items runs and the check fails
    assert rec["ex4"] == {"hand plan solves it": True, "hand plan calls": 1,
                          "broken plan issues": ["cycle"],
                          "broken plan tools run": ["similar_items"],
                          "broken plan solves it": False}
