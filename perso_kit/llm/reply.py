"""What one LLM call returns: :class:`Reply`, its :class:`ToolCall` s and :class:`Usage`.

A call never raises for what can go wrong on the wire or in the answer (a rate limit, a timeout,
an answer that is not valid JSON): the :class:`Reply` comes back with ``error`` set to a short
sentence and ``error_kind`` to one word, so a batch keeps its failures beside its successes.
:meth:`Reply.raise_for_error` turns a failed reply into an exception when you want one.

>>> r = Reply(text="hello", backend="offline", model="offline-stand-in", stand_in=True)
>>> r.ok, r.label
(True, 'offline stand-in (not an LLM)')
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: the model name every answer of the offline stand-in carries
STAND_IN_MODEL = "offline-stand-in"
STAND_IN_LABEL = "offline stand-in — plain text heuristics, not an LLM"

#: the values ``Reply.error_kind`` takes, and what they mean
ERROR_KINDS = {
    "budget": "refused before sending: the worst case would cross the budget",
    "replay_miss": "replay mode: the request is not in the recorded file",
    "rate_limit": "HTTP 429 after all retries",
    "server": "HTTP 5xx after all retries",
    "timeout": "no answer within the timeout, after all retries",
    "connection": "could not reach the server",
    "malformed": "the server's answer was not valid JSON / not a chat completion",
    "empty": "the answer had no text and no tool call",
    "invalid_json": "a JSON answer was requested; none could be parsed and validated",
    "privacy": "refused before sending: titles-only mode and the request holds user data",
    "auth": "the server refused the key (HTTP 401/403)",
    "bad_request": "the server refused the request (HTTP 4xx)",
    "unsupported_format": "the server does not take this structured-output form (see "
                          "PERSO_KIT_LLM_JSON_MODE)",
    "interrupted": "the batch was interrupted before this request completed",
    "error": "another error (see the message)",
}


class LLMError(RuntimeError):
    """A failed LLM call (raised only by :meth:`Reply.raise_for_error`)."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


class BudgetExceeded(LLMError):
    """The call was refused because its worst case would cross the budget."""


class ReplayMiss(LLMError):
    """Replay mode: the request is not in the recorded file."""


@dataclass
class Usage:
    """Tokens of one call. ``cached_prompt_tokens`` are the ones the *provider* billed at its
    cheaper prompt-cache rate (not the kit's own cache, which makes a call cost nothing)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    estimated: bool = False  # True when counted by the kit (stand-in), not by a tokenizer

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens,
                     self.cached_prompt_tokens + other.cached_prompt_tokens,
                     self.estimated or other.estimated)


@dataclass
class ToolCall:
    """One tool call the model asked for.

    ``arguments`` is the parsed dict when the arguments were valid JSON matching the tool's
    parameter schema; otherwise ``valid`` is False, ``error`` says why, and ``raw_arguments``
    keeps what the model wrote (so an agent can send the error back to the model).
    """

    id: str
    name: str
    arguments: dict | None
    raw_arguments: str
    valid: bool = True
    error: str | None = None

    def as_openai(self) -> dict:
        """This call in the format an assistant message carries it."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.raw_arguments}}


@dataclass
class Reply:
    """The outcome of one chat call (see the module docstring).

    Attributes
    ----------
    text : str
        The answer's text ("" for a pure tool call or a failure).
    data : object or None
        With ``json_schema=``: the parsed answer, validated against the schema; else None.
    tool_calls : list of ToolCall
        The tool calls the model asked for; invalid ones are flagged, not raised.
    usage : Usage
        Tokens in and out (summed over a structured-output repair, if one happened).
    cost_usd : float
        What this call cost: 0.0 for a cache hit, the stand-in or a local server; NaN when the
        price of a paid model is unknown.
    backend, model : str
        Who answered (``model`` is what the server says it ran).
    cached : bool
        Served from the kit's cache or a replay file; nothing was sent.
    latency_s : float
        Wall time of the call, retries included.
    error, error_kind : str or None
        A short sentence and one word (see ``ERROR_KINDS``); None when the call succeeded.
    attempts : int
        HTTP requests made (1 + retries + structured-output repairs); 0 when nothing was sent.
    stand_in : bool
        True when the offline stand-in answered: plain text heuristics, not an LLM.
    """

    text: str = ""
    data: Any = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    backend: str = ""
    model: str = ""
    cached: bool = False
    latency_s: float = 0.0
    error: str | None = None
    error_kind: str | None = None
    attempts: int = 0
    stand_in: bool = False
    finish_reason: str | None = None
    logprobs: list | None = None
    key: str = ""  # the cache key of the request (a hash; holds no secret)

    @property
    def ok(self) -> bool:
        """True when the call succeeded (tool calls with invalid arguments still count as ok:
        check ``tool_calls[i].valid``)."""
        return self.error is None

    @property
    def truncated(self) -> bool:
        """True when the answer stopped at ``max_tokens`` (``finish_reason == "length"``): its
        text is cut short and should not be taken as a complete answer."""
        return self.finish_reason == "length"

    @property
    def label(self) -> str:
        """Who answered, in words; the stand-in always says what it is."""
        if self.stand_in:
            return "offline stand-in (not an LLM)"
        return f"{self.backend} · {self.model}" + (" (cached)" if self.cached else "")

    def raise_for_error(self) -> "Reply":
        """Raise :class:`LLMError` (or :class:`BudgetExceeded`, :class:`ReplayMiss`) if the call
        failed; return the reply otherwise, so ``llm.chat(...).raise_for_error().text`` works."""
        if self.error is None:
            return self
        cls = {"budget": BudgetExceeded, "replay_miss": ReplayMiss}.get(self.error_kind or "",
                                                                         LLMError)
        raise cls(self.error, self.error_kind or "error")

    def as_message(self) -> dict:
        """This answer as an assistant message, to append to a conversation."""
        msg: dict = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            msg["tool_calls"] = [c.as_openai() for c in self.tool_calls]
        if msg["content"] is None and not self.tool_calls:
            msg["content"] = ""
        return msg

    def __repr__(self) -> str:
        what = (f"error[{self.error_kind}]={self.error!r}" if self.error else
                f"text={_short(self.text)!r}" + (f", data={_short(json.dumps(self.data))}"
                                                  if self.data is not None else "")
                + (f", tool_calls={[c.name for c in self.tool_calls]}" if self.tool_calls else ""))
        return (f"Reply({what}, {self.label}, tokens={self.usage.prompt_tokens}+"
                f"{self.usage.completion_tokens}, cost=${self.cost_usd:.5f}"
                f"{', cached' if self.cached else ''})")


def tool_result_message(call: ToolCall, content: Any) -> dict:
    """The message that hands a tool's result back to the model (``content`` may be any
    JSON-serializable value; strings are sent as they are).

    >>> tool_result_message(ToolCall("call_1", "search", {}, "{}"), [1, 2])["content"]
    '[1, 2]'
    """
    text = content if isinstance(content, str) else json.dumps(content, default=str)
    return {"role": "tool", "tool_call_id": call.id, "content": text}


def _short(text: str, n: int = 60) -> str:
    text = text or ""
    return text if len(text) <= n else text[: n - 1] + "…"
