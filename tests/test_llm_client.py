"""Choosing a backend from the environment, what goes on the wire for each, privacy guard,
usage tables and the record of what was sent."""
from __future__ import annotations

import json

import pytest

from perso_kit.llm import get_llm, privacy, tool_result_message
from perso_kit.llm.testing import LocalServer

IDS = {"title": "ids", "type": "object", "required": ["ids"],
       "properties": {"ids": {"type": "array", "items": {"type": "integer"}}}}
ENV = ("PERSO_KIT_LLM_BACKEND", "OPENAI_API_KEY", "OPENAI_BASE_URL", "PERSO_KIT_LLM_MODEL",
       "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "PERSO_KIT_LLM_REPLAY",
       "PERSO_KIT_LLM_BUDGET_USD", "PERSO_KIT_EMBED_MODEL", "OPENAI_API_VERSION")


@pytest.fixture()
def env(monkeypatch):
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PERSO_KIT_LLM_CACHE", "off")
    return monkeypatch


@pytest.fixture(scope="module")
def server():
    with LocalServer() as s:
        yield s


@pytest.fixture()
def srv(server):
    server.reset()
    return server


def test_nothing_configured_means_the_offline_stand_in(env):
    llm = get_llm()
    assert llm.backend == "offline" and llm.model == "offline-stand-in" and llm.cache is None


def test_backend_inferred_from_the_variables(env, tmp_path):
    env.setenv("OPENAI_API_KEY", "sk-test-inferred-000000")
    llm = get_llm()
    assert (llm.backend, llm.model, llm.label) == ("openai", "gpt-4o-mini", "OpenAI · gpt-4o-mini")
    assert llm.settings.embed_model == "text-embedding-3-small"
    env.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    env.setenv("PERSO_KIT_LLM_MODEL", "llama3.2")
    llm = get_llm()
    assert llm.backend == "compatible" and llm.settings.is_local
    assert llm.label == "OpenAI-compatible local server at http://localhost:11434/v1 · llama3.2"
    env.setenv("AZURE_OPENAI_ENDPOINT", "https://example.openai.azure.com")
    env.setenv("AZURE_OPENAI_API_KEY", "azure-test-key-000000")
    llm = get_llm()
    assert llm.backend == "azure" and llm.label == "Azure OpenAI · deployment llama3.2"
    assert llm.settings.api_version == "2024-10-21"


def test_missing_settings_say_what_to_set(env):
    with pytest.raises(ValueError, match="OPENAI_API_KEY.*api_key_box"):
        get_llm("openai")
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        get_llm("compatible")
    with pytest.raises(ValueError, match="AZURE_OPENAI_ENDPOINT"):
        get_llm("azure")
    with pytest.raises(ValueError, match="PERSO_KIT_LLM_REPLAY"):
        get_llm("replay")
    with pytest.raises(ValueError, match="choose one of"):
        get_llm("gpt")
    env.setenv("PERSO_KIT_LLM_BUDGET_USD", "five dollars")
    with pytest.raises(ValueError, match="number of dollars"):
        get_llm()


def test_env_budget_is_shared_by_the_process(env):
    env.setenv("PERSO_KIT_LLM_BUDGET_USD", "0.123")
    a, b = get_llm(), get_llm()
    assert a.budget is b.budget and a.budget.limit_usd == 0.123
    assert get_llm(budget_usd=0.123).budget is not a.budget   # an explicit cap is private
    assert "budget $0.12" in str(a.banner())


def test_compatible_server_wire_format_and_first_served_model(env, srv):
    llm = get_llm("compatible", base_url=srv.base_url)
    assert llm.model == "offline-stand-in" and any("first the server" in n for n in llm.notices)
    llm.chat("hi", max_tokens=20, seed=7, top_k=5)   # top_k is not an OpenAI parameter
    body = srv.requests[-1]["body"]
    assert body["max_tokens"] == 20 and body["seed"] == 7 and body["top_k"] == 5
    assert body["temperature"] == 0.0 and "Bearer not-needed" in str(srv.requests[-1]["headers"])


