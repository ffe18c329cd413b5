"""Notebook 06 at SMALL=True on the demo world, offline: the directions it records."""
from __future__ import annotations

import pytest

from perso_kit.report import read_records

NB = "06_llm_as_knowledge_base_and_content_interpreter.ipynb"


@pytest.fixture(scope="module")
def rec(notebook_runs):
    run = notebook_runs(NB)
    assert run.status == "ok", run.error
    return read_records(run.output)


@pytest.mark.notebook
def test_new_items_reached_by_content_and_hybrid_not_als(rec):
    assert rec["attribute_backend_offline"] is True
    assert rec["recall_new_content"] > rec["recall_new_als"] + 0.1
    assert rec["recall_new_hybrid"] > rec["recall_new_als"] + 0.1
    assert rec["ndcg_new_hybrid"] > rec["ndcg_new_als"]
    assert rec["share_new_als"] == 0
    assert rec["share_new_content"] > 0 and rec["share_new_hybrid"] > 0


@pytest.mark.notebook
def test_hybrid_within_a_few_percent_of_als_on_warm_users(rec):
    assert rec["recall_warm_hybrid"] >= 0.94 * rec["recall_warm_als"]
    assert rec["ndcg_warm_hybrid"] >= 0.94 * rec["ndcg_warm_als"]
    assert rec["recall_warm_content"] < rec["recall_warm_als"]   # content alone is no substitute


@pytest.mark.notebook
def test_text_features_measured_and_offline_costs_nothing(rec):
    assert rec["ndcg_ltr_text"] > rec["ndcg_ltr"]
    assert 0 < rec["genre_precision"] <= 1 and 0 < rec["genre_recall"] <= 1
    assert rec["llm_calls"] > 300          # 300 attribute requests + profiles (SMALL)
    assert rec["llm_cost_usd"] == 0.0
