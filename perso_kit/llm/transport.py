"""Sending a request: one POST through the openai SDK, retried when retrying can help.

:func:`send` is the only place that talks to a server. It never raises for a failed request;
it returns ``(payload, error_kind, error, attempts)``, with ``payload`` None on failure. What
each failure becomes, and whether it is retried:

==============================  =====================  ===========================================
the server...                   ``error_kind``         retried?
==============================  =====================  ===========================================
answers 429                     ``rate_limit``         yes, after ``Retry-After`` if it says one
answers 5xx or 408              ``server``             yes, after ``Retry-After`` if it says one
does not answer in time         ``timeout``            yes
cannot be reached               ``connection``         yes, until the circuit breaker opens
answers 200 with no choices     ``malformed``          yes
answers 401 / 403               ``auth``               no: a retry would fail the same way
answers another 4xx             ``bad_request``        no
refuses the ``response_format`` ``unsupported_format`` no: the client asks in another form instead
==============================  =====================  ===========================================

The wait before retry ``n`` (0-based) is ``backoff_s * 2**n`` capped at ``backoff_cap_s``, times
a random jitter in [0.5, 1) so that parallel requests do not retry in lock-step; a server's
``Retry-After`` (or ``retry-after-ms``) replaces it. A server asking to wait more than
:data:`MAX_RETRY_AFTER_S` is not retried: the error says how long it asked for.

**The circuit breaker.** A server that cannot be reached (a closed port, a stopped local model, a
wrong ``OPENAI_BASE_URL``) would otherwise cost every call all its attempts. After
:data:`BREAKER_THRESHOLD` connection failures in a row to one URL, :data:`BREAKER` opens for
that URL: the request in progress stops retrying, and for :data:`BREAKER_COOLDOWN_S` seconds
every further request to it fails at once (``error_kind`` ``connection``, zero attempts) with one
message naming the URL and what to check. After the cool-down one request is tried again; any
answer from the server (even an HTTP error) closes the breaker.

The structured-output fallback is decided here too: :func:`format_rejected` recognises a server
that refuses the JSON-schema form, and :func:`fallback_mode` names the form to try next
(llama.cpp's ``json_object`` form when the server names it, else a system instruction).

>>> retry_after_seconds({"retry-after": "2"}), retry_after_seconds({"retry-after-ms": "150"})
(2.0, 0.15)
>>> fallback_mode("response_format", "HTTP 500: Input should be 'text' or 'json_object'")
'json_object'
"""
from __future__ import annotations

import email.utils
import inspect
import json
import logging
import random
import re
import threading
import time
from typing import Callable

from .backends import scrub

log = logging.getLogger("perso_kit.llm")

MAX_RETRY_AFTER_S = 60.0  # a server asking to wait longer than this is not retried
#: how a server says it does not take a structured-output form (llama-cpp-python answers
#: ``json_schema`` with HTTP 500 "Input should be 'text' or 'json_object'")
FORMAT_REJECTED = re.compile(r"response_format|json_schema|json_object|'text' or", re.I)
NOT_RETRIED = ("auth", "bad_request", "unsupported_format")  # a retry would fail the same way

_CREATE_PARAMS: set[str] | None = None

BREAKER_THRESHOLD = 3      # connection failures in a row that open the breaker for a URL
BREAKER_COOLDOWN_S = 30.0  # how long an open breaker refuses requests before one more try


def unreachable_advice(url: str) -> str:
    """What to check when ``url`` cannot be reached (a sentence for an error message).

    >>> unreachable_advice("http://127.0.0.1:9/v1")[:58]
    'check that a server is running at http://127.0.0.1:9/v1 an'
    """
    return (f"check that a server is running at {url} and listening on that port, and that "
            "OPENAI_BASE_URL (or AZURE_OPENAI_ENDPOINT) names it; for a model on this machine "
            "start one with `python -m perso_kit local-llm`, or use the offline stand-in "
            "(PERSO_KIT_LLM_BACKEND=offline)")


