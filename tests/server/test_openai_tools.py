"""Tool calls on ``/v1/chat/completions``, in-process: the scripted backend (``auto`` to text
and to a tool, ``none``, the prompt with tool messages, streaming deltas), a fake upstream
OpenAI server on 127.0.0.1 behind the ``openai`` backend, and every refusal: tools to an LLM
that cannot call them, schemas that cannot be enforced, unknown and unhonoured fields."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chinwag.backends.openai_http import OpenAIBackend
from chinwag.backends.raw_http import HttpBackend
from chinwag.backends.scripted import ScriptedBackend
from chinwag.settings import Settings
from support.server import error_of

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search", "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                                     "required": ["q"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
def scripted() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def client(make_app: Callable[..., TestClient], scripted: ScriptedBackend) -> TestClient:
    return make_app(Settings(), scripted)


def chat(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/chat/completions", json={"messages": ASK, **body})


def test_required_answers_with_a_call_built_from_the_json(client: TestClient,
                                                          scripted: ScriptedBackend) -> None:
    scripted.enqueue('{"name": "get_weather", "arguments": {"city": "Paris"}}')
    reply = chat(client, tools=[WEATHER, SEARCH], tool_choice="required")
    assert reply.status_code == 200, reply.text
    choice = reply.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    asked = scripted.requests[-1]
    assert asked.params is not None and asked.params.json_schema is not None
    assert {b["properties"]["name"]["const"] for b in asked.params.json_schema["anyOf"]} == \
        {"get_weather", "search"}
    assert "get_weather: Current weather for a city" in asked.prompt  # the plain block


def test_a_named_tool_constrains_to_that_tool(client: TestClient,
                                              scripted: ScriptedBackend) -> None:
    scripted.enqueue('{"name": "search", "arguments": {"q": "Paris"}}')
    reply = chat(client, tools=[WEATHER, SEARCH],
                 tool_choice={"type": "function", "function": {"name": "search"}})
    assert reply.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "search"
    schema = scripted.requests[-1].params.json_schema  # type: ignore[union-attr]
    assert schema["properties"]["name"] == {"const": "search"}


def test_auto_to_text_reports_the_decision(client: TestClient,
                                           scripted: ScriptedBackend) -> None:
    scripted.enqueue_choice(0)  # reply
    scripted.enqueue("It is sunny.")
    body = chat(client, tools=[WEATHER]).json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "It is sunny."}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["chinwag"]["tool_decision"] == {
        "choice": "reply", "scores": {"reply": 0.0, "get_weather": None}}
    decided, answered = scripted.requests[-2:]
    assert decided.options == ("reply", "get_weather")
    assert answered.params is not None and answered.params.json_schema is None


def test_auto_to_a_tool(client: TestClient, scripted: ScriptedBackend) -> None:
    scripted.enqueue_choice(2)  # search
    scripted.enqueue('{"name": "search", "arguments": {"q": "Paris weather"}}')
    body = chat(client, tools=[WEATHER, SEARCH]).json()
    assert body["chinwag"]["tool_decision"]["choice"] == "search"
    assert body["choices"][0]["message"]["tool_calls"][0]["function"] == {
        "name": "search", "arguments": '{"q": "Paris weather"}'}
    schema = scripted.requests[-1].params.json_schema  # type: ignore[union-attr]
    assert schema["properties"]["name"] == {"const": "search"}  # only the chosen tool


def test_none_describes_the_tools_and_answers_in_text(client: TestClient,
                                                      scripted: ScriptedBackend) -> None:
    scripted.enqueue("I cannot look that up now.")
    body = chat(client, tools=[WEATHER], tool_choice="none").json()
    assert body["choices"][0]["message"]["content"] == "I cannot look that up now."
    assert "tool_decision" not in body["chinwag"]
    [request] = scripted.requests
    assert request.options == () and "get_weather" in request.prompt
    assert "Do not call a tool now" in request.prompt


def test_tool_messages_reach_the_prompt(client: TestClient, scripted: ScriptedBackend) -> None:
    scripted.enqueue("It is 18 degrees and sunny in Paris.")
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"}]
    reply = client.post("/v1/chat/completions", json={
        "messages": messages, "tools": [WEATHER], "tool_choice": "none"})
    assert reply.status_code == 200, reply.text
    prompt = scripted.requests[-1].prompt
    assert 'get_weather({"city": "Paris"}) returned: 18 C, sunny' in prompt
    # without tools, the tool messages still reach the prompt
    scripted.enqueue("Sunny.")
    assert client.post("/v1/chat/completions", json={"messages": messages}).status_code == 200
    assert "returned: 18 C, sunny" in scripted.requests[-1].prompt


def test_a_tool_message_needs_its_call_id(client: TestClient) -> None:
    reply = client.post("/v1/chat/completions", json={
        "messages": [*ASK, {"role": "tool", "content": "18 C"}]})
    assert reply.status_code == 400 and error_of(reply)["param"] == "messages"


def stream_events(client: TestClient, **body: Any) -> list[dict[str, Any]]:
    with client.stream("POST", "/v1/chat/completions",
                       json={"messages": ASK, "stream": True, **body}) as reply:
        assert reply.status_code == 200
        lines = [line[6:] for line in reply.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_a_streamed_call_opens_then_sends_its_arguments_in_pieces(
        client: TestClient, scripted: ScriptedBackend) -> None:
    scripted.enqueue('{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}')
    chunks = stream_events(client, tools=[WEATHER], tool_choice="required")
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": None}
    opened = deltas[1]["tool_calls"][0]
    assert opened["index"] == 0 and opened["id"].startswith("call_")
    assert opened["function"] == {"name": "get_weather", "arguments": ""}
    pieces = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:-1]]
    assert len(pieces) > 1 and all("id" not in d["tool_calls"][0] for d in deltas[2:-1])
    assert "".join(pieces) == '{"city": "Paris", "days": 3}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_streamed_auto_decision_comes_in_the_first_chunk(
        client: TestClient, scripted: ScriptedBackend) -> None:
    scripted.enqueue_choice(0)
    scripted.enqueue("Sunny today.")
    chunks = stream_events(client, tools=[WEATHER])
    assert chunks[0]["chinwag"]["tool_decision"]["choice"] == "reply"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Sunny today."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_call_cut_by_max_tokens_keeps_its_partial_arguments(
        client: TestClient, scripted: ScriptedBackend) -> None:
    scripted.enqueue('{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}')
    body = chat(client, tools=[WEATHER], tool_choice="required", max_tokens=5).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    call = choice["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather" and call["arguments"] == '{"city": "Paris",'


@pytest.mark.parametrize(("body", "status", "param", "code"), [
    ({"tools": [{"type": "code_interpreter"}]}, 400, "tools[0].type", "unsupported_tool_type"),
    ({"tools": [{"type": "function", "function": {"name": "send", "parameters": {
        "type": "object", "properties": {"to": {"type": "string", "format": "x-phone"}}}}}]},
     400, "tools[0].function.parameters", "invalid_schema"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     400, "tool_choice", "invalid_value"),
    ({"tool_choice": "required"}, 400, "tool_choice", "invalid_value"),
    ({"frobnicate": True}, 400, "frobnicate", "unsupported_parameter"),
    ({"functions": [{"name": "f"}]}, 400, "functions", "unsupported_parameter"),
    ({"audio": {"voice": "alloy"}}, 400, "audio", "unsupported_parameter"),
    ({"modalities": ["text", "audio"]}, 400, "modalities", "unsupported_parameter"),
    ({"store": True}, 400, "store", "unsupported_parameter"),
    ({"tools": [WEATHER], "logprobs": True}, 400, "logprobs", "unsupported_parameter"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {
        "type": "object", "properties": {"a": {"type": "string", "format": "x-phone"}}}}}},
     400, "response_format", "invalid_schema"),
])
def test_what_cannot_be_honoured_is_refused(client: TestClient, scripted: ScriptedBackend,
                                            body: dict[str, Any], status: int, param: str,
                                            code: str) -> None:
    reply = chat(client, **body)
    assert reply.status_code == status, reply.text
    error = error_of(reply)
    assert (error["param"], error["code"]) == (param, code)
    assert scripted.requests == []  # refused before anything was generated


def test_fields_that_change_nothing_are_accepted(client: TestClient,
                                                 scripted: ScriptedBackend) -> None:
    scripted.enqueue("Hi.")
    reply = chat(client, metadata={"team": "a"}, store=False, service_tier="auto",
                 modalities=["text"], parallel_tool_calls=False, prompt_cache_key="k")
    assert reply.status_code == 200, reply.text
    refused = client.post("/v1/completions", json={"prompt": "Hi", "echo": True})
    assert refused.status_code == 400 and error_of(refused)["param"] == "echo"
    scripted.enqueue("there")
    assert client.post("/v1/completions", json={"prompt": "Hi", "best_of": 1,
                                                "echo": False}).status_code == 200


def test_tools_to_an_http_llm_are_refused_naming_it(make_app: Callable[..., TestClient]) -> None:
    backend = HttpBackend("http://127.0.0.1:9", "/api/v1/generate", model_id="kobold")
    client = make_app(Settings(), backend)
    reply = chat(client, tools=[WEATHER])
    assert reply.status_code == 400
    error = error_of(reply)
    assert error["code"] == "tools_not_supported" and error["param"] == "tools"
    assert "kobold" in error["message"] or "http" in error["message"]


# -- the openai backend: tools go to the upstream server ---------------------------------------


class Upstream:
    """A fake OpenAI-compatible server on 127.0.0.1: answers each chat completion with the
    next queued list of stream deltas (as SSE), and records the bodies it received."""

    def __init__(self) -> None:
        self.replies: list[list[dict[str, Any]]] = []
        self.bodies: list[dict[str, Any]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.path.endswith("/chat/completions"):
                    self.send_error(404)
                    return
                upstream.bodies.append(body)
                deltas = upstream.replies.pop(0)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i, delta in enumerate(deltas):
                    finish = delta.pop("finish_reason", None)
                    chunk = {"choices": [{"index": 0, "delta": delta,
                                          "finish_reason": finish}]}
                    if i == len(deltas) - 1:
                        chunk["usage"] = {"prompt_tokens": 9, "completion_tokens": 4}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def relayed(make_app: Callable[..., TestClient], upstream: Upstream) -> TestClient:
    backend = OpenAIBackend(upstream.url, model_id="up", tokenize="estimate", max_retries=0)
    return make_app(Settings(), backend)


def test_tools_pass_through_to_the_upstream_and_its_call_comes_back(
        relayed: TestClient, upstream: Upstream) -> None:
    upstream.replies.append([
        {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_up", "type": "function",
                                              "function": {"name": "get_weather",
                                                           "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {"finish_reason": "tool_calls"}])
    reply = chat(relayed, tools=[WEATHER], tool_choice="required")
    assert reply.status_code == 200, reply.text
    choice = reply.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [{"id": "call_up", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    sent = upstream.bodies[-1]
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "required"


def test_an_upstream_that_ignores_tools_is_a_502(relayed: TestClient,
                                                 upstream: Upstream) -> None:
    upstream.replies.append([{"role": "assistant", "content": "It is sunny in Paris."},
                             {"finish_reason": "stop"}])
    reply = chat(relayed, tools=[WEATHER], tool_choice="required")
    assert reply.status_code == 502
    error = error_of(reply)
    assert error["code"] == "upstream_ignored_tools" and "It is sunny" in error["message"]


def test_an_upstream_call_that_fails_its_schema_is_an_error_with_the_text(
        relayed: TestClient, upstream: Upstream) -> None:
    upstream.replies.append([
        {"tool_calls": [{"index": 0, "id": "c", "function": {
            "name": "get_weather", "arguments": '{"town": "Paris"}'}}]},
        {"finish_reason": "tool_calls"}])
    reply = chat(relayed, tools=[WEATHER], tool_choice="auto")
    assert reply.status_code == 500
    error = error_of(reply)
    assert error["code"] == "invalid_output" and "town" in error["message"]
    assert upstream.bodies[-1]["tool_choice"] == "auto"


def test_tool_messages_go_to_the_upstream_as_they_are(relayed: TestClient,
                                                      upstream: Upstream) -> None:
    upstream.replies.append([{"content": "Sunny."}, {"finish_reason": "stop"}])
    calls = [{"id": "call_1", "type": "function",
              "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    reply = relayed.post("/v1/chat/completions", json={"messages": [
        *ASK, {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}], "tools": [WEATHER]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "Sunny."
    sent = upstream.bodies[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": None, "tool_calls": calls}
    assert sent[2] == {"role": "tool", "content": "18 C", "tool_call_id": "call_1"}
