"""Notebook 05 runs end to end against a local OpenAI-compatible server with a planted key:
the key is used on the wire, yet appears nowhere in the executed notebook or the cache file;
the numbers the notebook records hold."""
from __future__ import annotations

import secrets

import pytest

from conftest import NOTEBOOKS
from perso_kit.llm.testing import LocalServer
from perso_kit.report import read_records
from perso_kit.tour import run_notebook

PLANTED = "sk-planted-nb-" + secrets.token_hex(16)


@pytest.mark.notebook
def test_notebook_05_with_a_planted_key(tmp_path, monkeypatch):
    with LocalServer(api_key=PLANTED) as server:
        env = {"PERSO_KIT_LLM_BACKEND": "compatible", "OPENAI_BASE_URL": server.base_url,
               "OPENAI_API_KEY": PLANTED, "PERSO_KIT_CACHE_DIR": str(tmp_path / "cache"),
               "PERSO_KIT_LLM_CACHE": str(tmp_path / "cache" / "llm_cache.sqlite")}
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        run = run_notebook(NOTEBOOKS / "05_llm_basics_for_personalization.ipynb",
                           tmp_path / "out", {"SMALL": True}, timeout=300)
        assert run.status == "ok", run.error
        used = [r for r in server.requests
                if r["headers"].get("authorization") == f"Bearer {PLANTED}"]
        assert len(used) > 20   # the key really went to the server on every call
    executed = run.output.read_text(encoding="utf-8")
    cache = (tmp_path / "cache" / "llm_cache.sqlite").read_bytes().decode("latin-1")
    for where, text in {"executed notebook": executed, "cache file": cache}.items():
        assert PLANTED not in text and PLANTED[-16:] not in text, f"key leaked into the {where}"
    assert "OpenAI-compatible local server" in executed    # the banner names the backend

    rec = read_records(run.output)
    assert rec["stand_in"] is True                          # the local server runs the stand-in
    assert rec["prompt_tokens_few_shot"] > 2 * rec["prompt_tokens_zero_shot"]
    assert rec["distinct_rankings_t0"] == 1 and rec["distinct_rankings_t1"] > 1
    assert 0 < rec["budget_refused"] < rec["budget_calls"]
    assert rec["budget_spent_usd"] <= rec["budget_usd"]
    assert rec["cache_second_pass_share"] == 1.0 and rec["batch_failed"] == 0
    # the stand-in fabricates every second title, and a few recombinations exist by chance
    assert 0.4 <= rec["grounding_rate"] <= 0.8 and rec["titles_generated"] == 8 * 5
