"""The OpenAI-compatible API through the real ``openai`` client, on a real server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from support.server import metric
from support.waiting import wait_until

pytestmark = pytest.mark.slow

MODEL = "gemma-3-270m-q4_k_m"


@pytest.fixture
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_model_and_every_persona(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids[0] == MODEL
    assert {"assistant", "villager", "pogi"} <= set(ids)


def test_plain_chat_completion(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=20,
        temperature=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    assert reply.usage is not None and reply.usage.completion_tokens <= 20
    assert "User:" not in choice.message.content


def test_streaming_chat_completion(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="villager", messages=[{"role": "user", "content": "Hello! What is this place?"}],
        stream=True, stream_options={"include_usage": True}, temperature=0)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert text and "Traveller:" not in text
    assert finishes[-1] in {"stop", "length"} and all(f is None for f in finishes[:-1])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_persona_as_model_applies_its_prompt(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="villager", messages=[{"role": "user", "content": "Who are you?"}], temperature=0,
        seed=1)
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.prompt_tokens > 100  # preamble sent


def test_json_schema_response_format(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"]}
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Make up a person."}],
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
        max_tokens=100, temperature=0.5, seed=3)
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


def test_json_object_response_format(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "A JSON object please."}],
        response_format={"type": "json_object"}, max_tokens=120, temperature=0.5, seed=4)
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)


def test_truncation_auto_drops_oldest_messages(server: Any) -> None:
    history = []
    for i in range(80):
        history += [{"role": "user", "content": f"message {i} " + "blah " * 20},
                    {"role": "assistant", "content": "ok " * 10}]
    body = {"model": MODEL, "max_tokens": 16, "temperature": 0, "truncation": "auto",
            "messages": [{"role": "system", "content": "Be brief."}, *history,
                         {"role": "user", "content": "Last question?"}]}
    reply = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["dropped_messages"] > 0 and data["dropped_messages"] % 2 == 0
    assert data["usage"]["prompt_tokens"] + 16 <= 2048
    body.pop("truncation")
    refused = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "context_length_exceeded"


def test_completions_plain_and_streaming(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt="The capital of France is",
                                      max_tokens=8, temperature=0)
    assert reply.choices[0].text and reply.usage is not None
    assert reply.usage.completion_tokens <= 8
    pieces = [c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=12, stream=True, temperature=0)
        if c.choices]
    assert len(pieces) > 3 and "".join(pieces)


def test_completions_with_persona_uses_its_sampling(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="pogi", prompt="Hello", temperature=0)
    assert reply.usage is not None and reply.usage.completion_tokens <= 48  # pogi's max_tokens


def test_disconnect_mid_stream_frees_the_model(server: Any) -> None:
    """The client goes after a few tokens of 1,500: the generation is cancelled (not run to
    its end), and the next request is answered."""
    cancelled = 'chinwag_engine_generations_total{event="cancelled"}'
    before = metric(server.url, cancelled)
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 1500, "stream": True,
            "temperature": 0}  # greedy: runs on for hundreds of tokens
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        seen = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: ") for line in seen)
    wait_until(lambda: metric(server.url, "chinwag_engine_active") == 0,
               what="the abandoned generation left the engine")
    assert metric(server.url, cancelled) == before + 1
    reply = httpx.post(f"{server.url}/v1/completions", timeout=60,
                       json={"model": MODEL, "prompt": "Hello", "max_tokens": 4})
    assert reply.status_code == 200


def test_metrics_count_requests_and_tokens(server: Any, client: openai.OpenAI) -> None:
    client.completions.create(model=MODEL, prompt="Hi", max_tokens=3)
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'chinwag_requests_total{route="/v1/completions",status="200"}' in text
    assert "chinwag_completion_tokens_total" in text
    assert "chinwag_time_to_first_token_seconds_bucket" in text
    assert "chinwag_queue_depth" in text


def test_a_returning_history_reports_cached_tokens(client: openai.OpenAI) -> None:
    """Turn 2 re-sends turn 1 (an OpenAI client keeps the history): the shared prefix's KV
    state is reused, and usage says how many prompt tokens were cached."""
    history = [{"role": "user", "content": "Name three fruits, please. Be brief."}]
    first = client.chat.completions.create(model=MODEL, messages=history,  # type: ignore[arg-type]
                                           max_tokens=16, temperature=0)
    history += [{"role": "assistant", "content": first.choices[0].message.content or ""},
                {"role": "user", "content": "And three vegetables?"}]
    second = client.chat.completions.create(model=MODEL, messages=history,  # type: ignore[arg-type]
                                            max_tokens=16, temperature=0)
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens or 0
    assert first.usage is not None
    assert cached >= first.usage.prompt_tokens - 1, (cached, first.usage.prompt_tokens)
    assert cached < second.usage.prompt_tokens


def test_logprobs_through_the_openai_client(client: openai.OpenAI) -> None:
    """The client parses chat's ``logprobs.content`` and completions' legacy ``logprobs``,
    streamed or not; greedy without a penalty takes each token's likeliest alternative."""
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8,
        temperature=0, logprobs=True, top_logprobs=2, presence_penalty=0.0,
        extra_body={"repeat_penalty": 1.0})
    content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and all(len(c.top_logprobs) == 2 for c in content)
    assert all(c.logprob == c.top_logprobs[0].logprob for c in content)
    completion = client.completions.create(model=MODEL, prompt="The capital of France is",
                                           max_tokens=6, temperature=0, logprobs=2,
                                           extra_body={"repeat_penalty": 1.0})
    lp = completion.choices[0].logprobs
    assert lp is not None and lp.tokens and completion.usage is not None
    assert len(lp.tokens) == completion.usage.completion_tokens == 6
    assert "".join(lp.tokens) == completion.choices[0].text
    streamed = [c.choices[0].logprobs for c in client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8,
        temperature=0, logprobs=True, stream=True, extra_body={"repeat_penalty": 1.0})
        if c.choices and c.choices[0].delta.content]
    assert [t.token for s in streamed for t in s.content] == [  # type: ignore[union-attr]
        c.token for c in content]


def test_logit_bias_bans_the_greedy_first_token(client: openai.OpenAI, server: Any) -> None:
    first = client.completions.create(model=MODEL, prompt="The capital of France is",
                                      max_tokens=1, temperature=0, logprobs=0)
    token = first.choices[0].logprobs.tokens[0]  # type: ignore[union-attr,index]
    tokenized = httpx.post(f"{server.url}/tokenize", json={"content": token},
                           timeout=30).json()["tokens"]
    banned = client.completions.create(model=MODEL, prompt="The capital of France is",
                                       max_tokens=1, temperature=0,
                                       logit_bias={str(tokenized[-1]): -100})
    assert banned.choices[0].text and banned.choices[0].text != first.choices[0].text
