"""Notebooks 07 (LLM as ranker) and 08 (LLM as explainer) run offline and record the mechanics
their lessons rest on (executed once with SMALL=True and the offline stand-in)."""
from __future__ import annotations

import pytest

from perso_kit.report import read_records

pytestmark = pytest.mark.notebook


def test_nb07_ranker_mechanics(notebook_runs):
    run = notebook_runs("07_llm_as_ranker.ipynb")
    assert run.status == "ok", run.error
    rec = read_records(run.output)
    assert rec["backend_is_stand_in"] is True and rec["n_users"] == 8
    for key in ("ndcg_retriever", "ndcg_zero_shot", "ndcg_few_shot", "ndcg_recency",
                "ndcg_pointwise"):
        assert 0.0 <= rec[key] <= 1.0
    # the stand-in always answers valid candidate ids; planted breakage is counted (3 of 8)
    assert rec["parse_failure_rate"] == 0 and rec["hallucination_rate"] == 0
    assert rec["planted_failure_rate"] == pytest.approx(3 / 8)
    # pointwise: one call per candidate (10 with SMALL), more tokens than one listwise call
    assert rec["calls_pointwise"] == 10
    assert rec["tokens_pointwise"] > 3 * rec["tokens_zero_shot"]
    # the probe shows the item at every one of the 10 positions; permutations triple the calls
    assert rec["probe_positions"] == 10
    assert rec["probe_calls_perm"] == 3 * rec["probe_calls"] == 3 * 4 * 10
    assert rec["top3_gap"] == pytest.approx(rec["top3_first"] - rec["top3_last"])
    assert rec["popularity_retriever"] > 0 and rec["popularity_zero_shot"] > 0


def test_nb08_explainer_mechanics(notebook_runs):
    run = notebook_runs("08_llm_as_explainer.ipynb")
    assert run.status == "ok", run.error
    rec = read_records(run.output)
    assert rec["backend_is_stand_in"] is True and rec["n_explanations"] == 8 * 3
    # every planted false citation / invented title / false attribute is caught
    assert rec["planted_caught"] == 1.0 and rec["planted_n"] == 30
    assert rec["faithful_template"] == 1.0 and rec["call_ok_llm"] == 1.0
    for key in ("faithful_llm", "history_ok_llm", "attributes_ok_llm", "top_driver_template",
                "top_driver_llm", "driver_precision_llm"):
        assert 0.0 <= rec[key] <= 1.0
