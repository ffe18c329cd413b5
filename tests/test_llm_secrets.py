"""A planted key is used (the server receives it) yet appears in no log, cache file, record of
what was sent, repr, error message, widget state, or executed notebook."""
from __future__ import annotations

import json
import logging
import pickle
import secrets

import pytest

from perso_kit.llm import Secret, clear_api_keys, get_llm
from perso_kit.llm import backends as backends_module
from perso_kit.llm.testing import LocalServer

PLANTED = "sk-planted-" + secrets.token_hex(16)
TOOLS = [{"name": "search_catalog", "description": "search the catalog",
          "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                         "required": ["query"]}}]
IDS = {"title": "ids", "type": "object", "required": ["ids"],
       "properties": {"ids": {"type": "array", "items": {"type": "integer"}}}}


@pytest.fixture(scope="module")
def server():
    with LocalServer(api_key=PLANTED) as s:
        yield s


def test_planted_key_never_reaches_logs_cache_or_records(server, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # everything: ours, openai's, httpx's
    cache = tmp_path / "llm_cache.sqlite"
    llm = get_llm("openai", base_url=server.base_url, api_key=PLANTED, model="gpt-4o-mini",
                  cache_path=str(cache), backoff_s=0.01, embed_model="emb")
    server.stand_in.embedder.fit(["space horror", "romance", "comedy", "heist"] * 5)
    server.plan("flaky", ["500", "429:0"])
    replies = [llm.chat("Recommend 3 movies like Heat (1995)"),
               llm.chat("search the catalog for heists", tools=TOOLS),
               llm.chat("pick: [1] a\n[2] b", json_schema=IDS),
               llm.chat("flaky question"),
               llm.chat("Recommend 3 movies like Heat (1995)")]          # a cache hit
    llm.map([f"batch {i}" for i in range(4)], progress=False)
    llm.embed(["space horror", "a heist"])
    wrong = get_llm("openai", base_url=server.base_url, api_key=PLANTED + "x",
                    cache_path="off").chat("hello")
    assert [r.ok for r in replies] == [True] * 5 and replies[4].cached
    assert wrong.error_kind == "auth"
    # the key was really used on the wire ...
    assert all(r["headers"].get("authorization") == f"Bearer {PLANTED}"
               for r in server.requests if r["fault"] != "401")
    # ... and is nowhere else
    sent = tmp_path / "sent.jsonl"
    llm.save_sent_log(sent)
    wal = cache.with_name(cache.name + "-wal")
    places = {
        "logs": caplog.text,
        "stdout/stderr": "".join(capsys.readouterr()),
        "cache file": cache.read_bytes().decode("latin-1")
        + (wal.read_bytes().decode("latin-1") if wal.exists() else ""),
        "sent log": llm.sent_log().to_string() + sent.read_text(),
        "reprs": repr(llm) + repr(llm.settings) + str(llm.banner()) + repr(replies) + repr(wrong),
        "errors": wrong.error,
        "tables": llm.usage_table().to_string() + llm.call_log().to_string(),
    }
    assert "DEBUG" in caplog.text or caplog.records  # logging was really captured
    for where, text in places.items():
        assert PLANTED not in text, f"the planted key leaked into {where}"
        assert PLANTED[len("sk-planted-"):][:12] not in text, f"part of the key is in {where}"


def test_the_key_cannot_be_pickled_or_printed():
    s = Secret(PLANTED)
    assert PLANTED not in repr(s) + str(s) + f"{s}" and s.reveal() == PLANTED
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(s)
    llm = get_llm("openai", api_key=PLANTED, cache_path="off")
    with pytest.raises(TypeError):
        pickle.dumps(llm.settings)
    with pytest.raises(TypeError):
        json.dumps(llm.settings.__dict__)
    assert backends_module.scrub(f"error: {PLANTED} was refused", [PLANTED]) == \
        "error: <hidden> was refused"


def test_key_box_keeps_the_key_in_memory_only(monkeypatch):
    pytest.importorskip("ipywidgets")
    from perso_kit.widgets import api_key_box

    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PERSO_KIT_LLM_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PERSO_KIT_LLM_CACHE", "off")
    connected = []
    box = api_key_box(on_connect=connected.append)
    try:
        password = box.children[1]
        password.value = PLANTED
        box.connect()
        assert password.value == ""                         # the field is cleared at once
        assert box.llm is not None and connected == [box.llm]
        assert box.llm.backend == "openai" and box.llm.budget.limit_usd == 1.0
        assert box.llm.settings.api_key.reveal() == PLANTED
        state = json.dumps([c.get_state() for c in box.children], default=str)
        assert PLANTED not in state + box.children[-1].value   # nor in the widget state
        assert get_llm().backend == "openai"   # later get_llm() calls use the stored key
        # a failing connect reports without echoing the key
        box.children[0].value = "compatible"
        password.value = PLANTED
        box.connect()
        assert "OPENAI_BASE_URL" in box.children[-1].value
        assert PLANTED not in box.children[-1].value
    finally:
        clear_api_keys()
    assert get_llm().backend == "offline"
