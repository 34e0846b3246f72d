"""JSON Schema checks shared by the backends and the engine: is a schema valid, and does a
generated text match one.

A schema is checked by the metaschema of the draft its ``$schema`` names (2020-12 when it names
none), and documents are validated by that same draft, as ``jsonschema.validate`` does.
"""

from __future__ import annotations

import json
import math
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from chinwag.errors import SchemaError

_FORMAT_CHECKER = jsonschema.FormatChecker()
"""Checks ``format`` (an annotation unless asked for) for the formats jsonschema can check
with what is installed; ``unenforceable`` refuses the others."""


def check_json_schema(schema: dict[str, Any] | None) -> None:
    """Check that ``schema`` (when given) is a valid JSON Schema that chinwag can honour
    (``unenforceable`` finds nothing).

    Args:
        schema: a JSON Schema as a mapping, or None (nothing to check).

    Raises:
        SchemaError: it is not valid, or uses what can be neither enforced nor checked (the
            message says which keyword and where).
    """
    if schema is None:
        return
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise SchemaError(f"not a valid JSON Schema: {e.message}") from None
    problem = unenforceable(schema)
    if problem is not None:
        raise SchemaError(f"this JSON Schema cannot be enforced: {problem}")


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
    validator = jsonschema.validators.validator_for(schema)(schema,
                                                            format_checker=_FORMAT_CHECKER)
    error = best_match(validator.iter_errors(document))
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


def unenforceable(schema: dict[str, Any]) -> str | None:
    """What in ``schema`` chinwag can neither enforce while generating nor check after: a
    ``format`` that is neither in the grammar (``date``, ``time``, ``date-time``, ``uuid``) nor
    checkable by ``jsonschema`` here, or a ``$ref`` outside the schema (it would be fetched).
    Every other keyword is enforced by the grammar or checked by ``json_problem``.

    Returns:
        None, or the keyword and where (``"keyword 'format: email' at /properties/to"``).
    """
    def walk(node: Any, where: str) -> str | None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                found = walk(item, f"{where}/{i}")
                if found:
                    return found
            return None
        if not isinstance(node, dict):
            return None
        fmt = node.get("format")
        if isinstance(fmt, str) and fmt not in _FORMATS and fmt not in _FORMAT_CHECKER.checkers:
            return f"keyword 'format: {fmt}' at {where or '/'} (no checker for this format)"
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return f"keyword '$ref: {ref}' at {where or '/'} (only references inside the " \
                "schema are followed)"
        for key, value in node.items():
            if key not in ("enum", "const", "default", "examples"):
                found = walk(value, f"{where}/{key}")
                if found:
                    return found
        return None

    return walk(schema, "")


# -- what a grammar can enforce -------------------------------------------------------------------

_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id",
                          "$comment", "deprecated", "readOnly", "writeOnly", "$defs",
                          "definitions"})
_FORMATS = frozenset({"date", "time", "date-time", "uuid"})
MAX_ENUM_RANGE = 256
"""Integer ranges up to this many values are enforced in the grammar (as an ``enum``)."""


