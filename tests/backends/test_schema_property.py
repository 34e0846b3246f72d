"""Property: on the real model, a JSON Schema answer is never returned invalid. Schemas are
drawn from the keywords chinwag claims to support (types, enum, const, integer and number
bounds, string lengths, required, nesting, arrays with minItems/maxItems); each answer that
finishes (``stop``) validates, or the request fails with ``OutputInvalid`` carrying the text.
A text cut by ``max_tokens`` (``length``) is returned as it is and not checked."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chinwag.errors import OutputInvalid
from chinwag.types import Done, SamplingParams, TokenEvent

pytestmark = pytest.mark.slow

NAMES = st.sampled_from(["name", "age", "city", "tags", "ok", "size"])


@st.composite
def integer_schema(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(-50, 300))
    schema: dict[str, Any] = {"type": "integer", "minimum": low}
    if draw(st.booleans()):
        schema["maximum"] = low + draw(st.integers(0, 20))
    return schema


@st.composite
def string_schema(draw: st.DrawFn) -> dict[str, Any]:
    high = draw(st.integers(1, 12))
    return {"type": "string", "minLength": draw(st.integers(0, high)), "maxLength": high}


LEAVES = st.one_of(
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    integer_schema(),
    st.just({"type": "number", "minimum": 0, "maximum": 1}),
    string_schema(),
    st.lists(st.sampled_from(["red", "green", "blue", "cyan"]), min_size=1, max_size=3,
             unique=True).map(lambda values: {"enum": values}),
    st.sampled_from(["yes", 3, True]).map(lambda value: {"const": value}),
)


@st.composite
def array_of(draw: st.DrawFn, items: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    low = draw(st.integers(0, 2))
    return {"type": "array", "items": draw(items), "minItems": low,
            "maxItems": low + draw(st.integers(0, 2))}


@st.composite
def object_of(draw: st.DrawFn, values: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    properties = {name: draw(values) for name in names}
    required = [name for name in names if draw(st.booleans())]
    return {"type": "object", "properties": properties, "required": required}


SCHEMAS = st.recursive(LEAVES, lambda inner: st.one_of(array_of(inner), object_of(inner)),
                       max_leaves=4).map(lambda s: {"type": "object", "properties": {"v": s},
                                                    "required": ["v"]})


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(schema=SCHEMAS, seed=st.integers(0, 1000))
def test_every_finished_answer_validates(llama: Any, schema: dict[str, Any], seed: int) -> None:
    params = SamplingParams(temperature=0.8, seed=seed, max_tokens=160, json_schema=schema)
    text, done = "", None
    try:
        for event in llama.generate("A JSON document:\n", params):
            if isinstance(event, TokenEvent):
                text += event.text
            elif isinstance(event, Done):
                done = event
    except OutputInvalid as e:  # refused with the text: allowed, never an invalid answer
        assert e.text and e.problem
        return
    assert done is not None
    if done.finish_reason == "stop":
        jsonschema.validate(json.loads(text), schema)
