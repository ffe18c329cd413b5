"""The real openai SDK against a local OpenAI-compatible server on 127.0.0.1 that injects
faults: each case shows the promised behaviour, and no completed result is ever lost."""
from __future__ import annotations

import _thread
import threading
import time

import pytest

from perso_kit.llm import BatchInterrupted, get_llm
from perso_kit.llm import client as client_module
from perso_kit.llm.testing import LocalServer

SEARCH_TOOL = {"name": "search_catalog", "description": "Search the catalog",
               "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                              "required": ["query"]}}
IDS = {"title": "ids", "type": "object", "required": ["ids"],
       "properties": {"ids": {"type": "array", "items": {"type": "integer"}}}}


@pytest.fixture(scope="module")
def server():
    with LocalServer() as s:
        yield s


@pytest.fixture()
def srv(server):
    server.reset()
    yield server
    server.reset()


def make(srv, **kw):
    opts = dict(base_url=srv.base_url, model="local-model", cache_path="off", backoff_s=0.01,
                timeout_s=2.0, max_retries=3)
    opts.update(kw)
    return get_llm("compatible", **opts)


@pytest.fixture()
def waits(monkeypatch):
    """Record the waits between retries instead of sleeping (fast tests)."""
    recorded: list[float] = []
    monkeypatch.setattr(client_module, "_sleep", recorded.append)
    return recorded


def test_429_honours_retry_after_seconds_and_ms(srv):
    llm = make(srv)
    srv.plan("rate", ["429:1", "ok"])
    r = llm.chat("rate limited")
    assert r.ok and r.attempts == 2 and r.latency_s >= 1.0   # really waited 1 s
    srv.plan("fast", ["429ms:150", "ok"])
    r = llm.chat("fast limit")
    assert r.ok and r.attempts == 2 and r.latency_s >= 0.15  # waited the 150 ms it was asked


def test_retry_after_beyond_the_limit_is_reported_not_waited(srv, waits):
    llm = make(srv)
    srv.plan("long", ["429:3600"])
    r = llm.chat("long wait")
    assert r.error_kind == "rate_limit" and r.attempts == 1 and waits == []
    assert "asks to wait 3600 s" in r.error


def test_exponential_backoff_with_jitter(srv, waits):
    llm = make(srv, backoff_s=0.1, max_retries=3)
    srv.plan("boom", ["500", "503", "500", "ok"])
    r = llm.chat("boom")
    assert r.ok and r.attempts == 4
    assert len(waits) == 3
    for n, w in enumerate(waits):  # attempt n waits 0.1 * 2**n times a jitter in [0.5, 1)
        assert 0.05 * 2 ** n <= w <= 0.1 * 2 ** n
    waits.clear()
    srv.plan("rl", ["429:2", "ok"])
    assert llm.chat("rl").ok and waits == [2.0]   # Retry-After replaces the backoff


def test_5xx_exhausted_is_reported_with_the_attempts(srv, waits):
    llm = make(srv, max_retries=2)
    srv.plan("down", ["500"] * 5)
    r = llm.chat("down")
    assert not r.ok and r.error_kind == "server" and r.attempts == 3
    assert "after 3 attempts" in r.error and len(waits) == 2
    assert llm.usage_table().loc[0, "errors"] == 1


def test_timeout_is_retried_then_reported(srv):
    llm = make(srv, timeout_s=0.3, max_retries=1)
    srv.plan("slow once", ["slow:1.0", "ok"])
    r = llm.chat("slow once")
    assert r.ok and r.attempts == 2 and r.latency_s >= 0.3   # the first attempt timed out
    srv.plan("slow always", ["slow:1.0", "slow:1.0"])
    r = llm.chat("slow always")
    assert r.error_kind == "timeout" and r.attempts == 2 and "0.3 s" in r.error


def test_malformed_bodies_are_retried_then_reported(srv, waits):
    llm = make(srv)
    srv.plan("garbled", ["malformed", "ok"])
    assert llm.chat("garbled").attempts == 2
    srv.plan("broken", ["malformed"] * 9)
    r = llm.chat("broken")
    assert r.error_kind == "malformed" and r.attempts == 4 and "not a valid response" in r.error


def test_empty_content_is_counted_not_raised(srv):
    llm = make(srv)
    srv.plan("nothing", ["empty"])
    r = llm.chat("nothing")
    assert r.error_kind == "empty" and r.text == "" and r.attempts == 1
    assert llm.usage_table().loc[0, "errors"] == 1


def test_invalid_tool_arguments_are_flagged_not_raised(srv):
    llm = make(srv)
    srv.plan("tool", ["bad_tool_args", "wrong_tool_args"])
    r1 = llm.chat("tool please", tools=[SEARCH_TOOL])
    r2 = llm.chat("tool again", tools=[SEARCH_TOOL])
    assert r1.ok and not r1.tool_calls[0].valid and "not valid JSON" in r1.tool_calls[0].error
    assert r1.tool_calls[0].raw_arguments == '{"query": "space", '
    assert not r2.tool_calls[0].valid and "do not match the schema" in r2.tool_calls[0].error
    assert "'query' is a required property" in r2.tool_calls[0].error
    assert llm.usage_table().loc[0, "invalid_tool_calls"] == 2


def test_unparseable_json_gets_one_repair_turn_then_is_counted(srv):
    llm = make(srv)
    prompt = "pick: [1] a\n[2] b"
    srv.plan("*", ["bad_json", "ok"])
    r = llm.chat(prompt, json_schema=IDS)
    assert r.ok and r.data == {"ids": [1, 2]} and r.attempts == 2
    repair = srv.requests[-1]["body"]["messages"]
    assert "not valid: no JSON value found" in repair[-1]["content"]
    assert repair[-2] == {"role": "assistant",
                          "content": "I think the best ones are the first two, honestly."}
    srv.plan("*", ["bad_json", "bad_json"])
    r = llm.chat(prompt + " again", json_schema=IDS)
    assert r.error_kind == "invalid_json" and r.data is None and r.attempts == 2
    assert r.usage.prompt_tokens > 0  # both turns' tokens are counted
    assert llm.usage_table().loc[0, "invalid_json"] == 1


def test_auth_errors_are_not_retried_and_hide_the_key(srv):
    srv.api_key = "the-right-key-123456"
    try:
        llm = make(srv, api_key="sk-wrong-key-abcdefghijklmnop")
        r = llm.chat("hello")
        assert r.error_kind == "auth" and r.attempts == 1
        assert "abcdefghijklmnop" not in r.error and "abcdefghijklmnop" not in repr(llm)
        assert make(srv, api_key="the-right-key-123456").chat("hello").ok
    finally:
        srv.api_key = None


def test_budget_refuses_before_sending(srv):
    srv.model = "gpt-4o-mini"
    try:
        llm = get_llm("openai", base_url=srv.base_url, api_key="sk-test-budget-000000",
                      model="gpt-4o-mini", cache_path="off", budget_usd=0.0002)
        r = llm.chat("hello")  # worst case: prompt + 1024 default max tokens at $0.60/M > budget
        assert r.error_kind == "budget" and r.attempts == 0 and srv.requests == []
        assert "nothing was sent" in r.error and "$0.000" in r.error
        replies = [llm.chat(f"question {i}", max_tokens=100) for i in range(20)]
        sent = [r for r in replies if r.error_kind != "budget"]
        assert 0 < len(sent) < 20 and len(srv.requests) == len(sent)
        assert all(r.ok for r in sent) and r.cost_usd == 0.0
        # refusals come last: once the worst case no longer fits, every later call is refused
        assert all(r.error_kind == "budget" for r in replies[len(sent):])
        assert llm.spent_usd <= 0.0002 and llm.budget.refused == 1 + 20 - len(sent)
        # the stand-in's usage priced at gpt-4o-mini: cost = tokens x table price
        first = sent[0]
        assert first.cost_usd == pytest.approx(
            (first.usage.prompt_tokens * 0.15 + first.usage.completion_tokens * 0.60) / 1e6)
        assert srv.requests[0]["body"]["max_completion_tokens"] == 100
    finally:
        srv.model = None


def test_budget_holds_under_concurrency_and_unknown_prices_are_refused(srv):
    srv.model = "gpt-4o-mini"
    try:
        llm = get_llm("openai", base_url=srv.base_url, api_key="sk-test-budget-000000",
                      model="gpt-4o-mini", cache_path="off", budget_usd=0.0003)
        replies = llm.map([{"messages": f"q {i}", "max_tokens": 50} for i in range(40)],
                          concurrency=8, progress=False)
        ok = [r for r in replies if r.ok]
        assert ok and len(ok) < 40 and len(srv.requests) == len(ok)
        assert llm.spent_usd <= 0.0003
        unknown = get_llm("openai", base_url=srv.base_url, api_key="sk-test-budget-000000",
                          model="my-finetune", cache_path="off", budget_usd=1.0)
        r = unknown.chat("hi")
        assert r.error_kind == "budget" and "no price is known" in r.error
    finally:
        srv.model = None


def test_map_keeps_order_and_every_failure_beside_the_successes(srv):
    llm = make(srv, max_retries=1)
    srv.plan("q3 ", ["500"] * 5)
    srv.plan("q5 ", ["429:0", "ok"])
    srv.plan("q7 ", ["malformed"] * 5)
    srv.plan("q9 ", ["empty"])
    replies = llm.map([f"q{i} tell me" for i in range(16)], concurrency=4, progress=False)
    assert len(replies) == 16
    kinds = {i: r.error_kind for i, r in enumerate(replies) if not r.ok}
    assert kinds == {3: "server", 7: "malformed", 9: "empty"}
    for i, r in enumerate(replies):
        if r.ok:
            assert f"q{i}" in r.text  # the answer to request i sits at position i
    assert replies[5].attempts == 2
    table = llm.usage_table()
    assert table.loc[0, "calls"] == 16 and table.loc[0, "errors"] == 3


@pytest.fixture()
def sigint_raises():
    """Ctrl-C raises KeyboardInterrupt during the test, even when the launcher (nohup, cron, a
    background job, many CI runners) set SIGINT to ignored: ``_thread.interrupt_main`` does
    nothing under an ignored SIGINT."""
    import signal
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupt_when_sent(srv, n: int) -> threading.Thread:
    """Press Ctrl-C (``_thread.interrupt_main``) once the server has received ``n`` requests:
    the moment depends on the progress of the batch, not on the wall clock, so a busy machine
    cannot make the test interrupt too early or too late."""
    def wait_then_interrupt():
        deadline = time.monotonic() + 600          # a generous guard, never reached normally
        while len(srv.requests) < n and time.monotonic() < deadline:
            time.sleep(0.005)
        _thread.interrupt_main()
    thread = threading.Thread(target=wait_then_interrupt, daemon=True)
    thread.start()
    return thread


def test_keyboard_interrupt_keeps_completed_results(srv, tmp_path, sigint_raises):
    llm = make(srv, cache_path=str(tmp_path / "c.sqlite"), timeout_s=5)
    assert llm.chat("warm up").ok   # first answers load modules: not part of the timing
    srv.reset()
    srv.plan("*", ["slow:0.25"] * 40)
    # with 2 requests in flight, the 5th is sent only after at least 3 were answered
    interrupt_when_sent(srv, 5)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        replies = llm.map([f"item {i}" for i in range(20)], concurrency=2, progress=False)
    done = [i for i, r in enumerate(replies) if r.ok]
    assert len(replies) == 20 and 2 <= len(done) < 20
    assert all(r.error_kind == "interrupted" for r in replies if not r.ok)
    assert llm.last_batch is replies
    time.sleep(0.6)  # let requests already in flight finish
    srv.reset()
    again = llm.map([f"item {i}" for i in done], progress=False)
    assert all(r.cached for r in again) and srv.requests == []   # kept in the cache too
    srv.plan("*", ["slow:0.25"] * 40)
    interrupt_when_sent(srv, 5)
    with pytest.raises(BatchInterrupted) as info, pytest.warns(RuntimeWarning):
        llm.map([f"other {i}" for i in range(20)], concurrency=2, progress=False,
                on_interrupt="raise")
    assert len(info.value.replies) == 20 and any(r.ok for r in info.value.replies)
    time.sleep(0.6)


# ------------------------------------------------------------------ the circuit breaker
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def breaker(monkeypatch):
    """A fresh process breaker with a clock the test moves by hand."""
    from perso_kit.llm import transport
    now = [0.0]
    b = transport.CircuitBreaker(threshold=3, cooldown_s=30.0, clock=lambda: now[0])
    monkeypatch.setattr(transport, "BREAKER", b)
    return b, now


def test_an_unreachable_server_opens_the_breaker_and_later_calls_fail_at_once(breaker, waits):
    _, now = breaker
    url = f"http://127.0.0.1:{closed_port()}/v1"
    llm = get_llm("compatible", base_url=url, model="m", cache_path="off", backoff_s=0.01,
                  max_retries=4)
    first = llm.chat("hello")
    # three connection failures in a row, not the five attempts the retries allow
    assert first.error_kind == "connection" and first.attempts == 3 and len(waits) == 2
    assert url in first.error and "fail at once" in first.error
    assert "check that a server is running at " + url in first.error
    replies = llm.map([f"q {i}" for i in range(10)], concurrency=4, progress=False)
    assert all(r.error_kind == "connection" and r.attempts == 0 for r in replies)
    assert all(r.error.startswith(f"not sent: {url} could not be reached") for r in replies)
    assert len(waits) == 2  # nothing more was tried
    assert llm.usage_table().loc[0, "errors"] == 11  # counted as failed calls
    now[0] = 31.0  # after the cool-down, one more try (which fails once and reopens)
    again = llm.chat("hello again")
    assert again.attempts == 1 and "fail at once" in again.error
    assert llm.chat("and again").attempts == 0


def test_a_reachable_server_never_opens_the_breaker(breaker, srv, waits):
    b, _ = breaker
    url = f"http://127.0.0.1:{closed_port()}/v1"
    dead = get_llm("compatible", base_url=url, model="m", cache_path="off", backoff_s=0.01)
    assert dead.chat("x").attempts == 3
    llm = make(srv, max_retries=4)  # another URL: its own count
    srv.plan("down", ["500"] * 5)
    r = llm.chat("down")
    assert r.error_kind == "server" and r.attempts == 5   # HTTP errors are answers: retried
    assert llm.chat("up").ok and b.refusal(srv.base_url.rstrip("/")) is None
    b.success(url)  # the server came back: the next call is sent again
    assert dead.chat("y").attempts == 3


def test_the_interrupt_test_passes_when_sigint_is_ignored_by_the_launcher(tmp_path):
    """Run the test above in a child process started with SIGINT ignored (as ``nohup ... &``
    does); it must pass there too."""
    import os
    import signal
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
         str(tmp_path / "t"), f"{__file__}::test_keyboard_interrupt_keeps_completed_results"],
        capture_output=True, text=True, timeout=600, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert child.returncode == 0, child.stdout[-2000:] + child.stderr[-2000:]
    assert "1 passed" in child.stdout
