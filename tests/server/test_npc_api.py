"""The NPC API: in-process on the scripted backend (events, memory per NPC, failures with a
fallback line, overhear, cancel, busy), and on a real server with the real model."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from chinwag.backends.scripted import ScriptedBackend
from chinwag.server import create_app
from chinwag.settings import Settings
from chinwag.store import Store
from support.gated import GatedBackend
from support.waiting import wait_until


def events_of(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a server-sent event stream."""
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, ScriptedBackend, Path]]:
    backend = ScriptedBackend()
    db = tmp_path / "server.db"
    with TestClient(create_app(Settings(db=db), backend)) as client:
        yield client, backend, db


def talk(client: TestClient, text: str, *, npc: str = "bertha-1", player: str = "p1",
         **extra: Any) -> httpx.Response:
    return client.post("/npc/villager/talk",
                       json={"npc": npc, "player": player, "text": text, **extra})


def test_talk_streams_tokens_then_the_reply(
        app: tuple[TestClient, ScriptedBackend, Path]) -> None:
    client, backend, _ = app
    backend.enqueue("Well met, Ada!")
    reply = talk(client, "Hello", context={"user": "Ada", "location": "the mill"})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = events_of(reply.text)
    assert {name for name, _ in events[:-1]} <= {"thinking", "token"}
    assert "".join(d["text"] for name, d in events if name == "token").strip() == \
        "Well met, Ada!"
    name, data = events[-1]
    assert name == "reply" and data["text"] == "Well met, Ada!" and data["conversation"]
    prompt = backend.requests[-1].prompt
    assert "the mill" in prompt and prompt.endswith("Ada: Hello\nBertha:")


def test_talk_without_stream_answers_json_and_remembers_per_npc(
        app: tuple[TestClient, ScriptedBackend, Path]) -> None:
    client, backend, _ = app
    backend.enqueue("Hello.", "Who?", "You are Ada.")
    first = talk(client, "I am Ada.", stream=False)
    other_npc = talk(client, "Who am I?", npc="bertha-2", stream=False)
    again = talk(client, "Who am I?", stream=False)
    assert first.json() == {"reply": "Hello.", "conversation": first.json()["conversation"]}
    assert again.json()["conversation"] == first.json()["conversation"]
    assert other_npc.json()["conversation"] != first.json()["conversation"]
    assert "Ada" not in backend.requests[1].prompt
    assert "I am Ada.\nBertha: Hello.\nTraveller: Who am I?" in backend.requests[2].prompt


def test_a_failed_turn_answers_the_error_with_a_fallback_line_and_is_forgotten(
        app: tuple[TestClient, ScriptedBackend, Path]) -> None:
    client, backend, db = app
    backend.enqueue_failure("boom", partial="I think")
    backend.enqueue_failure("boom again")
    plain = talk(client, "Where is the mill?", stream=False)
    assert plain.status_code == 500
    body = plain.json()
    assert set(body) == {"error", "fallback_line"} and "boom" in body["error"]["message"]
    assert body["fallback_line"].startswith("Bertha")
    name, data = events_of(talk(client, "Hello?").text)[-1]
    assert name == "error" and "boom again" in data["error"]["message"]
    assert data["fallback_line"]
    with Store(db) as store:
        found = store.latest_conversation("villager", "p1", scope="bertha-1")
        assert found is not None and store.messages(found.id) == []


def test_overheard_lines_reach_the_hearers_prompt(
        app: tuple[TestClient, ScriptedBackend, Path]) -> None:
    client, backend, _ = app
    heard = client.post("/npc/villager/overhear", json={
        "npc": "bertha-1", "speaker": "Bob", "text": "The well is dry.", "hearers": ["p1"]})
    assert heard.status_code == 200
    talk(client, "Any news?", stream=False)
    talk(client, "Any news?", player="p2", stream=False)
    assert "[Bob: The well is dry.]\nAny news?" in backend.requests[0].prompt
    assert "well is dry" not in backend.requests[1].prompt


def test_bad_requests_are_openai_errors(
        app: tuple[TestClient, ScriptedBackend, Path]) -> None:
    client, _, _ = app
    bad_context = talk(client, "hi", context={"mood": "grumpy"})
    assert bad_context.status_code == 400 and bad_context.json()["error"]["param"] == "context"
    assert talk(client, "").status_code == 400
    unknown = client.post("/npc/nobody/talk", json={"npc": "x", "player": "p", "text": "hi"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    nothing = client.post("/npc/villager/cancel", json={"npc": "bertha-1", "player": "p1"})
    assert nothing.json() == {"cancelled": False}


def test_busy_player_is_refused_with_409_or_cancelled(tmp_path: Path) -> None:
    backend = GatedBackend("First answer.", "Second.", hold_after=1)
    with TestClient(create_app(Settings(db=tmp_path / "s.db"), backend)) as client:
        answers: list[httpx.Response] = []
        first = threading.Thread(
            target=lambda: answers.append(talk(client, "One", stream=False)))
        first.start()
        wait_until(backend.holding.is_set, what="the first reply is being generated")
        refused = talk(client, "Two", stream=False, on_busy="reject")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "npc_busy"
        cancelled = client.post("/npc/villager/cancel", json={"npc": "bertha-1",
                                                               "player": "p1"})
        assert cancelled.json() == {"cancelled": True}
        first.join(30)
        assert answers[0].status_code == 409
        assert answers[0].json()["error"]["code"] == "cancelled"
        backend.gate.set()
        assert talk(client, "Three", stream=False).json()["reply"] == "Second."
        assert "One" not in backend.requests[-1].prompt


@pytest.mark.slow
def test_npc_api_on_the_real_model(server: Any) -> None:
    body = {"npc": "bertha-slow", "player": "p-slow", "text": "Hello! What is this place?",
            "context": {"user": "Ada"}, "thinking_after": 0.5}
    with httpx.stream("POST", f"{server.url}/npc/villager/talk", json=body,
                      timeout=120) as streamed:
        assert streamed.status_code == 200
        events = events_of(streamed.read().decode())
    name, data = events[-1]
    assert name == "reply", events
    assert data["text"].strip() and "Ada:" not in data["text"]
    assert any(n == "token" for n, _ in events)
    plain = httpx.post(f"{server.url}/npc/villager/talk",
                       json={**body, "text": "Thank you!", "stream": False}, timeout=120)
    assert plain.status_code == 200, plain.text
    assert plain.json()["conversation"] == data["conversation"]
    assert plain.json()["reply"].strip()


@pytest.mark.slow
def test_a_client_that_leaves_cancels_its_turn_and_it_is_forgotten(server: Any) -> None:
    body = {"npc": "counter-1", "player": "p-leaves", "text": "Count from 1 to 500.",
            "thinking_after": 0}
    with httpx.stream("POST", f"{server.url}/npc/long-counter/talk", json=body,
                      timeout=120) as streamed:
        assert streamed.status_code == 200
        for line in streamed.iter_lines():
            if line.startswith("event:"):
                break  # leave at the first event, long before 2,000 tokens are counted
    # the next line waits for the NPC to let go of the first (cancelled, taken back)
    plain = httpx.post(f"{server.url}/npc/long-counter/talk", timeout=120, json={
        **body, "text": "Count from 1 to 3.", "stream": False})
    assert plain.status_code == 200, plain.text
    exported = httpx.get(f"{server.url}/conversations/{plain.json()['conversation']}",
                         timeout=10).json()
    assert [m["content"] for m in exported["messages"]][:1] == ["Count from 1 to 3."]
    assert len(exported["messages"]) == 2 and exported["scope"] == "counter-1"
