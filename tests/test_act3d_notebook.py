"""Notebook 11 (the challenges of LLM personalization): the numbers it records."""
import json

import pytest

from perso_kit import costs
from perso_kit.llm.pricing import PriceTable
from perso_kit.report import read_records

NB = "11_challenges_of_llm_personalization.ipynb"


@pytest.fixture(scope="module")
def rec(notebook_runs):
    run = notebook_runs(NB)
    assert run.status == "ok", run.error
    return read_records(run.output)


def test_offline_by_default_and_labelled(rec, notebook_runs):
    assert rec["stand_in"] is True and rec["memo_backend_is_stand_in"] is True
    text = json.dumps(json.loads(notebook_runs(NB).output.read_text())["cells"])
    assert "LLM quality: offline stand-in, not an LLM" in text      # the frontier's title note
    assert "OFFLINE STAND-IN (not an LLM)" in text                  # the memorization probe


def test_cache_hits_cost_zero_and_send_nothing(rec):
    assert rec["rerun_calls"] > 0
    assert rec["rerun_cache_hits"] == rec["rerun_calls"]
    assert rec["rerun_sent"] == 0
    assert rec["rerun_client_cost_usd"] == 0.0
    assert rec["rerun_saved_share"] == pytest.approx(1.0)


def test_titles_only_mode_sent_no_user_id(rec):
    assert rec["titles_only_sent"] == 1 and rec["titles_only_refused"] == 1
    assert rec["titles_only_user_id_requests"] == 0
    assert rec["main_requests_sent"] > 0 and rec["main_user_id_requests"] == 0


def test_cost_at_scale_matches_hand_computation_and_is_linear(rec):
    price = PriceTable().lookup(rec["price_model"])
    assert (price.input_per_1m, price.output_per_1m) == (rec["price_in_per_1m"],
                                                         rec["price_out_per_1m"])
    p, c = rec["prompt_tokens_zero_shot"], rec["completion_tokens_zero_shot"]
    by_hand = 1_000_000 * (p * price.input_per_1m + c * price.output_per_1m) / 1e6
    assert rec["cost_million_zero_shot"] == pytest.approx(by_hand)
    assert rec["cost_million_zero_shot_by_hand"] == pytest.approx(by_hand)
    usage = {"zs": {"prompt_tokens_per_user": p, "completion_tokens_per_user": c}}
    small = costs.cost_at_scale(usage, n_users=1000, models=[rec["price_model"]])
    assert 1000 * small.loc[0, "cost_usd"] == pytest.approx(rec["cost_million_zero_shot"])
    assert rec["cost_million_ease"] == 0.0


def test_calls_and_tokens_follow_the_prompt_designs(rec):
    assert rec["calls_zero_shot"] == 1.0 and rec["calls_perms"] == 3.0
    assert rec["calls_pointwise"] == 20.0                 # one call per candidate
    assert rec["calls_explanations"] == 3.0               # one call per explained item
    assert rec["calls_conversation"] == 3.0               # one call per message
    assert rec["prompt_tokens_zero_shot"] > 100
    assert rec["tokens_pointwise"] > 5 * rec["prompt_tokens_zero_shot"]
    assert rec["spread_models"] > 10 and rec["spread_prompts"] > 5


def test_sampled_candidates_inflate_the_hit_rate(rec):
    assert rec["hit_random_expected"] == pytest.approx(0.5)
    assert rec["hit_sampled_with_answer"] > rec["hit_full_protocol"]
    assert 0 <= rec["memo_completed_share"] <= 1 and rec["memo_titles"] == 8
