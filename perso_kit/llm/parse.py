"""Reading a chat completion: the server's JSON answer becomes a
:class:`~perso_kit.llm.reply.Reply`.

:func:`parse_completion` takes the first choice of an OpenAI-format chat completion and fills:

* ``text`` (content parts joined), ``usage`` (prompt, completion and cached tokens; marked
  *estimated* when the offline stand-in answered), ``finish_reason``, ``logprobs``;
* ``tool_calls``: each call's arguments are parsed as JSON and checked against the tool's
  schema; a bad call is kept with ``valid=False`` and its ``error`` (never dropped);
* ``data`` when a JSON schema was asked for: the answer parsed and validated
  (:func:`perso_kit.llm.structured.parse_and_validate`); a failure sets
  ``error_kind="invalid_json"``, which the client may answer with one repair turn.

An answer with no text and no tool call is an error too (``error_kind="empty"``).

>>> payload = {"model": "m", "choices": [{"message": {"content": "Heat (1995)"},
...            "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}
>>> r = parse_completion(payload, backend="compatible", model="m")
>>> r.text, r.usage.prompt_tokens, r.ok
('Heat (1995)', 9, True)
"""
from __future__ import annotations

import json

from . import structured
from .reply import STAND_IN_MODEL, Reply, ToolCall, Usage


def parse_completion(payload: dict, *, backend: str, model: str, tools: list | None = None,
                     json_schema: dict | None = None) -> Reply:
    """The Reply of one chat completion ``payload``.

    Parameters
    ----------
    payload : dict
        The server's JSON answer (or a cached copy of it).
    backend, model : str
        Who was asked; ``model`` is used when the answer names none.
    tools : list of dict, optional
        The tools offered (OpenAI form): tool-call arguments are validated against them.
    json_schema : dict, optional
        The schema asked for: the text is parsed and validated against it.
    """
    choice = payload["choices"][0] if payload.get("choices") else {}
    message = choice.get("message") or {}
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    usage = payload.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    model = payload.get("model") or model
    from .offline import FINGERPRINT
    stand_in = model == STAND_IN_MODEL or payload.get("system_fingerprint") == FINGERPRINT
    reply = Reply(
        text=content or "", backend=backend, model=model, stand_in=stand_in,
        usage=Usage(int(usage.get("prompt_tokens") or 0),
                    int(usage.get("completion_tokens") or 0),
                    int(details.get("cached_tokens") or 0), estimated=stand_in),
        finish_reason=choice.get("finish_reason"),
        logprobs=(choice.get("logprobs") or {}).get("content"))
    specs = {t["function"]["name"]: t["function"].get("parameters") for t in tools or []}
    for i, call in enumerate(message.get("tool_calls") or []):
        reply.tool_calls.append(_tool_call(i, call, specs))
    if json_schema is not None:
        reply.data, err = structured.parse_and_validate(reply.text, json_schema)
        if err:
            cut = (" (the answer was cut at max_tokens: allow more tokens)"
                   if reply.truncated else "")
            reply.error, reply.error_kind = f"invalid JSON answer{cut}: {err}", "invalid_json"
    elif not reply.text.strip() and not reply.tool_calls:
        reply.error, reply.error_kind = "the answer is empty", "empty"
    return reply


def _tool_call(i: int, call: dict, specs: dict) -> ToolCall:
    """One tool call of the answer, its arguments parsed and checked against ``specs``
    (tool name -> parameters schema)."""
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
    return tc
