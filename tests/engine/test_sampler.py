"""Grammars made from JSON Schemas."""

import pytest

from chinwag.engine.sampler import grammar_for_schema
from chinwag.errors import SchemaError


def test_string_characters_exclude_control_characters() -> None:
    """JSON strings may not hold raw newlines (RFC 8259 section 7); the grammar forbids them."""
    gbnf = grammar_for_schema({"type": "object", "properties": {"a": {"type": "string"}}})
    char_rule = next(line for line in gbnf.splitlines() if line.startswith("char ::="))
    assert r"\x00-\x1F" in char_rule


def test_empty_schema_is_any_json_with_bounded_whitespace() -> None:
    gbnf = grammar_for_schema({})
    assert "root" in gbnf and "{0,20}" in gbnf


def test_invalid_schema_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="not a valid JSON Schema"):
        grammar_for_schema({"type": 12})
