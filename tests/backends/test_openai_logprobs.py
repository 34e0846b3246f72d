"""``choose`` by echoed prompt log-probabilities, the way vLLM and OpenAI's legacy completions
answer ``echo: true, logprobs: 0`` (served by httpx's MockTransport with that exact shape)."""

from __future__ import annotations

import json

import httpx
import pytest

from chinwag.backends.openai_http import OpenAIBackend
from chinwag.types import Message


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