class CircuitBreaker:
    """Counts connection failures in a row per URL and refuses requests to a URL that keeps
    failing (see the module docstring). Thread-safe; ``clock`` is replaceable for tests.

    >>> b = CircuitBreaker(threshold=2, cooldown_s=10, clock=lambda: 0.0)
    >>> b.failure("u"), b.failure("u"), b.refusal("u") is not None
    (False, True, True)
    >>> b.success("u"); b.refusal("u") is None
    True
    """

    def __init__(self, threshold: int = BREAKER_THRESHOLD,
                 cooldown_s: float = BREAKER_COOLDOWN_S, clock: Callable[[], float] = time.monotonic):
        self.threshold, self.cooldown_s, self.clock = threshold, cooldown_s, clock
        self._failures: dict[str, int] = {}
        self._opened: dict[str, float] = {}
        self._lock = threading.Lock()

    def refusal(self, url: str) -> str | None:
        """The message of a request refused at once because ``url``'s breaker is open, or
        None when the request may be sent (closed, or the cool-down is over: one more try)."""
        with self._lock:
            opened = self._opened.get(url)
            if opened is None:
                return None
            left = self.cooldown_s - (self.clock() - opened)
            if left <= 0:
                del self._opened[url]  # half-open: this request tries once more
                self._failures[url] = self.threshold - 1
                return None
            n = self._failures.get(url, self.threshold)
        return (f"not sent: {url} could not be reached ({n} connection failures in a row), so "
                f"requests to it fail at once for {left:.0f} s more; {unreachable_advice(url)}")

    def failure(self, url: str) -> bool:
        """Count a connection failure; True when the breaker is (now) open for ``url``."""
        with self._lock:
            n = self._failures.get(url, 0) + 1
            self._failures[url] = n
            if n >= self.threshold:
                self._opened[url] = self.clock()
                return True
            return False

    def success(self, url: str) -> None:
        """The server at ``url`` answered: close its breaker."""
        with self._lock:
            self._failures.pop(url, None)
            self._opened.pop(url, None)

    def reset(self) -> None:
        """Forget every URL (tests; or after starting the server that was missing)."""
        with self._lock:
            self._failures.clear()
            self._opened.clear()


#: the process-wide breaker every request goes through (a kernel's clients share it)
BREAKER = CircuitBreaker()


def endpoint_url(client) -> str:
    """The URL a SDK client sends to (its ``base_url``), or "" when it has none."""
    return str(getattr(client, "base_url", "") or "").rstrip("/")


