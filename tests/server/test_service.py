"""The server's service layer, in-process: one chat turn for the OpenAI route and the persona
endpoints, conversation locks that do not pile up, SQLite off the event loop, one teardown."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chinwag.backends.scripted import ScriptedBackend
from chinwag.server import create_app
from chinwag.server.state import ServerState
from chinwag.settings import Settings
from chinwag.store import Store


@pytest.fixture
def app() -> Iterator[tuple[TestClient, ScriptedBackend]]:
    backend = ScriptedBackend()
    with TestClient(create_app(Settings(), backend)) as client:
        yield client, backend


def state_of(client: TestClient) -> ServerState:
    state: ServerState = client.app.state.chinwag  # type: ignore[attr-defined]
    return state


def test_the_openai_route_leaves_the_formats_stops_out_under_a_json_schema(
        app: tuple[TestClient, ScriptedBackend]) -> None:
    client, backend = app
    backend.enqueue('{"a": 1}')
    reply = client.post("/v1/chat/completions", json={
        "model": "villager", "stop": ["END"], "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "Hi"}]})
    assert reply.status_code == 200
    assert backend.requests[0].params.stop == ("END",)  # type: ignore[union-attr]


def test_the_openai_route_and_the_chatbot_send_the_same_turn(
        app: tuple[TestClient, ScriptedBackend]) -> None:
    client, backend = app
    client.post("/v1/chat/completions", json={
        "model": "villager", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 40})
    client.post("/gpt/villager", params={"prompt": "Hi"})
    via_openai, via_persona = backend.requests
    assert via_openai.prompt == via_persona.prompt
    assert via_openai.params.stop == via_persona.params.stop  # type: ignore[union-attr]


def test_conversation_locks_do_not_pile_up(app: tuple[TestClient, ScriptedBackend]) -> None:
    client, _ = app
    for i in range(5):
        assert client.post("/gpt/villager", data={"prompt": "Hi", "user": f"u{i}"}
                           ).status_code == 200
    assert len(state_of(client).turn_locks) == 0


def test_sqlite_is_never_called_on_the_event_loop(
        app: tuple[TestClient, ScriptedBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = app
    on_loop: list[str] = []
    for name in [n for n in vars(Store) if not n.startswith("_") and callable(vars(Store)[n])]:
        method = getattr(Store, name)

        def guarded(self: Store, *args: Any, __name: str = name, __method: Any = method,
                    **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
                on_loop.append(__name)
            except RuntimeError:
                pass
            return __method(self, *args, **kwargs)

        monkeypatch.setattr(Store, name, guarded)
    assert client.post("/gpt/villager", data={"prompt": "Hi", "user": "ann"}).status_code == 200
    assert client.post("/toil/villager", json={"prompt": "x", "user": "ann"}).status_code in {
        200, 500}
    with client.websocket_connect("/gpt-socket/villager?user=ann") as ws:
        ws.send_text("Hello")
        while ws.receive_text() != "<END>":
            pass
    conversations = client.get("/users/ann/conversations").json()["data"]
    cid = conversations[0]["id"]
    assert client.get(f"/conversations/{cid}").status_code == 200
    assert client.post("/users/ann/facts/villager", json={"text": "Ann likes owls."}
                       ).status_code == 201
    assert client.get("/users/ann/facts/villager").status_code == 200
    assert client.delete(f"/conversations/{cid}").status_code == 200
    assert on_loop == []


class ClosingBackend(ScriptedBackend):
    closed = 0

    def close(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("close_backend, closed", [(None, 0), (True, 1)])
def test_teardown_closes_the_store_and_only_a_backend_it_owns(
        close_backend: bool | None, closed: int) -> None:
    backend = ClosingBackend()
    with TestClient(create_app(Settings(), backend, close_backend=close_backend)) as client:
        store = state_of(client).store
    assert backend.closed == closed
    with pytest.raises(Exception, match="closed"):
        store.list_conversations()
