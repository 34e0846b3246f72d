"""OpenAI's ``presence_penalty``, ``frequency_penalty``, ``logit_bias`` and ``logprobs`` on
``/v1/chat/completions`` and ``/v1/completions``, in-process: the fields reaching the sampling
settings, the answers' ``logprobs`` shapes (streamed too) on the scripted backend and on the
real model, and the refusals (a bad value; a backend that cannot honour a field)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from chinwag.backends.human import HumanBackend
from chinwag.backends.scripted import ScriptedBackend
from support.server import error_of

MODEL = "scripted"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def client(make_app: Callable[..., TestClient], backend: ScriptedBackend) -> TestClient:
    return make_app(backend=backend)


def sse_events(reply: Any) -> list[dict[str, Any]]:
    """The JSON events of a server-sent event stream (``[DONE]`` left out)."""
    return [json.loads(line[6:]) for line in reply.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def test_the_fields_reach_the_sampling_settings(client: TestClient,
                                                backend: ScriptedBackend) -> None:
    """Token ids arrive as strings (OpenAI's shape) and become integers."""
    reply = client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": HI, "presence_penalty": 0.5, "frequency_penalty": -0.25,
        "logit_bias": {"12": -100, "7": 3.5}, "logprobs": True, "top_logprobs": 2})
    assert reply.status_code == 200, reply.text
    params = backend.requests[0].params
    assert params is not None
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, -0.25)
    assert params.logit_bias == {12: -100.0, 7: 3.5} and params.logprobs == 2
    client.post("/v1/chat/completions", json={"model": MODEL, "messages": HI,
                                              "logprobs": True})
    client.post("/v1/completions", json={"model": MODEL, "prompt": "x", "logprobs": 3})
    client.post("/v1/completions", json={"model": MODEL, "prompt": "x"})
    assert [r.params.logprobs for r in backend.requests[1:]] == [0, 3, None]  # type: ignore[union-attr]


def test_chat_logprobs_have_openais_shape(client: TestClient,
                                          backend: ScriptedBackend) -> None:
    backend.enqueue("Hello there friend")
    reply = client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": HI, "logprobs": True, "top_logprobs": 2})
    logprobs = reply.json()["choices"][0]["logprobs"]
    assert set(logprobs) == {"content", "refusal"} and logprobs["refusal"] is None
    content = logprobs["content"]
    assert [c["token"] for c in content] == ["Hello", " there", " friend"]
    for item in content:
        assert set(item) == {"token", "logprob", "bytes", "top_logprobs"}
        assert item["bytes"] == list(item["token"].encode()) and item["logprob"] <= 0
        assert all(set(t) == {"token", "logprob", "bytes"} for t in item["top_logprobs"])
        assert 1 <= len(item["top_logprobs"]) <= 2


def test_completion_logprobs_have_openais_legacy_shape(client: TestClient,
                                                       backend: ScriptedBackend) -> None:
    backend.enqueue("one two three")
    reply = client.post("/v1/completions", json={"model": MODEL, "prompt": "Count:",
                                                 "logprobs": 2})
    assert reply.json()["choices"][0]["logprobs"] == {
        "tokens": ["one", " two", " three"], "token_logprobs": [0.0, 0.0, 0.0],
        "top_logprobs": [{"one": 0.0}, {" two": 0.0}, {" three": 0.0}],
        "text_offset": [0, 3, 7]}


def test_logprobs_are_null_unless_asked(client: TestClient) -> None:
    chat = client.post("/v1/chat/completions", json={"model": MODEL, "messages": HI})
    completion = client.post("/v1/completions", json={"model": MODEL, "prompt": "x"})
    assert chat.json()["choices"][0]["logprobs"] is None
    assert completion.json()["choices"][0]["logprobs"] is None


