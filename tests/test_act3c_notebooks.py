"""Notebooks 09 and 10 run offline (SMALL) and record what their prose relies on."""
from __future__ import annotations

import pytest

from perso_kit.report import read_records

pytestmark = pytest.mark.notebook


def test_nb09_conversation_numbers(notebook_runs):
    run = notebook_runs("09_conversational_recommender.ipynb")
    assert run.status == "ok", run.error
    rec = read_records(run.output)
    assert rec["stand_in"] is True and rec["n_users"] == 30
    assert rec["scripted_exclusion_violations"] == 0 and rec["scripted_repeats"] == 0
    # turn 1 is the recommend-once list; asking back must beat showing as many items at once
    assert rec["success_conversation"] >= rec["success_once"]
    assert rec["success_conversation"] > rec["success_once_same_items"]
    assert 1 <= rec["avg_turns_to_success"] <= 5


def test_nb10_agent_numbers(notebook_runs):
    run = notebook_runs("10_agent_with_tools.ipynb")
    assert run.status == "ok", run.error
    rec = read_records(run.output)
    assert rec["stand_in"] is True and rec["suite_cost_usd"] == 0
    assert 0 <= rec["suite_constraint_satisfaction"] <= 1
    assert rec["suite_steps"] >= 2 and rec["suite_tokens"] > 0
    assert rec["injection_unrequested_tools_run"] == 0
    assert rec["injection_calls_refused"] == 2
