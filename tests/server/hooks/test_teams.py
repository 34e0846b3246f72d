"""POST /hooks/teams on the scripted backend, signed with the HMAC Microsoft documents for
outgoing webhooks; the answer comes in the response, within teams_max_seconds."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chinwag.backends.base import LanguageBackend
from chinwag.backends.scripted import ScriptedBackend
from chinwag.server.hooks.teams import question
from chinwag.settings import Settings
from support.gated import GatedBackend
from support.server import hook_events

SECRET = base64.b64encode(b"teams outgoing webhook token 32b").decode()
THREAD = "19:253b1f341670408fb6fe4c2f5f8e8eb5@thread.skype;messageid=1485983408511"


def start(make_app: Callable[..., TestClient], backend: LanguageBackend, tmp_path: Any,
          **settings: Any) -> TestClient:
    return make_app(Settings(teams_hmac_secret=SECRET, db=tmp_path / "chinwag.db",
                             **settings), backend)


def activity(text: str, *, user: str = "aad-alice", name: str = "Alice Jones",
             sent: datetime | None = None) -> dict[str, Any]:
    """A message activity as a Teams outgoing webhook sends it."""
    when = (sent or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return {"type": "message", "id": "1485983408511", "timestamp": when,
            "serviceUrl": "https://smba.trafficmanager.net/amer/", "channelId": "msteams",
            "from": {"id": f"29:{user}", "name": name, "aadObjectId": user},
            "conversation": {"isGroup": True, "id": THREAD, "conversationType": "channel",
                             "tenantId": "tenant-1"},
            "textFormat": "plain", "text": text,
            "channelData": {"tenant": {"id": "tenant-1"}}}


def post(client: TestClient, body: dict[str, Any], *, secret: str = SECRET) -> Any:
    raw = json.dumps(body).encode()
    digest = hmac.new(base64.b64decode(secret), raw, hashlib.sha256).digest()
    return client.post("/hooks/teams", content=raw, headers={
        "Content-Type": "application/json",
        "Authorization": "HMAC " + base64.b64encode(digest).decode()})


def test_a_message_is_answered_in_the_response(
        make_app: Callable[..., TestClient], scripted: ScriptedBackend, tmp_path: Any) -> None:
    app = start(make_app, scripted, tmp_path)
    scripted.enqueue("Paris.")
    reply = post(app, activity("<at>Chinwag</at>&nbsp;what is the capital of France?"))
    assert reply.status_code == 200
    assert reply.json() == {"type": "message", "text": "Paris."}
    prompt = scripted.requests[0].prompt
    assert "Alice Jones: what is the capital of France?" in prompt and "Chinwag" not in prompt
    assert hook_events(app, "teams", "answered") == 1


def test_a_bad_hmac_is_401(make_app: Callable[..., TestClient], scripted: ScriptedBackend,
                           tmp_path: Any) -> None:
    app = start(make_app, scripted, tmp_path)
    other = base64.b64encode(b"another token").decode()
    reply = post(app, activity("my password is hunter2"), secret=other)
    assert reply.status_code == 401 and "hunter2" not in reply.text
    assert app.post("/hooks/teams", json=activity("hi")).status_code == 401
    assert scripted.requests == []


def test_a_stale_activity_is_401(make_app: Callable[..., TestClient],
                                 scripted: ScriptedBackend, tmp_path: Any) -> None:
    app = start(make_app, scripted, tmp_path)
    reply = post(app, activity("hi", sent=datetime.now(UTC) - timedelta(minutes=10)))
    assert reply.status_code == 401 and "timestamp" in reply.json()["error"]["message"]


def test_the_cap_sends_what_was_generated_marked_as_cut(
        make_app: Callable[..., TestClient], tmp_path: Any) -> None:
    slow = GatedBackend("Once upon a time there was a goat.", "Fine, thanks.", hold_after=1)
    app = start(make_app, slow, tmp_path)  # the default cap, 4 s
    reply = post(app, activity("tell me a story"))
    assert reply.status_code == 200
    text = reply.json()["text"]
    assert text.startswith("Once") and "goat" not in text
    assert text.endswith("*(cut: the answer took longer than 4 s)*")
    assert slow.gate.is_set()  # the generation was cancelled (on_cancel opened the gate)
    # the cut turn let go of the conversation and the queue: the next one is answered
    assert post(app, activity("how are you?")).json()["text"] == "Fine, thanks."


def test_a_failed_generation_answers_with_an_apology(
        make_app: Callable[..., TestClient], scripted: ScriptedBackend, tmp_path: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    app = start(make_app, scripted, tmp_path)
    scripted.enqueue_failure("the model fell over")
    reply = post(app, activity("hello"))
    assert reply.status_code == 200 and reply.json()["text"].startswith("Sorry")
    state = app.app.state.chinwag  # type: ignore[attr-defined]
    conversation = state.store.latest_conversation(
        "assistant", "teams:tenant-1:aad-alice", scope=f"teams:{THREAD}")
    assert any(conversation.id in r.getMessage() and "fell over" in r.getMessage()
               for r in caplog.records)


def test_two_people_in_one_thread_are_kept_apart(
        make_app: Callable[..., TestClient], scripted: ScriptedBackend, tmp_path: Any) -> None:
    app = start(make_app, scripted, tmp_path)
    scripted.enqueue("Noted.", "Noted.", "Blue.")
    post(app, activity("my colour is blue", user="a", name="Alice"))
    post(app, activity("my colour is red", user="b", name="Bob"))
    post(app, activity("what is my colour?", user="a", name="Alice"))
    third = scripted.requests[2].prompt
    assert "blue" in third and "red" not in third


def test_a_message_with_no_words_or_another_type_is_ignored(
        make_app: Callable[..., TestClient], scripted: ScriptedBackend, tmp_path: Any) -> None:
    app = start(make_app, scripted, tmp_path)
    assert post(app, activity("<at>Chinwag</at>")).json() == {"type": "message", "text": ""}
    assert post(app, {**activity("hi"), "type": "conversationUpdate"}).status_code == 200
    assert scripted.requests == [] and hook_events(app, "teams", "ignored") == 2


def test_question_drops_mentions_and_html() -> None:
    assert question("<at>Bot</at> hello <b>there</b><br/>friend") == "hello there\nfriend"
    assert question("<p>one</p><p>two  words</p>") == "one\ntwo words"
    assert question("a &amp; b") == "a & b"
    assert question("   ") == ""


def test_a_secret_that_is_not_base64_is_refused() -> None:
    with pytest.raises(ValueError, match="base64"):
        Settings(teams_hmac_secret="not base64!")


def test_activities_of_the_wrong_shape_are_answered_not_500(
        make_app: Callable[..., TestClient], scripted: ScriptedBackend, tmp_path: Any) -> None:
    app = start(make_app, scripted, tmp_path)
    scripted.enqueue("Fine.")
    odd = {**activity("hello"), "from": ["x"], "conversation": "y", "channelData": 3}
    assert post(app, odd).json() == {"type": "message", "text": "Fine."}
    assert post(app, {"type": "message", "text": 42}).json()["type"] == "message"
    raw = b"[1, 2]"
    digest = hmac.new(base64.b64decode(SECRET), raw, hashlib.sha256).digest()
    reply = app.post("/hooks/teams", content=raw, headers={
        "Authorization": "HMAC " + base64.b64encode(digest).decode()})
    assert reply.status_code == 400


class _TimesOut(ScriptedBackend):
    """A model whose own call times out (not the hook's time limit)."""

    def generate(self, prompt: str, params: Any) -> Any:
        raise TimeoutError("the model's own call timed out")


def test_a_timeout_inside_the_turn_is_a_failure_not_a_cut(
        make_app: Callable[..., TestClient], tmp_path: Any) -> None:
    app = start(make_app, _TimesOut(), tmp_path)
    reply = post(app, activity("hello"))
    assert reply.json()["text"].startswith("Sorry")
    assert hook_events(app, "teams", "failed") == 1