def test_openai_wire_format_for_reasoning_models(env, srv):
    llm = get_llm("openai", base_url=srv.base_url, api_key="sk-test-0000000000", model="o4-mini")
    llm.chat("hi", max_tokens=30)
    body = srv.requests[-1]["body"]
    assert body["max_completion_tokens"] == 30 and "max_tokens" not in body
    assert "temperature" not in body and any("temperature" in n for n in llm.notices)


def test_azure_goes_to_the_deployment_with_its_api_version(env, srv):
    llm = get_llm("azure", model="my-deployment", azure_endpoint=srv.base_url.removesuffix("/v1"),
                  api_key="azure-key-test-000000", api_version="2024-10-21")
    r = llm.chat("hello azure")
    assert r.ok and r.backend == "azure"
    req = srv.requests[-1]
    assert req["path"] == ("/openai/deployments/my-deployment/chat/completions"
                           "?api-version=2024-10-21")
    assert req["headers"].get("api-key") == "azure-key-test-000000"


def test_response_format_rejected_falls_back_to_a_prompt_instruction(env, srv):
    llm = get_llm("compatible", base_url=srv.base_url, model="m")
    srv.plan("*", ["400:response_format is not supported by this server"])
    r = llm.chat("Rank: [4] Heat (1995)\n[2] Fargo (1996)", json_schema=IDS)
    assert r.ok and r.data == {"ids": [4, 2]} and r.attempts == 2
    first, second = srv.requests[-2]["body"], srv.requests[-1]["body"]
    assert "response_format" in first and "response_format" not in second
    assert second["messages"][0]["role"] == "system" and "json schema" in second["messages"][0][
        "content"]
    assert llm.structured_mode == "prompt"   # remembered for the next calls


def test_titles_only_refuses_user_data_and_sends_nothing(env, demo):
    llm = get_llm("offline", titles_only=True)
    uid = int(demo.users["user_id"].iloc[0])
    r = llm.chat(f"user_id: {uid}, age: 31\nLiked: Alien (1979)")
    assert r.error_kind == "privacy" and "nothing was sent" in r.error and llm.sent_log().empty
    safe = privacy.describe_history(demo, uid, n=5)
    assert [ln[:2] for ln in safe.split("\n")] == ["- "] * 5 and "user" not in safe
    assert llm.chat("Recommend 3 movies.\n" + safe).ok
    full = privacy.describe_history(demo, uid, n=5, titles_only=False, ratings=True)
    assert full.startswith(f"user_id: {uid}") and "rated" in full
    assert get_llm("offline").chat(full).ok        # allowed when the mode is off ...
    audit = privacy.audit_sent(get_llm("offline").sent_log())
    assert audit.loc[0, "requests"] == 0
    leaky = get_llm("offline")
    leaky.chat(full)
    leaky.chat(safe)
    audit = privacy.audit_sent(leaky.sent_log())    # ... and the audit counts it
    assert audit.set_index("what").loc["user id", "requests"] == 1
    assert audit.set_index("what").loc["user id", "share"] == 0.5


def test_sent_log_records_bodies_not_cache_hits(env, tmp_path):
    llm = get_llm("offline", cache_path=str(tmp_path / "c.sqlite"))
    llm.chat("first question")
    llm.chat("first question")  # a cache hit: nothing leaves
    llm.chat("second question", temperature=0.5)
    log = llm.sent_log()
    assert len(log) == 2 and list(log.columns) == ["time", "backend", "server", "model", "body"]
    assert json.loads(log.loc[1, "body"])["temperature"] == 0.5
    path = llm.save_sent_log(tmp_path / "sent.jsonl")
    assert len(path.read_text().splitlines()) == 2


def test_usage_table_totals_and_map_inputs(env):
    llm = get_llm("offline", price_as="gpt-4o-mini")
    replies = llm.map(["a question about space", [{"role": "user", "content": "hi"}],
                       {"messages": "pick: [1] a\n[2] b", "json_schema": IDS}], progress=False)
    assert [r.ok for r in replies] == [True, True, True] and replies[2].data == {"ids": [1, 2]}
    llm.embed([f"some text about thing number {w}" for w in "abcdefghijklmnopqrstuvwxy"],
              fit=True)
    table = llm.usage_table()
    assert table["backend"].tolist() == ["offline", "offline", "total"]
    chat = table.iloc[0]
    assert chat["calls"] == 3 and "priced as gpt-4o-mini" in chat["note"]
    assert chat["cost_usd"] == pytest.approx(
        (chat["prompt_tokens"] * 0.15 + chat["completion_tokens"] * 0.60) / 1e6)
    assert table.iloc[2]["calls"] == 4
    with pytest.raises(TypeError, match="each request"):
        llm.map([42])


