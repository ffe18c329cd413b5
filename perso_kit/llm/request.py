"""Building a chat request: what the cache key hashes, and what is actually sent.

A chat call is described twice:

1. the **request** (:func:`build_request`): a backend-neutral dict -- model, messages,
   temperature, ``max_tokens``, tools, the JSON schema asked for, other parameters. The cache
   key is the hash of this dict (:func:`perso_kit.llm.cache.request_key`), so the same question
   finds the same recorded answer whichever backend or structured-output form is used. It never
   holds a key or a header.
2. the **wire body** (:func:`wire_body`): what goes to the server. It differs from the request
   in three ways: the JSON schema is asked for in one of three forms (see
   :data:`STRUCTURED_MODES`), OpenAI and Azure want ``max_completion_tokens`` instead of
   ``max_tokens``, and reasoning models (``o1``, ``o3``, ``gpt-5``...) get no temperature 0.

>>> req = build_request("m", [{"role": "user", "content": "hi"}], None, None, None, 0.0, None, {})
>>> list(req), req["max_tokens"]          # no max_tokens given: the default bound is sent
(['model', 'messages', 'temperature', 'max_tokens'], 1024)
>>> body = wire_body(req, "response_format", backend="openai")
>>> "max_tokens" in body, body["max_completion_tokens"]           # OpenAI's name for it
(False, 1024)
"""
from __future__ import annotations

import re
from typing import Any, Callable

from . import structured

DEFAULT_MAX_TOKENS = 1024  # sent when the caller gives no max_tokens: no answer is unbounded
#: structured-output modes: the JSON schema in ``response_format`` (OpenAI's form), in
#: llama.cpp's ``{"type": "json_object", "schema": ...}`` form, or as a system instruction
STRUCTURED_MODES = ("auto", "response_format", "json_object", "prompt")
REASONING = re.compile(r"^(o\d|gpt-5)")  # models that accept only the default temperature


def normalize_messages(messages) -> list[dict]:
    """A list of ``{"role", "content"}`` dicts from a string (one user message), one dict, or a
    list; raises TypeError for anything else."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, dict):
        return [messages]
    msgs = list(messages)
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m:
            raise TypeError(f"message {i} must be a dict with 'role' and 'content', got {m!r:.80}")
    return msgs


def normalize_tools(tools) -> list[dict] | None:
    """Tools in OpenAI's ``{"type": "function", "function": {...}}`` form (the short
    ``{"name", "description", "parameters"}`` form is wrapped); None when there are none."""
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


def build_request(model: str, messages: list[dict], json_schema, tools, tool_choice,
                  temperature, max_tokens, params: dict) -> dict:
    """The backend-neutral request: what the cache key hashes (never a key or header).

    Its keys and their order are part of every recorded cache key: change nothing here without
    accepting that every recording becomes a miss.
    """
    req: dict[str, Any] = {"model": model, "messages": messages,
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


def wire_body(req: dict, mode: str, backend: str,
              notice: Callable[[str, str], None] | None = None) -> dict:
    """The body actually sent, for this backend and structured-output ``mode``.

    ``mode`` is ``"response_format"`` (OpenAI's json_schema form), ``"json_object"``
    (llama.cpp's schema-constrained form) or ``"prompt"`` (the schema as a system message).
    ``notice(key, message)`` is told when a parameter is dropped.
    """
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
    if backend in ("openai", "azure") and "max_tokens" in body:
        body["max_completion_tokens"] = body.pop("max_tokens")
    if REASONING.match(model) and body.get("temperature") == 0.0:
        body.pop("temperature")
        if notice is not None:
            notice("temperature", f"{model} accepts only its default temperature; "
                                  "the temperature parameter was not sent")
    return body
