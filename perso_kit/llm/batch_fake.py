"""A local fake of OpenAI's Batch endpoints, for tests and the scale notebook (no network).

:class:`FakeBatchAPI` answers, inside the process (an ``httpx`` transport, like the stand-in),
the calls the Batch API path makes with the ``openai`` SDK:

==================================  ===============================================================
endpoint                            what the fake does
==================================  ===============================================================
``POST /v1/files``                  keeps the uploaded file (``purpose="batch"``), returns its id
``GET  /v1/files/{id}/content``     returns a file's bytes (the request, output or error file)
``POST /v1/batches``                creates a batch (endpoint ``/v1/chat/completions``, window
                                    ``24h``) in status ``validating``
``GET  /v1/batches/{id}``           moves the batch one step along ``validating -> in_progress ->
                                    finalizing -> completed`` (``slow`` retrieves per step) and, at
                                    the end, writes the output and error files
``POST /v1/batches/{id}/cancel``    cancels it: the requests not yet answered go to the error file
``POST /v1/chat/completions``       answers one request directly (the path a plain chat call takes)
==================================  ===============================================================

Each line is answered by the **offline stand-in** (plain text heuristics, not an LLM) unless
``answer`` is given: what the fake shows is the *mechanics* of a batch, never an LLM's answers.
Time is counted in retrieves, not seconds, so tests are deterministic.

Faults, to prove that the collector counts them:

* ``fail_on=["text"]``: a line whose last user message contains ``text`` gets an HTTP 400 answer
  (in the error file);
* ``expire_after=n``: the batch answers ``n`` lines, then ends ``expired``; the rest go to the
  error file with code ``batch_expired`` (what OpenAI does when the 24 h window passes);
* ``fail_validation=True``: the batch ends ``failed`` with no output at all;
* ``slow=k``: every intermediate status lasts ``k`` retrieves.

>>> fake = FakeBatchAPI(slow=1)
>>> client = fake.client()
>>> f = client.files.create(file=("r.jsonl", b'{"custom_id": "a", "method": "POST", '
...     b'"url": "/v1/chat/completions", "body": {"model": "m", "messages": '
...     b'[{"role": "user", "content": "hi"}]}}\\n'), purpose="batch")
>>> b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
...                           completion_window="24h")
>>> [client.batches.retrieve(b.id).status for _ in range(4)]
['in_progress', 'finalizing', 'completed', 'completed']
"""
from __future__ import annotations

import email.parser
import email.policy
import json
import threading
from typing import Callable

import httpx

BASE_URL = "http://batch-api.fake/v1"
STEPS = ("validating", "in_progress", "finalizing")
FINAL = ("completed", "failed", "expired", "cancelled")


def _last_user_text(body: dict) -> str:
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            c = m.get("content") or ""
            return c if isinstance(c, str) else json.dumps(c)
    return ""


