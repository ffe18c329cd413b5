"""The cache: keyed by the whole request (never the key), shared by processes, marked and free
on a hit, doubling as a replay recording; a damaged file is moved aside, never a crash."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from perso_kit.llm import ReplayMiss, get_llm
from perso_kit.llm.cache import ResponseCache, request_key
from perso_kit.llm.testing import LocalServer

IDS = {"title": "ids", "type": "object", "required": ["ids"],
       "properties": {"ids": {"type": "array", "items": {"type": "integer"}}}}


@pytest.fixture(scope="module")
def server():
    with LocalServer(model="gpt-4o-mini") as s:
        yield s


@pytest.fixture()
def srv(server):
    server.reset()
    return server


def priced(srv, path, key="sk-test-aaaaaaaaaaaaaaaa", **kw):
    """A client that talks to the local server as if it were OpenAI's gpt-4o-mini (priced)."""
    return get_llm("openai", base_url=srv.base_url, api_key=key, model="gpt-4o-mini",
                   cache_path=str(path), **kw)


def test_key_hashes_the_whole_request_and_nothing_else():
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0}
    assert request_key(base) == request_key(dict(reversed(list(base.items()))))
    for change in ({"model": "n"}, {"temperature": 0.7}, {"messages": []},
                   {"tools": [{"type": "function", "function": {"name": "t"}}]}):
        assert request_key({**base, **change}) != request_key(base)
    assert request_key(base, sample=1) != request_key(base)


def test_a_hit_is_marked_costs_nothing_and_ignores_the_key(srv, tmp_path):
    path = tmp_path / "cache.sqlite"
    first = priced(srv, path).chat("Recommend something like Alien (1979)")
    assert not first.cached and first.cost_usd > 0 and len(srv.requests) == 1
    other_key = priced(srv, path, key="sk-test-bbbbbbbbbbbbbbbbb")   # another kernel, key
    hit = other_key.chat("Recommend something like Alien (1979)")
    assert hit.cached and hit.cost_usd == 0.0 and hit.attempts == 0
    assert hit.text == first.text and len(srv.requests) == 1          # nothing was sent
    table = other_key.usage_table()
    assert table.loc[0, "cached_calls"] == 1
    assert table.loc[0, "saved_by_cache_usd"] == pytest.approx(first.cost_usd)
    assert other_key.sent_log().empty
    fresh = other_key.chat("Recommend something like Alien (1979)", cache=False)
    assert not fresh.cached and len(srv.requests) == 2
    assert other_key.chat("Recommend something like Alien (1979)", sample=1).cached is False


def test_failures_are_not_cached(srv, tmp_path):
    llm = priced(srv, tmp_path / "c.sqlite", max_retries=0)
    srv.plan("flaky", ["500"])
    assert llm.chat("flaky").error_kind == "server"
    second = llm.chat("flaky")
    assert second.ok and not second.cached        # the failure was not stored
    assert llm.chat("flaky").cached               # the success was


def test_record_then_replay_with_no_key_and_no_server(srv, tmp_path, monkeypatch):
    recording = tmp_path / "class.sqlite"
    monkeypatch.setattr(srv, "model", "gpt-4o-mini-2024-07-18")  # servers answer dated names
    teacher = priced(srv, recording)
    r1 = teacher.chat("Rank: [3] Heat (1995)\n[5] Fargo (1996)", json_schema=IDS)
    r2 = teacher.chat("Recommend 3 movies like Fargo (1996)")
    n_requests = len(srv.requests)
    monkeypatch.setenv("PERSO_KIT_LLM_REPLAY", str(recording))
    student = get_llm()                             # replay inferred from the variable
    assert student.backend == "replay" and student.model == "gpt-4o-mini"  # from the file
    assert "replay of class.sqlite" in student.label and student.is_offline
    a1 = student.chat("Rank: [3] Heat (1995)\n[5] Fargo (1996)", json_schema=IDS)
    a2 = student.chat("Recommend 3 movies like Fargo (1996)")
    assert (a1.data, a2.text) == (r1.data, r2.text) and a1.cached and a2.cached
    assert a2.model == "gpt-4o-mini-2024-07-18"     # what the server said it ran
    assert len(srv.requests) == n_requests
    miss = student.chat("A question nobody recorded")
    assert miss.error_kind == "replay_miss" and "not in the recorded file" in miss.error
    assert "PERSO_KIT_LLM_CACHE" in miss.error
    with pytest.raises(ReplayMiss):
        miss.raise_for_error()
    size = os.path.getsize(recording)
    student.chat("another miss")
    assert os.path.getsize(recording) == size       # replay never writes