def for_grammar(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``schema`` rewritten for llama-cpp-python's GBNF converter, and whether the grammar it
    makes enforces every keyword of ``schema``.

    The converter (``llama_cpp.llama_grammar``, a port of llama.cpp's
    ``json-schema-to-grammar``) takes one branch per schema node, in the order ``$ref``,
    ``anyOf``/``oneOf``, a list of types, ``const``, ``enum``, object, ``allOf``, array,
    ``pattern``, ``format``, string lengths, plain type, and ignores the keywords of the other
    branches; it ignores numeric bounds altogether (a TODO in the port, although llama.cpp's
    own converter has them for integers). So: an integer bounded on both sides with at most
    ``MAX_ENUM_RANGE`` values becomes an ``enum`` of them (enforced), and any node that uses
    more than its branch enforces (numeric bounds, ``multipleOf``, ``uniqueItems``,
    ``oneOf``'s exclusivity, ``allOf``, ``not``, ``minProperties``...) makes the answer False:
    the generated text must then be checked against ``schema`` after generation
    (``json_problem``).
    """
    rewritten, exact = _node(schema)
    return rewritten if isinstance(rewritten, dict) else schema, exact


def _node(node: Any) -> tuple[Any, bool]:
    if not isinstance(node, dict):
        return node, node is True or node == {}
    keys = set(node) - _ANNOTATIONS
    defs_exact = True
    out = dict(node)
    for defs in ("$defs", "definitions"):
        if isinstance(node.get(defs), dict):
            done = {k: _node(v) for k, v in node[defs].items()}
            out[defs] = {k: v for k, (v, _) in done.items()}
            defs_exact = defs_exact and all(e for _, e in done.values())
    ranged = _integer_range(node, keys)
    if ranged is not None:
        return ranged, defs_exact
    kind = node.get("type")
    exact: bool
    if "$ref" in node:
        exact = keys == {"$ref"}
    elif "anyOf" in node or "oneOf" in node:
        key = "anyOf" if "anyOf" in node else "oneOf"
        subs = [_node(s) for s in node[key]] if isinstance(node[key], list) else []
        out[key] = [s for s, _ in subs]
        exact = keys == {"anyOf"} and all(e for _, e in subs)
    elif isinstance(kind, list):
        exact = keys == {"type"}
    elif "const" in node:
        exact = keys <= {"const", "type"}
    elif "enum" in node:
        exact = keys <= {"enum", "type"}
    elif kind in (None, "object") and ("properties" in node or (
            "additionalProperties" in node and node["additionalProperties"] is not True)):
        props = {k: _node(v) for k, v in (node.get("properties") or {}).items()}
        out["properties"] = {k: v for k, (v, _) in props.items()}
        extra = node.get("additionalProperties")
        extra_exact = True
        if isinstance(extra, dict):
            out["additionalProperties"], extra_exact = _node(extra)
        exact = (keys <= {"type", "properties", "required", "additionalProperties"}
                 and all(e for _, e in props.values()) and extra_exact)
    elif kind in (None, "object") and "allOf" in node:
        exact = False
    elif kind in (None, "array") and ("items" in node or "prefixItems" in node):
        if isinstance(node.get("items"), dict):
            out["items"], items_exact = _node(node["items"])
            exact = keys <= {"type", "items", "minItems", "maxItems"} and items_exact
        else:
            key = "items" if isinstance(node.get("items"), list) else "prefixItems"
            subs = [_node(s) for s in node[key]] if isinstance(node.get(key), list) else []
            if subs:
                out[key] = [s for s, _ in subs]
            exact = keys <= {"type", "prefixItems", "items"} and all(e for _, e in subs) \
                and not isinstance(node.get("items"), dict)
    elif kind in (None, "string") and "pattern" in node:
        exact = keys <= {"type", "pattern"}
    elif kind in (None, "string") and "format" in node:
        exact = node["format"] in _FORMATS and keys <= {"type", "format"}
    elif kind == "string" and ("minLength" in node or "maxLength" in node):
        exact = keys <= {"type", "minLength", "maxLength"}
    else:
        exact = keys <= {"type"}
    return out, exact and defs_exact


def _integer_range(node: dict[str, Any], keys: set[str]) -> dict[str, Any] | None:
    """An ``enum`` for an integer node bounded on both sides with few enough values."""
    if node.get("type") != "integer" or not keys <= {
            "type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        return None
    if any(isinstance(node.get(k), bool) for k in ("exclusiveMinimum", "exclusiveMaximum")):
        return None  # draft 4's flags: checked after generation instead
    low, high = -math.inf, math.inf
    for key, value in node.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if key == "minimum":
            low = max(low, math.ceil(value))
        elif key == "exclusiveMinimum":
            low = max(low, math.floor(value) + 1)
        elif key == "maximum":
            high = min(high, math.floor(value))
        elif key == "exclusiveMaximum":
            high = min(high, math.ceil(value) - 1)
    if math.isinf(low) or math.isinf(high) or high - low + 1 > MAX_ENUM_RANGE or high < low:
        return None
    return {"enum": list(range(int(low), int(high) + 1))}
