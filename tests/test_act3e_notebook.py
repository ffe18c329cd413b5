"""Notebook 11 (the LLM as personalized content writer): the numbers it records, the claims of
its prose and of its exercise solutions (SMALL: 12 users, offline stand-in)."""
import json
from pathlib import Path

import pytest

from perso_kit.llm.pricing import PriceTable

NB = "11_personalized_content.ipynb"
pytestmark = pytest.mark.notebook


def _cells():
    return json.loads((Path(__file__).parents[1] / "notebooks" / NB).read_text())["cells"]


def test_offline_by_default_and_every_figure_says_who_answered(rec):
    assert rec["backend_is_stand_in"] is True and rec["llm_replay_misses"] == 0
    drawing = ["".join(c["source"]) for c in _cells() if c["cell_type"] == "code"
               and "plot_" in "".join(c["source"])]
    assert len(drawing) == 1 and all("who=llm" in src for src in drawing)


def test_the_stand_in_and_the_template_pass_every_check(rec):
    """The stand-in copies the prompt's facts (grounded, no leak by construction, as the prose
    says); both sources are personal with an interval above 0."""
    assert rec["n_users"] == 12 and rec["failed_llm"] == 0 and rec["call_ok_llm"] == 1.0
    assert rec["grounded_template"] == rec["grounded_llm"] == 1.0 and rec["invented_llm"] == 0
    assert rec["leak_free_template"] == rec["leak_free_llm"] == 1.0 and rec["leaks_llm"] == 0
    assert rec["llm_texts_failing"] == 0
    assert rec["gap_template"] == pytest.approx(0.185, abs=0.01)
    assert rec["gap_llm"] == pytest.approx(0.129, abs=0.01)
    assert rec["gap_llm_interval"][0] > 0 and rec["gap_template_interval"][0] > 0
    assert rec["personalized_llm"] is True
    assert rec["facts_per_text_llm"] == pytest.approx(20.2, abs=0.5)


def test_each_planted_writer_trips_its_own_check_only(rec):
    fires = rec["planted_fires"]
    checks = ("grounding fires", "personalization fires", "leakage fires")
    assert {k: [c for c in checks if v[c]] for k, v in fires.items()} == {
        "writer-control": [], "writer-invents": ["grounding fires"],
        "writer-same-for-everyone": ["personalization fires"],
        "writer-leaks": ["leakage fires"], "writer-malformed": []}
    assert fires["writer-malformed"]["failed calls"] == 12
    assert sum(v["failed calls"] for v in fires.values()) == 12
    assert rec["planted_invented"] == 24          # two per text: the check-your-answer cell
    assert rec["planted_leaks"] == 12 and rec["planted_same_gap"] == 0.0
    assert rec["llm_failed"] == rec["llm_invalid_json"] == 12      # only the malformed writer


def test_cost_at_scale_is_tokens_times_the_price(rec):
    p, c = rec["prompt_tokens_llm"], rec["completion_tokens_llm"]
    assert p == pytest.approx(350, abs=15) and c == pytest.approx(76, abs=5)
    for model, usd in rec["cost_year_million_usd"].items():
        price = PriceTable().lookup(model)
        by_hand = 52 * 1_000_000 * (p * price.input_per_1m + c * price.output_per_1m) / 1e6
        assert usd == pytest.approx(by_hand, abs=0.01), model


def test_exercise_solutions_hold(rec):
    # 1. with no history in the template, the gap is gone: its interval holds 0
    lo, hi = rec["ex1_gap_interval"]
    assert rec["ex1_personalized"] is False and lo <= 0 <= hi
    assert rec["ex1_gap"] == pytest.approx(-0.016, abs=0.01)
    # 2. a held-out title written without its year, article moved, is still found
    assert rec["ex2_leak_free"] == 0.0 and rec["ex2_leaks"] == 12


def test_the_notebook_frame(run):
    cells = _cells()
    ids = [c.get("id") for c in cells]
    assert ids[1] == "install-the-kit" and "parameters" in cells[2]["metadata"]["tags"]
    solutions = [c for c in cells if "solution" in c.get("metadata", {}).get("tags", [])]
    assert len(solutions) == 2
    assert ids.index("check-11") < ids.index("c11-recorded") < ids.index("c11-measured")
    text = json.dumps(cells)
    assert "not an LLM" in text and "planted oracle" in text