def test_conversation_helpers(env):
    llm = get_llm("offline")
    tools = [{"name": "search_catalog", "description": "search the catalog",
              "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                             "required": ["query"]}}]
    r = llm.chat("search the catalog for heists", tools=tools)
    msg = r.as_message()
    assert msg["role"] == "assistant" and msg["tool_calls"][0]["function"]["name"] == \
        "search_catalog"
    back = tool_result_message(r.tool_calls[0], {"results": ["Heat (1995)"]})
    assert back == {"role": "tool", "tool_call_id": r.tool_calls[0].id,
                    "content": '{"results": ["Heat (1995)"]}'}
    bad = llm.chat([{"content": "no role"}])
    assert bad.error_kind == "error" and "role" in bad.error


def test_unknown_price_is_nan_and_said_in_the_table(env, srv, monkeypatch):
    monkeypatch.setattr(srv, "model", "my-hosted-model")
    llm = get_llm("openai", base_url=srv.base_url, api_key="sk-test-0000000000",
                  model="my-hosted-model")
    r = llm.chat("hello")
    assert r.ok and r.cost_usd != r.cost_usd          # NaN: unknown, not zero
    assert "price unknown" in llm.usage_table().loc[0, "note"] and llm.spent_usd == 0.0


def test_a_500_naming_json_object_switches_to_llama_cpps_schema_form(env, srv):
    # what llama-cpp-python's server answers to OpenAI's json_schema response_format
    llm = get_llm("compatible", base_url=srv.base_url, model="m")
    srv.plan("*", ["500:1 validation error: response_format.type Input should be 'text' or "
                   "'json_object'"])
    r = llm.chat("Rank: [4] Heat (1995)\n[2] Fargo (1996)", json_schema=IDS)
    assert r.ok and r.data == {"ids": [4, 2]}
    assert r.attempts == 2          # the 500 is not retried: the form is switched at once
    second = srv.requests[-1]["body"]
    assert second["response_format"]["type"] == "json_object"
    assert second["response_format"]["schema"]["required"] == ["ids"]
    assert llm.structured_mode == "json_object"   # remembered for the next calls
    assert "json_object form" in llm.usage_table()["note"].iloc[0]


def test_json_mode_can_be_forced_from_the_environment(env, srv, monkeypatch):
    monkeypatch.setenv("PERSO_KIT_LLM_JSON_MODE", "prompt")
    llm = get_llm("compatible", base_url=srv.base_url, model="m")
    assert llm.structured_mode == "prompt"
    r = llm.chat("Rank: [4] Heat (1995)\n[2] Fargo (1996)", json_schema=IDS)
    assert r.ok and "response_format" not in srv.requests[-1]["body"]
    monkeypatch.setenv("PERSO_KIT_LLM_JSON_MODE", "grammar")
    with pytest.raises(ValueError, match="PERSO_KIT_LLM_JSON_MODE"):
        get_llm("compatible", base_url=srv.base_url, model="m")


def test_every_request_carries_a_max_tokens(env, srv):
    llm = get_llm("compatible", base_url=srv.base_url, model="m", cache_path="off")
    llm.chat("hello")
    llm.chat("hello again", max_tokens=20)
    assert [r["body"]["max_tokens"] for r in srv.requests[-2:]] == [1024, 20]


def test_a_chat_only_server_embeds_with_the_offline_vectorizer_and_says_so(env, srv):
    llm = get_llm("compatible", base_url=srv.base_url, model="m", cache_path="off")
    texts = ["a space western", "a western in space", "a romantic comedy in Paris"]
    v = llm.embed(texts, fit=True)
    assert v.shape[0] == 3 and srv.requests == []          # nothing was sent
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])          # the vectors carry meaning
    assert any("PERSO_KIT_EMBED_MODEL" in n for n in llm.notices)
    assert "not an LLM" in llm.usage_table()["model"].iloc[0]
