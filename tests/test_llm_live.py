"""Opt-in tests against a real OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio,
OpenAI itself). Skipped unless PERSO_KIT_LIVE_BASE_URL names one, e.g.::

    PERSO_KIT_LIVE_BASE_URL=http://localhost:11434/v1 PERSO_KIT_LIVE_MODEL=llama3.2 \\
        python -m pytest -m live tests/test_llm_live.py

``PERSO_KIT_LIVE_API_KEY`` is sent as the key if set; ``PERSO_KIT_LIVE_EMBED_MODEL`` enables
the embedding test. The assertions hold whatever the model answers: they check the plumbing.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from perso_kit.llm import get_llm

BASE_URL = os.environ.get("PERSO_KIT_LIVE_BASE_URL")
pytestmark = [pytest.mark.live,
              pytest.mark.skipif(not BASE_URL, reason="set PERSO_KIT_LIVE_BASE_URL to run")]


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    return get_llm("compatible", base_url=BASE_URL, model=os.environ.get("PERSO_KIT_LIVE_MODEL"),
                   api_key=os.environ.get("PERSO_KIT_LIVE_API_KEY"),
                   embed_model=os.environ.get("PERSO_KIT_LIVE_EMBED_MODEL"),
                   cache_path=str(tmp_path_factory.mktemp("live") / "cache.sqlite"),
                   timeout_s=120)


def test_chat_then_cache(llm):
    r = llm.chat("Name one movie released in 1999. Answer with the title only.", max_tokens=30)
    assert r.ok, r.error
    assert r.text.strip() and not r.stand_in and r.usage.prompt_tokens > 0
    again = llm.chat("Name one movie released in 1999. Answer with the title only.",
                     max_tokens=30)
    assert again.cached and again.text == r.text and again.cost_usd == 0


def test_structured_output_is_parsed_or_counted(llm):
    schema = {"title": "ranking", "type": "object", "required": ["ranking"],
              "properties": {"ranking": {"type": "array", "items": {"type": "integer"}}}}
    r = llm.chat("Rank these by how scary they are, most first. Reply as JSON.\n"
                 "[1] Toy Story (1995)\n[2] Alien (1979)\n[3] The Shining (1980)",
                 json_schema=schema, max_tokens=200)
    assert (r.ok and isinstance(r.data["ranking"], list)) or r.error_kind == "invalid_json"


def test_tool_call_or_text(llm):
    tools = [{"name": "search_catalog", "description": "Search the movie catalog",
              "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                             "required": ["query"]}}]
    r = llm.chat("Find heist movies in the catalog.", tools=tools, max_tokens=200)
    assert r.ok or r.error_kind in ("bad_request", "empty"), r.error
    for call in r.tool_calls:
        assert call.name == "search_catalog" or not call.valid


def test_batch_keeps_order(llm):
    replies = llm.map([f"Reply with the number {i} and nothing else." for i in range(4)],
                      concurrency=2, progress=False)
    assert len(replies) == 4 and all(r.ok or r.error for r in replies)
    assert sum(r.ok for r in replies) >= 3, [r.error for r in replies]


def test_embeddings(llm):
    if not llm.settings.embed_model:
        pytest.skip("set PERSO_KIT_LIVE_EMBED_MODEL")
    v = llm.embed(["a space horror film", "a romantic comedy"])
    assert v.shape[0] == 2 and np.isfinite(v).all()


def test_the_live_calls_succeeded(llm):
    """Runs last: most of this module's calls got a valid answer (not only code that ran)."""
    from live_checks import assert_calls_succeeded
    assert_calls_succeeded(llm)
