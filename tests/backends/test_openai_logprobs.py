"""``choose`` by echoed prompt log-probabilities, the way vLLM and OpenAI's legacy completions
answer ``echo: true, logprobs: 0``; a generation's log-probabilities read back from either of
OpenAI's shapes, and OpenAI's sampling fields passed on (served by httpx's MockTransport)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from chinwag.backends.openai_http import OpenAIBackend
from chinwag.types import Message, SamplingParams, TokenEvent


def echoing_server(logprob_of: dict[str, float]) -> httpx.MockTransport:
    """Echoes the prompt as one token per character group: the rendered chat as one token,
    then each option's words as tokens with the given log-probabilities."""
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["echo"] is True and body["logprobs"] == 0
        prompt: str = body["prompt"]
        option = next(o for o in logprob_of if prompt.endswith(o))
        head = prompt[: len(prompt) - len(option)]
        words = option.split(" ")
        tokens = [head] + [(" " if i else "") + w for i, w in enumerate(words)]
        offsets, at = [], 0
        for token in tokens:
            offsets.append(at)
            at += len(token)
        share = logprob_of[option] / len(words)
        return httpx.Response(200, json={"choices": [{"text": prompt + "x", "logprobs": {
            "tokens": tokens, "text_offset": offsets,
            "token_logprobs": [None] + [share] * len(words)}}]})
    return httpx.MockTransport(handler)


def test_choose_sums_the_options_token_logprobs() -> None:
    scores = {"the red door": -4.5, "the blue door": -1.5, "nothing": -9.0}
    backend = OpenAIBackend("http://vllm.test/v1", model_id="m", tokenize="estimate",
                            transport=echoing_server(scores))
    choice = backend.choose([Message("user", "Which door?")], list(scores))
    assert choice.option == "the blue door" and choice.index == 1
    assert choice.scores == pytest.approx([-4.5, -1.5, -9.0])
    assert backend._choose_mode == "auto"  # log-probabilities worked: no fallback


def test_a_server_without_echo_falls_back_to_the_enum_once() -> None:
    calls: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body)
        if body.get("echo"):
            return httpx.Response(400, json={"error": {"message": "echo is not supported"}})
        event = {"choices": [{"delta": {"content": '{"choice": "no"}'}, "finish_reason": "stop"}]}
        return httpx.Response(200, text=f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n")

    backend = OpenAIBackend("http://llama.test/v1", model_id="m", tokenize="estimate",
                            transport=httpx.MockTransport(handler))
    choice = backend.choose([Message("user", "Ready?")], ["yes", "no"])
    assert (choice.index, choice.option) == (1, "no") and choice.scores[0] == float("-inf")
    schema = calls[-1]["response_format"]["json_schema"]["schema"]  # type: ignore[index]
    assert schema["properties"]["choice"]["enum"] == ["yes", "no"]
    backend.choose([Message("user", "Again?")], ["yes", "no"])
    assert sum(1 for c in calls if c.get("echo")) == 1  # not asked again


# -- generation's own log-probabilities and OpenAI's sampling fields, passed on ------------------

def streaming_server(seen: list[dict[str, Any]]) -> httpx.MockTransport:
    """Streams "Hi there" in two chunks with log-probabilities in the shape of the endpoint
    asked (chat's ``content`` list, or legacy completions' parallel lists); records bodies."""
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        chat = request.url.path.endswith("/chat/completions")
        chunks = []
        for i, piece in enumerate(["Hi", " there"]):
            if chat:
                choice = {"delta": {"content": piece}, "logprobs": {"content": [{
                    "token": piece, "logprob": -0.5 * i, "bytes": list(piece.encode()),
                    "top_logprobs": [{"token": piece, "logprob": -0.5 * i,
                                      "bytes": list(piece.encode())}]}]}}
            else:
                choice = {"text": piece, "logprobs": {
                    "tokens": [piece], "token_logprobs": [-0.5 * i],
                    "top_logprobs": [{piece: -0.5 * i}], "text_offset": [0]}}
            chunks.append({"choices": [{**choice, "finish_reason": None}]})
        chunks.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text)
    return httpx.MockTransport(handler)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_sampling_fields_go_to_the_server_and_its_logprobs_come_back(api: str) -> None:
    seen: list[dict[str, Any]] = []
    backend = OpenAIBackend("http://vllm.test/v1", model_id="m", tokenize="estimate", api=api,
                            transport=streaming_server(seen))
    params = SamplingParams(presence_penalty=0.5, frequency_penalty=-0.5,
                            logit_bias={42: -100.0}, logprobs=1)
    events = list(backend.chat([Message("user", "Hello")], params))
    body = seen[0]
    assert (body["presence_penalty"], body["frequency_penalty"]) == (0.5, -0.5)
    assert body["logit_bias"] == {"42": -100.0}
    if api == "chat":
        assert (body["logprobs"], body["top_logprobs"]) == (True, 1)
    else:
        assert body["logprobs"] == 1
    records = [r for e in events if isinstance(e, TokenEvent) for r in e.logprobs]
    assert [(r.token, r.logprob) for r in records] == [("Hi", 0.0), (" there", -0.5)]
    assert [[t.token for t in r.top] for r in records] == [["Hi"], [" there"]]
    assert records[1].bytes == tuple(b" there")


def test_defaults_send_none_of_the_fields() -> None:
    seen: list[dict[str, Any]] = []
    backend = OpenAIBackend("http://vllm.test/v1", model_id="m", tokenize="estimate",
                            transport=streaming_server(seen))
    events = list(backend.chat([Message("user", "Hello")], SamplingParams()))
    assert not {"presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
                "top_logprobs"} & set(seen[0])
    assert all(not e.logprobs for e in events if isinstance(e, TokenEvent))
