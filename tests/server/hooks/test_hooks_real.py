"""The three hooks on a real ``chinwag serve`` with the embedded model, on 127.0.0.1: requests
signed by the platforms' own libraries (slack_sdk, PyNaCl) and by Microsoft's HMAC, answers
posted to fake Slack and Discord APIs on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
import pytest
from nacl.encoding import HexEncoder
from nacl.signing import SigningKey
from slack_sdk.signature import SignatureVerifier

from chinwag.server.hooks.turns import APOLOGY
from support.platforms import FakeAPI, fake_api
from support.server import hook_events
from support.waiting import wait_until

pytestmark = pytest.mark.slow

SLACK_SECRET = "real-test-signing-secret"
TEAMS_SECRET = base64.b64encode(b"real test teams security token!!").decode()
KEY = SigningKey.generate()
APP_ID = "1100000000000000001"


@pytest.fixture(scope="module")
def platforms() -> Iterator[tuple[FakeAPI, FakeAPI]]:
    with fake_api() as slack, fake_api(default=(200, {}, {"id": "m1"})) as discord:
        yield slack, discord


@pytest.fixture(scope="module")
def url(make_module_server: Callable[..., object],
        platforms: tuple[FakeAPI, FakeAPI]) -> str:
    slack, discord = platforms
    server = make_module_server(env={
        "CHINWAG_SLACK_SIGNING_SECRET": SLACK_SECRET, "CHINWAG_SLACK_BOT_TOKEN": "xoxb-real",
        "CHINWAG_SLACK_API_URL": slack.url, "CHINWAG_SLACK_HOOKS_URL": slack.url,
        "CHINWAG_DISCORD_PUBLIC_KEY": KEY.verify_key.encode(encoder=HexEncoder).decode(),
        "CHINWAG_DISCORD_APPLICATION_ID": APP_ID, "CHINWAG_DISCORD_API_URL": discord.url,
        "CHINWAG_TEAMS_HMAC_SECRET": TEAMS_SECRET, "CHINWAG_TEAMS_MAX_SECONDS": "20"})
    return str(server.url)  # type: ignore[attr-defined]


def test_slack_mention_is_answered_in_its_thread_by_the_model(
        url: str, platforms: tuple[FakeAPI, FakeAPI]) -> None:
    slack = platforms[0]
    body = json.dumps({
        "type": "event_callback", "team_id": "T1", "event_id": "EvReal1",
        "authorizations": [{"user_id": "U0BOT"}],
        "event": {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "1700.5",
                  "text": "<@U0BOT> What is the capital of France?"}})
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
               "X-Slack-Signature": SignatureVerifier(SLACK_SECRET).generate_signature(
                   timestamp=ts, body=body)}
    reply = httpx.post(f"{url}/hooks/slack", content=body, headers=headers, timeout=30)
    assert reply.status_code == 200 and reply.content == b""
    wait_until(lambda: slack.to("/chat.postMessage"), seconds=180, what="the Slack answer")
    [post] = slack.to("/chat.postMessage")
    assert post.body["channel"] == "C1" and post.body["thread_ts"] == "1700.5"
    assert post.body["text"].strip() and post.body["text"] != APOLOGY
    assert post.headers["authorization"] == "Bearer xoxb-real"


def test_slack_slash_command_is_answered_at_its_response_url(
        url: str, platforms: tuple[FakeAPI, FakeAPI]) -> None:
    slack = platforms[0]
    body = urlencode({"team_id": "T1", "channel_id": "C2", "user_id": "U2", "command": "/ask",
                      "text": "Name a colour.", "response_url": f"{slack.url}/commands/T1/9/x"})
    ts = str(int(time.time()))
    reply = httpx.post(f"{url}/hooks/slack", content=body, timeout=30, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(SLACK_SECRET).generate_signature(
            timestamp=ts, body=body)})
    assert reply.status_code == 200 and reply.json() == {"response_type": "in_channel"}
    wait_until(lambda: slack.to("/commands/T1/9/x"), seconds=180, what="the command's answer")
    [post] = slack.to("/commands/T1/9/x")
    assert post.body["response_type"] == "in_channel"
    assert post.body["text"].strip() and post.body["text"] != APOLOGY


def test_discord_ask_is_deferred_then_edited_with_the_models_answer(
        url: str, platforms: tuple[FakeAPI, FakeAPI]) -> None:
    discord = platforms[1]
    body = json.dumps({
        "type": 2, "token": "real-tok", "guild_id": "G1", "channel_id": "CH1",
        "member": {"user": {"id": "U1", "username": "alice"}},
        "data": {"name": "ask", "options": [{"name": "prompt", "type": 3,
                                             "value": "How many legs does a spider have?"}]}
    }).encode()
    ts = str(int(time.time()))
    reply = httpx.post(f"{url}/hooks/discord", content=body, timeout=30, headers={
        "Content-Type": "application/json", "X-Signature-Timestamp": ts,
        "X-Signature-Ed25519": KEY.sign(ts.encode() + body).signature.hex()})
    assert reply.json() == {"type": 5}
    original = f"/webhooks/{APP_ID}/real-tok/messages/@original"
    with httpx.Client(base_url=url, timeout=30) as server:
        wait_until(lambda: hook_events(server, "discord", "answered") == 1, seconds=180,
                   what="the Discord answer")
    content = discord.to(original)[-1].body["content"]  # earlier edits: the answer so far
    assert content.strip() and content != APOLOGY and len(content) <= 2000
    bad = httpx.post(f"{url}/hooks/discord", content=body, timeout=30, headers={
        "X-Signature-Timestamp": ts, "X-Signature-Ed25519": "00" * 64})
    assert bad.status_code == 401


def test_teams_message_is_answered_in_the_response(url: str) -> None:
    body = json.dumps({
        "type": "message", "timestamp": datetime.now(UTC).isoformat(),
        "from": {"id": "29:x", "name": "Alice", "aadObjectId": "a1"},
        "conversation": {"id": "19:thread;messageid=1", "tenantId": "t1"},
        "text": "<at>Chinwag</at> What is the capital of France?"}).encode()
    digest = hmac.new(base64.b64decode(TEAMS_SECRET), body, hashlib.sha256).digest()
    reply = httpx.post(f"{url}/hooks/teams", content=body, timeout=60, headers={
        "Content-Type": "application/json",
        "Authorization": "HMAC " + base64.b64encode(digest).decode()})
    assert reply.status_code == 200
    answer = reply.json()
    assert answer["type"] == "message" and answer["text"].strip()
    assert answer["text"] != APOLOGY
