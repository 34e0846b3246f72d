"""POST /hooks/slack on the scripted backend, signed by slack_sdk's own SignatureVerifier,
answering through a fake Slack Web API on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from slack_sdk.signature import SignatureVerifier

from chinwag.backends.scripted import ScriptedBackend
from chinwag.errors import ConfigError
from chinwag.settings import Settings
from support.platforms import Call, FakeAPI, fake_api
from support.server import hook_events
from support.waiting import wait_until

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test-token"
BOT = "U0BOT"


NAMES = {"U1ALICE": {"profile": {"display_name": "Alice", "real_name": "Alice Liddell"}},
         "U2BOB": {"real_name": "Bob Cratchit", "profile": {"display_name": ""}}}


def users_info(call: Call) -> tuple[int, dict[str, str], Any]:
    """Slack's ``users.info``: the people in ``NAMES``, else ``user_not_found``."""
    user = parse_qs(urlsplit(call.path).query).get("user", [""])[0]
    if user not in NAMES:
        return 200, {}, {"ok": False, "error": "user_not_found"}
    return 200, {}, {"ok": True, "user": {"id": user, "name": user.lower(), **NAMES[user]}}


@pytest.fixture
def slack() -> Iterator[FakeAPI]:
    with fake_api() as api:
        api.routes["/users.info"] = users_info
        yield api


@pytest.fixture
def app(make_app: Callable[..., TestClient], slack: FakeAPI, scripted: ScriptedBackend,
        tmp_path: Any) -> TestClient:
    settings = Settings(slack_signing_secret=SECRET, slack_bot_token=TOKEN,
                        slack_api_url=slack.url, slack_hooks_url=slack.url,
                        db=tmp_path / "chinwag.db")
    return make_app(settings, scripted)


def post(client: TestClient, body: dict[str, Any], *, timestamp: int | None = None,
         secret: str = SECRET, retry: int | None = None) -> Any:
    """POST ``body`` to /hooks/slack as Slack does, signed by slack_sdk."""
    raw = json.dumps(body)
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
               "X-Slack-Signature": SignatureVerifier(secret).generate_signature(
                   timestamp=ts, body=raw)}
    if retry is not None:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    return client.post("/hooks/slack", content=raw, headers=headers)


def mention(text: str, *, user: str = "U1ALICE", event_id: str = "Ev1", ts: str = "1700.0001",
            thread: str | None = None, kind: str = "app_mention", **more: Any) -> dict[str, Any]:
    event = {"type": kind, "user": user, "text": text, "ts": ts, "channel": "C1GENERAL",
             "event_ts": ts, **more}
    if thread:
        event["thread_ts"] = thread
    return {"token": "x", "team_id": "T1TEAM", "api_app_id": "A1", "type": "event_callback",
            "event_id": event_id, "event_time": int(time.time()), "event": event,
            "authorizations": [{"team_id": "T1TEAM", "user_id": BOT, "is_bot": True}]}


def posts(slack: FakeAPI, n: int = 1) -> list[dict[str, Any]]:
    """The first ``n`` chat.postMessage bodies, once that many have come."""
    wait_until(lambda: len(slack.to("/chat.postMessage")) >= n, what=f"{n} posts to Slack")
    return [call.body for call in slack.to("/chat.postMessage")]


def test_the_url_handshake_answers_the_challenge(app: TestClient) -> None:
    reply = post(app, {"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7",
                       "type": "url_verification"})
    assert reply.status_code == 200
    assert reply.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7"}


