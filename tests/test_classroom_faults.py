"""A class's faults, planted: recordings of the offline stand-in, partial recordings replayed
through notebooks 07 and 12, notebook 12 on MovieLens, and an API key that must reach the
server and nothing else.

Each check is proven both ways: the fault is planted and the check fires; a clean control stays
quiet.
"""
from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from conftest import NOTEBOOKS, PLANTED_KEY, movielens_dir
from perso_kit import recording
from perso_kit.config import environment
from perso_kit.llm import get_llm, offline
from perso_kit.llm.reply import STAND_IN_MODEL
from perso_kit.llm.testing import LocalServer
from perso_kit.report import read_records
from perso_kit.roles.conversation import Conversation
from perso_kit.tour import run_notebook

QUESTIONS = ["Name one film about space.", "Name one comedy.", "Name one film set in Paris."]


# ------------------------------------------------------------------ recordings of the stand-in
def record_with_stand_in(path: Path) -> list[str]:
    """Record three answers of the offline stand-in in ``path``; returns the answers."""
    llm = get_llm("offline", cache_path=str(path))
    answers = [llm.chat(q, max_tokens=40).text for q in QUESTIONS]
    llm.cache.close()
    return answers


def replay(path: Path):
    return get_llm("replay", replay_path=str(path))


def test_a_stand_in_recording_replays_with_every_answer_and_says_who_answered(tmp_path):
    path = tmp_path / "stand-in.sqlite"
    answers = record_with_stand_in(path)
    llm = replay(path)
    replies = [llm.chat(q, max_tokens=40) for q in QUESTIONS]
    assert [r.text for r in replies] == answers
    assert all(r.ok and r.cached and r.error_kind is None for r in replies)
    assert {r.backend for r in replies} == {"offline"}       # the stand-in answered, not an LLM
    assert llm.model == STAND_IN_MODEL


def test_a_request_missing_from_a_stand_in_recording_is_named_as_such(tmp_path):
    path = tmp_path / "stand-in.sqlite"
    record_with_stand_in(path)
    r = replay(path).chat("Name one western.", max_tokens=40)
    assert r.error_kind == "replay_miss"
    assert r.error.startswith(f"this request is not in the recorded file {path}, a recording "
                              f"of the offline stand-in (not an LLM, version {offline.VERSION})")
    assert "unset PERSO_KIT_LLM_BACKEND and PERSO_KIT_LLM_REPLAY" in r.error


def test_a_recording_of_another_stand_in_version_is_refused_saying_so(tmp_path, monkeypatch):
    path = tmp_path / "old-stand-in.sqlite"
    monkeypatch.setattr(offline, "VERSION", "0-old")          # recorded by an older stand-in
    record_with_stand_in(path)
    monkeypatch.undo()
    llm = replay(path)
    replies = [llm.chat(q, max_tokens=40) for q in QUESTIONS]     # the very same requests
    for r in replies:
        assert r.error_kind == "replay_miss" and not r.ok
        assert r.error.startswith(f"the recorded file {path} was made with another version of "
                                  f"the offline stand-in (not an LLM) than this kit's (version "
                                  f"{offline.VERSION}), so it cannot be replayed")
        assert "not in the recorded file" not in r.error         # not a missing request


def test_a_real_model_recording_keeps_its_own_miss_message(tmp_path):
    """The control: a recording of a served model (not the stand-in) is untouched."""
    path = tmp_path / "served.sqlite"
    with LocalServer(model="served-model") as server:
        llm = get_llm("compatible", base_url=server.base_url, model="served-model",
                      cache_path=str(path))
        assert llm.chat(QUESTIONS[0], max_tokens=40).ok
        llm.cache.close()
    again = replay(path)
    assert again.chat(QUESTIONS[0], max_tokens=40).cached
    miss = again.chat("Name one western.", max_tokens=40)
    assert miss.error.startswith(f"this request is not in the recorded file {path}. Record it")
    assert "stand-in" not in miss.error


