"""Structured output: ask for JSON, find it in the answer, validate it, ask once more if wrong.

Three steps, each a small function the client uses (and a student can call on any text):

1. :func:`normalize_schema` turns what a caller passes as ``json_schema=`` into a name and a
   JSON schema; :func:`response_format` builds the ``response_format`` of backends that accept
   JSON-schema output, :func:`schema_instruction` the system message for those that do not.
2. :func:`extract_json` finds the JSON in an answer: the whole text, a ```json fence, or the
   first balanced ``{...}`` / ``[...]`` inside prose.
3. :func:`validate` checks it against the schema (`jsonschema`, Draft 2020-12) and returns the
   first error in words; :func:`repair_messages` feeds that error back for one more try.

>>> schema = {"type": "object", "properties": {"ids": {"type": "array",
...           "items": {"type": "integer"}}}, "required": ["ids"]}
>>> data, err = parse_and_validate('Sure! ```json\\n{"ids": [3, 1]}\\n``` Hope it helps.', schema)
>>> data, err
({'ids': [3, 1]}, None)
>>> parse_and_validate('{"ids": ["x"]}', schema)[1]
"at ids/0: 'x' is not of type 'integer'"
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)


def normalize_schema(json_schema: dict) -> tuple[str, dict]:
    """``(name, schema)`` from either a plain JSON schema (its ``title`` is the name, else
    ``"answer"``) or the OpenAI form ``{"name": ..., "schema": {...}}``."""
    if not isinstance(json_schema, dict):
        raise TypeError("json_schema must be a dict: a JSON schema, or "
                        "{'name': ..., 'schema': ...}")
    if isinstance(json_schema.get("schema"), dict) and "name" in json_schema:
        return str(json_schema["name"]), json_schema["schema"]
    return str(json_schema.get("title", "answer")), json_schema


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "answer"


def response_format(json_schema: dict) -> dict:
    """The ``response_format`` for backends with JSON-schema output (OpenAI, Azure, vLLM,
    Ollama, LM Studio, llama.cpp's server)."""
    name, schema = normalize_schema(json_schema)
    return {"type": "json_schema",
            "json_schema": {"name": _safe_name(name), "schema": schema, "strict": False}}


def schema_instruction(json_schema: dict) -> str:
    """A system message asking for JSON, for backends without JSON-schema output."""
    name, schema = normalize_schema(json_schema)
    return (f"Answer with one JSON value only (no prose), named {name!r}, that validates "
            f"against this JSON schema:\n```json schema\n{json.dumps(schema)}\n```")


def extract_json(text: str | None) -> tuple[Any, str | None]:
    """Find the JSON value in ``text``: ``(value, None)``, or ``(None, reason)`` when there is
    none. Tries the whole text, then fenced blocks, then the first balanced object/array."""
    if text is None or not text.strip():
        return None, "the answer is empty"
    s = text.strip()
    try:
        return json.loads(s), None
    except ValueError:
        pass
    for block in _FENCE.findall(s):
        try:
            return json.loads(block.strip()), None
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for i, ch in enumerate(s):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(s[i:])
                return value, None
            except ValueError:
                continue
    return None, "no JSON value found in the answer"


@lru_cache(maxsize=1)
def _jsonschema():
    import jsonschema  # imported on first use: it takes a second to load
    return jsonschema


def validate(value: Any, schema: dict) -> str | None:
    """None if ``value`` matches ``schema``, else the most relevant error in one line."""
    js = _jsonschema()
    error = js.exceptions.best_match(js.Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"at {where}: {error.message}" if where else error.message


def parse_and_validate(text: str | None, json_schema: dict) -> tuple[Any, str | None]:
    """:func:`extract_json` then :func:`validate`: ``(value, None)`` or ``(None, reason)``."""
    _, schema = normalize_schema(json_schema)
    value, err = extract_json(text)
    if err:
        return None, err
    err = validate(value, schema)
    return (None, err) if err else (value, None)


def repair_messages(messages: list[dict], answer: str | None, error: str) -> list[dict]:
    """The conversation for one more try: the wrong answer, then the validation error."""
    return list(messages) + [
        {"role": "assistant", "content": answer or ""},
        {"role": "user", "content": f"Your answer was not valid: {error}. Reply again with "
                                    "only the corrected JSON, matching the schema."}]


def check_schema(json_schema: dict) -> None:
    """Raise ``ValueError`` with the reason when ``json_schema`` is not a valid JSON schema."""
    _, schema = normalize_schema(json_schema)
    js = _jsonschema()
    try:
        js.Draft202012Validator.check_schema(schema)
    except js.exceptions.SchemaError as e:
        raise ValueError(f"json_schema is not a valid JSON schema: {e.message}") from None
