"""POST /hooks/discord on the scripted backend, signed with PyNaCl's Ed25519 keys, answering
through a fake Discord API on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from nacl.encoding import HexEncoder
from nacl.signing import SigningKey

from chinwag.backends.scripted import ScriptedBackend
from chinwag.errors import ConfigError
from chinwag.server import create_app
from chinwag.settings import Settings
from support.gated import GatedBackend
from support.platforms import FakeAPI, fake_api
from support.server import hook_events
from support.waiting import wait_until

APP_ID = "1100000000000000001"
KEY = SigningKey.generate()
PUBLIC = KEY.verify_key.encode(encoder=HexEncoder).decode()
ORIGINAL = f"/webhooks/{APP_ID}/tok-1/messages/@original"


@pytest.fixture
def discord() -> Iterator[FakeAPI]:
    with fake_api(default=(200, {}, {"id": "m1"})) as api:
        yield api


@pytest.fixture
def app(make_app: Callable[..., TestClient], discord: FakeAPI, scripted: ScriptedBackend,
        tmp_path: Any) -> TestClient:
    settings = Settings(discord_public_key=PUBLIC, discord_application_id=APP_ID,
                        discord_edit_seconds=0,  # one edit per answer (streaming: its own test)
                        discord_api_url=discord.url, db=tmp_path / "chinwag.db")
    return make_app(settings, scripted)


def post(client: TestClient, body: dict[str, Any], *, key: SigningKey = KEY,
         timestamp: int | None = None) -> Any:
    """POST ``body`` to /hooks/discord as Discord does, signed with ``key``."""
    raw = json.dumps(body).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(ts.encode() + raw).signature.hex()
    return client.post("/hooks/discord", content=raw, headers={
        "Content-Type": "application/json", "X-Signature-Ed25519": signature,
        "X-Signature-Timestamp": ts})


def ask(prompt: str, *, user: str = "2001", token: str = "tok-1", name: str = "ask",
        channel: str = "3001") -> dict[str, Any]:
    return {"type": 2, "id": "9001", "application_id": APP_ID, "token": token, "version": 1,
            "guild_id": "4001", "channel_id": channel,
            "member": {"user": {"id": user, "username": "alice", "global_name": "Alice"}},
            "data": {"id": "5001", "name": name, "type": 1,
                     "options": [{"name": "prompt", "type": 3, "value": prompt}]}}


def test_a_ping_is_answered_with_a_pong(app: TestClient) -> None:
    reply = post(app, {"type": 1, "id": "1", "application_id": APP_ID, "token": "t",
                       "version": 1})
    assert reply.status_code == 200 and reply.json() == {"type": 1}


def test_a_bad_signature_is_401(app: TestClient, scripted: ScriptedBackend) -> None:
    reply = post(app, ask("the secret plan"), key=SigningKey.generate())
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_signature"
    assert "secret plan" not in reply.text
    assert scripted.requests == [] and hook_events(app, "discord", "refused") == 1


def test_a_stale_timestamp_is_401(app: TestClient) -> None:
    reply = post(app, {"type": 1}, timestamp=int(time.time()) - 3600)
    assert reply.status_code == 401


def test_ask_is_deferred_then_the_original_message_is_edited(
        app: TestClient, discord: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue("Spiders have eight legs.")
    reply = post(app, ask("how many legs does a spider have?"))
    assert reply.status_code == 200 and reply.json() == {"type": 5}
    wait_until(lambda: discord.to(ORIGINAL), what="the edit of the original message")
    [edit] = discord.to(ORIGINAL)
    assert edit.method == "PATCH"
    assert edit.body == {"content": "Spiders have eight legs.",
                         "allowed_mentions": {"parse": []}}
    prompt = scripted.requests[0].prompt
    assert "how many legs does a spider have?" in prompt and "Alice:" in prompt
    wait_until(lambda: hook_events(app, "discord", "answered") == 1)


def test_a_long_answer_is_split_at_2000_characters(
        app: TestClient, discord: FakeAPI, scripted: ScriptedBackend) -> None:
    long = " ".join(f"{i:03d}" + "x" * 60 for i in range(110))  # 110 tokens, 7,039 characters
    scripted.enqueue(long)
    post(app, ask("talk a lot"))
    wait_until(lambda: hook_events(app, "discord", "answered") == 1)
    edits = discord.to(ORIGINAL)
    follow_ups = discord.to(f"/webhooks/{APP_ID}/tok-1")
    assert len(edits) == 1 and len(follow_ups) == 3
    assert all(c.method == "POST" for c in follow_ups)
    pieces = [c.body["content"] for c in edits + follow_ups]
    assert all(len(p) <= 2000 for p in pieces)
    assert "".join(pieces) == long


def test_other_commands_get_a_note_only_their_caller_sees(
        app: TestClient, scripted: ScriptedBackend) -> None:
    reply = post(app, ask("x", name="roll"))
    assert reply.json()["type"] == 4 and reply.json()["data"]["flags"] == 64
    empty = post(app, ask("   "))
    assert empty.json()["type"] == 4
    button = post(app, {"type": 3, "token": "t", "data": {"custom_id": "b"}})
    assert button.json()["type"] == 4
    assert scripted.requests == [] and hook_events(app, "discord", "ignored") == 3


def test_a_body_that_is_not_json_is_400(app: TestClient) -> None:
    ts = str(int(time.time()))
    raw = b"not json"
    reply = app.post("/hooks/discord", content=raw, headers={
        "X-Signature-Ed25519": KEY.sign(ts.encode() + raw).signature.hex(),
        "X-Signature-Timestamp": ts})
    assert reply.status_code == 400


def test_a_failed_generation_edits_in_an_apology(
        app: TestClient, discord: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue_failure("out of memory")
    post(app, ask("hello"))
    wait_until(lambda: discord.to(ORIGINAL))
    assert discord.to(ORIGINAL)[0].body["content"].startswith("Sorry")
    wait_until(lambda: hook_events(app, "discord", "failed") == 1)


def test_people_and_channels_are_remembered_apart(
        app: TestClient, discord: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue("Noted.", "Noted too.", "You like tea.")
    post(app, ask("I like tea", user="2001", token="a"))
    wait_until(lambda: hook_events(app, "discord", "answered") == 1)
    post(app, ask("I like coffee", user="2002", token="b"))
    wait_until(lambda: hook_events(app, "discord", "answered") == 2)
    post(app, ask("what do I like?", user="2001", token="c"))
    wait_until(lambda: hook_events(app, "discord", "answered") == 3)
    third = scripted.requests[2].prompt
    assert "I like tea" in third and "coffee" not in third


def test_a_key_without_an_application_id_stops_the_start(tmp_path: Any) -> None:
    app = create_app(Settings(discord_public_key=PUBLIC, db=tmp_path / "c.db"),
                     ScriptedBackend())
    with pytest.raises(ConfigError, match="discord_application_id"), TestClient(app):
        pass


def test_a_public_key_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        Settings(discord_public_key="abc")


def test_interactions_of_the_wrong_shape_are_answered_not_500(
        app: TestClient, discord: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue("Fine.")
    assert post(app, {"type": 2, "data": ["ask"]}).json()["type"] == 4
    assert post(app, {"type": 2, "data": {"name": "ask", "options": "x"}}).json()["type"] == 4
    odd = {**ask("hello"), "member": ["not", "an", "object"]}
    assert post(app, odd).json() == {"type": 5}
    wait_until(lambda: discord.to(ORIGINAL))
    assert discord.to(ORIGINAL)[0].body["content"] == "Fine."


def test_the_token_cannot_leave_the_webhook_path(
        app: TestClient, discord: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue("Fine.")
    post(app, ask("hello", token="../../applications/x"))
    wait_until(lambda: discord.calls)
    assert discord.calls[0].path == (f"/webhooks/{APP_ID}/..%2F..%2Fapplications%2Fx"
                                     "/messages/@original")


def test_the_answer_is_shown_while_it_is_written_then_whole(
        make_app: Callable[..., TestClient], discord: FakeAPI, tmp_path: Any) -> None:
    slow = GatedBackend("Spiders have eight legs.", hold_after=1)
    app = make_app(Settings(discord_public_key=PUBLIC, discord_application_id=APP_ID,
                            discord_edit_seconds=0.1, discord_api_url=discord.url,
                            db=tmp_path / "chinwag.db"), slow)
    assert post(app, ask("how many legs does a spider have?")).json() == {"type": 5}
    wait_until(lambda: discord.to(ORIGINAL), what="the answer so far")
    [so_far] = discord.to(ORIGINAL)  # the backend holds the rest: one edit, not one per tick
    assert so_far.body["content"] == "Spiders …" and not slow.gate.is_set()
    slow.gate.set()
    wait_until(lambda: hook_events(app, "discord", "answered") == 1)
    edits = [edit.body["content"] for edit in discord.to(ORIGINAL)]
    assert edits[-1] == "Spiders have eight legs."  # the whole answer comes last
    assert all(edit.endswith(" …") for edit in edits[:-1])


def test_a_refused_edit_of_the_answer_so_far_is_logged_and_the_answer_still_comes(
        make_app: Callable[..., TestClient], discord: FakeAPI, tmp_path: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    slow = GatedBackend("Spiders have eight legs.", hold_after=1)
    app = make_app(Settings(discord_public_key=PUBLIC, discord_application_id=APP_ID,
                            discord_edit_seconds=0.1, discord_api_url=discord.url,
                            db=tmp_path / "chinwag.db"), slow)
    discord.script = [(404, {}, {"message": "Unknown Webhook", "code": 10015})]
    with caplog.at_level("WARNING", logger="chinwag.hooks"):
        post(app, ask("how many legs does a spider have?"))
        wait_until(lambda: "showing the answer so far" in caplog.text, what="the warning")
        slow.gate.set()
        wait_until(lambda: hook_events(app, "discord", "answered") == 1)
    assert discord.to(ORIGINAL)[-1].body["content"] == "Spiders have eight legs."
    assert "HTTP 404" in caplog.text