def test_replay_of_a_missing_or_damaged_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        get_llm("replay", replay_path=str(tmp_path / "nope.sqlite"))
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.warns(RuntimeWarning, match="damaged"):
        llm = get_llm("replay", replay_path=str(bad), model="m")
    r = llm.chat("hi")
    assert r.error_kind == "replay_miss" and "damaged" in r.error
    assert bad.exists()  # a teacher's file is never moved


def test_damaged_cache_is_reported_and_moved_aside(tmp_path):
    path = tmp_path / "llm_cache.sqlite"
    path.write_bytes(b"\x00garbage, not sqlite\x00" * 200)
    with pytest.warns(RuntimeWarning, match="damaged"):
        llm = get_llm("offline", cache_path=str(path))
    assert any("moved it to" in n for n in llm.notices)
    aside = [p for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"\x00garbage")
    assert llm.chat("hello").ok and llm.chat("hello").cached   # a fresh cache works


def test_cache_that_fails_mid_session_turns_itself_off(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache._conn.close()  # the file becomes unusable under our feet
    cache._conn = sqlite3.connect(":memory:", check_same_thread=False)  # no tables
    with pytest.warns(RuntimeWarning, match="continuing without a cache"):
        assert cache.get("k") is None
    cache.put("k", {"text": "x"}, model="m", backend="b")  # no crash
    assert cache.broken


def test_several_processes_share_one_file(tmp_path):
    path = tmp_path / "shared.sqlite"
    script = textwrap.dedent(f"""
        import sys
        from perso_kit.llm.cache import ResponseCache
        c = ResponseCache({str(path)!r})
        for i in range(40):
            c.put(f"{{sys.argv[1]}}-{{i}}", {{"i": i}}, model="m", backend="b")
            c.get(f"{{sys.argv[1]}}-{{i // 2}}")
    """)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, "-c", script, tag], env=env,
                              stderr=subprocess.PIPE) for tag in ("a", "b")]
    errors = []
    for p in procs:   # generous: a loaded machine is slow to start Python, never wrong
        try:
            errors.append(p.communicate(timeout=900)[1])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"a writer process ran for 900 s without finishing (stderr so far: "
                        f"{p.communicate()[1][-2000:]!r}); two writers should take seconds: "
                        "a lock that is never released?")
    assert all(p.returncode == 0 for p in procs), errors
    cache = ResponseCache(path)
    assert len(cache) == 80 and cache.get("b-39") == {"i": 39, "_cost_usd": 0.0,
                                                      "_model": "m", "_backend": "b"}


def test_remote_embeddings_are_cached_per_text(srv, tmp_path):
    srv.stand_in.embedder.fit(["space horror ship", "romance paris", "toy comedy"] * 10)
    llm = get_llm("compatible", base_url=srv.base_url, model="m", embed_model="emb",
                  cache_path=str(tmp_path / "c.sqlite"))
    v = llm.embed(["space ship", "romance"])
    assert v.shape == (2, srv.stand_in.embedder.dim_)
    n = len(srv.requests)
    w = llm.embed(["romance", "space ship"])
    assert len(srv.requests) == n and np.allclose(v[::-1], w)
    # no embedding model: the offline vectorizer embeds instead, says so, and sends nothing
    plain = get_llm("compatible", base_url=srv.base_url, model="m", cache_path="off")
    assert plain.embed(["x y", "y z"], fit=True).shape[0] == 2 and len(srv.requests) == n
    assert any("PERSO_KIT_EMBED_MODEL" in note for note in plain.notices)


def test_an_invalid_answer_is_recorded_and_replayed_as_invalid(srv, tmp_path):
    schema = {"title": "ids", "type": "object", "required": ["ids"],
              "properties": {"ids": {"type": "array", "items": {"type": "integer"}}}}
    path = str(tmp_path / "class.sqlite")
    live = get_llm("compatible", base_url=srv.base_url, model="m", cache_path=path,
                   repair_attempts=0)
    srv.plan("*", ["bad_json"])
    first = live.chat("Rank: [4] Heat (1995)", json_schema=schema)
    assert first.error_kind == "invalid_json"              # what the model said, kept
    srv.plan("*", ["500"] * 5)                               # a failure of the wire is not kept
    live.settings.max_retries = 0
    assert live.chat("Rank: [2] Fargo (1996)", json_schema=schema).error_kind == "server"
    replay = get_llm("replay", replay_path=path)
    again = replay.chat("Rank: [4] Heat (1995)", json_schema=schema)
    assert again.cached and again.error_kind == "invalid_json" and again.text == first.text
    assert replay.chat("Rank: [2] Fargo (1996)", json_schema=schema).error_kind == "replay_miss"


