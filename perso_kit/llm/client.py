"""One client for every backend: :class:`LLM` (build it with :func:`perso_kit.llm.get_llm`).

A call goes through these steps, in order::

    privacy check (titles-only) -> cache / replay lookup -> budget reservation
      -> HTTP request through the openai SDK, retried on 429 / 5xx / timeouts
      -> parse: text, tool calls (arguments validated), JSON (validated, one repair turn)
      -> cost from the price table -> cache write -> Reply

Nothing in that chain raises for a failed call: the :class:`~perso_kit.llm.reply.Reply` carries
``error`` and ``error_kind``, so :meth:`LLM.map` keeps every failure beside the successes.

>>> from perso_kit.llm import get_llm
>>> llm = get_llm("offline", cache_path="off")
>>> r = llm.chat("Recommend 2 movies like Alien (1979) and Heat (1995).")
>>> r.stand_in, r.ok
(True, True)
"""
from __future__ import annotations

import concurrent.futures as cf
import email.utils
import inspect
import json
import logging
import math
import random
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import structured
from .backends import Settings, make_client, scrub
from .cache import ResponseCache, request_key
from .pricing import FREE, Budget, Price, PriceTable, estimate_prompt_tokens, estimate_tokens
from .reply import STAND_IN_LABEL, STAND_IN_MODEL, LLMError, Reply, ToolCall, Usage

log = logging.getLogger("perso_kit.llm")

DEFAULT_MAX_TOKENS = 1024  # sent when the caller gives no max_tokens: no answer is unbounded
MAX_RETRY_AFTER_S = 60.0  # a server asking to wait longer than this is not retried
_REASONING = re.compile(r"^(o\d|gpt-5)")  # models that accept only the default temperature
#: how a server says it does not take a structured-output form (llama-cpp-python answers
#: ``json_schema`` with HTTP 500 "Input should be 'text' or 'json_object'")
_FORMAT_REJECTED = re.compile(r"response_format|json_schema|json_object|'text' or", re.I)
#: structured-output modes: the JSON schema in ``response_format`` (OpenAI's form), in
#: llama.cpp's ``{"type": "json_object", "schema": ...}`` form, or as a system instruction
STRUCTURED_MODES = ("auto", "response_format", "json_object", "prompt")
_PROCESS_BUDGETS: dict[float, Budget] = {}
_SESSION_LOG: list[dict] = []  # every call of every client in this process (the kernel)
_sleep = time.sleep  # the wait between retries (tests replace it to record the waits)


class BatchInterrupted(KeyboardInterrupt):
    """Raised by ``map(..., on_interrupt="raise")``; ``.replies`` holds every result so far."""

    def __init__(self, replies: list[Reply]):
        super().__init__(f"interrupted: {sum(r.error_kind != 'interrupted' for r in replies)} "
                         f"of {len(replies)} requests completed")
        self.replies = replies


class Banner:
    """A one-line statement of the backend in use, for notebooks (text and HTML)."""

    def __init__(self, text: str, kind: str):
        self.text, self.kind = text, kind

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colors = {"stand-in": "#fff4ce", "replay": "#e5f0ff", "live": "#e6f4ea"}
        import html
        return (f'<div style="padding:6px 10px;border-left:4px solid #888;background:'
                f'{colors.get(self.kind, "#eee")};font-family:sans-serif">'
                f'<b>LLM backend:</b> {html.escape(self.text)}</div>')


def _normalize_messages(messages) -> list[dict]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, dict):
        return [messages]
    msgs = list(messages)
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m:
            raise TypeError(f"message {i} must be a dict with 'role' and 'content', got {m!r:.80}")
    return msgs


def _normalize_tools(tools) -> list[dict] | None:
    if not tools:
        return None
    out = []
    for t in tools:
        if "function" in t:
            out.append(t)
        elif "name" in t:
            out.append({"type": "function", "function": t})
        else:
            raise TypeError(f"a tool must be {{'type': 'function', 'function': {{...}}}} or "
                            f"{{'name', 'description', 'parameters'}}, got {t!r:.80}")
    return out


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


_CREATE_PARAMS: set[str] | None = None


def _create_params(client) -> set[str]:
    global _CREATE_PARAMS
    if _CREATE_PARAMS is None:
        _CREATE_PARAMS = set(inspect.signature(client.chat.completions.create).parameters)
    return _CREATE_PARAMS


