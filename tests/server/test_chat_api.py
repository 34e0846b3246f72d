"""The chat page's routes, in-process on a scripted backend: ``/personas``, ``/chat/{persona}``
(server-sent events), regenerate, edit, rename, truncate, the Markdown export, and their
errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chinwag.backends.scripted import ScriptedBackend
from chinwag.settings import Settings


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a server-sent event stream."""
    found = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        found.append((lines["event"], json.loads(lines["data"])))
    return found


@pytest.fixture
def scripted() -> ScriptedBackend:
    return ScriptedBackend(default_reply="Well met.")


@pytest.fixture
def client(make_app: Callable[..., TestClient], scripted: ScriptedBackend,
           tmp_path: Any) -> TestClient:
    return make_app(Settings(db=tmp_path / "chat.db"), scripted)


def say(client: TestClient, text: str, conversation: str | None = None,
        **extra: Any) -> list[tuple[str, dict[str, Any]]]:
    reply = client.post("/chat/villager", json={"user": "ada", "conversation": conversation,
                                                "text": text, **extra})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    return events(reply.text)


def test_personas_say_what_a_chat_page_shows(client: TestClient) -> None:
    listed = {p["name"]: p for p in client.get("/personas").json()["data"]}
    villager = listed["villager"]
    assert villager["character"] == "Bertha" and villager["greeting"]
    assert villager["memory"]["policy"] == "summary" and "summary" in villager["memory"]["text"]
    assert villager["model"] == "scripted" and villager["own_model"] is False
    assert villager["sampling"]["max_tokens"] > 0


def test_a_message_starts_a_stored_conversation_streamed_as_events(
        client: TestClient, scripted: ScriptedBackend) -> None:
    scripted.enqueue("The mill is north.")
    got = say(client, "Where is the mill?")
    names = [name for name, _ in got]
    assert names[0] == "conversation" and names[-1] == "done"
    assert set(names[1:-1]) == {"token"}
    opened, done = got[0][1], got[-1][1]
    cid = opened["conversation"]
    assert opened["model"] == "scripted" and opened["persona"] == "villager"
    assert "".join(d["text"] for n, d in got if n == "token") == "The mill is north."
    assert done["conversation"] == cid and done["finish_reason"] == "stop"
    assert (done["question_seq"], done["reply_seq"]) == (0, 1)
    stored = client.get(f"/conversations/{cid}").json()
    assert [m["content"] for m in stored["messages"]] == ["Where is the mill?",
                                                          "The mill is north."]
    assert stored["messages"][1]["model"] == "scripted"
    assert stored["heading"] == "Where is the mill?"
    listed = client.get("/users/ada/conversations").json()["data"]
    assert listed[0]["id"] == cid and listed[0]["title"] == "Where is the mill?"
    # continued by id; a second new conversation is a different one
    say(client, "And the well?", cid)
    assert client.get(f"/conversations/{cid}").json()["messages"][2]["content"] == \
        "And the well?"
    other = say(client, "Hello again")[0][1]["conversation"]
    assert other != cid and len(client.get("/users/ada/conversations").json()["data"]) == 2


def test_regenerate_replaces_the_last_answer(client: TestClient,
                                             scripted: ScriptedBackend) -> None:
    scripted.enqueue("First answer.", "Second answer.", "Third answer.")
    cid = say(client, "One?")[0][1]["conversation"]
    say(client, "Two?", cid)
    again = client.post(f"/conversations/{cid}/regenerate", json={"user": "ada"})
    assert again.status_code == 200
    assert events(again.text)[-1][1]["reply_seq"] == 3
    messages = client.get(f"/conversations/{cid}").json()["messages"]
    assert [m["content"] for m in messages] == ["One?", "First answer.", "Two?",
                                                "Third answer."]


