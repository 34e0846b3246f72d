"""The JSON Schema helpers every backend and the engine share."""

from __future__ import annotations

import pytest

from chinwag.errors import SchemaError
from chinwag.json_schema import check_json_schema, json_problem, validate_json_text

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