class LLM:
    """A chat/embedding client over one backend, with cache, budget, retries and usage.

    Build it with :func:`perso_kit.llm.get_llm`. Attributes worth knowing: ``settings``
    (key hidden), ``budget`` (:class:`~perso_kit.llm.pricing.Budget`), ``cache``
    (:class:`~perso_kit.llm.cache.ResponseCache` or None), ``stand_in`` (the offline
    :class:`~perso_kit.llm.offline.StandIn`, or None), ``notices`` (things the user should
    know, e.g. a damaged cache was moved aside).

    Parameters
    ----------
    settings : Settings
    client : openai.OpenAI, optional
        An SDK client to use instead of the one ``settings`` describes (tests pass one).
    budget : Budget, optional
        Defaults to one shared by every LLM of the process with the same limit (so
        ``PERSO_KIT_LLM_BUDGET_USD`` caps the kernel's spending, not one object's).
    backoff_s, backoff_cap_s : float
        Exponential backoff: attempt ``n`` waits ``backoff_s * 2**n`` (capped), times a
        jitter in [0.5, 1); a ``Retry-After`` header replaces it.
    repair_attempts : int
        Extra turns that feed a JSON validation error back to the model.
    structured_mode : {"auto", "response_format", "json_object", "prompt"}
        How ``json_schema=`` is asked for: OpenAI's ``response_format`` json_schema,
        llama.cpp's ``{"type": "json_object", "schema": ...}`` (schema-constrained decoding),
        or a system instruction. "auto" starts with ``response_format``; when the server rejects
        it (HTTP 400/422/500 naming the format), the client switches once to ``json_object``,
        then to the instruction, and remembers. ``PERSO_KIT_LLM_JSON_MODE`` sets it too.
    """

    def __init__(self, settings: Settings, *, client=None, budget: Budget | None = None,
                 backoff_s: float = 0.5, backoff_cap_s: float = 20.0, repair_attempts: int = 1,
                 structured_mode: str = "auto", prices: str | Path | None = None):
        self.settings = settings
        self.notices: list[str] = []
        self._notified: set[str] = set()
        self.stand_in = None
        if settings.backend == "offline":
            from .offline import StandIn
            self.stand_in = StandIn()
        self._client = client if client is not None else make_client(settings, self.stand_in)
        if budget is None:
            limit = settings.budget_usd
            budget = (_PROCESS_BUDGETS.setdefault(limit, Budget(limit)) if limit is not None
                      else Budget(None))
        self.budget = budget
        self.backoff_s, self.backoff_cap_s = backoff_s, backoff_cap_s
        self.repair_attempts = repair_attempts
        structured_mode = {"json_schema": "response_format"}.get(structured_mode,
                                                                 structured_mode)
        if structured_mode not in STRUCTURED_MODES:
            raise ValueError(f"structured_mode (PERSO_KIT_LLM_JSON_MODE) must be one of "
                             f"{STRUCTURED_MODES} or 'json_schema', not {structured_mode!r}")
        self.structured_mode = structured_mode
        self._auto_format = structured_mode == "auto"  # may fall back when a server refuses
        self.prices = PriceTable(prices)
        self.cache: ResponseCache | None = None
        if settings.backend == "replay":
            self.cache = ResponseCache(settings.replay_path, readonly=True)
        elif settings.cache_path:
            self.cache = ResponseCache(settings.cache_path)
        if self.cache is not None:
            self.notices += self.cache.notices
        if settings.backend == "replay" and not settings.model and self.cache is not None:
            recorded = self.cache.models()
            settings.model = next(iter(recorded), None)
        if settings.backend == "compatible" and not settings.model:
            settings.model = self._first_served_model()
        self._lock = threading.Lock()
        self._format_fallbacks = 0
        self._records: list[dict] = []
        self._sent: list[dict] = []
        self.last_batch: list[Reply] | None = None

    # ----------------------------------------------------------------------------- identity
    @property
    def backend(self) -> str:
        return self.settings.backend

    @property
    def model(self) -> str:
        return self.settings.model or ""

    @property
    def is_offline(self) -> bool:
        """True for the stand-in and for replay (nothing leaves the machine)."""
        return self.backend in ("offline", "replay")

    @property
    def label(self) -> str:
        """Which backend answers, in words (the stand-in says it is not an LLM)."""
        s = self.settings
        if s.backend == "offline":
            return STAND_IN_LABEL
        if s.backend == "replay":
            return f"replay of {Path(s.replay_path).name} (recorded answers of {self.model})"
        if s.backend == "azure":
            return f"Azure OpenAI · deployment {self.model}"
        if s.backend == "local":
            return f"local model {self.model} (llama.cpp server on this machine, no key)"
        if s.backend == "openai" and s.base_url.rstrip("/") == "https://api.openai.com/v1":
            return f"OpenAI · {self.model}"
        where = "local " if s.is_local else ""
        return f"OpenAI-compatible {where}server at {s.base_url} · {self.model}"

    def banner(self) -> Banner:
        """A banner for the top of a notebook: which backend is in use, in words."""
        extra = []
        if self.settings.price_as:
            extra.append(f"priced as {self.settings.price_as} (what-if prices)")
        if self.budget.limit_usd is not None:
            extra.append(f"budget ${self.budget.limit_usd:.2f}")
        if self.settings.titles_only:
            extra.append("titles-only privacy mode")
        if self.cache is not None and not self.cache.broken and self.backend != "replay":
            extra.append("answers cached")
        kind = {"offline": "stand-in", "replay": "replay"}.get(self.backend, "live")
        if self.backend == "local":
            text_note = (". A real language model running on this CPU; a small model's "
                         "behaviour is evidence about that model, not about LLMs in general.")
        else:
            text_note = ""
        text = self.label + (f" ({'; '.join(extra)})" if extra else "") + text_note
        if kind == "stand-in":
            text += (". Its answers come from word overlap and templates over the prompt; "
                     "numbers measured with it describe the plumbing, not a language model.")
        return Banner(text, kind)

    def __repr__(self) -> str:
        return f"LLM({self.label!r}, {self.settings!r})"

    def _notice(self, key: str, message: str) -> None:
        if key not in self._notified:
            self._notified.add(key)
            self.notices.append(message)
            log.warning(message)

    def _first_served_model(self) -> str:
        try:
            models = self._client.models.list()
            first = next(iter(models), None)
            if first is not None:
                self._notice("model", f"no model named (PERSO_KIT_LLM_MODEL); using the first "
                                      f"the server serves: {first.id}")
                return first.id
        except Exception as e:  # noqa: BLE001 -- any failure means: ask the user
            raise ValueError(f"could not list the models of {self.settings.base_url} "
                             f"({scrub(str(e))[:200]}); set PERSO_KIT_LLM_MODEL") from None
        raise ValueError(f"{self.settings.base_url} serves no model; set PERSO_KIT_LLM_MODEL")

    # ----------------------------------------------------------------------------- pricing
    def _price(self, model: str, reported: str | None = None) -> Price | None:
        s = self.settings
        if s.price_as:
            return self.prices.lookup(s.price_as)
        if s.is_local or model == STAND_IN_MODEL or reported == STAND_IN_MODEL:
            return FREE
        for name in (reported, model):
            if name:
                p = self.prices.lookup(name)
                if p is not None:
                    return p
        return None

    # ----------------------------------------------------------------------------- requests
    def _request(self, messages, json_schema, tools, tool_choice, temperature, max_tokens,
                 params) -> dict:
        """The backend-neutral request: what the cache key hashes (never a key or header)."""
        req: dict[str, Any] = {"model": self.model, "messages": messages,
                               "temperature": temperature,
                               "max_tokens": int(max_tokens if max_tokens is not None
                                                 else DEFAULT_MAX_TOKENS)}
        if tools:
            req["tools"] = tools
            if tool_choice is not None:
                req["tool_choice"] = tool_choice
        if json_schema is not None:
            name, schema = structured.normalize_schema(json_schema)
            req["json_schema"] = {"name": name, "schema": schema}
        req.update(params)
        return req

    def _wire(self, req: dict, mode: str) -> dict:
        """The body actually sent, for this backend and structured-output mode."""
        body = {k: v for k, v in req.items() if k != "json_schema"}
        if "json_schema" in req:
            if mode == "prompt":
                instr = structured.schema_instruction(req["json_schema"])
                body["messages"] = [{"role": "system", "content": instr}] + req["messages"]
            elif mode == "json_object":
                body["response_format"] = {"type": "json_object",
                                           "schema": req["json_schema"]["schema"]}
            else:
                body["response_format"] = structured.response_format(req["json_schema"])
        model = body.get("model", "")
        if self.backend in ("openai", "azure") and "max_tokens" in body:
            body["max_completion_tokens"] = body.pop("max_tokens")
        if _REASONING.match(model) and body.get("temperature") == 0.0:
            body.pop("temperature")
            self._notice("temperature", f"{model} accepts only its default temperature; "
                                        "the temperature parameter was not sent")
        return body

    def _send(self, body: dict, endpoint: str = "chat") -> tuple[dict | None, str | None,
                                                                   str | None, int]:
        """POST with retries. Returns ``(json, error_kind, error, attempts)``."""
        import openai

        known = _create_params(self._client) if endpoint == "chat" else None
        attempts, kind, error = 0, None, None
        for attempt in range(self.settings.max_retries + 1):
            attempts += 1
            wait = None
            try:
                if endpoint == "chat":
                    args = {k: v for k, v in body.items() if k in known}
                    extra = {k: v for k, v in body.items() if k not in known}
                    if extra:
                        args["extra_body"] = extra
                    raw = self._client.chat.completions.with_raw_response.create(**args)
                else:
                    raw = self._client.embeddings.with_raw_response.create(**body)
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
                    return payload, None, None, attempts
            except openai.APITimeoutError:
                kind, error = "timeout", f"no answer within {self.settings.timeout_s:g} s"
            except openai.APIConnectionError as e:
                kind, error = "connection", f"could not reach the server: {e}"
            except openai.APIStatusError as e:
                code = e.status_code
                if code == 429:
                    kind = "rate_limit"
                    wait = retry_after_seconds(e.response.headers)
                elif code >= 500 or code == 408:
                    kind = "server"
                    wait = retry_after_seconds(e.response.headers)
                elif code in (401, 403):
                    kind = "auth"
                else:
                    kind = "bad_request"
                error = f"HTTP {code}: {e.message}"
                if code in (400, 422, 500) and "response_format" in body \
                        and _FORMAT_REJECTED.search(str(e.message)):
                    kind = "unsupported_format"  # not worth a retry: see _exchange
                if kind in ("auth", "bad_request", "unsupported_format"):
                    break
            if attempt == self.settings.max_retries:
                break
            if wait is not None and wait > MAX_RETRY_AFTER_S:
                error += f" (the server asks to wait {wait:.0f} s; not retried)"
                break
            if wait is None:
                wait = min(self.backoff_cap_s, self.backoff_s * 2 ** attempt)
                wait *= random.uniform(0.5, 1.0)
            log.info("retrying after %s (%.2f s, attempt %d)", kind, wait, attempt + 1)
            _sleep(wait)
        if attempts > 1:
            error = f"{error} (after {attempts} attempts)"
        return None, kind, scrub(error or "unknown error"), attempts

    def _parse(self, payload: dict, tools: list | None, json_schema: dict | None) -> Reply:
        choice = payload["choices"][0] if payload.get("choices") else {}
        message = choice.get("message") or {}
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        usage = payload.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        model = payload.get("model") or self.model
        from .offline import FINGERPRINT
        stand_in = model == STAND_IN_MODEL or payload.get("system_fingerprint") == FINGERPRINT
        reply = Reply(
            text=content or "", backend=self.backend, model=model, stand_in=stand_in,
            usage=Usage(int(usage.get("prompt_tokens") or 0),
                        int(usage.get("completion_tokens") or 0),
                        int(details.get("cached_tokens") or 0), estimated=stand_in),
            finish_reason=choice.get("finish_reason"),
            logprobs=(choice.get("logprobs") or {}).get("content"))
        specs = {t["function"]["name"]: t["function"].get("parameters") for t in tools or []}
        for i, call in enumerate(message.get("tool_calls") or []):
            fn = call.get("function") or {}
            name, raw_args = fn.get("name", ""), fn.get("arguments") or ""
            tc = ToolCall(call.get("id") or f"call_{i}", name, None, raw_args)
            try:
                args = json.loads(raw_args) if raw_args.strip() else {}
                if not isinstance(args, dict):
                    raise ValueError("arguments must be a JSON object")
                tc.arguments = args
                if name not in specs:
                    tc.valid, tc.error = False, f"unknown tool {name!r}"
                elif specs[name]:
                    err = structured.validate(args, specs[name])
                    if err:
                        tc.valid, tc.error = False, f"arguments do not match the schema: {err}"
            except ValueError as e:
                tc.valid, tc.error = False, f"arguments are not valid JSON: {e}"
            reply.tool_calls.append(tc)
        if json_schema is not None:
            reply.data, err = structured.parse_and_validate(reply.text, json_schema)
            if err:
                cut = (" (the answer was cut at max_tokens: allow more tokens)"
                       if reply.truncated else "")
                reply.error, reply.error_kind = f"invalid JSON answer{cut}: {err}", "invalid_json"
        elif not reply.text.strip() and not reply.tool_calls:
            reply.error, reply.error_kind = "the answer is empty", "empty"
        return reply

    # ----------------------------------------------------------------------------- chat
    def chat(self, messages, *, json_schema: dict | None = None, tools: list | None = None,
             tool_choice=None, temperature: float = 0.0, max_tokens: int | None = None,
             cache: bool = True, sample: int = 0, **params) -> Reply:
        """Send one chat request; never raises for a failed call (see :class:`Reply`).

        Parameters
        ----------
        messages : str or list of dict
            A string is one user message.
        json_schema : dict, optional
            Ask for JSON matching this schema (its ``title`` names it; the stand-in's handler
            registry uses the name). ``reply.data`` holds the validated value.
        tools : list of dict, optional
            OpenAI-format tools (or ``{"name", "description", "parameters"}``).
        temperature, max_tokens : sampling parameters sent to the backend.
        cache : bool
            Look the request up in the cache first. ``cache=False`` always sends it (the
            answer is still stored, so a recording stays complete); replay always reads its
            file.
        sample : int
            Part of the cache key only: ``sample=1, 2, ...`` give independent cached draws of
            the same request (for lessons on non-determinism).
        **params
            Other request parameters, sent as they are (``seed``, ``logprobs``, ``top_p``...).
        """
        t0 = time.perf_counter()
        try:
            messages = _normalize_messages(messages)
            tools = _normalize_tools(tools)
            if json_schema is not None:
                structured.check_schema(json_schema)
        except (TypeError, ValueError) as e:
            return self._finish(Reply(backend=self.backend, model=self.model, error=str(e),
                                      error_kind="error"), t0)
        req = self._request(messages, json_schema, tools, tool_choice, temperature,
                            max_tokens, params)
        extra = {"sample": sample} if sample else {}
        if self.backend == "offline":
            from .offline import VERSION
            extra["stand_in_version"] = VERSION
        key = request_key(req, **extra)

        if self.settings.titles_only:
            from .privacy import check_titles_only
            problem = check_titles_only(messages)
            if problem:
                return self._finish(Reply(backend=self.backend, model=self.model, key=key,
                                          error=f"titles-only mode: {problem}; nothing was sent",
                                          error_kind="privacy"), t0)

        use_cache = self.cache is not None and not self.cache.broken
        if use_cache and (cache or self.backend == "replay"):
            hit = self.cache.get(key)
            if hit is not None:
                reply = self._parse(hit, tools, json_schema)
                reply.cached, reply.key, reply.cost_usd = True, key, 0.0
                reply.backend = hit.get("_backend") or self.backend
                saved = hit.get("_cost_usd") or 0.0
                return self._finish(reply, t0, saved=saved)
        if self.backend == "replay":
            if self.cache is None or self.cache.broken:
                return self._finish(Reply(
                    backend="replay", model=self.model, key=key, error_kind="replay_miss",
                    error=f"replay: {self.cache.broken if self.cache else 'no recorded file'}"),
                    t0)
            return self._finish(Reply(
                backend="replay", model=self.model, key=key, error_kind="replay_miss",
                error=(f"this request is not in the recorded file {self.settings.replay_path}. "
                       "Record it: run the same notebook once with a real backend (e.g. "
                       "OPENAI_API_KEY=...) and PERSO_KIT_LLM_CACHE=<that file>; then replay "
                       "with PERSO_KIT_LLM_BACKEND=replay PERSO_KIT_LLM_REPLAY=<that file>. "
                       "Any change to the prompt, model or parameters is a new request.")), t0)

        mode = self.structured_mode if self.structured_mode != "auto" else "response_format"
        convo = list(messages)
        total = Usage()
        attempts, cost = 0, 0.0
        reply: Reply | None = None
        payload = None
        price = self._price(self.model)
        for turn in range(1 + (self.repair_attempts if json_schema is not None else 0)):
            r_req = dict(req, messages=convo)
            payload, kind, error, n, reserved, mode = self._exchange(r_req, mode, price,
                                                                     json_schema is not None)
            attempts += n
            if payload is None:
                reply = Reply(backend=self.backend, model=self.model, key=key, error=error,
                              error_kind=kind)
                break
            reply = self._parse(payload, tools, json_schema)
            total = total + reply.usage
            p = self._price(self.model, reply.model)
            call_cost = (p.cost(reply.usage.prompt_tokens, reply.usage.completion_tokens,
                                reply.usage.cached_prompt_tokens) if p else math.nan)
            cost += call_cost
            self.budget.settle(reserved, call_cost)
            if reply.error_kind != "invalid_json" or turn == self.repair_attempts \
                    or reply.truncated:  # an answer cut at max_tokens would be cut again
                break
            convo = structured.repair_messages(convo, reply.text,
                                               reply.error.split(": ", 1)[-1])
        reply.key = key
        reply.attempts = attempts
        reply.usage = total
        reply.cost_usd = cost
        if reply.ok and use_cache and payload is not None:
            stored = dict(payload)
            stored["usage"] = {"prompt_tokens": total.prompt_tokens,
                               "completion_tokens": total.completion_tokens}
            # the *requested* model: the one a replay must ask for to find this answer again
            self.cache.put(key, stored, model=self.model, backend=self.backend, request=req,
                           cost_usd=0.0 if math.isnan(cost) else cost)
        return self._finish(reply, t0)

    def _exchange(self, req: dict, mode: str, price: Price | None, structured_call: bool):
        """One request/response with budget, retries and the response_format fallback.
        Returns ``(payload, error_kind, error, attempts, reserved_usd, mode)``; on failure
        the reservation is already released."""
        body = self._wire(req, mode)
        refusal, reserved = self._reserve(body, price)
        if refusal:
            return None, "budget", refusal, 0, 0.0, mode
        self._record_sent(body)
        payload, kind, error, n = self._send(body)
        rejected = kind == "unsupported_format" or (kind == "bad_request"
                                                    and "response_format" in (error or ""))
        if payload is None and rejected and structured_call and self._auto_format \
                and mode in ("response_format", "json_object"):
            self.budget.settle(reserved, 0.0)
            # a server that names json_object as what it takes gets that form; any other
            # refusal of response_format gets the instruction in a system message
            nxt = ("json_object" if mode == "response_format"
                   and re.search(r"json_object", error or "") else "prompt")
            self._notice(f"structured-{nxt}",
                         f"the server rejects response_format in the {mode} form "
                         f"({(error or '')[:80]}); asking for JSON "
                         + ("in llama.cpp's json_object form with the schema instead"
                            if nxt == "json_object" else "in a system message instead"))
            self.structured_mode = nxt
            self._format_fallbacks += 1
            payload, kind, error, n2, reserved, mode = self._exchange(req, nxt, price, True)
            return payload, kind, error, n + n2, reserved, mode
        if payload is None:
            self.budget.settle(reserved, 0.0)
        return payload, kind, error, n, reserved, mode

    def _reserve(self, body: dict, price: Price | None) -> tuple[str | None, float]:
        """Book the worst case of ``body``: ``(None, booked_usd)``, or ``(reason, 0.0)``."""
        if price is FREE:
            return None, 0.0
        if price is None:
            if self.budget.limit_usd is None:
                return None, 0.0
            with self.budget._lock:
                self.budget.refused += 1
            return (f"budget: no price is known for model {self.model!r}, so the worst case "
                    "cannot be bounded; add it to data/llm_prices.csv or pass price_as=...; "
                    "nothing was sent"), 0.0
        prompt = estimate_prompt_tokens(body.get("messages", []), body.get("tools"),
                                        body.get("response_format"), safe=True)
        out = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
        worst = price.cost(prompt, int(out))
        if not self.budget.reserve(worst):
            return (f"budget: this call could cost up to ${worst:.6f} ({prompt} prompt tokens "
                    f"est. + {out} max answer tokens at {price.model} prices), and only "
                    f"${max(0.0, self.budget.remaining_usd):.6f} of the "
                    f"${self.budget.limit_usd:.4f} budget is left; nothing was sent"), 0.0
        return None, worst

    def _record_sent(self, body: dict) -> None:
        with self._lock:
            self._sent.append({"time": time.time(), "backend": self.backend,
                               "server": self.settings.base_url or self.settings.azure_endpoint
                               or ("in-process stand-in" if self.backend == "offline" else ""),
                               "body": json.loads(json.dumps(body, default=str))})

    def _finish(self, reply: Reply, t0: float, saved: float = 0.0) -> Reply:
        reply.latency_s = time.perf_counter() - t0
        if reply.error:
            reply.error = scrub(reply.error)
        record = {"backend": self.backend, "model": self.model,
                  "served_model": reply.model or self.model, "stand_in": reply.stand_in,
                  "cached": reply.cached, "ok": reply.ok, "error_kind": reply.error_kind,
                  "prompt_tokens": reply.usage.prompt_tokens,
                  "completion_tokens": reply.usage.completion_tokens,
                  "cost_usd": reply.cost_usd, "saved_usd": saved,
                  "invalid_tool_calls": sum(not c.valid for c in reply.tool_calls),
                  "latency_s": reply.latency_s, "attempts": reply.attempts,
                  "truncated": reply.truncated}
        with self._lock:
            self._log_call(record)
        log.debug("llm call: model=%s cached=%s tokens=%d+%d cost=%.6f error=%s",
                  record["model"], reply.cached, record["prompt_tokens"],
                  record["completion_tokens"], reply.cost_usd, reply.error_kind)
        return reply

    # ----------------------------------------------------------------------------- batches
    def map(self, requests: Iterable, concurrency: int = 8, desc: str = "LLM calls",
            progress: bool = True, on_interrupt: str = "return") -> list[Reply]:
        """Run many chat requests in parallel threads; results in input order.

        Each request is a dict of :meth:`chat` keyword arguments (with ``messages``), a list
        of messages, or a string. Failures come back as Replies with ``error`` set. On
        KeyboardInterrupt, the requests not yet done are cancelled and marked
        ``error_kind="interrupted"``; completed ones are kept (and cached), and the list is
        returned (``on_interrupt="return"``) or carried by a :class:`BatchInterrupted`
        exception (``"raise"``). ``llm.last_batch`` always holds the latest results. The
        local backend runs one request at a time: its server answers them one after another,
        so more threads would only wait in its queue (and could time out there).
        """
        reqs = []
        for r in requests:
            if isinstance(r, dict) and "messages" in r:
                reqs.append(dict(r))
            elif isinstance(r, (str, list, tuple)):
                reqs.append({"messages": r})
            else:
                raise TypeError("each request must be a dict of chat arguments with "
                                f"'messages', a list of messages, or a string; got {r!r:.80}")
        results: list[Reply | None] = [None] * len(reqs)
        self.last_batch = results  # type: ignore[assignment]
        if not reqs:
            return []
        if self.backend == "local":
            concurrency = 1  # llama.cpp's Python server answers one request at a time
        pool = cf.ThreadPoolExecutor(max_workers=max(1, int(concurrency)),
                                     thread_name_prefix="perso-kit-llm")
        bar = tqdm(total=len(reqs), desc=desc, unit="call", disable=not progress)
        futures = {pool.submit(self._safe_chat, kw): i for i, kw in enumerate(reqs)}
        failed = 0
        try:
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    results[futures[f]] = f.result()
                    failed += not results[futures[f]].ok
                if done:
                    bar.update(len(done))
                    bar.set_postfix(failed=failed, refresh=False)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            for f, i in futures.items():
                if results[i] is None and f.done() and not f.cancelled():
                    results[i] = f.result()
            n_done = sum(r is not None for r in results)
            for i, r in enumerate(results):
                if r is None:
                    results[i] = Reply(backend=self.backend, model=self.model,
                                       error="the batch was interrupted before this request "
                                             "completed", error_kind="interrupted")
            bar.close()
            message = (f"interrupted: {n_done} of {len(reqs)} requests completed and are kept "
                       "(and cached); run map() again to finish the rest")
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            self.last_batch = results  # type: ignore[assignment]
            if on_interrupt == "raise":
                raise BatchInterrupted(results) from None  # type: ignore[arg-type]
            return results  # type: ignore[return-value]
        bar.close()
        pool.shutdown(wait=True)
        self.last_batch = results  # type: ignore[assignment]
        return results  # type: ignore[return-value]

    def _safe_chat(self, kw: dict) -> Reply:
        try:
            return self.chat(**kw)
        except Exception as e:  # noqa: BLE001 -- a batch never loses results to one bug
            return Reply(backend=self.backend, model=self.model, error_kind="error",
                         error=scrub(f"{type(e).__name__}: {e}"))

    # ----------------------------------------------------------------------------- embeddings
    def embed(self, texts: str | list[str], fit: bool = False, batch_size: int = 256,
              model: str | None = None) -> np.ndarray:
        """Vectors of ``texts`` (rows L2-normalized for the offline embedder).

        Offline, and on any backend with no embedding model set (``PERSO_KIT_EMBED_MODEL``):
        the local TF-IDF+SVD vectorizer (see :mod:`perso_kit.llm.embeddings`);
        ``fit=True`` (re)fits its vector space on ``texts`` first -- do it once on your largest
        corpus, then embed other texts without ``fit`` so all vectors share one space. Other
        backends: the embeddings endpoint with ``PERSO_KIT_EMBED_MODEL``; vectors are cached
        per text. Raises :class:`~perso_kit.llm.reply.LLMError` if a batch fails.
        """
        texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        if self.backend != "offline" and not (model or self.settings.embed_model):
            return self._embed_locally(texts, fit)
        if self.backend == "offline":
            if fit:
                self.stand_in.embedder.fit(texts)
            elif not self.stand_in.embedder.fitted:
                self.stand_in.embedder.transform(texts)  # fits (and warns if few)
            out = []
            for i in range(0, len(texts), batch_size):
                payload, kind, error, _ = self._send(
                    {"model": "offline-embedder", "input": texts[i:i + batch_size],
                     "encoding_format": "float"}, endpoint="embeddings")
                if payload is None:
                    raise LLMError(f"offline embedding failed: {error}", kind or "error")
                out += [d["embedding"] for d in sorted(payload["data"], key=lambda d: d["index"])]
            label = self.stand_in.embedder.label
            record = {"backend": "offline", "model": label, "served_model": label,
                      "stand_in": True, "cached": False, "ok": True,
                      "prompt_tokens": sum(estimate_tokens(t) for t in texts),
                      "completion_tokens": 0, "cost_usd": 0.0, "saved_usd": 0.0,
                      "invalid_tool_calls": 0, "latency_s": 0.0, "attempts": 1,
                      "error_kind": None}
            with self._lock:
                self._log_call(record)
            dim = self.stand_in.embedder.dim_
            return np.asarray(out, dtype=np.float32).reshape(len(texts), dim)
        return self._embed_remote(texts, batch_size, model or self.settings.embed_model)

    def _embed_locally(self, texts: list[str], fit: bool) -> np.ndarray:
        """No embedding model is set (a chat-only server): the offline TF-IDF+SVD vectorizer
        embeds instead, and says so once; its vectors are labelled as not from an LLM."""
        from .embeddings import OfflineEmbedder

        if getattr(self, "_local_embedder", None) is None:
            self._local_embedder = OfflineEmbedder()
            self._notice("embed", "no embedding model is set (PERSO_KIT_EMBED_MODEL): texts are "
                                  f"embedded by the {OfflineEmbedder.label} instead")
        emb = self._local_embedder
        if fit or not emb.fitted:
            emb.fit(texts)
        vectors = emb.transform(texts)
        with self._lock:
            self._log_call({"backend": "offline", "model": emb.label, "served_model": emb.label,
                            "stand_in": True, "cached": False, "ok": True,
                            "prompt_tokens": sum(estimate_tokens(t) for t in texts),
                            "completion_tokens": 0, "cost_usd": 0.0, "saved_usd": 0.0,
                            "invalid_tool_calls": 0, "latency_s": 0.0, "attempts": 1,
                            "error_kind": None})
        return np.asarray(vectors, dtype=np.float32)

    def _embed_remote(self, texts: list[str], batch_size: int, model: str | None) -> np.ndarray:
        if not model:
            raise LLMError("no embedding model: set PERSO_KIT_EMBED_MODEL (e.g. "
                           "nomic-embed-text for Ollama, text-embedding-3-small for OpenAI)")
        keys = [request_key({"embedding_model": model, "input": t}) for t in texts]
        vectors: list[np.ndarray | None] = [None] * len(texts)
        hits = 0
        if self.cache is not None:
            for i, k in enumerate(keys):
                vectors[i] = self.cache.get_embedding(k)
                hits += vectors[i] is not None
        todo = [i for i, v in enumerate(vectors) if v is None]
        if todo and self.backend == "replay":
            raise LLMError(f"{len(todo)} texts are not in the recorded file; record them with a "
                           "real backend and PERSO_KIT_LLM_CACHE=<the file>", "replay_miss")
        price = self._price(model)
        tokens = cost = 0
        for start in range(0, len(todo), batch_size):
            idx = todo[start:start + batch_size]
            batch = [texts[i] for i in idx]
            body = {"model": model, "input": batch, "encoding_format": "float"}
            if price is not FREE:
                worst = (price.cost(sum(estimate_tokens(t, 3.0) for t in batch), 0)
                         if price else None)
                if worst is None and self.budget.limit_usd is not None:
                    raise LLMError(f"budget: no price known for {model}; add it to "
                                   "data/llm_prices.csv", "budget")
                if worst is not None and not self.budget.reserve(worst):
                    raise LLMError(f"budget: embedding {len(batch)} texts could cost "
                                   f"${worst:.6f}, more than is left", "budget")
            else:
                worst = 0.0
            self._record_sent(body)
            payload, kind, error, _ = self._send(body, endpoint="embeddings")
            if payload is None:
                self.budget.settle(worst or 0.0, 0.0)
                raise LLMError(f"embedding failed: {error}", kind or "error")
            used = int((payload.get("usage") or {}).get("prompt_tokens") or 0)
            c = price.cost(used, 0) if price else math.nan
            self.budget.settle(worst or 0.0, c)
            tokens, cost = tokens + used, cost + c
            for i, d in zip(idx, sorted(payload["data"], key=lambda d: d["index"])):
                vectors[i] = np.asarray(d["embedding"], dtype=np.float32)
                if self.cache is not None:
                    self.cache.put_embedding(keys[i], vectors[i], model)
        with self._lock:
            self._log_call({"backend": self.backend, "model": model,
                                  "served_model": model, "stand_in": False,
                                  "cached": not todo, "ok": True, "prompt_tokens": tokens,
                                  "completion_tokens": 0, "cost_usd": cost, "saved_usd": 0.0,
                                  "invalid_tool_calls": 0, "latency_s": 0.0,
                                  "attempts": 1,
                                  "error_kind": None})
        return np.vstack(vectors) if vectors else np.zeros((0, 0), np.float32)

    # ----------------------------------------------------------------------------- usage
    def _log_call(self, record: dict) -> None:
        """Keep one call's record here and in the process-wide log (caller holds the lock)."""
        self._records.append(record)
        _SESSION_LOG.append(record)

    def call_log(self) -> pd.DataFrame:
        """One row per call: backend, model (requested), served_model (what the server said it
        ran), cached, ok, error_kind, tokens, cost, latency, attempts."""
        with self._lock:
            return pd.DataFrame(list(self._records))

    def usage_table(self, total: bool = True) -> pd.DataFrame:
        """Calls, cached calls, failures, retries (extra HTTP attempts), answers cut at
        ``max_tokens`` (truncated), tokens in/out and cost per backend and model (and a total
        row). Stand-in rows say so; their tokens are estimates."""
        log_ = self.call_log()
        cols = ["backend", "model", "calls", "cached_calls", "errors", "invalid_json",
                "invalid_tool_calls", "retries", "truncated", "prompt_tokens",
                "completion_tokens", "cost_usd", "saved_by_cache_usd", "note"]
        if log_.empty:
            return pd.DataFrame(columns=cols)
        log_["invalid_json"] = log_["error_kind"].eq("invalid_json")
        log_["errors"] = ~log_["ok"]
        log_["retries"] = (log_["attempts"].fillna(0) - 1).clip(lower=0).astype(int)
        log_["truncated"] = log_.get("truncated", pd.Series(False, index=log_.index)) \
            .fillna(False).astype(bool)
        g = log_.groupby(["backend", "model"], sort=False)
        table = g.agg(calls=("ok", "size"), cached_calls=("cached", "sum"),
                      errors=("errors", "sum"), invalid_json=("invalid_json", "sum"),
                      invalid_tool_calls=("invalid_tool_calls", "sum"),
                      retries=("retries", "sum"), truncated=("truncated", "sum"),
                      prompt_tokens=("prompt_tokens", "sum"),
                      completion_tokens=("completion_tokens", "sum"),
                      cost_usd=("cost_usd", lambda s: s.sum(min_count=1)),
                      saved_by_cache_usd=("saved_usd", "sum"),
                      stand_in=("stand_in", "any")).reset_index()
        note = np.where(table["stand_in"], "offline stand-in, not an LLM; tokens estimated", "")
        if self.settings.price_as:
            note = [f"{n + '; ' if n else ''}priced as {self.settings.price_as} (what-if)"
                    for n in note]
        if self._format_fallbacks:
            note = [f"{n + '; ' if n else ''}JSON asked in the {self.structured_mode} form "
                    "(the server refused response_format)" if b not in ("offline",) else n
                    for n, b in zip(note, table["backend"])]
        table["note"] = [n if not pd.isna(c) else
                         f"{n + '; ' if n else ''}price unknown: add the model to "
                         "data/llm_prices.csv" for n, c in zip(note, table["cost_usd"])]
        table = table.drop(columns="stand_in")
        if total and len(table) > 1:
            row = {c: table[c].sum() for c in cols if c not in ("backend", "model", "note")}
            row.update(backend="total", model="", note="")
            table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        return table[cols]

    @property
    def spent_usd(self) -> float:
        """What this LLM's calls cost so far (cache hits cost nothing)."""
        return float(np.nansum([r["cost_usd"] for r in self._records]))

    def sent_log(self) -> pd.DataFrame:
        """What left the process: one row per HTTP request (time, server, model, the request
        body as JSON). Never the key or headers. Cache hits send nothing and are absent."""
        with self._lock:
            rows = [{"time": pd.Timestamp(r["time"], unit="s"), "backend": r["backend"],
                     "server": r["server"], "model": r["body"].get("model"),
                     "body": json.dumps(r["body"], ensure_ascii=False)} for r in self._sent]
        return pd.DataFrame(rows, columns=["time", "backend", "server", "model", "body"])

    def save_sent_log(self, path: str | Path) -> Path:
        """Write :meth:`sent_log` as JSON lines (one request per line)."""
        path = Path(path)
        with self._lock:
            lines = [json.dumps(r, ensure_ascii=False) for r in self._sent]
        path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        return path