def retry_after_seconds(headers) -> float | None:
    """The wait a server asks for: ``retry-after-ms``, or ``Retry-After`` in seconds or as an
    HTTP date; None when absent or unreadable."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def create_params(client) -> set[str]:
    """The keyword arguments the SDK's ``chat.completions.create`` knows (the others of a body
    travel in ``extra_body``)."""
    global _CREATE_PARAMS
    if _CREATE_PARAMS is None:
        _CREATE_PARAMS = set(inspect.signature(client.chat.completions.create).parameters)
    return _CREATE_PARAMS


def backoff_wait(attempt: int, backoff_s: float, backoff_cap_s: float) -> float:
    """The wait before retry ``attempt`` (0-based) when the server names none."""
    wait = min(backoff_cap_s, backoff_s * 2 ** attempt)
    return wait * random.uniform(0.5, 1.0)


def send(client, body: dict, endpoint: str = "chat", *, max_retries: int, timeout_s: float,
         backoff_s: float, backoff_cap_s: float,
         sleep: Callable[[float], None] = time.sleep) -> tuple[dict | None, str | None,
                                                              str | None, int]:
    """POST ``body`` with retries. Returns ``(json, error_kind, error, attempts)``.

    Parameters
    ----------
    client : openai.OpenAI
        The SDK client (or the stand-in's in-process imitation of it).
    body : dict
        The wire body (see :func:`perso_kit.llm.request.wire_body`).
    endpoint : {"chat", "embeddings"}
    max_retries : int
        Retries after the first attempt (so at most ``max_retries + 1`` attempts).
    timeout_s : float
        Only for the message of a timeout (the SDK client enforces it).
    backoff_s, backoff_cap_s : float
        See the module docstring.
    sleep : callable
        How to wait (tests pass one that records the waits).
    """
    import openai

    known = create_params(client) if endpoint == "chat" else None
    url = endpoint_url(client)
    refusal = BREAKER.refusal(url) if url else None
    if refusal:
        return None, "connection", refusal, 0
    attempts, kind, error = 0, None, None
    for attempt in range(max_retries + 1):
        attempts += 1
        wait = None
        try:
            if endpoint == "chat":
                args = {k: v for k, v in body.items() if k in known}
                extra = {k: v for k, v in body.items() if k not in known}
                if extra:
                    args["extra_body"] = extra
                raw = client.chat.completions.with_raw_response.create(**args)
            else:
                raw = client.embeddings.with_raw_response.create(**body)
            text = raw.http_response.text
            try:
                payload = json.loads(text)
            except ValueError:
                payload = None
            shape = "choices" if endpoint == "chat" else "data"
            if not isinstance(payload, dict) or not isinstance(payload.get(shape), list) \
                    or not payload[shape]:
                kind = "malformed"
                error = f"the server's answer is not a valid response: {text[:80]!r}"
            else:
                BREAKER.success(url)
                return payload, None, None, attempts
            BREAKER.success(url)  # it answered, however badly: it can be reached
        except openai.APITimeoutError:
            kind, error = "timeout", f"no answer within {timeout_s:g} s"
        except openai.APIConnectionError as e:
            kind, error = "connection", f"could not reach the server at {url or '?'}: {e}"
            if url and BREAKER.failure(url):
                error = (f"could not reach {url} ({e}); after {BREAKER.threshold} connection "
                         f"failures in a row, further requests to it fail at once for "
                         f"{BREAKER.cooldown_s:.0f} s; {unreachable_advice(url)}")
                break
        except openai.APIStatusError as e:
            BREAKER.success(url)
            kind, wait = status_kind(e.status_code, str(e.message), body, e.response.headers)
            error = f"HTTP {e.status_code}: {e.message}"
            if kind in NOT_RETRIED:
                break
        if attempt == max_retries:
            break
        if wait is not None and wait > MAX_RETRY_AFTER_S:
            error += f" (the server asks to wait {wait:.0f} s; not retried)"
            break
        if wait is None:
            wait = backoff_wait(attempt, backoff_s, backoff_cap_s)
        log.info("retrying after %s (%.2f s, attempt %d)", kind, wait, attempt + 1)
        sleep(wait)
    if attempts > 1:
        error = f"{error} (after {attempts} attempts)"
    return None, kind, scrub(error or "unknown error"), attempts


def status_kind(code: int, message: str, body: dict, headers=None) -> tuple[str, float | None]:
    """The ``error_kind`` of an HTTP error status, and the wait the server asks for (429, 5xx
    and 408 only; None otherwise).

    >>> status_kind(429, "Rate limit reached", {}, {"retry-after": "3"})
    ('rate_limit', 3.0)
    >>> status_kind(400, "response_format is not supported", {"response_format": {}})
    ('unsupported_format', None)
    """
    wait = None
    if code == 429:
        kind = "rate_limit"
        wait = retry_after_seconds(headers)
    elif code >= 500 or code == 408:
        kind = "server"
        wait = retry_after_seconds(headers)
    elif code in (401, 403):
        kind = "auth"
    else:
        kind = "bad_request"
    if code in (400, 422, 500) and "response_format" in body \
            and FORMAT_REJECTED.search(message):
        kind = "unsupported_format"  # not worth a retry: the client asks in another form
    return kind, wait


def format_rejected(kind: str | None, error: str | None) -> bool:
    """Did the server refuse the structured-output form (rather than fail for another reason)?"""
    return kind == "unsupported_format" or (kind == "bad_request"
                                            and "response_format" in (error or ""))


def fallback_mode(mode: str, error: str | None) -> str:
    """The structured-output form to try after the server refused ``mode``: a server that names
    ``json_object`` as what it takes gets that form; any other refusal of ``response_format``
    gets the instruction in a system message."""
    return ("json_object" if mode == "response_format" and re.search(r"json_object", error or "")
            else "prompt")