def test_a_mention_is_answered_in_its_thread_by_the_persona(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue("Paris is the capital of France.")
    reply = post(app, mention(f"<@{BOT}> what is the capital of France?"))
    assert reply.status_code == 200 and reply.content == b""
    [body] = posts(slack)
    assert body == {"channel": "C1GENERAL", "thread_ts": "1700.0001",
                    "text": "Paris is the capital of France."}
    call = slack.to("/chat.postMessage")[0]
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    prompt = scripted.requests[0].prompt
    assert "helpful assistant" in prompt  # the persona's system prompt
    assert "what is the capital of France?" in prompt and f"<@{BOT}>" not in prompt
    wait_until(lambda: hook_events(app, "slack", "answered") == 1)


def test_people_are_called_by_their_slack_name_looked_up_once(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue("Hello Alice.", "Hello again.", "Hello Bob.")
    post(app, mention(f"<@{BOT}> hi", ts="1700.1"))
    posts(slack, 1)
    post(app, mention(f"<@{BOT}> hi again", ts="1700.2", thread="1700.1", event_id="Ev2"))
    posts(slack, 2)
    post(app, mention(f"<@{BOT}> hi", user="U2BOB", event_id="Ev3"))
    posts(slack, 3)
    assert "Alice: hi\n" in scripted.requests[0].prompt  # the profile's display name
    assert "Alice: hi again" in scripted.requests[1].prompt
    assert "Bob Cratchit: hi" in scripted.requests[2].prompt  # no display name: real name
    asked = [call for call in slack.calls if call.path.startswith("/users.info")]
    assert [call.path for call in asked] == ["/users.info?user=U1ALICE",
                                             "/users.info?user=U2BOB"]  # once each
    assert all(call.method == "GET" and call.headers["authorization"] == f"Bearer {TOKEN}"
               for call in asked)


def test_a_name_slack_will_not_give_is_the_personas_user_name(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend,
        caplog: pytest.LogCaptureFixture) -> None:
    slack.routes["/users.info"] = lambda call: (200, {}, {"ok": False, "error": "missing_scope"})
    scripted.enqueue("Hello.")
    with caplog.at_level("WARNING", logger="chinwag.hooks"):
        post(app, mention(f"<@{BOT}> hi"))
        posts(slack, 1)
    assert "User: hi" in scripted.requests[0].prompt  # the default persona's user_name
    assert "missing_scope (the app needs the users:read scope)" in caplog.text


def test_a_name_lookup_slack_never_answers_still_gets_an_answer(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend,
        caplog: pytest.LogCaptureFixture) -> None:
    slack.routes["/users.info"] = lambda call: (503, {"Retry-After": "0"}, {"ok": False})
    scripted.enqueue("Hello.")
    with caplog.at_level("WARNING", logger="chinwag.hooks"):
        post(app, mention(f"<@{BOT}> hi"))
        assert [body["text"] for body in posts(slack, 1)] == ["Hello."]
    assert len([c for c in slack.calls if c.path.startswith("/users.info")]) == 4  # all tries
    assert "User: hi" in scripted.requests[0].prompt
    assert "HTTP 503 on each of 4 tries" in caplog.text


def test_a_reply_in_a_thread_goes_to_that_thread_and_remembers_it(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue("Hello Alice.", "You said your name is Alice.")
    post(app, mention(f"<@{BOT}> my name is Alice", ts="1700.1"))
    posts(slack, 1)
    post(app, mention(f"<@{BOT}> what is my name?", ts="1700.2", thread="1700.1",
                      event_id="Ev2"))
    second = posts(slack, 2)[1]
    assert second["thread_ts"] == "1700.1"
    assert "my name is Alice" in scripted.requests[1].prompt  # same conversation


def test_a_retried_event_is_answered_once(app: TestClient, slack: FakeAPI,
                                          scripted: ScriptedBackend) -> None:
    scripted.enqueue("Once.", "Twice!")
    body = mention(f"<@{BOT}> hello", event_id="EvSame")
    assert post(app, body).status_code == 200
    assert post(app, body, retry=1).status_code == 200
    assert post(app, body, retry=2).status_code == 200
    posts(slack, 1)
    wait_until(lambda: hook_events(app, "slack", "answered") == 1)
    assert len(scripted.requests) == 1
    assert [b["text"] for b in posts(slack)] == ["Once."]
    assert hook_events(app, "slack", "duplicate") == 2


def test_a_bad_signature_is_401_and_echoes_nothing(app: TestClient, slack: FakeAPI,
                                                   scripted: ScriptedBackend) -> None:
    reply = post(app, mention("<@U0BOT> secret words 12345"), secret="not-the-secret")
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_signature"
    assert "12345" not in reply.text and "not-the-secret" not in reply.text
    unsigned = app.post("/hooks/slack", content=json.dumps(mention("hi")),
                        headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    assert scripted.requests == [] and slack.calls == []


def test_a_stale_timestamp_is_401(app: TestClient, scripted: ScriptedBackend) -> None:
    old = int(time.time()) - 6 * 60  # signed correctly, six minutes ago
    reply = post(app, mention("<@U0BOT> hello"), timestamp=old)
    assert reply.status_code == 401
    assert "timestamp" in reply.json()["error"]["message"]
    assert scripted.requests == []


def test_the_bots_own_messages_and_other_events_are_acknowledged_and_ignored(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend) -> None:
    own = mention("I said this", user=BOT, event_id="E1")
    bot = mention("<@U0BOT> from another bot", event_id="E2", bot_id="B9")
    edit = mention("edited", kind="message", event_id="E3", channel_type="im",
                   subtype="message_changed")
    channel_message = mention("just chatting", kind="message", event_id="E4",
                              channel_type="channel")
    reaction = {"type": "event_callback", "event_id": "E5", "team_id": "T1TEAM",
                "event": {"type": "reaction_added", "user": "U1ALICE", "reaction": "tada"}}
    rate_limited = {"type": "app_rate_limited", "team_id": "T1TEAM", "minute_rate_limited": 1}
    for body in (own, bot, edit, channel_message, reaction, rate_limited):
        reply = post(app, body)
        assert reply.status_code == 200, body
    assert hook_events(app, "slack", "ignored") == 6
    assert scripted.requests == [] and slack.calls == []


def test_a_direct_message_is_answered_in_the_conversation(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue("Hi there.")
    post(app, mention("hello", kind="message", channel_type="im", channel="D1ALICE"))
    [body] = posts(slack)
    assert body == {"channel": "D1ALICE", "text": "Hi there."}


def test_two_people_in_one_channel_are_kept_apart(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue("Noted, Alice.", "Noted, Bob.", "Your colour is blue.")
    post(app, mention("<@U0BOT> my favourite colour is blue", user="U1ALICE", ts="1.1",
                      event_id="A1"))
    posts(slack, 1)
    post(app, mention("<@U0BOT> my favourite colour is red", user="U2BOB", ts="1.1",
                      thread="1.1", event_id="B1"))
    posts(slack, 2)
    post(app, mention("<@U0BOT> what is my favourite colour?", user="U1ALICE", ts="1.2",
                      thread="1.1", event_id="A2"))
    posts(slack, 3)
    alice_second = scripted.requests[2].prompt
    assert "blue" in alice_second and "red" not in alice_second
    assert "blue" not in scripted.requests[1].prompt  # Bob's turn saw nothing of Alice's
    state = app.app.state.chinwag  # type: ignore[attr-defined]
    alice = state.store.latest_conversation("assistant", "slack:T1TEAM:U1ALICE",
                                            scope="slack:C1GENERAL:1.1")
    bob = state.store.latest_conversation("assistant", "slack:T1TEAM:U2BOB",
                                          scope="slack:C1GENERAL:1.1")
    assert alice is not None and bob is not None and alice.id != bob.id
    assert len(state.store.messages(alice.id)) == 4 and len(state.store.messages(bob.id)) == 2


def test_a_failed_generation_posts_an_apology_and_logs_the_conversation(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend,
        caplog: pytest.LogCaptureFixture) -> None:
    scripted.enqueue_failure("the model fell over")
    post(app, mention("<@U0BOT> hello"))
    [body] = posts(slack)
    assert body["thread_ts"] == "1700.0001" and body["text"].startswith("Sorry")
    state = app.app.state.chinwag  # type: ignore[attr-defined]
    conversation = state.store.latest_conversation("assistant", "slack:T1TEAM:U1ALICE",
                                                   scope="slack:C1GENERAL:1700.0001")
    wait_until(lambda: any(conversation.id in r.getMessage() and "fell over" in r.getMessage()
                           for r in caplog.records))


def test_a_rate_limited_post_is_sent_again_after_retry_after(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend) -> None:
    slack.script = [(429, {"Retry-After": "0"}, {"ok": False, "error": "ratelimited"}),
                    (503, {}, {"ok": False})]
    scripted.enqueue("Patience.")
    post(app, mention("<@U0BOT> hello"))
    bodies = posts(slack, 3)
    assert [b["text"] for b in bodies] == ["Patience."] * 3
    wait_until(lambda: hook_events(app, "slack", "answered") == 1)


def test_slack_refusing_the_post_is_logged_as_failed(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend,
        caplog: pytest.LogCaptureFixture) -> None:
    slack.default = (200, {}, {"ok": False, "error": "channel_not_found"})
    post(app, mention("<@U0BOT> hello"))
    posts(slack, 1)
    wait_until(lambda: any("channel_not_found" in r.getMessage() for r in caplog.records))
    wait_until(lambda: hook_events(app, "slack", "failed") == 1)


def test_the_route_is_off_without_its_secret(make_app: Callable[..., TestClient]) -> None:
    client = make_app(Settings())
    assert client.post("/hooks/slack", content=b"{}").status_code == 404


def test_a_secret_without_a_bot_token_stops_the_start(tmp_path: Any) -> None:
    from chinwag.server import create_app

    app = create_app(Settings(slack_signing_secret=SECRET, db=tmp_path / "c.db"),
                     ScriptedBackend())
    with pytest.raises(ConfigError, match="slack_bot_token"), TestClient(app):
        pass




def test_payloads_of_the_wrong_shape_are_acknowledged_not_500(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue("Still here.")
    odd = [{"type": "event_callback", "event": "not an object"},
           {"type": "event_callback", "event_id": "W1", "event": {"type": "app_mention"}},
           [1, 2, 3], "text", None]
    for body in odd:
        raw = json.dumps(body)
        ts = str(int(time.time()))
        reply = app.post("/hooks/slack", content=raw, headers={
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(
                timestamp=ts, body=raw)})
        assert reply.status_code == 200, body
    mangled = {**mention("<@U0BOT> hi", event_id="W2"), "authorizations": "not a list"}
    assert post(app, mangled).status_code == 200
    assert posts(slack)[0]["text"] == "Still here."


def test_events_without_any_id_are_each_answered(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue("First.", "Second.")
    for text in ("<@U0BOT> one", "<@U0BOT> two"):
        body = mention(text)
        del body["event_id"], body["event"]["ts"], body["event"]["event_ts"]
        assert post(app, body).status_code == 200
    assert sorted(b["text"] for b in posts(slack, 2)) == ["First.", "Second."]


def command(client: TestClient, text: str, response_url: str, *, user: str = "U1ALICE",
            secret: str = SECRET) -> Any:
    """A slash command (``/ask text``) as Slack sends it: a form, signed by slack_sdk."""
    raw = urlencode({"token": "x", "team_id": "T1TEAM", "channel_id": "C1GENERAL",
                     "user_id": user, "user_name": "alice", "command": "/ask", "text": text,
                     "response_url": response_url, "trigger_id": "1.2.3", "api_app_id": "A1"})
    ts = str(int(time.time()))
    return client.post("/hooks/slack", content=raw, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts,
                                                                          body=raw)})


def test_a_slash_command_is_shown_then_answered_at_its_response_url(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend) -> None:
    scripted.enqueue("Eight legs.", "You asked about spiders.")
    url = f"{slack.url}/commands/T1TEAM/1/abc"
    reply = command(app, "how many legs does a spider have?", url)
    assert reply.status_code == 200 and reply.json() == {"response_type": "in_channel"}
    wait_until(lambda: len(slack.to("/commands/T1TEAM/1/abc")) == 1, what="the answer")
    answer = slack.to("/commands/T1TEAM/1/abc")[0]
    assert answer.method == "POST"
    assert answer.body == {"response_type": "in_channel", "text": "Eight legs."}
    assert "authorization" not in answer.headers  # the bot token goes to Slack's API only
    assert "Alice: how many legs does a spider have?" in scripted.requests[0].prompt
    command(app, "what did I ask?", f"{slack.url}/commands/T1TEAM/2/def")
    wait_until(lambda: len(slack.to("/commands/T1TEAM/2/def")) == 1, what="the second answer")
    assert "spider" in scripted.requests[1].prompt  # the person's conversation in the channel
    wait_until(lambda: hook_events(app, "slack", "answered") == 2)


def test_a_slash_command_without_text_gets_its_usage(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend) -> None:
    reply = command(app, "  ", f"{slack.url}/commands/T1TEAM/1/abc")
    assert reply.json() == {"response_type": "ephemeral", "text": "Usage: /ask QUESTION"}
    assert scripted.requests == [] and slack.calls == []


def test_a_response_url_outside_slacks_hooks_is_never_called(
        app: TestClient, slack: FakeAPI, scripted: ScriptedBackend,
        caplog: pytest.LogCaptureFixture) -> None:
    with fake_api() as elsewhere:
        reply = command(app, "hello", f"{elsewhere.url}/commands/T1TEAM/1/abc")
        assert reply.status_code == 200 and reply.json()["response_type"] == "ephemeral"
        assert "response_url is not under slack_hooks_url" in caplog.text
        assert elsewhere.calls == [] and scripted.requests == []
    assert command(app, "hello", f"{slack.url}/commands/T1TEAM/1/abc",
                   secret="not the secret").status_code == 401
    assert scripted.requests == [] and slack.calls == []
