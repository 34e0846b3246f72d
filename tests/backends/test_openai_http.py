"""The ``openai`` backend against two real OpenAI-compatible servers on 127.0.0.1: chinwag's own
server and llama.cpp's ``llama-server``, both on the embedded model."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from chinwag.backends.openai_http import OpenAIBackend
from chinwag.errors import (
    BackendAuthError,
    BackendUnreachable,
    ContextOverflow,
    InvalidParams,
    SchemaError,
)
from chinwag.types import Done, Message, SamplingParams, TokenEvent, collect

pytestmark = pytest.mark.slow

MODEL = "gemma-3-270m-q4_k_m"
GREEDY = SamplingParams(temperature=0, max_tokens=16)
COLOUR = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}},
          "required": ["colour"], "additionalProperties": False}


@pytest.fixture(params=["chinwag", "llama-server"])
def remote(request: pytest.FixtureRequest) -> Any:
    """One of the two real servers."""
    return request.getfixturevalue("server" if request.param == "chinwag" else "llama_server")


def backend_for(url: str, **options: Any) -> OpenAIBackend:
    return OpenAIBackend(f"{url}/v1", model_id=MODEL, context_length=2048, **options)


def test_streams_a_raw_completion_in_pieces(remote: Any) -> None:
    backend = backend_for(remote.url)
    events = list(backend.generate("The capital of France is", GREEDY))
    pieces = [e for e in events if isinstance(e, TokenEvent)]
    done = events[-1]
    assert isinstance(done, Done) and len(pieces) >= 3
    assert done.finish_reason == "length" and done.usage.completion_tokens == 16
    # the same request without streaming gives the same text: the pieces add up
    whole = httpx.post(f"{remote.url}/v1/completions", json={
        "model": MODEL, "prompt": "The capital of France is", "max_tokens": 16,
        "temperature": 0, "top_p": 0.95}, timeout=60).json()
    assert "".join(p.text for p in pieces) == whole["choices"][0]["text"]


def test_chat_goes_to_chat_completions_and_streams(remote: Any) -> None:
    backend = backend_for(remote.url)
    text, done = collect(backend.chat([Message("system", "You are terse."),
                                       Message("user", "Say hello to Bob.")], GREEDY))
    assert text.strip() and done.usage.prompt_tokens > 5
    assert backend.info().chat_format == "server"


def test_a_servers_chat_logprobs_come_back_on_the_text(remote: Any) -> None:
    """Both servers stream chat log-probabilities with the text: the alternatives asked for,
    most likely first (the token sampled is never likelier than the first)."""
    backend = backend_for(remote.url)
    chat = [Message("system", "You are terse."), Message("user", "Say hello to Bob.")]
    events = list(backend.chat(chat, GREEDY.with_(max_tokens=6, logprobs=2)))
    records = [r for e in events if isinstance(e, TokenEvent) for r in e.logprobs]
    _, done = collect(iter(events))
    assert records and len(records) <= done.usage.completion_tokens
    for r in records:
        alternatives = [t.logprob for t in r.top]
        assert len(alternatives) == 2 and alternatives == sorted(alternatives, reverse=True)
        assert r.logprob <= alternatives[0] + 1e-6


def test_stop_strings_end_the_reply_and_are_not_sent(remote: Any) -> None:
    backend = backend_for(remote.url)
    free, _ = collect(backend.generate("One, two, three, four, five, six,", GREEDY))
    assert "," in free  # the model continues the list...
    text, done = collect(backend.generate("One, two, three, four, five, six,",
                                          GREEDY.with_(stop=(",",))))
    assert "," not in text and done.finish_reason == "stop"  # ...and stops at the first comma


def test_json_schema_in_a_chat_is_enforced(remote: Any) -> None:
    backend = backend_for(remote.url)
    text, _ = collect(backend.chat([Message("user", "Give a colour as JSON")],
                                   GREEDY.with_(max_tokens=40, json_schema=COLOUR)))
    jsonschema.validate(json.loads(text), COLOUR)


def test_json_schema_on_completions_is_enforced_or_refused_never_ignored(
        server: Any, llama_server: Any) -> None:
    params = GREEDY.with_(max_tokens=40, json_schema=COLOUR)
    text, _ = collect(backend_for(server.url).generate("Colour:", params))
    jsonschema.validate(json.loads(text), COLOUR)  # chinwag enforces it on /v1/completions
    # llama-server ignores response_format on /v1/completions: the check catches it
    with pytest.raises(SchemaError, match=r"does not|not JSON"):
        collect(backend_for(llama_server.url).generate("Colour:", params))


def test_an_invalid_schema_is_refused_before_sending(remote: Any) -> None:
    with pytest.raises(SchemaError, match="not a valid JSON Schema"):
        backend_for(remote.url).generate("x", GREEDY.with_(json_schema={"type": 12}))


def test_choose_falls_back_to_a_json_enum_and_picks_an_option(remote: Any) -> None:
    backend = backend_for(remote.url)
    options = ["yes", "no"]
    choice = backend.choose([Message("user", "Is water wet? Answer yes or no.")], options)
    assert choice.option in options and choice.option == options[choice.index]
    assert choice.scores[choice.index] == max(choice.scores)
    # neither server echoes prompt log-probabilities, so the backend now uses the enum
    assert backend._choose_mode == "enum"
    with pytest.raises(InvalidParams):
        backend.choose([Message("user", "?")], [])


def test_count_tokens_is_the_servers_exact_count(server: Any, llama_server: Any,
                                                 llama: Any) -> None:
    text = "Hello there, General Kenobi! 12345 ünïcödé"
    assert backend_for(server.url).count_tokens(text) == llama.count_tokens(text)
    # llama.cpp's /tokenize leaves out BOS, which a whole prompt has
    assert backend_for(llama_server.url).count_tokens(text) == llama.count_tokens(text) - 1
    assert backend_for(server.url).capabilities.exact_token_count


def test_a_prompt_longer_than_the_context_is_context_overflow(remote: Any) -> None:
    with pytest.raises(ContextOverflow) as e:
        collect(backend_for(remote.url).generate("word " * 5000, GREEDY))
    assert e.value.prompt_tokens > 2048


def test_closing_a_stream_early_stops_it_and_the_next_request_works(remote: Any) -> None:
    backend = backend_for(remote.url)
    events = backend.generate("Once upon a time", GREEDY.with_(max_tokens=200))
    assert isinstance(next(events), TokenEvent)
    events.close()  # type: ignore[attr-defined]
    _, done = collect(backend.generate("Hello", GREEDY.with_(max_tokens=4)))
    assert done.usage.completion_tokens == 4


def test_a_server_that_is_down_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", model_id=MODEL, max_retries=1,
                            backoff=0.01)
    with pytest.raises(BackendUnreachable, match=f"127.0.0.1:{port}"):
        collect(backend.generate("Hi", GREEDY))


def test_a_wrong_api_key_is_an_auth_error_and_the_right_one_works(
        make_server: Callable[..., Any]) -> None:
    guarded = make_server("--api-key", "sekret")
    with pytest.raises(BackendAuthError) as e:
        backend_for(guarded.url, api_key="wrong").generate("Hi", GREEDY)
    assert e.value.status == 401
    text, _ = collect(backend_for(guarded.url, api_key="sekret").generate("Hi", GREEDY))
    assert text


class FailOnce(httpx.BaseTransport):
    """Answers the first generation request with 500, then passes everything on to the real
    server (a flaky proxy in front of it)."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.failed = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/completions") and not self.failed:
            self.failed += 1
            return httpx.Response(500, json={"error": {"message": "worker crashed"}})
        return self.real.handle_request(request)


