"""JSON Schema checks shared by the backends and the engine: is a schema valid, and does a
generated text match one.

A schema is checked by the metaschema of the draft its ``$schema`` names (2020-12 when it names
none), and documents are validated by that same draft, as ``jsonschema.validate`` does.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from chinwag.errors import SchemaError


def check_json_schema(schema: dict[str, Any] | None) -> None:
    """Check that ``schema`` (when given) is a valid JSON Schema.

    Args:
        schema: a JSON Schema as a mapping, or None (nothing to check).

    Raises:
        SchemaError: it is not valid (the message says where).
    """
    if schema is None:
        return
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise SchemaError(f"not a valid JSON Schema: {e.message}") from None


def json_problem(text: str, schema: dict[str, Any] | None) -> str | None:
    """What is wrong with ``text`` as a JSON document valid against ``schema``.

    Args:
        text: generated text that should be one JSON document.
        schema: a valid JSON Schema (see ``check_json_schema``), or None (anything goes).

    Returns:
        None when ``text`` is JSON valid against ``schema`` (or ``schema`` is None); else one
        line saying what is wrong: ``"not JSON: ..."`` or the schema's complaint.
    """
    if schema is None:
        return None
    try:
        document = json.loads(text)
    except ValueError as e:
        return f"not JSON: {e}"
    error = best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(document))
    return None if error is None else error.message


def validate_json_text(text: str, schema: dict[str, Any] | None, *, source: str,
                       hint: str = "") -> None:
    """Raise unless ``text`` is a JSON document valid against ``schema``.

    Args:
        text: generated text that should be one JSON document.
        schema: a valid JSON Schema, or None (nothing to check).
        source: who produced the text, for the message (``"http://gpu-box/v1"``, ``"the
            typed reply"``).
        hint: a sentence added to the message (why it may have happened).

    Raises:
        SchemaError: ``text`` is not JSON, or not valid against ``schema``; the message says
            which and quotes the start of the text.
    """
    problem = json_problem(text, schema)
    if problem is not None:
        more = f"; {hint}" if hint else ""
        raise SchemaError(f"{source} does not match the JSON Schema ({problem}){more}: "
                          f"{text[:200]!r}")