class FakeBatchAPI:
    """The Batch endpoints and the chat endpoint, in the process (see the module docstring).

    Parameters
    ----------
    answer : callable, optional
        ``answer(body) -> chat completion dict`` for one request body; default: the stand-in.
    fail_on : list of str
        Lines whose last user message contains one of these get an HTTP 400 answer.
    expire_after : int, optional
        Answer this many lines, then end the batch ``expired``.
    fail_validation : bool
        End the batch ``failed`` (input rejected): no output file, no error file.
    slow : int
        Retrieves each intermediate status lasts (0: the first retrieve already sees the end).
    api_key : str, optional
        When set, calls without ``Authorization: Bearer <api_key>`` get 401.

    Attributes
    ----------
    requests : list of dict
        Every HTTP call received: ``method``, ``path``, ``headers`` (lower-case names).
    files : dict
        ``id -> {"filename", "purpose", "data"}`` (bytes).
    batches : dict
        ``id -> the batch object`` as last returned.
    """

    base_url = BASE_URL

    def __init__(self, *, answer: Callable[[dict], dict] | None = None,
                 fail_on: list[str] | tuple = (), expire_after: int | None = None,
                 fail_validation: bool = False, slow: int = 0, api_key: str | None = None):
        if answer is None:
            from .offline import chat_completion
            answer = chat_completion
        self.answer = answer
        self.fail_on = list(fail_on)
        self.expire_after = expire_after
        self.fail_validation = fail_validation
        self.slow = int(slow)
        self.api_key = api_key
        self.requests: list[dict] = []
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self._ticks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._n = 0

    # ----------------------------------------------------------------------------- clients
    def client(self, api_key: str = "no-key-needed", timeout: float = 60.0):
        """An ``openai.OpenAI`` client whose every call goes to this fake."""
        import openai
        return openai.OpenAI(api_key=api_key, base_url=self.base_url, max_retries=0,
                             timeout=timeout,
                             http_client=httpx.Client(transport=httpx.MockTransport(self)))

    def llm(self, cache_path: str, model: str = "gpt-4o-mini",
            api_key: str = "no-key-needed-for-the-fake", **kw):
        """A kit client whose HTTP calls go to this fake: ``backend="openai"``, so the request
        bodies are exactly what OpenAI would get; answers are cached in ``cache_path``."""
        from . import get_llm
        return get_llm("openai", model=model, api_key=api_key, base_url=self.base_url,
                       cache_path=cache_path, client=self.client(api_key), **kw)

    # ----------------------------------------------------------------------------- HTTP
    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        path = request.url.path
        with self._lock:
            self.requests.append({"method": request.method, "path": path,
                                  "headers": {k.lower(): v for k, v in request.headers.items()}})
        if self.api_key is not None and \
                request.headers.get("authorization") != f"Bearer {self.api_key}":
            return httpx.Response(401, json={"error": {"message": "Incorrect API key provided",
                                                       "type": "invalid_request_error"}})
        parts = path.rstrip("/").split("/")
        try:
            if request.method == "POST" and path.endswith("/files"):
                return self._upload(request)
            if request.method == "GET" and len(parts) >= 2 and parts[-1] == "content":
                return self._content(parts[-2])
            if request.method == "POST" and path.endswith("/batches"):
                return self._create(json.loads(request.content or b"{}"))
            if request.method == "POST" and parts[-1] == "cancel":
                return self._cancel(parts[-2])
            if request.method == "GET" and parts[-2] == "batches":
                return self._retrieve(parts[-1])
            if request.method == "POST" and path.endswith("/chat/completions"):
                return httpx.Response(200, json=self.answer(json.loads(request.content)))
            if path.endswith("/models"):
                return httpx.Response(200, json={"object": "list", "data": []})
        except (ValueError, KeyError, IndexError) as e:
            return httpx.Response(400, json={"error": {"message": f"bad request: {e}"}})
        return httpx.Response(404, json={"error": {"message": f"no endpoint {path}"}})

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._n += 1
            return f"{prefix}-fake{self._n:04d}"

    def _store(self, data: bytes, filename: str, purpose: str) -> dict:
        fid = self._new_id("file")
        self.files[fid] = {"filename": filename, "purpose": purpose, "data": data}
        return {"id": fid, "object": "file", "bytes": len(data), "created_at": 0,
                "filename": filename, "purpose": purpose, "status": "processed"}

    def _upload(self, request: httpx.Request) -> httpx.Response:
        head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            head + request.content)
        fields, data, filename = {}, None, "upload.jsonl"
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                data = part.get_payload(decode=True)
                filename = part.get_filename() or filename
            else:
                fields[name] = part.get_payload(decode=True).decode()
        if data is None or fields.get("purpose") != "batch":
            return httpx.Response(400, json={"error": {"message": "upload a file with "
                                                                  "purpose='batch'"}})
        return httpx.Response(200, json=self._store(data, filename, "batch"))

    def _content(self, fid: str) -> httpx.Response:
        if fid not in self.files:
            return httpx.Response(404, json={"error": {"message": f"no file {fid}"}})
        return httpx.Response(200, content=self.files[fid]["data"],
                              headers={"content-type": "application/octet-stream"})

    def _create(self, body: dict) -> httpx.Response:
        if (body.get("endpoint") != "/v1/chat/completions"
                or body.get("completion_window") != "24h"
                or body.get("input_file_id") not in self.files):
            return httpx.Response(400, json={"error": {
                "message": "need input_file_id of an uploaded file, endpoint "
                           "'/v1/chat/completions' and completion_window '24h'"}})
        lines = [json.loads(x) for x in self.files[body["input_file_id"]]["data"].splitlines()
                 if x.strip()]
        bid = self._new_id("batch")
        self.batches[bid] = {
            "id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": body["input_file_id"], "completion_window": "24h",
            "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": 0, "request_counts": {"total": len(lines), "completed": 0,
                                                "failed": 0},
            "metadata": body.get("metadata")}
        self._ticks[bid] = 0
        self.batches[bid]["_lines"] = lines
        return httpx.Response(200, json=self._public(bid))

    def _public(self, bid: str) -> dict:
        return {k: v for k, v in self.batches[bid].items() if not k.startswith("_")}

    def _retrieve(self, bid: str) -> httpx.Response:
        if bid not in self.batches:
            return httpx.Response(404, json={"error": {"message": f"no batch {bid}"}})
        b = self.batches[bid]
        if b["status"] == "cancelling":
            self._finish(bid, "cancelled")
        elif b["status"] not in FINAL:
            self._ticks[bid] += 1
            step = self._ticks[bid] // max(1, self.slow) if self.slow else len(STEPS)
            if step >= len(STEPS):
                self._finish(bid, "failed" if self.fail_validation else "completed")
            else:
                b["status"] = STEPS[step]
                if b["status"] == "in_progress":  # a rising count, for the progress bar
                    total = b["request_counts"]["total"]
                    b["request_counts"]["completed"] = min(
                        total, total * self._ticks[bid] // max(1, self.slow * len(STEPS)))
        return httpx.Response(200, json=self._public(bid))

    def _cancel(self, bid: str) -> httpx.Response:
        if bid not in self.batches:
            return httpx.Response(404, json={"error": {"message": f"no batch {bid}"}})
        if self.batches[bid]["status"] not in FINAL:
            self.batches[bid]["status"] = "cancelling"
        return httpx.Response(200, json=self._public(bid))

    def _finish(self, bid: str, status: str) -> None:
        """Answer the lines and write the output and error files."""
        b = self.batches[bid]
        if status == "failed":
            b.update(status="failed", errors={"object": "list", "data": [
                {"code": "invalid_request", "message": "the input file was rejected (a "
                 "planted fault)", "line": 1, "param": None}]})
            b["request_counts"].update(completed=0, failed=0)
            return
        out, err = [], []
        limit = 0 if status == "cancelled" else self.expire_after
        for i, line in enumerate(b["_lines"]):
            cid, body = line["custom_id"], line.get("body") or {}
            rid = f"batch_req_{bid}_{i}"
            if limit is not None and i >= limit:
                code = "batch_cancelled" if status == "cancelled" else "batch_expired"
                err.append({"id": rid, "custom_id": cid, "response": None, "error": {
                    "code": code, "message": "This request could not be executed before the "
                    "completion window expired." if code == "batch_expired" else
                    "This request was cancelled with its batch."}})
            elif any(t in _last_user_text(body) for t in self.fail_on):
                err.append({"id": rid, "custom_id": cid, "error": None, "response": {
                    "status_code": 400, "request_id": rid, "body": {"error": {
                        "message": "a planted failure of this line",
                        "type": "invalid_request_error"}}}})
            else:
                out.append({"id": rid, "custom_id": cid, "error": None, "response": {
                    "status_code": 200, "request_id": rid, "body": self.answer(body)}})
        if status == "completed" and self.expire_after is not None and \
                self.expire_after < len(b["_lines"]):
            status = "expired"
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                data = "".join(json.dumps(r) + "\n" for r in rows).encode()
                b[name] = self._store(data, f"{bid}_{name[:-8]}.jsonl", "batch_output")["id"]
        b["status"] = status
        b["request_counts"].update(completed=len(out), failed=len(err))