def test_stop_on_replay_miss_fires_on_a_miss_and_stays_quiet_without_one():
    recording.stop_on_replay_miss({"llm_calls": 40, "llm_replay_misses": 0})
    with pytest.raises(Exception) as err:
        recording.stop_on_replay_miss({"llm_calls": 40, "llm_replay_misses": 7})
    assert type(err.value).__name__ == "ReplayMiss"
    assert str(err.value).startswith("replay miss: 7 of 40 LLM calls so far asked for a "
                                     "request that is not in the recorded file")


# ------------------------------------------------------------------ partial recordings, notebooks
def partial_recording(folder: Path) -> Path:
    """The shipped recording with about half of its answers deleted (keys starting 0-7)."""
    path = folder / "partial.sqlite"
    shutil.copyfile(recording.recording_path(), path)
    con = sqlite3.connect(path)
    before = con.execute("SELECT count(*) FROM answers").fetchone()[0]
    con.execute("DELETE FROM answers WHERE substr(key, 1, 1) IN "
                "('0','1','2','3','4','5','6','7')")
    con.commit()
    after = con.execute("SELECT count(*) FROM answers").fetchone()[0]
    con.close()
    assert 0.3 * before < after < 0.7 * before
    return path


@pytest.mark.notebook
@pytest.mark.parametrize("number", ["07", "12"])
def test_a_partial_recording_stops_07_and_12_with_the_replay_miss_message(number, tmp_path):
    path = next(NOTEBOOKS.glob(f"{number}_*.ipynb"))
    rec = partial_recording(tmp_path)
    with environment(PERSO_KIT_LLM_BACKEND="replay", PERSO_KIT_LLM_REPLAY=str(rec)):
        run = run_notebook(path, tmp_path / "out")
    assert run.status == "failed"
    assert "ReplayMiss: replay miss: " in run.error, run.error
    assert f"not in the recorded file {rec}" in run.error
    for opaque in ("KeyError", "IndexError", "zero-size array", "out-of-bounds"):
        assert opaque not in run.error
    cells = json.loads(run.output.read_text())["cells"]
    errors = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "ReplayMiss"


# ------------------------------------------------------------------ MovieLens in conversations
def movielens_like() -> "object":
    """A tiny catalog the way MovieLens has it: no mood, runtime or themes."""
    from perso_kit.data import make_dataset
    items = pd.DataFrame({"item_id": [1, 2, 3, 4, 5, 6],
                          "title": ["Toy Story (1995)", "Heat (1995)", "Clueless (1995)",
                                    "Alien (1979)", "Airplane! (1980)", "Casino (1995)"],
                          "genres": ["Comedy", "Action|Crime", "Comedy", "Horror|Sci-Fi",
                                     "Comedy", "Crime|Drama"],
                          "year": [1995, 1995, 1995, 1979, 1980, 1995]})
    inter = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [1, 2, 3, 4, 2]})
    return make_dataset("ml-like", inter, items)


def test_a_conversation_runs_on_a_catalog_without_moods_or_runtimes():
    ds = movielens_like()
    assert "mood" not in ds.items.columns
    conv = Conversation(get_llm("offline", cache_path="off"), ds, k=2)
    assert conv.vocab["moods"] == [] and not conv.has_runtime
    turn = conv.send("A comedy please, but no horror")
    assert sorted(conv.state.genres) == ["Comedy"] and conv.state.exclude_genres == {"Horror"}
    assert turn.recommendations["item_id"].tolist() == [1, 3]      # the most watched comedies
    assert turn.reply.splitlines()[1] == "1. Toy Story (1995) — Comedy"   # no "None, nan min"
    assert turn.question is None or turn.question["attribute"] != "mood"
    later = conv.send("Under 90 minutes")
    assert "runtime" in later.relaxed                    # stated, but the catalog has none


