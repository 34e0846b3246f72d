"""Server logic on the scripted backend, in-process (TestClient): what the real-model tests
cannot pin down exactly, such as what reaches the model's prompt."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from fastapi.testclient import TestClient

from chinwag.backends.scripted import ScriptedBackend
from chinwag.server import create_app
from chinwag.settings import Settings


@pytest.fixture
def scripted_app() -> Iterator[tuple[TestClient, ScriptedBackend]]:
    backend = ScriptedBackend()
    with TestClient(create_app(Settings(), backend)) as client:
        yield client, backend


def test_websocket_conversation_lasts_as_long_as_the_socket(
        scripted_app: tuple[TestClient, ScriptedBackend]) -> None:
    client, backend = scripted_app
    backend.enqueue("Well met, Zorblax!", "You are Zorblax.")
    with client.websocket_connect("/gpt-socket/villager") as ws:
        for prompt in ("My name is Zorblax.", "What is my name?"):
            ws.send_text(prompt)
            frames = []
            while (frame := ws.receive_text()) != "<END>":
                frames.append(frame)
            assert "".join(frames)
    second = backend.requests[1].prompt
    assert "Traveller: My name is Zorblax.\nBertha: Well met, Zorblax!" in second
    assert second.endswith("Traveller: What is my name?\nBertha:")
    with client.websocket_connect("/gpt-socket/villager") as ws:  # a new socket: a new chat
        ws.send_text("Hello again")
        while ws.receive_text() != "<END>":
            pass
    assert "Zorblax" not in backend.requests[2].prompt


def test_persona_prompt_reaches_the_model_for_chat_completions(
        scripted_app: tuple[TestClient, ScriptedBackend]) -> None:
    client, backend = scripted_app
    backend.enqueue(" Hello there ")
    reply = client.post("/v1/chat/completions", json={
        "model": "villager", "messages": [{"role": "user", "content": "Hi"}]})
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == "Hello there"
    prompt = backend.requests[0].prompt
    assert "Limbo" in prompt and prompt.endswith("Traveller: Hi\nBertha:")
    assert backend.requests[0].params.temperature == 0.7  # type: ignore[union-attr]


def test_request_sampling_overrides_persona(
        scripted_app: tuple[TestClient, ScriptedBackend]) -> None:
    client, backend = scripted_app
    client.post("/v1/chat/completions", json={
        "model": "villager", "temperature": 0.1, "top_k": 5, "seed": 9, "stop": "END",
        "messages": [{"role": "user", "content": "Hi"}]})
    params = backend.requests[0].params
    assert params is not None and (params.temperature, params.top_k, params.seed) == (0.1, 5, 9)
    assert "END" in params.stop and "\nTraveller:" in params.stop


def test_toil_answer_that_is_not_json_is_a_well_formed_error(
        scripted_app: tuple[TestClient, ScriptedBackend]) -> None:
    client, backend = scripted_app
    backend.enqueue("{\"cut\": ")
    reply = client.post("/toil/villager", json={"prompt": "x"})
    assert reply.status_code == 500
    assert reply.json()["error"]["code"] == "incomplete_json"


def test_toil_wraps_a_non_object_answer(
        scripted_app: tuple[TestClient, ScriptedBackend]) -> None:
    client, backend = scripted_app
    backend.enqueue("[1, 2]")
    reply = client.post("/toil/villager", json={"prompt": "x", "schema": {"type": "array"}})
    assert reply.status_code == 200 and reply.json() == {"result": [1, 2]}


# -- a model that fails: an OpenAI-shaped error, never a cut answer that looks finished ----------

def sse_data(reply: object) -> list[str]:
    return [line[6:] for line in reply.iter_lines()  # type: ignore[attr-defined]
            if line.startswith("data: ")]


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
    ("/v1/completions", {"prompt": "Once upon a time"}),
])
def test_a_failure_mid_stream_ends_it_with_an_error_event(
        scripted_app: tuple[TestClient, ScriptedBackend], path: str,
        body: dict[str, object]) -> None:
    client, backend = scripted_app
    backend.enqueue_failure("llama_decode failed with code -3", partial="Once upon a")
    with client.stream("POST", path, json={"model": "scripted", "stream": True,
                                           **body}) as reply:
        assert reply.status_code == 200  # the answer had started
        data = sse_data(reply)
    assert "[DONE]" not in data
    error = json.loads(data[-1])["error"]
    assert error["type"] == "server_error" and error["code"] == "model_error"
    assert "llama_decode failed" in error["message"]
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)  # no "stop"


def test_the_openai_client_raises_on_a_failure_mid_stream(
        scripted_app: tuple[TestClient, ScriptedBackend]) -> None:
    client, backend = scripted_app
    backend.enqueue_failure("llama_decode failed with code -3", partial="Once upon a")
    openai_client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused",
                                  http_client=client, max_retries=0)
    stream = openai_client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "Hi"}], stream=True)
    with pytest.raises(openai.APIError, match="llama_decode failed"):
        for _ in stream:
            pass


def test_a_failure_before_the_answer_is_a_500(
        scripted_app: tuple[TestClient, ScriptedBackend]) -> None:
    client, backend = scripted_app
    backend.enqueue_failure("llama_decode failed with code -3", partial="Once upon a")
    reply = client.post("/v1/chat/completions", json={
        "model": "scripted", "messages": [{"role": "user", "content": "Hi"}]})
    assert reply.status_code == 500
    assert reply.json()["error"]["code"] == "model_error"
    backend.enqueue_failure("the model is gone")
    reply = client.post("/v1/completions", json={"model": "scripted", "prompt": "Hi",
                                                 "stream": True})
    assert reply.status_code == 500 and "the model is gone" in reply.json()["error"]["message"]
