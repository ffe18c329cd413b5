"""A local OpenAI-compatible HTTP server that injects faults, for tests and benchmarks.

:class:`LocalServer` listens on ``127.0.0.1`` (a free port), answers ``/v1/chat/completions``,
``/v1/embeddings`` and ``/v1/models`` with the offline stand-in's answers, and can be told to
misbehave. A *plan* maps a trigger (a substring of the latest user message; ``"*"`` matches
every request) to a list of faults, consumed one per matching request:

=======================  =====================================================================
fault                    the server...
=======================  =====================================================================
``"ok"``                 answers normally
``"429"`` / ``"429:2"``  returns 429, with ``Retry-After: 2`` when a number is given
``"429ms:150"``          returns 429 with ``retry-after-ms: 150``
``"500"``, ``"503"``     returns that status
``"slow:1.5"``           waits 1.5 s, then answers (longer than a client's timeout: a timeout)
``"malformed"``          returns 200 with a body that is not JSON
``"empty"``              returns a chat completion with empty content and no tool call
``"bad_tool_args"``      returns a tool call to the first offered tool with arguments that are
                         not JSON
``"wrong_tool_args"``    returns a tool call whose JSON arguments miss the required ones
``"bad_json"``           returns prose instead of the requested JSON
``"400"``                returns 400 (``"400:text"`` puts ``text`` in the error message)
=======================  =====================================================================

>>> with LocalServer() as server:                      # doctest: +SKIP
...     server.plan("hello", ["429:0", "ok"])
...     llm = get_llm("compatible", base_url=server.base_url, model="any")
...     llm.chat("hello").attempts
2
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from .offline import StandIn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, payload=None, raw: bytes | None = None,
              headers: dict | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def do_GET(self):
        owner = self.server.owner
        owner._log(self.path, dict(self.headers), None, "ok")
        status, payload = owner.stand_in.handle(urlparse(self.path).path, {})
        self._send(status, payload)

    def do_POST(self):
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._send(400, {"error": {"message": "request body is not JSON"}})
        given = self.headers.get("Authorization") or f"Bearer {self.headers.get('api-key')}"
        if owner.api_key is not None and given != f"Bearer {owner.api_key}":
            owner._log(self.path, dict(self.headers), body, "401")
            return self._send(401, {"error": {"message": "Incorrect API key provided",
                                              "type": "invalid_request_error"}})
        fault = owner._next_fault(body)
        owner._log(self.path, dict(self.headers), body, fault)
        if owner.delay_s:
            time.sleep(owner.delay_s)
        kind, _, arg = fault.partition(":")
        if kind == "429":
            return self._send(429, {"error": {"message": "Rate limit reached", "type":
                                              "rate_limit_error"}},
                              headers={"Retry-After": arg} if arg else None)
        if kind == "429ms":
            return self._send(429, {"error": {"message": "Rate limit reached"}},
                              headers={"retry-after-ms": arg})
        if kind.isdigit() and int(kind) >= 400:
            return self._send(int(kind), {"error": {"message": arg or f"injected {kind}"}})
        if kind == "slow":
            time.sleep(float(arg or 2.0))
        if kind == "malformed":
            return self._send(200, raw=b'{"id": "x", "choices": [ this is not json')
        path = urlparse(self.path).path
        status, payload = owner.stand_in.handle(path, body)
        if status == 200 and path.endswith("/chat/completions"):
            payload = owner._shape(payload, body, kind)
        self._send(status, payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "LocalServer"


class LocalServer:
    """A threaded OpenAI-compatible server on 127.0.0.1 (see the module docstring).

    Parameters
    ----------
    delay_s : float
        Latency added to every POST (the benchmark uses 0.2 s).
    model : str, optional
        Report this model name in answers (and drop the stand-in's fingerprint), to imitate a
        real model; by default answers say ``offline-stand-in``.
    api_key : str, optional
        When set, requests without ``Authorization: Bearer <api_key>`` (or Azure's
        ``api-key: <api_key>``) get 401.

    Attributes
    ----------
    requests : list of dict
        Every request received: ``path``, ``headers`` (names in lower case), ``body``,
        ``fault``.
    """

    def __init__(self, delay_s: float = 0.0, model: str | None = None,
                 api_key: str | None = None):
        self.delay_s = delay_s
        self.model = model
        self.api_key = api_key
        self.stand_in = StandIn()
        self.requests: list[dict] = []
        self._plan: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "LocalServer":
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="perso-kit-local-llm-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------------------- faults
    def plan(self, trigger: str, faults: list[str]) -> None:
        """Requests whose latest user message contains ``trigger`` (``"*"``: all requests)
        get ``faults`` in turn; then normal answers."""
        with self._lock:
            self._plan[trigger] = list(faults)

    def reset(self) -> None:
        with self._lock:
            self._plan.clear()
            self.requests.clear()

    def _next_fault(self, body: dict) -> str:
        msgs = body.get("messages") or []
        last = next((m.get("content") or "" for m in reversed(msgs) if m.get("role") == "user"),
                    "")
        last = last if isinstance(last, str) else json.dumps(last)
        with self._lock:
            for trigger, faults in self._plan.items():
                if faults and (trigger == "*" or trigger in last):
                    return faults.pop(0)
        return "ok"

    def _log(self, path, headers, body, fault) -> None:
        with self._lock:
            self.requests.append({"path": path, "body": body, "fault": fault,
                                  "headers": {k.lower(): v for k, v in headers.items()}})

    def _shape(self, payload: dict, body: dict, kind: str) -> dict:
        if self.model:
            payload["model"] = self.model
            payload.pop("system_fingerprint", None)
        msg = payload["choices"][0]["message"]
        tools = body.get("tools") or []
        name = (tools[0].get("function", tools[0]).get("name") if tools else "unknown")
        if kind == "empty":
            msg.pop("tool_calls", None)
            msg["content"] = ""
            payload["choices"][0]["finish_reason"] = "stop"
        elif kind in ("bad_tool_args", "wrong_tool_args"):
            args = '{"query": "space", ' if kind == "bad_tool_args" else '{"unexpected": 1}'
            msg["content"] = None
            msg["tool_calls"] = [{"id": "call_bad", "type": "function",
                                  "function": {"name": name, "arguments": args}}]
            payload["choices"][0]["finish_reason"] = "tool_calls"
        elif kind == "bad_json":
            msg["content"] = "I think the best ones are the first two, honestly."
        return payload
