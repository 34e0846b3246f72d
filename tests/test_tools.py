"""``chinwag.tools``: what a request's tools must be, the call schema, the plain block for
formats without tools, and reading a call as it streams."""

from __future__ import annotations

import json

import jsonschema
import pytest

from chinwag.errors import InvalidParams
from chinwag.tools import (
    REPLY,
    CallReader,
    Tool,
    ToolRequest,
    call_schema,
    decision_question,
    describe_tools,
    fold_tool_messages,
)
from chinwag.types import Message, ToolCall

WEATHER = Tool("get_weather", "Weather for a city", {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
ADD = Tool("add", "", {"type": "object", "properties": {"a": {"type": "integer"}},
                       "required": ["a"]})


def test_call_schema_accepts_a_call_to_each_tool_and_nothing_else() -> None:
    schema = call_schema([WEATHER, ADD])
    jsonschema.validate({"name": "get_weather", "arguments": {"city": "Paris"}}, schema)
    jsonschema.validate({"name": "add", "arguments": {"a": 2}}, schema)
    for wrong in ({"name": "add", "arguments": {"city": "Paris"}},
                  {"name": "other", "arguments": {}}, {"name": "add"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)
    assert list(call_schema([ADD])["properties"]) == ["name", "arguments"]  # name streams first


@pytest.mark.parametrize(("tools", "mode", "name", "param", "code"), [
    ((), "auto", None, "tools", "invalid_value"),
    ((WEATHER, WEATHER), "auto", None, "tools[1].function.name", "invalid_value"),
    ((Tool("bad name!"),), "auto", None, "tools[0].function.name", "invalid_value"),
    ((WEATHER,), "named", "add", "tool_choice", "invalid_value"),
    ((Tool("t", "", {"type": "object", "properties": {"to": {"type": "string",
                                                              "format": "email-ish"}}}),),
     "auto", None, "tools[0].function.parameters", "invalid_schema"),  # no checker for it
    ((Tool("t", "", {"type": "object", "properties": {"x": {"$ref": "http://x/s.json"}}}),),
     "auto", None, "tools[0].function.parameters", "invalid_schema"),
    ((Tool("t", "", {"type": "string"}),), "auto", None, "tools[0].function.parameters",
     "invalid_value"),
    ((Tool("t", "", {"type": "object", "minProperties": "two"}),), "auto", None,
     "tools[0].function.parameters", "invalid_schema"),
])
def test_a_request_that_cannot_be_honoured_is_refused_naming_what(
        tools: tuple[Tool, ...], mode: str, name: str | None, param: str, code: str) -> None:
    with pytest.raises(InvalidParams) as e:
        ToolRequest(tools, mode, name)  # type: ignore[arg-type]
    assert e.value.param == param and e.value.code == code
    if code == "invalid_schema":
        assert "tool 't'" in str(e.value)


def test_a_format_jsonschema_can_check_is_accepted() -> None:
    ToolRequest((Tool("t", "", {"type": "object", "properties": {
        "to": {"type": "string", "format": "email"}}}),))


def test_selected_tools() -> None:
    request = ToolRequest((WEATHER, ADD), "named", "add")
    assert request.selected() == (ADD,)
    assert ToolRequest((WEATHER, ADD), "required").selected() == (WEATHER, ADD)
    assert ToolRequest((WEATHER, ADD)).selected("get_weather") == (WEATHER,)


def test_the_plain_block_lists_tools_schemas_and_past_calls() -> None:
    text = describe_tools(ToolRequest((WEATHER, ADD)), ["- add({}) returned: 3"])
    assert "get_weather: Weather for a city" in text
    assert json.dumps(WEATHER.parameters) in text
    assert '{"name":' in text and "- add({}) returned: 3" in text
    assert "Do not call" in describe_tools(ToolRequest((WEATHER,), "none"))


def test_tool_messages_fold_into_lines() -> None:
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    kept, history = fold_tool_messages([
        Message("user", "Weather?"), Message("assistant", "", tool_calls=(call,)),
        Message("tool", "18 C, sun", tool_call_id="call_1"),
        Message("assistant", "Let me check", tool_calls=(ToolCall("call_2", "add", "{}"),))])
    assert kept == [Message("user", "Weather?"), Message("assistant", "Let me check")]
    assert history == ['- get_weather({"city": "Paris"}) returned: 18 C, sun',
                       "- add({}) returned nothing yet"]


def test_the_decision_offers_reply_then_each_tool() -> None:
    ask, options = decision_question(ToolRequest((WEATHER, ADD)))
    assert options == [REPLY, "get_weather", "add"]
    assert ask.role == "user" and "get_weather" in ask.content


CALL = '{"name": "get_weather", "arguments": {"city": "Paris", "opts": {"x": [1, 2]}}}  '


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(CALL)])
def test_call_reader_streams_exactly_the_arguments(size: int) -> None:
    reader = CallReader()
    names, pieces = [], []
    for i in range(0, len(CALL), size):
        name, piece = reader.feed(CALL[i:i + size])
        if name is not None:
            names.append(name)
        pieces.append(piece)
        assert '{"city": "Paris", "opts": {"x": [1, 2]}}'.startswith("".join(pieces))
    pieces.append(reader.finish(complete=True))
    assert names == ["get_weather"]
    assert "".join(pieces) == reader.arguments == '{"city": "Paris", "opts": {"x": [1, 2]}}'


def test_call_reader_keeps_what_was_cut() -> None:
    reader = CallReader()
    _, first = reader.feed('{"name": "add", "arguments": {"a": 1')
    assert first + reader.finish(complete=False) == '{"a": 1'
    cut = CallReader()
    assert cut.feed('{"name": "ad') == (None, "")
    assert cut.finish(complete=False) == "" and cut.name == "ad"
