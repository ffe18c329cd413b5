"""One client for every backend: :class:`LLM` (build it with :func:`perso_kit.llm.get_llm`).

:meth:`LLM.chat` is a short orchestration; each step lives in its own module:

====  ==========================================================  =============================
step  what happens                                                where
====  ==========================================================  =============================
1     build the backend-neutral request and its cache key         :mod:`~perso_kit.llm.request`,
                                                                  :mod:`~perso_kit.llm.cache`
2     privacy check (titles-only mode): refuse, send nothing      :mod:`~perso_kit.llm.privacy`
3     cache / replay lookup: a hit is answered from the file      :mod:`~perso_kit.llm.cache`
4     budget: book the worst case, or refuse                      :mod:`~perso_kit.llm.ledger`
5     exchange: the wire body for the JSON form, a copy in the    :mod:`~perso_kit.llm.request`,
      sent log, the POST retried on 429 / 5xx / timeouts, and     :mod:`~perso_kit.llm.ledger`,
      the switch to another JSON form when a server refuses one   :mod:`~perso_kit.llm.transport`
6     parse: text, tool calls (arguments validated), JSON         :mod:`~perso_kit.llm.parse`,
      (validated; an invalid answer gets one repair turn)         :mod:`~perso_kit.llm.structured`
7     cost from the price table; settle the budget booking        :mod:`~perso_kit.llm.ledger`
8     cache write (this is also the recording a class replays)    :mod:`~perso_kit.llm.cache`
9     record the call: usage table, call log, session summary     :mod:`~perso_kit.llm.ledger`
====  ==========================================================  =============================

Around it: :meth:`LLM.map` runs many calls in threads (:mod:`~perso_kit.llm.batch`),
:meth:`LLM.embed` makes vectors (:mod:`~perso_kit.llm.embeddings`), :meth:`LLM.banner` says
who answers (:mod:`~perso_kit.llm.banner`).

Nothing in that chain raises for a failed call: the :class:`~perso_kit.llm.reply.Reply` carries
``error`` and ``error_kind``, so :meth:`LLM.map` keeps every failure beside the successes.

>>> from perso_kit.llm import get_llm
>>> llm = get_llm("offline", cache_path="off")
>>> r = llm.chat("Recommend 2 movies like Alien (1979) and Heat (1995).")
>>> r.stand_in, r.ok
(True, True)
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from . import ledger, structured, transport
from .backends import Settings, make_client, scrub
from .banner import Banner, backend_banner, backend_label
from .batch import BatchInterrupted, run_batch
from .cache import ResponseCache, request_key
from .embeddings import embed_texts
from .ledger import Ledger, session_summary
from .parse import parse_completion
from .pricing import Budget, Price, PriceTable
from .reply import Reply, Usage
from .request import (DEFAULT_MAX_TOKENS, STRUCTURED_MODES, build_request, normalize_messages,
                      normalize_tools, wire_body)
from .transport import MAX_RETRY_AFTER_S, retry_after_seconds

__all__ = ["LLM", "Banner", "BatchInterrupted", "session_summary", "retry_after_seconds",
           "DEFAULT_MAX_TOKENS", "STRUCTURED_MODES", "MAX_RETRY_AFTER_S"]

log = logging.getLogger("perso_kit.llm")
_sleep = time.sleep  # the wait between retries (tests replace it to record the waits)


class LLM:
    """A chat/embedding client over one backend, with cache, budget, retries and usage.

    Build it with :func:`perso_kit.llm.get_llm`. Attributes worth knowing: ``settings``
    (key hidden), ``budget`` (:class:`~perso_kit.llm.pricing.Budget`), ``cache``
    (:class:`~perso_kit.llm.cache.ResponseCache` or None), ``stand_in`` (the offline
    :class:`~perso_kit.llm.offline.StandIn`, or None), ``ledger`` (the
    :class:`~perso_kit.llm.ledger.Ledger` of its calls), ``notices`` (things the user should
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
        self.budget = budget if budget is not None else ledger.process_budget(settings.budget_usd)
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
        self._stand_in_replay = "none"  # a recording of the stand-in: "same" or "other" version
        if settings.backend == "replay" and self.cache is not None and not self.cache.broken:
            from .offline import VERSION
            self._stand_in_replay = self.cache.stand_in_recording(self.model, VERSION)
        if settings.backend == "compatible" and not settings.model:
            settings.model = self._first_served_model()
        self.ledger = Ledger()
        self._format_fallbacks = 0
        self._local_embedder = None  # built on first use (see embeddings.embed_locally)
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
        return backend_label(self.settings, self.model)

    def banner(self) -> Banner:
        """A banner for the top of a notebook: which backend is in use, in words."""
        return backend_banner(self.label, self.settings, self.budget, self.cache)

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
            import openai
            if isinstance(e, openai.APIConnectionError):  # naming a model would not help
                raise ValueError(f"could not reach {self.settings.base_url} to ask which models "
                                 f"it serves ({scrub(str(e))[:200]}); "
                                 f"{transport.unreachable_advice(self.settings.base_url)}"
                                 ) from None
            raise ValueError(f"could not list the models of {self.settings.base_url} "
                             f"({scrub(str(e))[:200]}); set PERSO_KIT_LLM_MODEL") from None
        raise ValueError(f"{self.settings.base_url} serves no model; set PERSO_KIT_LLM_MODEL")

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
        # 1. the request and its cache key
        try:
            messages = normalize_messages(messages)
            tools = normalize_tools(tools)
            if json_schema is not None:
                structured.check_schema(json_schema)
        except (TypeError, ValueError) as e:
            return self._finish(Reply(backend=self.backend, model=self.model, error=str(e),
                                      error_kind="error"), t0)
        req = self._request(messages, json_schema, tools, tool_choice, temperature,
                            max_tokens, params)
        key = self._key(req, sample)
        # 2. privacy
        if self.settings.titles_only:
            from .privacy import check_titles_only
            problem = check_titles_only(messages)
            if problem:
                return self._finish(Reply(backend=self.backend, model=self.model, key=key,
                                          error=f"titles-only mode: {problem}; nothing was sent",
                                          error_kind="privacy"), t0)
        # 3. cache / replay lookup
        use_cache = self.cache is not None and not self.cache.broken
        if use_cache and (cache or self.backend == "replay"):
            hit = self.cache.get(key)
            if hit is not None:
                reply = parse_completion(hit, backend=self.backend, model=self.model,
                                         tools=tools, json_schema=json_schema)
                reply.cached, reply.key, reply.cost_usd = True, key, 0.0
                reply.backend = hit.get("_backend") or self.backend
                return self._finish(reply, t0, saved=hit.get("_cost_usd") or 0.0)
        if self.backend == "replay":
            return self._finish(self._replay_miss(key), t0)
        # 4-7. budget -> exchange -> parse -> cost, with JSON repair turns
        reply, payload = self._converse(req, key, tools, json_schema)
        # 8. cache write: every answer the model gave, valid or not (a replay must reproduce
        #    an invalid answer too); never a failure of the wire (timeouts, errors)
        if use_cache and payload is not None and reply.error_kind in (None, "invalid_json",
                                                                      "empty"):
            stored = dict(payload)
            stored["usage"] = {"prompt_tokens": reply.usage.prompt_tokens,
                               "completion_tokens": reply.usage.completion_tokens}
            # the *requested* model: the one a replay must ask for to find this answer again
            self.cache.put(key, stored, model=self.model, backend=self.backend, request=req,
                           cost_usd=0.0 if math.isnan(reply.cost_usd) else reply.cost_usd)
        # 9. record the call
        return self._finish(reply, t0)

    def _request(self, messages, json_schema, tools, tool_choice, temperature, max_tokens,
                 params) -> dict:
        """The backend-neutral request: what the cache key hashes (never a key or header)."""
        return build_request(self.model, messages, json_schema, tools, tool_choice,
                             temperature, max_tokens, params)

    def _key(self, req: dict, sample: int = 0) -> str:
        """The cache key of ``req``: the sample number and, offline, the stand-in's version
        are part of it (a new stand-in version does not reuse old answers)."""
        extra = {"sample": sample} if sample else {}
        if self.backend == "offline" or getattr(self, "_stand_in_replay", "") == "same":
            from .offline import VERSION
            extra["stand_in_version"] = VERSION
        return request_key(req, **extra)

    def _replay_miss(self, key: str) -> Reply:
        """The failed Reply of a request that is not in the recorded file."""
        if self.cache is None or self.cache.broken:
            return Reply(backend="replay", model=self.model, key=key, error_kind="replay_miss",
                         error=f"replay: {self.cache.broken if self.cache else 'no recorded file'}")
        if self._stand_in_replay != "none":
            from .offline import VERSION
            path = self.settings.replay_path
            error = (f"the recorded file {path} was made with another version of the offline "
                     f"stand-in (not an LLM) than this kit's (version {VERSION}), so it cannot "
                     "be replayed" if self._stand_in_replay == "other" else
                     f"this request is not in the recorded file {path}, a recording of the "
                     f"offline stand-in (not an LLM, version {VERSION})")
            return Reply(backend="replay", model=self.model, key=key, error_kind="replay_miss",
                         error=error + ". The stand-in needs no recording: unset "
                         "PERSO_KIT_LLM_BACKEND and PERSO_KIT_LLM_REPLAY to run it directly, "
                         "or replay a file recorded with a real model.")
        return Reply(
            backend="replay", model=self.model, key=key, error_kind="replay_miss",
            error=(f"this request is not in the recorded file {self.settings.replay_path}. "
                   "Record it: run the same notebook once with a real backend (e.g. "
                   "OPENAI_API_KEY=...) and PERSO_KIT_LLM_CACHE=<that file>; then replay "
                   "with PERSO_KIT_LLM_BACKEND=replay PERSO_KIT_LLM_REPLAY=<that file>. "
                   "Any change to the prompt, model or parameters is a new request."))

    def _converse(self, req: dict, key: str, tools, json_schema) -> tuple[Reply, dict | None]:
        """Steps 4-7: each turn books the budget, sends, parses and settles the cost; an
        invalid JSON answer gets up to ``repair_attempts`` more turns, each feeding the
        validation error back. Returns the Reply (usage and cost summed over the turns) and
        the last payload."""
        mode = self.structured_mode if self.structured_mode != "auto" else "response_format"
        convo = list(req["messages"])
        total, attempts, cost = Usage(), 0, 0.0
        reply: Reply | None = None
        payload = None
        price = self._price(self.model)
        for turn in range(1 + (self.repair_attempts if json_schema is not None else 0)):
            payload, kind, error, n, reserved, mode = self._exchange(
                dict(req, messages=convo), mode, price, json_schema is not None)
            attempts += n
            if payload is None:
                reply = Reply(backend=self.backend, model=self.model, key=key, error=error,
                              error_kind=kind)
                break
            reply = parse_completion(payload, backend=self.backend, model=self.model,
                                     tools=tools, json_schema=json_schema)
            total = total + reply.usage
            call_cost = ledger.call_cost(self._price(self.model, reply.model), reply.usage)
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
        return reply, payload

    def _exchange(self, req: dict, mode: str, price: Price | None, structured_call: bool):
        """One request/response with budget, retries and the response_format fallback.
        Returns ``(payload, error_kind, error, attempts, reserved_usd, mode)``; on failure
        the reservation is already released."""
        body = wire_body(req, mode, self.backend, self._notice)
        refusal, reserved = ledger.reserve_call(self.budget, body, price, self.model)
        if refusal:
            return None, "budget", refusal, 0, 0.0, mode
        self._record_sent(body)
        payload, kind, error, n = self._send(body)
        if payload is None and transport.format_rejected(kind, error) and structured_call \
                and self._auto_format and mode in ("response_format", "json_object"):
            self.budget.settle(reserved, 0.0)
            nxt = transport.fallback_mode(mode, error)
            self._notice(f"structured-{nxt}",
                         f"the server rejects response_format in the {mode} form "
                         f"({(error or '')[:80]}); asking for JSON "
                         + ("in llama.cpp's json_object form with the schema instead"
                            if nxt == "json_object" else "in a system message instead"))
            self.structured_mode = nxt  # remembered for the next calls
            self._format_fallbacks += 1
            payload, kind, error, n2, reserved, mode = self._exchange(req, nxt, price, True)
            return payload, kind, error, n + n2, reserved, mode
        if payload is None:
            self.budget.settle(reserved, 0.0)
        return payload, kind, error, n, reserved, mode

    def _send(self, body: dict, endpoint: str = "chat"):
        """POST with retries (see :func:`perso_kit.llm.transport.send`). Returns
        ``(json, error_kind, error, attempts)``."""
        return transport.send(self._client, body, endpoint,
                              max_retries=self.settings.max_retries,
                              timeout_s=self.settings.timeout_s, backoff_s=self.backoff_s,
                              backoff_cap_s=self.backoff_cap_s, sleep=_sleep)

    def _price(self, model: str, reported: str | None = None) -> Price | None:
        return ledger.price_for(self.prices, self.settings, model, reported)

    def _record_sent(self, body: dict) -> None:
        self.ledger.record_sent(self.backend, ledger.server_name(self.settings, self.backend),
                                body)

    def _finish(self, reply: Reply, t0: float, saved: float = 0.0) -> Reply:
        """Step 9: latency, a scrubbed error message, and the call's record in the ledger."""
        reply.latency_s = time.perf_counter() - t0
        if reply.error:
            reply.error = scrub(reply.error)
        record = ledger.chat_record(reply, self.backend, self.model, saved)
        self.ledger.log_call(record)
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
        See :mod:`perso_kit.llm.batch`.
        """
        return run_batch(self, requests, concurrency=concurrency, desc=desc,
                         progress=progress, on_interrupt=on_interrupt)

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
        return embed_texts(self, texts, fit=fit, batch_size=batch_size, model=model)

    # ----------------------------------------------------------------------------- usage
    def call_log(self) -> pd.DataFrame:
        """One row per call: backend, model (requested), served_model (what the server said it
        ran), cached, ok, error_kind, tokens, cost, latency, attempts."""
        return self.ledger.call_log()

    def usage_table(self, total: bool = True) -> pd.DataFrame:
        """Calls, cached calls, failures, retries (extra HTTP attempts), answers cut at
        ``max_tokens`` (truncated), tokens in/out and cost per backend and model (and a total
        row). Stand-in rows say so; their tokens are estimates."""
        return self.ledger.usage_table(
            total, price_as=self.settings.price_as,
            structured_fallback=self.structured_mode if self._format_fallbacks else None)

    @property
    def spent_usd(self) -> float:
        """What this LLM's calls cost so far (cache hits cost nothing)."""
        return self.ledger.spent_usd

    def sent_log(self) -> pd.DataFrame:
        """What left the process: one row per HTTP request (time, server, model, the request
        body as JSON). Never the key or headers. Cache hits send nothing and are absent."""
        return self.ledger.sent_log()

    def save_sent_log(self, path: str | Path) -> Path:
        """Write :meth:`sent_log` as JSON lines (one request per line)."""
        return self.ledger.save_sent_log(path)