# ------------------------------------------------------------------ read-only places
@pytest.fixture()
def read_only(tmp_path):
    """A folder to fill, then make read-only with ``lock()`` (``chmod -R a-w``); write
    permission is given back at teardown so the temp folder can be removed."""
    folder = tmp_path / "handout"
    folder.mkdir()

    def lock():
        for p in [folder, *folder.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)

    yield folder, lock
    for p in [folder, *folder.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)


def test_a_recording_replays_from_a_read_only_folder_and_nothing_is_written(read_only):
    folder, lock = read_only
    path = folder / "class.sqlite"
    teacher = get_llm("offline", cache_path=str(path))   # the cache writes in WAL mode
    answers = {q: teacher.chat(q).text for q in ("hello", "recommend a film")}
    teacher.cache.close()
    lock()
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    cache = ResponseCache(path, readonly=True)
    assert not cache.broken and len(cache) == 2
    with pytest.warns(RuntimeWarning, match="read-only"):
        as_cache = ResponseCache(path)   # named as a (writable) cache: used read-only, said so
    assert as_cache.readonly and not as_cache.broken
    assert any("is read-only" in n and "not stored" in n for n in as_cache.notices)
    key = request_key({"x": 1})
    as_cache.put(key, {"text": "x"}, model="m", backend="b")   # a no-op, no error
    assert as_cache.get(key) is None
    for c in (cache, as_cache):
        c.close()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no -wal, no -shm
    assert sorted(answers) and all(answers.values())


def test_the_shipped_recording_opens_from_a_read_only_folder(read_only):
    from perso_kit import recording
    folder, lock = read_only
    copy = folder / "smollm2-135m.sqlite"
    copy.write_bytes(recording.recording_path().read_bytes())
    lock()
    cache = ResponseCache(copy, readonly=True)
    assert not cache.broken and len(cache) > 0
    assert cache.models() and next(iter(cache.models())) == "SmolLM2-135M-Instruct"
    cache.close()
    assert [p.name for p in folder.iterdir()] == ["smollm2-135m.sqlite"]


def test_cache_errors_say_what_is_wrong_and_the_kit_goes_on(read_only):
    folder, lock = read_only
    (folder / "notes.sqlite").write_bytes(b"a text file, not a database\n" * 100)
    lock()
    # a cache in a read-only folder: said plainly, no cache, calls still answered
    with pytest.warns(RuntimeWarning, match="is read-only"):
        llm = get_llm("offline", cache_path=str(folder / "new.sqlite"))
    assert llm.cache.broken and "continuing without a cache" in llm.cache.broken
    assert llm.chat("hello").ok
    # a folder that cannot be created
    with pytest.warns(RuntimeWarning, match="does not exist and cannot be created"):
        llm = get_llm("offline", cache_path=str(folder / "sub" / "new.sqlite"))
    assert llm.chat("hello").ok
    # not a SQLite file: said so; in a read-only folder it is kept where it is
    with pytest.warns(RuntimeWarning, match="not a SQLite file"):
        llm = get_llm("offline", cache_path=str(folder / "notes.sqlite"))
    assert llm.chat("hello").ok and "could not be moved aside" in llm.cache.broken
    with pytest.warns(RuntimeWarning, match="not a SQLite file"):
        replay = get_llm("replay", replay_path=str(folder / "notes.sqlite"), model="m")
    assert "not a SQLite file" in replay.chat("hi").error
    assert sorted(p.name for p in folder.iterdir()) == ["notes.sqlite"]  # nothing moved or made


def test_a_missing_recording_folder_is_named(tmp_path):
    with pytest.warns(RuntimeWarning, match="does not exist"):
        cache = ResponseCache(tmp_path / "nowhere" / "class.sqlite", readonly=True)
    assert "does not exist" in cache.broken and "its folder" in cache.broken


@pytest.mark.notebook
def test_notebook_05_replays_from_a_read_only_folder_with_no_miss(read_only, monkeypatch):
    from perso_kit import recording
    from perso_kit.report import read_records
    from perso_kit.tour import NOTEBOOK_DIR, run_notebook
    folder, lock = read_only
    copy = folder / "smollm2-135m.sqlite"
    copy.write_bytes(recording.recording_path().read_bytes())
    lock()
    monkeypatch.setenv("PERSO_KIT_LLM_BACKEND", "replay")
    monkeypatch.chdir(folder.parent)   # a relative path, from where the command runs
    monkeypatch.setenv("PERSO_KIT_LLM_REPLAY", "handout/smollm2-135m.sqlite")
    run = run_notebook(NOTEBOOK_DIR / "05_llm_basics_for_personalization.ipynb",
                       folder.parent / "out")
    assert run.status == "ok", run.error
    rec = read_records(run.output)
    assert rec["llm_calls"] > 0 and rec["llm_replay_misses"] == 0
    assert [p.name for p in folder.iterdir()] == ["smollm2-135m.sqlite"]