def test_edit_drops_the_later_turns_and_answers_the_new_text(
        client: TestClient, scripted: ScriptedBackend) -> None:
    scripted.enqueue("A.", "B.", "C.")
    cid = say(client, "First?")[0][1]["conversation"]
    say(client, "Second?", cid)
    edited = client.post(f"/conversations/{cid}/edit",
                         json={"user": "ada", "seq": 0, "text": "Changed?"})
    assert edited.status_code == 200
    messages = client.get(f"/conversations/{cid}").json()["messages"]
    assert [m["content"] for m in messages] == ["Changed?", "C."]
    assert scripted.requests[-1].prompt.count("Second?") == 0  # the dropped turn is gone
    not_user = client.post(f"/conversations/{cid}/edit",
                           json={"user": "ada", "seq": 1, "text": "x"})
    assert not_user.status_code == 400 and not_user.json()["error"]["param"] == "seq"


def test_rename_truncate_and_export_markdown(client: TestClient,
                                             scripted: ScriptedBackend) -> None:
    scripted.enqueue("North, by the river.")
    cid = say(client, "Where is the mill?")[0][1]["conversation"]
    renamed = client.patch(f"/conversations/{cid}", json={"title": "  The mill "})
    assert renamed.status_code == 200 and renamed.json()["title"] == "The mill"
    assert renamed.json()["named"] is True
    markdown = client.get(f"/conversations/{cid}?format=markdown")
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert 'filename="The-mill.md"' in markdown.headers["content-disposition"]
    text = markdown.text
    assert text.startswith("# The mill\n") and "**Bertha**:" in text and "**ada**:" in text
    assert "North, by the river." in text and "model: scripted" in text
    assert client.patch(f"/conversations/{cid}", json={"title": ""}).json()["title"] == \
        "Where is the mill?"
    cut = client.post(f"/conversations/{cid}/truncate", json={"seq": 1})
    assert cut.status_code == 200 and cut.json()["deleted"] == 1
    assert cut.json()["message_count"] == 1
    assert client.get(f"/conversations/{cid}?format=pdf").status_code == 400


def test_bad_requests_are_refused_before_the_stream(client: TestClient) -> None:
    assert client.post("/chat/nobody", json={"user": "ada", "text": "hi"}).status_code == 404
    unknown_model = client.post("/chat/villager",
                                json={"user": "ada", "text": "hi", "model": "gpt-9"})
    assert unknown_model.status_code == 404
    assert unknown_model.json()["error"]["code"] == "model_not_found"
    assert client.post("/chat/villager", json={"user": "ada", "text": ""}).status_code == 400
    bad = client.post("/chat/villager", json={"user": "ada", "text": "hi",
                                              "params": {"temperature": -1}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "temperature"
    cid = say(client, "Hello")[0][1]["conversation"]
    theirs = client.post("/chat/villager", json={"user": "bob", "text": "hi",
                                                 "conversation": cid})
    assert theirs.status_code == 400 and theirs.json()["error"]["param"] == "conversation"
    missing = client.post("/conversations/nope/regenerate", json={"user": "ada"})
    assert missing.status_code == 404
    empty = client.post("/conversations", json={
        "format": "chinwag.conversation", "version": 1, "id": "empty", "persona": "villager",
        "user": "ada", "created_at": 1.0, "updated_at": 1.0, "summary": "",
        "summarized_through": -1, "messages": []})
    assert empty.status_code == 201
    nothing = client.post("/conversations/empty/regenerate", json={"user": "ada"})
    assert nothing.status_code == 400


def test_a_failure_during_the_answer_is_an_error_event(client: TestClient,
                                                       scripted: ScriptedBackend) -> None:
    scripted.enqueue_failure("the model fell over", partial="Well")
    got = say(client, "Hello?")
    assert got[-1][0] == "error"
    assert "fell over" in got[-1][1]["error"]["message"]


def test_rename_and_truncate_check_their_input(client: TestClient) -> None:
    cid = say(client, "Hello")[0][1]["conversation"]
    long = client.patch(f"/conversations/{cid}", json={"title": "x" * 201})
    assert long.status_code == 400 and long.json()["error"]["param"] == "title"
    assert client.patch("/conversations/nope", json={"title": "x"}).status_code == 404
    negative = client.post(f"/conversations/{cid}/truncate", json={"seq": -1})
    assert negative.status_code == 400 and negative.json()["error"]["param"] == "seq"
    assert client.post("/conversations/nope/truncate", json={"seq": 0}).status_code == 404
