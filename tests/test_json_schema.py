"""The JSON Schema helpers every backend and the engine share."""

from __future__ import annotations

from typing import Any

import pytest

from chinwag.errors import SchemaError
from chinwag.json_schema import check_json_schema, for_grammar, json_problem, validate_json_text

MOOD = {"type": "object", "properties": {"mood": {"enum": ["calm", "angry"]}},
        "required": ["mood"]}


def test_a_valid_schema_and_no_schema_pass() -> None:
    check_json_schema(MOOD)
    check_json_schema({})
    check_json_schema(None)


def test_an_invalid_schema_is_a_schema_error_saying_where() -> None:
    with pytest.raises(SchemaError, match=r"not a valid JSON Schema: 12 is not valid"):
        check_json_schema({"type": 12})


def test_a_schema_is_checked_by_the_draft_it_names() -> None:
    # draft 4 wants exclusiveMinimum to be a boolean, 2020-12 a number
    check_json_schema({"type": "number", "exclusiveMinimum": 3})
    with pytest.raises(SchemaError):
        check_json_schema({"$schema": "http://json-schema.org/draft-04/schema#",
                           "type": "number", "exclusiveMinimum": 3})


def test_json_problem_says_what_is_wrong_or_nothing() -> None:
    assert json_problem('{"mood": "calm"}', MOOD) is None
    assert json_problem("anything at all", None) is None
    problem = json_problem("calm", MOOD)
    assert problem is not None and problem.startswith("not JSON: ")
    assert json_problem('{"mood": "sleepy"}', MOOD) == "'sleepy' is not one of ['calm', 'angry']"


def test_validate_json_text_names_the_source_the_problem_and_the_hint() -> None:
    validate_json_text('{"mood": "angry"}', MOOD, source="the model")
    validate_json_text("not json", None, source="the model")
    with pytest.raises(SchemaError, match=r"^the model does not match the JSON Schema "
                                          r"\('mood' is a required property\); maybe so: '\{\}'"):
        validate_json_text("{}", MOOD, source="the model", hint="maybe so")
    with pytest.raises(SchemaError, match=r"\(not JSON: .*\): 'calm'"):
        validate_json_text("calm", MOOD, source="the model")


# -- what a grammar can enforce ------------------------------------------------------------------


def test_a_small_integer_range_becomes_an_enum_the_grammar_enforces() -> None:
    schema = {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 200, "maximum": 205, "description": "a number"},
        "m": {"type": "integer", "exclusiveMinimum": 0.5, "exclusiveMaximum": 3}},
        "required": ["n"]}
    rewritten, exact = for_grammar(schema)
    assert exact
    assert rewritten["properties"]["n"] == {"enum": [200, 201, 202, 203, 204, 205]}
    assert rewritten["properties"]["m"] == {"enum": [1, 2]}
    assert schema["properties"]["n"]["minimum"] == 200  # the caller's schema is untouched


@pytest.mark.parametrize("schema", [
    {"type": "integer", "minimum": 0},  # one side: too many values for an enum
    {"type": "integer", "minimum": 0, "maximum": 10_000},
    {"type": "number", "minimum": 0.5, "maximum": 0.6},
    {"type": "integer", "minimum": 1, "maximum": 5, "multipleOf": 2},
    {"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer",
     "minimum": 1, "maximum": 5, "exclusiveMinimum": True},
    {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
    {"type": "string", "pattern": "^a+$", "maxLength": 3},
    {"oneOf": [{"type": "integer"}, {"type": "number"}]},
    {"allOf": [{"type": "object"}, {"required": ["a"]}]},
    {"type": "object", "properties": {"a": {"type": "string"}}, "minProperties": 1},
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}},
     "$defs": {"n": {"type": "number", "maximum": 3}}},
    {"not": {"type": "string"}},
], ids=["one-sided", "wide", "number", "multipleOf", "draft4-flags", "uniqueItems",
        "pattern-and-length", "oneOf", "allOf", "minProperties", "defs", "not"])
def test_what_the_grammar_cannot_enforce_is_reported(schema: dict[str, Any]) -> None:
    assert for_grammar(schema)[1] is False


@pytest.mark.parametrize("schema", [
    {},
    {"type": "string", "maxLength": 20},
    {"type": "string", "enum": ["red", "green"]},
    {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3},
    {"anyOf": [{"type": "string"}, {"type": "null"}]},
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/c"}}, "required": ["a"],
     "additionalProperties": False, "$defs": {"c": {"enum": [1, 2]}}, "title": "T"},
    {"type": "string", "format": "date"},
], ids=["empty", "maxLength", "enum", "array", "anyOf", "ref", "format"])
def test_what_the_grammar_enforces_is_exact(schema: dict[str, Any]) -> None:
    assert for_grammar(schema)[1] is True