def session_summary() -> dict:
    """What every LLM client of this process (the kernel) did, in a few numbers: calls, failed
    calls, replay misses, invalid JSON answers, answers cut at max_tokens, retries, and who
    answered. A notebook records it last, so a run can be checked from outside (the tour, the
    tests: a replay must have no miss).

    >>> from perso_kit.llm import get_llm
    >>> _ = get_llm("offline", cache_path="off").chat("hello")
    >>> session_summary()["llm_calls"] >= 1
    True
    """
    log_ = pd.DataFrame(list(_SESSION_LOG))
    if log_.empty:
        return {"llm_calls": 0, "llm_failed": 0, "llm_replay_misses": 0,
                "llm_invalid_json": 0, "llm_truncated": 0, "llm_retries": 0, "llm_models": []}
    kinds = log_["error_kind"]
    return {"llm_calls": int(len(log_)), "llm_failed": int((~log_["ok"]).sum()),
            "llm_replay_misses": int(kinds.eq("replay_miss").sum()),
            "llm_invalid_json": int(kinds.eq("invalid_json").sum()),
            "llm_truncated": int(log_.get("truncated", pd.Series(dtype=bool)).fillna(False)
                                 .astype(bool).sum()),
            "llm_retries": int((log_["attempts"].fillna(0) - 1).clip(lower=0).sum()),
            "llm_models": sorted({str(m) for m in log_["served_model"].dropna()})}