def test_a_500_then_success_is_retried(remote: Any) -> None:
    flaky = FailOnce()
    backend = OpenAIBackend(f"{remote.url}/v1", model_id=MODEL, backoff=0.01, transport=flaky)
    text, done = collect(backend.generate("The sky is", GREEDY.with_(max_tokens=5)))
    assert flaky.failed == 1 and text and done.usage.completion_tokens == 5


def test_chinwag_serve_fronts_a_remote_llm_with_personas(
        make_server: Callable[..., Any], llama_server: Any, tmp_path: Path) -> None:
    """chinwag serve --llm remote.yaml: personas and memory on top of llama.cpp's server, used
    with the real openai client."""
    config = tmp_path / "remote.yaml"
    config.write_text(f"backend: openai\nmodel_id: {MODEL}\nbase_url: {llama_server.url}/v1\n"
                      f"api: completions\ncontext_length: 2048\n")
    front = make_server("--llm", str(config))
    models = httpx.get(f"{front.url}/v1/models", timeout=10).json()
    assert MODEL in [m["id"] for m in models["data"]]
    client = openai.OpenAI(base_url=f"{front.url}/v1", api_key="none")
    reply = client.chat.completions.create(
        model="villager", messages=[{"role": "user", "content": "Hello! Who are you?"}],
        max_tokens=20, temperature=0)
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.prompt_tokens > 20  # persona preamble sent
    # the persona endpoint remembers the conversation on the front server
    first = httpx.post(f"{front.url}/gpt/villager", data={"prompt": "My name is Ada.",
                                                          "user": "ada"}, timeout=60)
    assert first.status_code == 200, first.text
    health = httpx.get(f"{front.url}/health", timeout=10).json()
    assert health["model"] == MODEL
