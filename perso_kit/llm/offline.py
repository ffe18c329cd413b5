"""The offline stand-in: an in-process OpenAI-compatible "server" built from text heuristics.

It is **not an LLM**. It lets every notebook run with no key and no network, and lets the tests
drive the real `openai` SDK: :func:`stand_in_client` returns an ``openai.OpenAI`` whose HTTP
transport is :class:`StandIn` (an ``httpx.MockTransport``), so requests and responses go through
exactly the code that talks to a real server.

Rules it keeps:

* It reads **only the request** (messages, tools, response format, temperature, seed). It
  never sees ground truth, test labels or any data the prompt does not contain.
* It is deterministic: the same request gives the same answer. With ``temperature > 0`` its
  scores get Gumbel noise seeded by the request (including its ``seed`` parameter): a seeded
  imitation of sampling, so notebooks can show the plumbing of repeated samples.
* Every answer is labelled: model ``offline-stand-in``, a ``system_fingerprint`` and an
  ``x-perso-kit-stand-in`` header; :class:`~perso_kit.llm.reply.Reply` has ``stand_in=True``.

What it answers (see :mod:`perso_kit.llm.heuristics` for the heuristics):

1. ``response_format`` with a JSON schema: a handler registered for the schema's name, else a
   schema-valid object filled from the prompt (:func:`~perso_kit.llm.heuristics.fill_schema`).
2. ``tools`` offered and no tool result since the latest user message: the tool sharing most
   words with that message, arguments filled from it; once tool results are in, a text answer
   quoting them (as data: instructions inside tool results are not followed).
3. Otherwise free text: a numbered list of titles when recommendations are asked for (titles of
   the prompt in other surface forms, *plus deliberately fabricated titles recombined from the
   prompt's words*, so grounding code has something to catch), else a short templated turn.
   A prompt that embeds a JSON schema (prompt-mode structured output) gets the JSON inside a
   fenced block with prose around it, to exercise extraction.

**Extending it.** A role module adds a heuristic for its own prompts with
:func:`register_handler`::

    from perso_kit.llm import register_handler

    def rank_candidates(req):                     # req: a StandInRequest
        return {"ranking": [c.typed_id for c in req.ctx.ranked_candidates()]}

    register_handler("ranking", rank_candidates)  # schema name -> handler

``kind="text"`` and ``kind="tools"`` handlers are tried in order for free-text and tool
requests; a handler returns None to pass.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import httpx
import numpy as np

from . import structured
from .pricing import estimate_prompt_tokens, estimate_tokens
from .reply import STAND_IN_MODEL

if TYPE_CHECKING:  # the heuristics import scikit-learn: loaded on the first answer
    from . import heuristics as H

BASE_URL = "http://offline-stand-in.invalid/v1"
FINGERPRINT = "perso-kit-offline-stand-in-v1"
#: changes whenever the heuristics change, so old cached stand-in answers are not reused
VERSION = "2"

_HANDLERS: dict[str, dict[str, Callable]] = {"schema": {}, "text": {}, "tools": {}}


def register_handler(name: str, fn: Callable[["StandInRequest"], Any], kind: str = "schema"):
    """Add a stand-in heuristic.

    Parameters
    ----------
    name : str
        For ``kind="schema"``: the JSON schema's name (its ``title``, or ``name`` in the
        ``{"name", "schema"}`` form) the handler answers. For ``"text"``/``"tools"``: a label
        (registering the same label again replaces the handler).
    fn : callable
        ``fn(request: StandInRequest)``. Schema handlers return the JSON value (it is validated;
        an invalid value falls back to the generic filler). Text handlers return a string,
        tools handlers a list of ``(tool_name, arguments)``; either may return a
        :class:`StandInAnswer`, or None to pass.
    kind : {"schema", "text", "tools"}
    """
    if kind not in _HANDLERS:
        raise ValueError(f"kind must be one of {sorted(_HANDLERS)}, got {kind!r}")
    _HANDLERS[kind][name] = fn
    return fn


def unregister_handler(name: str, kind: str = "schema") -> None:
    """Remove a heuristic added with :func:`register_handler` (no error if absent)."""
    _HANDLERS.get(kind, {}).pop(name, None)


def registered_handlers() -> dict[str, list[str]]:
    """The names of the registered handlers, by kind."""
    return {k: list(v) for k, v in _HANDLERS.items()}


@dataclass
class StandInAnswer:
    """A full answer from a handler: text, tool calls ``[(name, args)]``, optional logprobs."""

    text: str = ""
    tool_calls: list = field(default_factory=list)
    logprobs: list | None = None


@dataclass
class StandInRequest:
    """What a handler sees: the request body and a :class:`~perso_kit.llm.heuristics.Context`
    over its messages (``ctx.query``, ``ctx.candidates``, ``ctx.titles``, ...)."""

    body: dict
    ctx: H.Context
    schema_name: str | None = None
    schema: dict | None = None

    @property
    def messages(self) -> list[dict]:
        return self.body.get("messages", [])

    @property
    def tools(self) -> list[dict]:
        return self.body.get("tools") or []


def _rng_for(body: dict) -> np.random.Generator:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# --------------------------------------------------------------------------------- answers
_RECOMMEND = re.compile(r"\b(recommend|suggest|propose|name|list)\w*\b", re.I)
_HOW_MANY = re.compile(r"\b(\d{1,2})\s+(?:\w+\s+)?(?:movies|films|titles|items|books|"
                       r"recommendations|suggestions|songs)\b", re.I)
_ARTICLE_END = re.compile(r"^(.*), (The|A|An)( \(\d{4}\))?$")


def _surface_variant(title: str, i: int) -> str:
    """The same title written another way ("Matrix, The (1999)" -> "The Matrix")."""
    m = _ARTICLE_END.match(title)
    if m:
        title = f"{m.group(2)} {m.group(1)}{m.group(3) or ''}"
    if i % 2 == 1:
        title = re.sub(r"\s*\(\d{4}\)$", "", title)
    return title


def _fabricate(titles: list[str], rng: np.random.Generator) -> str:
    """A title-shaped string recombined from words of two prompt titles (usually not real)."""
    pool = [re.sub(r"\s*\(\d{4}\)$", "", _surface_variant(t, 0)) for t in titles] or [
        "The Quiet Horizon", "Midnight Harbor"]
    a, b = pool[int(rng.integers(len(pool)))], pool[int(rng.integers(len(pool)))]
    wa = [w for w in a.split() if w.lower() not in ("the", "a", "an")] or a.split()
    wb = [w for w in b.split() if w.lower() not in ("the", "a", "an")] or b.split()
    head = wa[: max(1, len(wa) // 2)]
    tail = [w for w in wb[len(wb) // 2:] if w not in head] or ["Returns"]
    year = int(rng.integers(1950, 2000))
    return f"{' '.join(head + tail)} ({year})"


def recommendation_text(ctx: H.Context, n: int, rng: np.random.Generator) -> str:
    """A numbered list of ``n`` titles (see the module docstring: echoed and fabricated)."""
    if ctx.candidates:  # choosing among listed items: their texts, by overlap
        picks = [c.text for c in ctx.ranked_candidates()][:n]
    else:
        titles = ctx.ranked_titles()
        picks = []
        for i in range(n):
            if i % 2 == 0 and i // 2 < len(titles):
                picks.append(_surface_variant(titles[i // 2], i // 2))
            else:
                picks.append(_fabricate(titles, rng))
    kws = ctx.keywords(2)
    why = f" — matches {' and '.join(kws)}" if kws else ""
    return "\n".join(f"{i + 1}. {t}{why}" for i, t in enumerate(picks))


def free_text(ctx: H.Context, rng: np.random.Generator) -> str:
    """A free-text answer: a title list when asked for recommendations, else a short turn."""
    query = ctx.query
    if _RECOMMEND.search(query) and (ctx.titles or ctx.candidates):
        m = _HOW_MANY.search(query)
        n = int(m.group(1)) if m else 5
        return recommendation_text(ctx, max(1, min(n, 20)), rng)
    if ctx.candidates:
        from . import heuristics as H

        best = ctx.ranked_candidates()[0]
        return f"You might try {best.text}. {H._sentence(H.Context(ctx.messages, focus=best))}"
    kws = ctx.keywords(3)
    if kws:
        return (f"You mentioned {', '.join(kws)}. Could you tell me more: a genre, an era, or "
                "a title you enjoyed?")
    return "Could you tell me what you like: a genre, an era, or a title you enjoyed?"


def tool_summary(body: dict) -> str:
    """A text answer once tool results are in: what each result holds, quoted as data."""
    from . import heuristics as H

    msgs = body.get("messages", [])
    last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=-1)
    parts = []
    for m in msgs[last_user + 1:]:
        if m.get("role") != "tool":
            continue
        content = m.get("content") or ""
        titles = H.find_titles(content)
        if not titles:
            try:
                value = json.loads(content)
                rows = value if isinstance(value, list) else [value]
                titles = [str(r.get("title")) for r in rows if isinstance(r, dict)
                          and r.get("title")]
            except ValueError:
                pass
        parts.append(", ".join(titles[:5]) if titles else H._short(content, 120))
    return "Here is what the tools returned: " + "; ".join(p for p in parts if p) + "."


def _answer(body: dict) -> StandInAnswer:
    from . import heuristics as H

    temperature = float(body.get("temperature") or 0.0)
    rng = _rng_for(body)
    ctx = H.Context(body.get("messages", []), temperature, rng)
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema" or (fmt.get("type") == "json_object"
                                            and isinstance(fmt.get("schema"), dict)):
        # OpenAI's json_schema form, or llama.cpp's json_object form carrying the schema
        spec = fmt.get("json_schema", {}) if fmt["type"] == "json_schema" else fmt["schema"]
        name, schema = structured.normalize_schema(spec)
        req = StandInRequest(body, ctx, name, schema)
        value = None
        if name in _HANDLERS["schema"]:
            value = _HANDLERS["schema"][name](req)
            if isinstance(value, StandInAnswer):
                return value
            if value is not None and structured.validate(value, schema) is not None:
                value = None
        if value is None:
            value = H.fill_schema(schema, ctx)
        return StandInAnswer(json.dumps(value))
    if fmt.get("type") == "json_object":
        return StandInAnswer(json.dumps({"answer": free_text(ctx, rng)}))

    req = StandInRequest(body, ctx)
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    msgs = body.get("messages", [])
    last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=-1)
    results_in = any(m.get("role") == "tool" for m in msgs[last_user + 1:])
    if tools and choice != "none" and not results_in:
        for fn in _HANDLERS["tools"].values():
            out = fn(req)
            if out is not None:
                return out if isinstance(out, StandInAnswer) else StandInAnswer("", list(out))
        if isinstance(choice, dict):  # a named function is forced
            wanted = choice.get("function", {}).get("name")
            spec = next((s for s in H.tool_specs(tools) if s["name"] == wanted), None)
            if spec:
                return StandInAnswer("", [(wanted, H.fill_arguments(spec["parameters"], ctx,
                                                                       H._tool_text(spec)))])
        calls = H.choose_tools(tools, ctx)
        if not calls and choice == "required":
            spec = H.tool_specs(tools)[0]
            calls = [(spec["name"], H.fill_arguments(spec["parameters"], ctx))]
        if calls:
            return StandInAnswer("", calls)
    if results_in:
        return StandInAnswer(tool_summary(body))
    for fn in _HANDLERS["text"].values():
        out = fn(req)
        if out is not None:
            return out if isinstance(out, StandInAnswer) else StandInAnswer(str(out))
    embedded = re.search(r"```json schema\n(.*?)\n```", ctx.prompt, re.S)
    if embedded:  # prompt-mode structured output: answer inside a fence, with prose around
        try:
            value = H.fill_schema(json.loads(embedded.group(1)), ctx)
            return StandInAnswer(f"Here is the answer:\n```json\n{json.dumps(value)}\n```\n"
                                 "(filled by text heuristics)")
        except ValueError:
            pass
    return StandInAnswer(free_text(ctx, rng))


def chat_completion(body: dict) -> dict:
    """The stand-in's chat completion (OpenAI response format) for a request body."""
    ans = _answer(body)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    tool_calls = [{"id": f"call_{digest[:8]}_{i}", "type": "function",
                   "function": {"name": name, "arguments": json.dumps(args)}}
                  for i, (name, args) in enumerate(ans.tool_calls)]
    message: dict = {"role": "assistant", "content": ans.text if not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    choice: dict = {"index": 0, "message": message,
                    "finish_reason": "tool_calls" if tool_calls else "stop"}
    if body.get("logprobs"):
        choice["logprobs"] = {"content": ans.logprobs if ans.logprobs is not None else [
            {"token": tok, "logprob": 0.0, "top_logprobs": []}
            for tok in re.findall(r"\S+|\s+", ans.text)[:200]]}
    prompt_tokens = estimate_prompt_tokens(body.get("messages", []), body.get("tools"),
                                           body.get("response_format"))
    completion_tokens = estimate_tokens(ans.text + json.dumps(tool_calls) * bool(tool_calls))
    return {"id": f"standin-{digest[:16]}", "object": "chat.completion", "created": 0,
            "model": STAND_IN_MODEL, "system_fingerprint": FINGERPRINT, "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class InProcessServer:
    """An OpenAI-compatible "server" inside the process: an ``httpx`` transport handler that
    hands each request's path and JSON body to :meth:`handle` and returns its ``(status,
    payload)`` as the response, with :attr:`marker` headers saying who answered. The stand-in
    and the planted test models (:mod:`perso_kit.llm.planted`) are such servers."""

    def marker(self) -> dict:
        return {}

    def handle(self, path: str, body: dict) -> tuple[int, dict]:
        raise NotImplementedError

    def __call__(self, request: httpx.Request) -> httpx.Response:
        try:
            body = json.loads(request.content or b"{}")
        except ValueError:
            return httpx.Response(400, json={"error": {"message": "request body is not JSON"}})
        status, payload = self.handle(request.url.path, body)
        return httpx.Response(status, json=payload, headers=self.marker())


class StandIn(InProcessServer):
    """The HTTP side of the stand-in: answers ``/chat/completions``, ``/embeddings`` and
    ``/models`` from the request alone. Use :func:`stand_in_client` rather than this directly.

    ``embedder`` is an :class:`~perso_kit.llm.embeddings.OfflineEmbedder` (the embedding
    endpoint's vectorizer); ``delay_s`` adds a fixed latency (for demonstrations).
    """

    def __init__(self, embedder=None, delay_s: float = 0.0):
        from .embeddings import OfflineEmbedder
        self.embedder = embedder if embedder is not None else OfflineEmbedder()
        self.delay_s = delay_s
        self.requests = 0

    def handle(self, path: str, body: dict) -> tuple[int, dict]:
        """``(status, json)`` for one request; also used by the local test server."""
        self.requests += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if path.endswith("/chat/completions"):
            if not isinstance(body.get("messages"), list) or not body["messages"]:
                return 400, {"error": {"message": "messages must be a non-empty list",
                                       "type": "invalid_request_error"}}
            return 200, chat_completion(body)
        if path.endswith("/embeddings"):
            inputs = body.get("input")
            inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
            vectors = self.embedder.transform(inputs)
            data = [{"object": "embedding", "index": i, "embedding": v.tolist()}
                    for i, v in enumerate(vectors)]
            tokens = sum(estimate_tokens(t) for t in inputs)
            return 200, {"object": "list", "data": data, "model": self.embedder.label,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        if path.endswith("/models"):
            return 200, {"object": "list", "data": [
                {"id": STAND_IN_MODEL, "object": "model", "created": 0, "owned_by": "perso-kit"}]}
        return 404, {"error": {"message": f"the offline stand-in has no endpoint {path}"}}

    def marker(self) -> dict:
        return {"x-perso-kit-stand-in": "1"}


def stand_in_client(stand_in: StandIn | None = None, timeout: float = 60.0):
    """An ``openai.OpenAI`` client whose transport is the stand-in (no network, no key)."""
    import openai

    transport = httpx.MockTransport(stand_in or StandIn())
    return openai.OpenAI(api_key="offline-no-key", base_url=BASE_URL, max_retries=0,
                         timeout=timeout, http_client=httpx.Client(transport=transport))
