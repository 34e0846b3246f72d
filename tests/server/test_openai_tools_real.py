"""Tool calls through the real ``openai`` client, against a real ``chinwag serve`` on the
embedded model: ``required`` over two tools, a named tool, a stream rebuilt by the client's
own helper, a second turn carrying the tool's result, and a call cut by ``max_tokens``."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.slow

# strict tools (every property required, no others): the client's stream helper parses only
# those; the bounds and the enum are what tool schemas commonly carry, and must be enforced
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather forecast for a city", "strict": True,
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "days"],
                   "properties": {"city": {"type": "string", "maxLength": 30},
                                  "days": {"type": "integer", "minimum": 1, "maximum": 7}}}}}
CONVERT = {"type": "function", "function": {
    "name": "convert", "description": "Convert a temperature", "strict": True,
    "parameters": {"type": "object", "additionalProperties": False, "required": ["value", "to"],
                   "properties": {"value": {"type": "number"},
                                  "to": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}}}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"]  # type: ignore[index]
           for t in (WEATHER, CONVERT)}
ASK = [{"role": "user", "content": "What will the weather be in Paris for the next 3 days?"}]


@pytest.fixture
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def valid_call(call: Any) -> dict[str, Any]:
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, SCHEMAS[call.function.name])
    return arguments


@pytest.mark.parametrize("seed", [1, 2])
def test_required_over_two_tools_gives_a_valid_call(client: openai.OpenAI, seed: int) -> None:
    reply = client.chat.completions.create(
        model="gemma-3-270m-q4_k_m", messages=ASK, tools=[WEATHER, CONVERT],  # type: ignore[list-item]
        tool_choice="required", seed=seed, max_tokens=60)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls  # type: ignore[misc]
    assert call.id.startswith("call_") and call.type == "function"
    valid_call(call)


def test_a_named_tool_is_the_one_called(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemma-3-270m-q4_k_m", messages=ASK, tools=[WEATHER, CONVERT],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "convert"}}, seed=3,
        max_tokens=60)
    [call] = reply.choices[0].message.tool_calls  # type: ignore[misc]
    assert call.function.name == "convert"
    assert valid_call(call)["to"] in ("celsius", "fahrenheit")


def test_the_clients_stream_helper_rebuilds_the_call(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
            model="gemma-3-270m-q4_k_m", messages=ASK, tools=[WEATHER],  # type: ignore[list-item]
            tool_choice="required", seed=4, max_tokens=60) as stream:
        deltas = [event for event in stream if event.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls  # type: ignore[misc]
    assert final.choices[0].finish_reason == "tool_calls"
    assert len(deltas) > 1  # the arguments came in pieces
    assert "".join(d.arguments_delta for d in deltas) == call.function.arguments
    assert call.function.parsed_arguments == valid_call(call)  # type: ignore[attr-defined]


def test_a_second_turn_answers_from_the_tool_result(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="gemma-3-270m-q4_k_m", messages=ASK, tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required", seed=5, max_tokens=60)
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    messages = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id,
                 "content": "Sunny, 24 degrees Celsius, every day."}]
    second = client.chat.completions.create(
        model="gemma-3-270m-q4_k_m", messages=messages, tools=[WEATHER],  # type: ignore[arg-type,list-item]
        tool_choice="none", temperature=0, max_tokens=30)
    choice = second.choices[0]
    assert choice.message.tool_calls is None and choice.message.content is not None
    assert choice.finish_reason in ("stop", "length")
    assert second.usage is not None and first.usage is not None
    assert second.usage.prompt_tokens > first.usage.prompt_tokens  # the call and its result


def test_a_call_cut_by_max_tokens_keeps_its_partial_arguments(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gemma-3-270m-q4_k_m", messages=ASK, tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required", seed=1, max_tokens=11)
    choice = reply.choices[0]
    assert choice.finish_reason == "length"
    [call] = choice.message.tool_calls  # type: ignore[misc]
    assert call.function.name == "get_weather"
    assert call.function.arguments and not call.function.arguments.endswith("}")
