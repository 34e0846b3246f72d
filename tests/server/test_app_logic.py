"""Server logic on the scripted backend, in-process (TestClient): what the real-model tests
cannot pin down exactly, such as what reaches the model's prompt."""

from __future__ import annotations

from collections.abc import Iterator

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