def test_each_streamed_chunk_carries_its_own_tokens_logprobs(client: TestClient,
                                                             backend: ScriptedBackend) -> None:
    backend.enqueue("Hello there friend", "one two three")
    chat = sse_events(client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": HI, "stream": True, "logprobs": True, "top_logprobs": 1}))
    texts = [c["choices"][0] for c in chat if c["choices"] and c["choices"][0]["delta"].get(
        "content")]
    assert texts and all([t["token"] for t in c["logprobs"]["content"]] == [
        c["delta"]["content"]] for c in texts)
    assert chat[0]["choices"][0]["logprobs"] is None  # the role chunk: no tokens
    completion = sse_events(client.post("/v1/completions", json={
        "model": MODEL, "prompt": "x", "stream": True, "logprobs": 1}))
    pieces = [c["choices"][0] for c in completion if c["choices"] and c["choices"][0]["text"]]
    assert [p["logprobs"]["tokens"] for p in pieces] == [["one"], [" two"], [" three"]]
    assert [p["logprobs"]["text_offset"] for p in pieces] == [[0], [3], [7]]


def test_the_openai_client_reads_chat_logprobs(client: TestClient,
                                               backend: ScriptedBackend) -> None:
    backend.enqueue("Hello there")
    ai = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client,
                       max_retries=0)
    reply = ai.chat.completions.create(model=MODEL, messages=HI,  # type: ignore[arg-type]
                                       logprobs=True, top_logprobs=2)
    content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and [c.token for c in content] == ["Hello", " there"]
    assert content[0].top_logprobs[0].token == "Hello"


@pytest.mark.parametrize("field, value", [
    ("presence_penalty", 2.5), ("frequency_penalty", -3), ("logit_bias", {"abc": 1}),
    ("logit_bias", {"-1": 1}), ("logit_bias", {"5": 101}), ("top_logprobs", 21),
])
def test_a_bad_value_is_a_400_naming_its_field(client: TestClient, field: str,
                                               value: Any) -> None:
    reply = client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": HI, "logprobs": True, field: value})
    assert reply.status_code == 400, reply.text
    assert (error_of(reply)["param"], error_of(reply)["code"]) == (field, "invalid_value")


def test_completion_logprobs_out_of_range_is_a_400(client: TestClient) -> None:
    reply = client.post("/v1/completions", json={"model": MODEL, "prompt": "x",
                                                 "logprobs": 21})
    assert reply.status_code == 400
    assert (error_of(reply)["param"], error_of(reply)["code"]) == ("logprobs", "invalid_value")


def test_top_logprobs_without_logprobs_is_a_400(client: TestClient) -> None:
    reply = client.post("/v1/chat/completions", json={"model": MODEL, "messages": HI,
                                                      "top_logprobs": 2})
    assert reply.status_code == 400
    assert (error_of(reply)["param"], error_of(reply)["code"]) == (
        "top_logprobs", "invalid_value")


@pytest.mark.parametrize("field, value", [
    ("logprobs", True), ("presence_penalty", 0.5), ("logit_bias", {"1": 5})])
def test_a_backend_that_cannot_honour_a_field_refuses_it_by_name(
        make_app: Callable[..., TestClient], field: str, value: Any) -> None:
    """A person typing has no logits: a 400 naming the field and the LLM, not a silent
    answer without them."""
    human = HumanBackend(input=io.StringIO("a reply\n"), output=io.StringIO(), name="typist")
    client = make_app(backend=human)
    reply = client.post("/v1/chat/completions", json={"messages": HI, field: value})
    assert reply.status_code == 400, reply.text
    error = error_of(reply)
    assert (error["param"], error["code"]) == (field, "unsupported_parameter")
    assert "typist" in error["message"]


# -- the real model ------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_real_models_chat_logprobs(make_app: Callable[..., TestClient], llama: Any) -> None:
    """Greedy, no penalty: each token is the first of its alternatives; one record per
    generated token."""
    client = make_app(backend=llama)
    reply = client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "Name a fruit."}], "max_tokens": 8,
        "temperature": 0, "repeat_penalty": 1.0, "logprobs": True, "top_logprobs": 2})
    assert reply.status_code == 200, reply.text
    choice = reply.json()["choices"][0]
    content = choice["logprobs"]["content"]
    assert content and all(c["logprob"] == c["top_logprobs"][0]["logprob"] for c in content)
    assert all(len(c["top_logprobs"]) == 2 for c in content)
    if choice["finish_reason"] == "length":
        assert len(content) == reply.json()["usage"]["completion_tokens"]


@pytest.mark.slow
def test_a_bias_outside_the_real_vocabulary_is_a_400(make_app: Callable[..., TestClient],
                                                     llama: Any) -> None:
    client = make_app(backend=llama)
    reply = client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2,
                                                 "logit_bias": {"999999": -100}})
    assert reply.status_code == 400 and error_of(reply)["param"] == "logit_bias"
