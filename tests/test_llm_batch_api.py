"""The Batch API path (perso_kit.llm.batch_api) end to end against the local fake of the
endpoints (perso_kit.llm.batch_fake): the request file holds what LLM.chat would send, the
answers land in the cache under the keys a direct call uses (a replay then has no miss),
planted faults are counted, an interrupted poll resumes, the batch price is half the table's,
and a planted key reaches nothing but the HTTP header."""
from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest
from conftest import load_benchmark

from perso_kit.llm import batch_api, get_llm
from perso_kit.llm.batch_fake import FakeBatchAPI
from perso_kit.llm.offline import chat_completion

IDS = {"title": "ids", "type": "object", "required": ["ids"],
       "properties": {"ids": {"type": "array", "items": {"type": "integer"}}}}
TOOLS = [{"name": "search_catalog", "description": "search the catalog",
          "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                         "required": ["query"]}}]
TITLES = ["Alien (1979)", "Heat (1995)", "Brazil (1985)", "Fargo (1996)", "Up (2009)",
          "Jaws (1975)"]
REQUESTS = ([f"Recommend 3 movies like {t}" for t in TITLES[:4]]
            + [{"messages": "pick: [1] Alien\n[2] Heat", "json_schema": IDS},
               {"messages": "search the catalog for heists", "tools": TOOLS},
               {"messages": "Recommend 3 movies like Heat (1995)", "sample": 1,
                "max_tokens": 60},
               "Recommend 3 movies like Alien (1979)"])          # a duplicate: sent once


@pytest.fixture
def sleeps(monkeypatch):
    """The waits between polls, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(batch_api, "_sleep", waits.append)
    return waits


def client_llm(fake, cache, key="no-key-needed", **kw):
    return get_llm("openai", model="gpt-4o-mini", api_key=key, base_url=fake.base_url,
                   cache_path=str(cache) if cache != "off" else "off",
                   client=fake.client(key), **kw)


def request_lines(report) -> list[dict]:
    with open(report.request_path) as f:
        return [json.loads(x) for x in f]


def test_batch_end_to_end_then_replay_has_no_miss(tmp_path, sleeps):
    fake = FakeBatchAPI(slow=2)
    cache = tmp_path / "cache.sqlite"
    llm = client_llm(fake, cache)
    report = batch_api.run_batch_api(llm, REQUESTS, poll_s=1.0, max_poll_s=2.0, progress=False)
    assert report.status == "completed" and report.done
    assert (report.requested, report.sent, report.stored) == (7, 7, 7)
    assert (report.failed, report.unanswered, report.invalid_json) == (0, 0, 0)
    assert report.stand_in  # the fake's lines were answered by the stand-in, and it says so
    # validating -> in_progress -> finalizing -> completed, two retrieves each: 6 polls,
    # 5 waits growing by half and capped at max_poll_s
    assert [r["path"].split("/")[-2] for r in fake.requests if r["method"] == "GET"
            and "/batches/" in r["path"]] == ["batches"] * 6
    assert sleeps == [1.0, 1.5, 2.0, 2.0, 2.0]
    # the request file: custom_id is the cache key, body exactly what LLM.chat sends
    lines = request_lines(report)
    assert len(lines) == 7 and all(x["url"] == "/v1/chat/completions" for x in lines)
    direct = client_llm(fake, "off")
    replies = [direct.chat(**kw) if isinstance(kw, dict) else direct.chat(kw)
               for kw in REQUESTS]
    sent = [json.loads(b) for b in direct.sent_log()["body"]]
    assert [x["body"] for x in lines] == sent[:7]           # the 8th is the duplicate
    assert [x["custom_id"] for x in lines] == [r.key for r in replies[:7]]
    assert lines[0]["body"]["max_completion_tokens"] == 1024 and "max_tokens" not in \
        lines[0]["body"]                                       # OpenAI's parameter name
    assert lines[4]["body"]["response_format"]["type"] == "json_schema"
    # the Done-when: the same requests replay from the cache with no miss, same answers
    replay = get_llm("replay", replay_path=str(cache))
    again = replay.map(REQUESTS, progress=False)
    assert [r.error_kind for r in again] == [None] * 8
    assert all(r.cached for r in again)
    assert [r.text for r in again] == [r.text for r in replies]
    assert again[4].data == replies[4].data and again[5].tool_calls[0].name == "search_catalog"
    # a live client on the same cache sends nothing for them either
    n_http = len(fake.requests)
    hits = client_llm(fake, cache).map(REQUESTS, progress=False)
    assert all(r.cached and r.ok for r in hits) and len(fake.requests) == n_http


def test_requests_already_in_the_cache_are_not_sent(tmp_path, sleeps):
    fake = FakeBatchAPI()
    cache = tmp_path / "cache.sqlite"
    llm = client_llm(fake, cache)
    llm.chat("Recommend 3 movies like Alien (1979)")
    report = batch_api.run_batch_api(llm, REQUESTS[:4], progress=False)
    assert (report.requested, report.already_cached, report.sent, report.stored) == (4, 1, 3, 3)
    assert len(request_lines(report)) == 3
    done = batch_api.run_batch_api(llm, REQUESTS[:4], progress=False)
    assert done.status == "nothing to send" and done.already_cached == 4
    assert len(fake.batches) == 1


def test_failed_and_expired_lines_are_counted_never_raised(tmp_path, sleeps):
    cache = tmp_path / "cache.sqlite"
    reqs = [f"Recommend 3 movies like {t}" for t in TITLES]   # Brazil is line 2
    fake = FakeBatchAPI(fail_on=["Brazil"], expire_after=4, slow=1)
    report = batch_api.run_batch_api(client_llm(fake, cache), reqs, progress=False)
    assert report.status == "expired"
    assert (report.stored, report.failed, report.unanswered) == (3, 1, 2)
    codes = sorted(e["code"] for e in report.errors)
    assert codes == ["batch_expired", "batch_expired", "invalid_request_error"]
    assert "expired" in str(report) and "1 failed" in str(report)
    # a later run sends only what is missing, and a clean batch (the control) counts nothing
    clean = FakeBatchAPI()
    rerun = batch_api.run_batch_api(client_llm(clean, cache), reqs, progress=False)
    assert (rerun.already_cached, rerun.sent, rerun.stored) == (3, 3, 3)
    assert (rerun.failed, rerun.unanswered, rerun.errors) == (0, 0, [])
    replay = get_llm("replay", replay_path=str(cache)).map(reqs, progress=False)
    assert all(r.ok for r in replay)


def test_a_failed_or_cancelled_batch_is_reported(tmp_path, sleeps):
    reqs = [f"Recommend 3 movies like {t}" for t in TITLES[:3]]
    failed = batch_api.run_batch_api(client_llm(FakeBatchAPI(fail_validation=True),
                                                tmp_path / "a.sqlite"), reqs, progress=False)
    assert failed.status == "failed" and (failed.stored, failed.unanswered) == (0, 3)
    assert any("the batch failed" in n for n in failed.notes)
    fake = FakeBatchAPI(slow=3)
    llm = client_llm(fake, tmp_path / "b.sqlite")
    job = batch_api.prepare(llm, reqs)
    bid = job.submit()
    llm._client.batches.cancel(bid)
    cancelled = job.collect(job.wait(poll_s=0.1, progress=False))
    assert cancelled.status == "cancelled" and (cancelled.stored, cancelled.unanswered) == (0, 3)
    assert {e["code"] for e in cancelled.errors} == {"batch_cancelled"}


def test_an_unreadable_output_line_is_counted_and_the_rest_stored(tmp_path, sleeps):
    fake = FakeBatchAPI()
    llm = client_llm(fake, tmp_path / "c.sqlite")
    job = batch_api.prepare(llm, REQUESTS[:3])
    job.submit()
    batch = job.wait(progress=False)
    fake.files[batch.output_file_id]["data"] += b'{"custom_id": "x", "response": [not json\n'
    report = job.collect(batch)
    assert (report.stored, report.failed) == (3, 1)
    assert report.errors[0]["code"] == "unreadable"
    again = job.collect(batch)                    # collecting twice counts once
    assert (again.stored, again.failed, len(again.errors)) == (3, 1, 1)


def test_an_interrupted_poll_resumes_the_same_batch(tmp_path, sleeps):
    fake = FakeBatchAPI(slow=4)
    cache = tmp_path / "cache.sqlite"
    first = batch_api.run_batch_api(client_llm(fake, cache), REQUESTS[:4], poll_s=1.0,
                                    max_wait_s=2.0, progress=False)
    assert not first.done and first.status in ("validating", "in_progress")
    state = json.loads(open(first.state_path).read())
    assert state["batch_id"] == first.batch_id and state["requests"] == 4
    # the stop button during a wait: the poll stops, the state stays
    def interrupt(_):
        raise KeyboardInterrupt
    batch_api._sleep = interrupt
    with pytest.warns(RuntimeWarning, match="run the same call again to resume|Run the same"):
        second = batch_api.run_batch_api(client_llm(fake, cache), REQUESTS[:4], progress=False)
    assert not second.done and second.batch_id == first.batch_id
    batch_api._sleep = sleeps.append
    # a new process (a new client) resumes the same batch: nothing is uploaded again
    third = batch_api.run_batch_api(client_llm(fake, cache), REQUESTS[:4], progress=False)
    assert third.done and third.batch_id == first.batch_id and third.stored == 4
    assert len(fake.batches) == 1
    assert sum(r["path"].endswith("/files") for r in fake.requests) == 1


def scripted(body: dict) -> dict:
    """A scripted model: a fixed usage (1,000 prompt and 500 completion tokens) per answer;
    prose where JSON is asked for."""
    answer = chat_completion(body)
    answer.pop("system_fingerprint")
    answer["model"] = "gpt-4o-mini-2024-07-18"
    if "response_format" in body:
        answer["choices"][0]["message"]["content"] = "the first one, I think"
    answer["usage"] = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
    return answer


def test_cost_is_the_table_price_at_the_batch_discount(tmp_path, sleeps):
    cache = tmp_path / "cache.sqlite"
    llm = client_llm(FakeBatchAPI(answer=scripted), cache)
    report = batch_api.run_batch_api(llm, REQUESTS[:5], progress=False)
    standard = (1000 * 0.15 + 500 * 0.60) / 1e6                 # gpt-4o-mini, per answer
    assert report.standard_cost_usd == pytest.approx(5 * standard)
    assert report.cost_usd == pytest.approx(5 * standard * 0.5)
    assert llm.spent_usd == pytest.approx(report.cost_usd)
    assert not report.stand_in
    assert report.cost_at("gpt-4o")["batch_usd"] == pytest.approx(
        5 * (1000 * 2.5 + 500 * 10.0) / 1e6 * 0.5)
    # an answer that is not the JSON asked for is stored as it came, and replays as such
    assert report.invalid_json == 1
    replay = get_llm("replay", replay_path=str(cache)).map(REQUESTS[:5], progress=False)
    assert [r.error_kind for r in replay] == [None] * 4 + ["invalid_json"]
    assert replay[0].model == "gpt-4o-mini-2024-07-18"
    # the control: the stand-in's answers cost nothing
    free = batch_api.run_batch_api(client_llm(FakeBatchAPI(), tmp_path / "f.sqlite"),
                                   REQUESTS[:2], progress=False)
    assert (free.cost_usd, free.standard_cost_usd) == (0.0, 0.0) and free.stand_in


def test_a_planted_key_reaches_only_the_header(tmp_path, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    planted = "sk-planted-" + secrets.token_hex(16)
    fake = FakeBatchAPI(api_key=planted, fail_on=["Brazil"])
    cache = tmp_path / "cache.sqlite"
    llm = client_llm(fake, cache, key=planted)
    report = batch_api.run_batch_api(llm, REQUESTS, progress=False)
    assert report.stored == 6 and report.failed == 1
    # the key was used (the fake refuses calls without it) ...
    assert fake.requests and all(r["headers"]["authorization"] == f"Bearer {planted}"
                                 for r in fake.requests)
    # ... and is nowhere else
    folder = tmp_path / "cache-batches"
    places = {p.name: p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*")
              if p.is_file()}
    assert {p.name for p in folder.iterdir()} == {f"{report.name}.requests.jsonl",
                                                  f"{report.name}.state.json"}
    places["uploaded files"] = "".join(f["data"].decode() for f in fake.files.values())
    places["logs"] = caplog.text
    places["report"] = str(report) + report.summary().to_string() + repr(report.errors)
    places["sent log"] = llm.sent_log().to_string()
    assert "cache.sqlite" in places and caplog.records
    for where, text in places.items():
        assert planted not in text, f"the planted key leaked into {where}"
        assert planted[len("sk-planted-"):][:12] not in text, f"part of the key is in {where}"
    # the control: a wrong key is refused by the fake before anything is stored
    with pytest.raises(Exception, match="Incorrect API key"):
        batch_api.run_batch_api(client_llm(fake, tmp_path / "x.sqlite", key=planted + "x"),
                                REQUESTS[:1], progress=False)


def test_a_batch_over_the_budget_is_not_sent(tmp_path, sleeps):
    # worst case per line at gpt-4o-mini batch prices: about 10 prompt tokens and 1,024
    # answer tokens, 1024 * 0.30 / 1e6 = $0.00031; four lines do not fit in $0.001
    fake = FakeBatchAPI()
    llm = client_llm(fake, tmp_path / "c.sqlite", budget_usd=0.001)
    with pytest.raises(ValueError, match="not sent: budget"):
        batch_api.run_batch_api(llm, REQUESTS[:4], progress=False)
    assert fake.files == {} and llm.budget.reserved_usd == 0.0
    # the control: three lines fit, and are sent
    ok = batch_api.run_batch_api(llm, REQUESTS[:3], progress=False)
    assert ok.stored == 3 and len(fake.files) == 2          # the request and output files


def test_bad_use_is_refused_with_a_clear_message(tmp_path):
    fake = FakeBatchAPI()
    with pytest.raises(ValueError, match="writable cache"):
        batch_api.prepare(client_llm(fake, "off"), REQUESTS[:1])
    with pytest.raises(TypeError, match="each request must be"):
        batch_api.prepare(client_llm(fake, tmp_path / "c.sqlite"), [42])
    assert batch_api.batch_price(None) is None


# --------------------------------------------------------------------------------- notebook 13
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "13_past_one_machine.ipynb"
THROUGHPUT = Path(__file__).resolve().parents[1] / "data" / "benchmarks" / "local_throughput.json"


def test_the_shipped_throughput_table_is_consistent():
    tp = json.loads(THROUGHPUT.read_text())
    assert tp["model"] == "SmolLM2-135M-Instruct"
    for field in ("protocol", "command", "date", "machine", "load_average", "server_settings"):
        assert tp[field]
    rows = {r["clients"]: r for r in tp["rows"]}
    assert sorted(rows) == [1, 2, 4]
    for r in rows.values():
        assert r["requests_per_s"] == pytest.approx(r["requests"] / r["wall_s"], rel=0.02)
        assert r["completion_tokens_per_s"] == pytest.approx(
            r["completion_tokens"] / r["wall_s"], rel=0.02)
        assert 0 < r["latency_p50_s"] <= r["latency_p95_s"] and r["server_cpu_s"] > 0
        assert r["server_cpu_share"] == pytest.approx(r["server_cpu_s"] / r["wall_s"], abs=0.01)
        assert r["wall_s"] == pytest.approx(sum(r["round_wall_s"]), abs=0.05)


def _section(tmp_path) -> Path:
    """Notebook 13's parameters cell and its section 4 (the scale-batch cells) alone."""
    import nbformat
    nb = nbformat.read(NOTEBOOK, 4)
    cells = [c for c in nb.cells if c.id == "scale-parameters"
             or c.id == "scale-batch" or c.id.startswith("scale-batch-")]
    cells[0].metadata.setdefault("tags", [])
    if "parameters" not in cells[0].metadata["tags"]:
        cells[0].metadata["tags"].append("parameters")
    nb.cells = cells
    path = tmp_path / "13_section_4.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.notebook
def test_notebook_13_section_4_batch_replays_with_no_miss(tmp_path):
    import nbformat

    from perso_kit.config import environment
    from perso_kit.tour import run_notebook
    with environment(PERSO_KIT_LLM_BACKEND="offline"):
        run = run_notebook(_section(tmp_path), tmp_path / "out", {"SMALL": True})
    assert run.status == "ok", run.error
    nb = nbformat.read(run.output, 4)
    out = {c.id: "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                         for o in c.get("outputs", [])) for c in nb.cells if c.cell_type == "code"}
    assert "8 answers stored by the offline stand-in (not an LLM), 0 failed, 0 unanswered" \
        in out["scale-batch-submit"]
    assert "replayed 8 requests: 8 from the cache, 0 misses" in out["scale-batch-replay"]
    assert "offline stand-in" in out["scale-batch-replay"]
    assert "1 failed, 2 unanswered" in out["scale-batch-faults"]
    assert "5 already cached, 3 sent, 3 answers stored" in out["scale-batch-faults"]
    assert "gpt-4o-mini (prices as of" in out["scale-batch-cost"]
    tp = json.loads(THROUGHPUT.read_text())
    assert tp["model"] in out["scale-batch-throughput"]
    assert str(tp["rows"][0]["wall_s"]) in out["scale-batch-throughput"]


def test_what_section_4_says_of_the_throughput_is_what_was_measured():
    import nbformat
    nb = nbformat.read(NOTEBOOK, 4)
    text = " ".join(next(c.source for c in nb.cells if c.id == "scale-batch-throughput-reading")
                    .split())
    tp = json.loads(THROUGHPUT.read_text())
    rows = {r["clients"]: r for r in tp["rows"]}
    rps = ", ".join(f"{rows[c]['requests_per_s']:.2f}" for c in (1, 2)) + \
        f" and {rows[4]['requests_per_s']:.2f} requests per second"
    assert rps in text
    p50 = ", ".join(f"{rows[c]['latency_p50_s']:.1f} s" for c in (1, 2, 4))
    assert f"({p50})" in text
    lo, hi = tp["load_average"]
    assert f"load average was {lo:.1f} to {hi:.1f} on 2 cores" in text
    share = [r["server_cpu_share"] for r in rows.values()]
    assert "the server had a whole core" in text and all(s >= 0.95 for s in share)
    # the claims: flat throughput (within 10%), median latency about doubling per doubling
    assert max(r["requests_per_s"] for r in rows.values()) <= \
        1.1 * min(r["requests_per_s"] for r in rows.values())
    for a, b in ((1, 2), (2, 4)):
        assert 1.6 <= rows[b]["latency_p50_s"] / rows[a]["latency_p50_s"] <= 2.4


def _throughput_bench():
    return load_benchmark("local_throughput")


def test_the_throughput_benchmark_sums_its_rounds():
    bench = _throughput_bench()
    rounds = [{"wall_s": 10.0, "cpu_s": 2.0, "latencies": [1.0, 2.0, 3.0, 4.0], "tokens": 40},
              {"wall_s": 30.0, "cpu_s": 6.0, "latencies": [5.0, 6.0, 7.0, 8.0], "tokens": 120}]
    r = bench.row(2, rounds)
    assert (r["requests"], r["wall_s"], r["server_cpu_s"], r["server_cpu_share"]) == \
        (8, 40.0, 8.0, 0.2)
    assert (r["requests_per_s"], r["completion_tokens_per_s"]) == (0.2, 4.0)
    assert (r["latency_p50_s"], r["round_wall_s"]) == (4.5, [10.0, 30.0])   # median of 1..8
    assert r["latency_p95_s"] == pytest.approx(7.65)                        # numpy's linear


def test_the_throughput_benchmark_counts_what_the_server_returns():
    import os

    from perso_kit.llm.testing import LocalServer
    bench = _throughput_bench()
    with LocalServer() as server:
        one = bench.measure(server.base_url, "any", os.getpid(), 2, 5, 16)
        bodies = [r["body"] for r in server.requests]
    assert len(one["latencies"]) == 5 and len(bodies) == 5
    assert [b["messages"][0]["content"] for b in bodies].count(bench.PROMPTS[0]) == 1
    assert all(b["max_tokens"] == 16 and b["temperature"] == 0.0 for b in bodies)
    expected = sum(chat_completion(b)["usage"]["completion_tokens"] for b in bodies)
    assert one["tokens"] == expected