def test_a_conversation_on_the_demo_world_still_says_mood_and_runtime(demo):
    """The control: the demo world's replies keep their moods and runtimes (prompts unchanged)."""
    conv = Conversation(get_llm("offline", cache_path="off"), demo, k=2)
    assert conv.has_runtime and len(conv.vocab["moods"]) >= 3
    turn = conv.send("A comedy from the 90s please")
    first = turn.recommendations.iloc[0]
    assert turn.reply.splitlines()[1] == (f"1. {first.title} — {', '.join(first.genres)}, "
                                          f"{first.mood}, {first.runtime} min")


@pytest.mark.notebook
@pytest.mark.movielens
def test_notebook_12_runs_on_ml_100k_at_small_size(tmp_path):
    folder = movielens_dir()
    if folder is None or not ((folder / "ml-100k").is_dir() or (folder / "ml-100k.zip").is_file()):
        pytest.skip("set PERSO_KIT_DATA_DIR to a folder with the real ml-100k files")
    path = next(NOTEBOOKS.glob("12_*.ipynb"))
    with environment(PERSO_KIT_LLM_BACKEND="offline"):
        run = run_notebook(path, tmp_path, {"DATASET": "ml-100k", "SMALL": True})
    assert run.status == "ok", run.error
    rec = read_records(run.output)
    assert rec["users_by_target"] == {"all": 10, "warm: older item": 10}   # no new releases
    assert rec["new_release_share_of_catalog"] == 0.0
    assert rec["calls_conversation"] == 3.0             # the conversation ran its three turns
    assert rec["llm_failed"] == 0 and rec["llm_replay_misses"] == 0


# ------------------------------------------------------------------ the planted key
def assert_key_absent(text: str, where: str) -> None:
    assert PLANTED_KEY not in text and PLANTED_KEY[3:20] not in text, f"the key is in {where}"


def test_the_planted_key_reaches_the_server_and_nothing_else(tmp_path, caplog):
    """conftest's planted key, sent by a batch of role calls to a server that demands it (the
    notebook side, 05 run against such a server, is tests/test_llm_notebook.py)."""
    from perso_kit.roles.explainer import explain_recommendations
    from perso_kit.recommenders import Popularity
    from perso_kit.data.demo import make_world

    ds = make_world(seed=42, n_users=40, n_items=120).dataset
    cache = tmp_path / "cache.sqlite"
    caplog.set_level(logging.DEBUG)
    with LocalServer(api_key=PLANTED_KEY) as server:
        llm = get_llm("compatible", base_url=server.base_url, model="served-model",
                      api_key=PLANTED_KEY, cache_path=str(cache))
        users = ds.interactions["user_id"].unique()[:3].tolist()
        recs = Popularity().fit(ds).recommend(users, k=2)
        explained = explain_recommendations(llm, ds, recs, progress=False)
        replies = llm.map([{"messages": q, "max_tokens": 40} for q in QUESTIONS],
                          progress=False)
        posts = [r for r in server.requests if r["body"] is not None]
    assert len(posts) >= len(QUESTIONS) + len(recs) and all(r.ok for r in replies)
    assert len(explained) == 2 * len(recs)                # a template and an LLM row each
    # it reached the server, in the Authorization header of every request
    assert all(r["headers"]["authorization"] == f"Bearer {PLANTED_KEY}" for r in posts)
    assert all(r["fault"] != "401" for r in server.requests)
    # and nowhere else: the request bodies sent, the sent log, the call log, the usage table,
    # the client's repr, the logs, the cache file (and its -wal)
    assert_key_absent(json.dumps([r["body"] for r in posts]), "a request body")
    assert_key_absent(json.dumps(llm.sent_log(), default=str), "sent_log()")
    assert_key_absent(llm.call_log().to_csv(), "call_log()")
    assert_key_absent(llm.usage_table().to_csv(), "usage_table()")
    assert_key_absent(repr(llm) + repr(llm.settings), "the client's repr")
    assert_key_absent(caplog.text, "the logs")
    llm.cache.close()
    for f in tmp_path.glob("cache.sqlite*"):
        assert PLANTED_KEY.encode() not in f.read_bytes(), f"the key is in {f.name}"
    assert cache.stat().st_size > 0
