"""Structured output: JSON found in fences and prose, validated, errors in words."""
from __future__ import annotations

import pytest

from perso_kit.llm import structured
from perso_kit.llm.structured import extract_json, parse_and_validate, validate

SCHEMA = {"title": "pick", "type": "object", "required": ["ids", "reason"],
          "properties": {"ids": {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
                         "reason": {"type": "string"}}}


@pytest.mark.parametrize("text, value", [
    ('{"a": 1}', {"a": 1}),
    ('  [1, 2, 3]\n', [1, 2, 3]),
    ('Sure!\n```json\n{"a": [1, 2]}\n```\nAnything else?', {"a": [1, 2]}),
    ('```\n{"a": 2}\n```', {"a": 2}),
    ('I would say {"a": {"b": "}"}} is right, and {"c": 1} too', {"a": {"b": "}"}}),
    ('Ranking: [3, 1, 2] (best first)', [3, 1, 2]),
    ('```json\n{broken\n```\nthen {"ok": true}', {"ok": True}),
])
def test_extract_json(text, value):
    assert extract_json(text) == (value, None)


@pytest.mark.parametrize("text, reason", [
    ("", "the answer is empty"), (None, "the answer is empty"),
    ("No JSON here, sorry.", "no JSON value found in the answer"),
    ("{'single': 'quotes'}", "no JSON value found in the answer"),
])
def test_extract_json_failures_are_reported(text, reason):
    assert extract_json(text) == (None, reason)


def test_validation_errors_name_the_place():
    assert validate({"ids": [1], "reason": "x"}, SCHEMA) is None
    assert validate({"ids": [1, "2"], "reason": "x"}, SCHEMA) == \
        "at ids/1: '2' is not of type 'integer'"
    assert validate({"ids": [1]}, SCHEMA) == "'reason' is a required property"
    assert "is too long" in validate({"ids": [1, 2, 3, 4], "reason": ""}, SCHEMA)
    assert parse_and_validate('```json\n{"ids": [2], "reason": "r"}\n```', SCHEMA) == (
        {"ids": [2], "reason": "r"}, None)


def test_schema_forms_and_formats():
    assert structured.normalize_schema(SCHEMA) == ("pick", SCHEMA)
    assert structured.normalize_schema({"name": "n", "schema": SCHEMA}) == ("n", SCHEMA)
    fmt = structured.response_format({"title": "my pick!", "type": "object"})
    assert fmt == {"type": "json_schema", "json_schema": {
        "name": "my_pick_", "schema": {"title": "my pick!", "type": "object"}, "strict": False}}
    assert "```json schema" in structured.schema_instruction(SCHEMA)
    with pytest.raises(ValueError, match="not a valid JSON schema"):
        structured.check_schema({"type": "no-such-type"})
    msgs = structured.repair_messages([{"role": "user", "content": "q"}], "bad", "oops")
    assert msgs[1] == {"role": "assistant", "content": "bad"}
    assert msgs[2]["content"].startswith("Your answer was not valid: oops.")
