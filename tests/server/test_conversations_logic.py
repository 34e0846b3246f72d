"""Server-side memory of the persona endpoints and the conversation endpoints, in-process on
the scripted backend with a real SQLite file: exactly whose messages reach each prompt."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chinwag.backends.scripted import ScriptedBackend
from chinwag.server import create_app
from chinwag.settings import Settings
from chinwag.store import Store


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, ScriptedBackend, Path]]:
    backend = ScriptedBackend()
    db = tmp_path / "server.db"
    with TestClient(create_app(Settings(db=db, max_queue=100), backend)) as client:
        yield client, backend, db


def test_gpt_remembers_per_user_and_forgets_without_one(
        app: tuple[TestClient, ScriptedBackend, Path]) -> None:
    client, backend, _ = app
    backend.enqueue("Hello Alice.", "Hello Bob.", "You are Alice.", "Who?")
    first = client.get("/gpt/villager", params={"prompt": "I am Alice.", "user": "alice"})
    client.post("/gpt/villager", data={"prompt": "I am Bob.", "user": "bob"})
    again = client.get("/gpt/villager", params={"prompt": "Who am I?", "user": "alice"})
    client.get("/gpt/villager", params={"prompt": "Who am I?"})
    assert first.headers["x-conversation-id"] == again.headers["x-conversation-id"]
    alice_prompt, anonymous_prompt = backend.requests[2].prompt, backend.requests[3].prompt
    assert "alice: I am Alice.\nBertha: Hello Alice.\nalice: Who am I?" in alice_prompt
    assert "Bob" not in alice_prompt
    assert "Alice" not in anonymous_prompt and "Bob" not in anonymous_prompt
    assert "x-conversation-id" not in client.get(
        "/gpt/villager", params={"prompt": "hi"}).headers


def test_toil_and_socket_share_the_users_conversation(
        app: tuple[TestClient, ScriptedBackend, Path]) -> None:
    client, backend, _ = app
    backend.enqueue('{"mood": "glad"}', "You said you were glad.")
    reply = client.post("/toil/villager", json={"prompt": "I feel glad.", "user": "ann"})
    assert reply.json() == {"mood": "glad"}
    cid = reply.headers["x-conversation-id"]
    with client.websocket_connect(f"/gpt-socket/villager?user=ann&conversation={cid}") as ws:
        ws.send_text("What did I say?")
        while ws.receive_text() != "<END>":
            pass
    assert "I feel glad." in backend.requests[1].prompt


def test_conversation_ids_are_checked(app: tuple[TestClient, ScriptedBackend, Path]) -> None:
    client, backend, _ = app
    cid = client.get("/gpt/villager", params={"prompt": "hi", "user": "ann"}
                     ).headers["x-conversation-id"]
    missing = client.get("/gpt/villager", params={"prompt": "hi", "conversation": "nope"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "conversation_not_found"
    other = client.get("/gpt/assistant", params={"prompt": "hi", "conversation": cid})
    assert other.status_code == 400 and other.json()["error"]["param"] == "conversation"
    stolen = client.get("/gpt/villager", params={"prompt": "hi", "conversation": cid,
                                                 "user": "mallory"})
    assert stolen.status_code == 400
    assert len(backend.requests) == 1  # refused before reaching the model


def test_list_export_import_and_delete(app: tuple[TestClient, ScriptedBackend, Path]) -> None:
    client, _, _ = app
    for persona in ("villager", "assistant"):
        client.get(f"/gpt/{persona}", params={"prompt": "hello", "user": "zoe"})
    listed = client.get("/users/zoe/conversations").json()["data"]
    assert sorted(c["persona"] for c in listed) == ["assistant", "villager"]
    assert all(c["message_count"] == 2 for c in listed)
    only = client.get("/users/zoe/conversations", params={"persona": "villager"}).json()
    assert [c["persona"] for c in only["data"]] == ["villager"]
    exported = client.get(f"/conversations/{listed[0]['id']}").json()
    assert exported["messages"][0]["content"] == "hello"
    assert client.delete(f"/conversations/{listed[0]['id']}").json()["deleted"] is True
    assert client.get(f"/conversations/{listed[0]['id']}").status_code == 404
    added = client.post("/conversations", json=exported)
    assert added.status_code == 201 and added.json()["message_count"] == 2
    bad = client.post("/conversations", json={"format": "chinwag.conversation"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_export"
    assert client.delete("/users/zoe/conversations").json()["deleted"] == 2
    assert client.get("/users/zoe/conversations").json()["data"] == []


def test_fifty_users_at_once_lose_nothing_and_never_see_each_other(
        app: tuple[TestClient, ScriptedBackend, Path]) -> None:
    client, backend, db = app
    backend.default_reply = "Noted."
    errors: list[str] = []

    def user(i: int) -> None:
        for turn in range(2):
            reply = client.get("/gpt/villager", params={
                "prompt": f"user{i} turn{turn}", "user": f"user{i}"})
            if reply.status_code != 200:
                errors.append(reply.text)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for request in backend.requests:
        assert len(set(re.findall(r"user(\d+) turn", request.prompt))) == 1
    with Store(db) as store:
        conversations = store.list_conversations(persona="villager")
        assert len(conversations) == 50
        assert all(c.message_count == 4 for c in conversations)
        assert store.integrity_check() == "ok"


def test_pinned_user_facts_reach_the_prompt(
        app: tuple[TestClient, ScriptedBackend, Path]) -> None:
    client, backend, _ = app
    added = client.post("/users/ann/facts/villager", json={"text": "Ann is a blacksmith."})
    assert added.status_code == 201 and added.json()["data"] == ["Ann is a blacksmith."]
    assert client.post("/users/ann/facts/villager", json={"text": ""}).status_code == 400
    assert client.post("/users/ann/facts/wizard", json={"text": "x"}).status_code == 404
    client.get("/gpt/villager", params={"prompt": "hi", "user": "ann"})
    client.get("/gpt/villager", params={"prompt": "hi", "user": "bob"})
    assert "Ann is a blacksmith." in backend.requests[0].prompt
    assert "Ann is a blacksmith." not in backend.requests[1].prompt
    assert client.delete("/users/ann/facts/villager").json()["deleted"] == 1
    assert client.get("/users/ann/facts/villager").json()["data"] == []
