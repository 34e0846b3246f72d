"""``POST /hooks/slack``: a Slack app's Events API (on when ``slack_signing_secret`` is set).

Slack (https://api.slack.com/apis/events-api) POSTs each event as JSON, signed with the app's
signing secret, and wants a 2xx within 3 seconds, else it sends the event again (up to three
times, with ``X-Slack-Retry-Num``). So:

- ``url_verification`` (when the request URL is entered) is answered with its ``challenge``;
- an ``app_mention``, or a direct message (``message`` in an ``im`` channel), is acknowledged at
  once; the persona's answer is then posted with ``chat.postMessage`` in the message's thread
  (a mention outside a thread starts one; a direct message outside a thread is answered in
  the conversation itself);
- an event seen before (by ``event_id``) is acknowledged and not answered again;
- messages from bots (this one included) and every other event type are acknowledged and
  ignored;
- a slash command (https://api.slack.com/interactivity/slash-commands, a form body, e.g.
  ``/ask what is...``) is acknowledged at once with ``response_type: in_channel`` (so the
  channel sees the question), and the answer is posted to its ``response_url``, which must lie
  under ``slack_hooks_url`` (Slack's ``https://hooks.slack.com``): a command without text gets
  a usage line, seen only by its sender (``ephemeral``).

The person is ``slack:{team}:{user}``; the conversation is theirs in the thread (a direct
message outside a thread, or a slash command: in the channel). In the prompt they are called
by their Slack display name (``users.info``), else by the persona's ``user_name``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from chinwag.errors import PlatformError
from chinwag.server.hooks.platform import PlatformClient
from chinwag.server.hooks.signatures import verify_slack
from chinwag.server.hooks.turns import Hooks, fields, hooks_of, speaker, split_text

log = logging.getLogger("chinwag.hooks")
router = APIRouter()
PLATFORM = "slack"
FORM = "application/x-www-form-urlencoded"
"""The content type of Slack's slash commands and interactivity payloads."""
LIMIT = 3000
"""Characters per posted message (Slack advises under 4,000 and cuts at 40,000)."""
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")


def escape(text: str) -> str:
    """Text for Slack's ``text`` field: ``&``, ``<`` and ``>`` escaped, as Slack requires
    (https://api.slack.com/reference/surfaces/formatting#escaping), so that a model's answer
    cannot mention ``<!channel>`` or make links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def question(text: str) -> str:
    """A message's text without the mentions in it (``<@U123>``), and without the escapes
    Slack puts in."""
    text = _MENTION.sub("", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def _wanted(event: dict[str, Any], bot_user: str | None) -> bool:
    """A mention or a direct message from a person (no bot, no edit or other subtype)."""
    if event.get("bot_id") or event.get("subtype") or not event.get("user"):
        return False
    if bot_user is not None and event.get("user") == bot_user:
        return False
    if event.get("type") == "app_mention":
        return True
    return event.get("type") == "message" and event.get("channel_type") == "im"


@router.post("/hooks/slack", include_in_schema=False)
async def slack_events(request: Request) -> Response:
    """Slack's events, answered as the module docstring says (401 when the signature or its
    timestamp is wrong)."""
    hooks = hooks_of(request)
    settings = hooks.state.settings
    secret = settings.slack_signing_secret
    assert secret is not None  # the route exists only when it is set
    body = await hooks.signed_body(request, PLATFORM, lambda headers, body: verify_slack(
        secret.get_secret_value(), headers, body, time.time()))
    if request.headers.get("content-type", "").startswith(FORM):
        return _command(hooks, dict(parse_qsl(body.decode("utf-8", "replace"))))
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        hooks.count(PLATFORM, "ignored")
        return Response(status_code=200)
    if payload.get("type") == "url_verification":
        return JSONResponse({"challenge": str(payload.get("challenge", ""))})
    event = payload.get("event")
    if payload.get("type") != "event_callback" or not isinstance(event, dict):
        hooks.count(PLATFORM, "ignored")
        return Response(status_code=200)
    event_id = payload.get("event_id") or event.get("event_ts") or event.get("ts")
    if event_id and not hooks.seen.first(f"{PLATFORM}:{event_id}"):
        hooks.count(PLATFORM, "duplicate")
        return Response(status_code=200)
    authorizations = payload.get("authorizations")
    bot_user = fields(authorizations[0] if isinstance(authorizations, list) and authorizations
                      else None).get("user_id")
    text = question(str(event.get("text", "")))
    if not _wanted(event, bot_user) or not text:
        hooks.count(PLATFORM, "ignored")
        return Response(status_code=200)
    team = payload.get("team_id") or event.get("team") or "-"
    channel = str(event.get("channel", ""))
    thread = event.get("thread_ts") or (event.get("ts") if event.get("type") == "app_mention"
                                        else None)
    user = f"{PLATFORM}:{team}:{event['user']}"
    scope = f"{PLATFORM}:{channel}:{thread}" if thread else f"{PLATFORM}:{channel}"
    persona = hooks.persona(settings.slack_persona)

    async def post(reply: str) -> None:
        await _post(hooks, channel, thread, reply)

    async def work() -> None:
        name = await display_name(hooks, str(team), str(event["user"]))
        await hooks.answer(PLATFORM, persona, user, scope, text, post, name=name)

    hooks.background(work())
    return Response(status_code=200)


def _command(hooks: Hooks, form: dict[str, str]) -> Response:
    """A slash command: acknowledged now, answered at its ``response_url`` (module docstring).
    """
    response_url = form.get("response_url", "")
    user_id, channel = form.get("user_id", ""), form.get("channel_id", "")
    if not (user_id and channel and response_url):  # interactivity, or not a command at all
        hooks.count(PLATFORM, "ignored")
        return Response(status_code=200)
    prefix = hooks.state.settings.slack_hooks_url.rstrip("/") + "/"
    if not response_url.startswith(prefix):
        hooks.count(PLATFORM, "ignored")
        log.warning("slack: a command's response_url is not under slack_hooks_url (%s); "
                    "not answered", prefix)
        return JSONResponse({"response_type": "ephemeral",
                             "text": "This server answers only through Slack's response URLs."})
    text = question(form.get("text", ""))
    if not text:
        hooks.count(PLATFORM, "ignored")
        return JSONResponse({"response_type": "ephemeral",
                             "text": f"Usage: {form.get('command') or '/ask'} QUESTION"})
    team = form.get("team_id") or "-"
    persona = hooks.persona(hooks.state.settings.slack_persona)
    client = hooks.client(f"{PLATFORM}-commands", prefix, {})

    async def post(reply: str) -> None:
        for piece in split_text(reply, LIMIT):
            response = await client.call("POST", response_url[len(prefix):], {
                "response_type": "in_channel", "text": escape(piece)})
            if response.status_code != 200:
                raise PlatformError(f"response_url: HTTP {response.status_code}, "
                                    f"{response.text[:200]}")

    async def work() -> None:
        name = await display_name(hooks, team, user_id)
        await hooks.answer(PLATFORM, persona, f"{PLATFORM}:{team}:{user_id}",
                           f"{PLATFORM}:{channel}", text, post, name=name)

    hooks.background(work())
    return JSONResponse({"response_type": "in_channel"})


def _client(hooks: Hooks) -> PlatformClient:
    settings = hooks.state.settings
    token = settings.slack_bot_token
    assert token is not None  # checked at start (hooks.start)
    return hooks.client(PLATFORM, settings.slack_api_url,
                        {"Authorization": f"Bearer {token.get_secret_value()}"})


async def display_name(hooks: Hooks, team: str, user: str) -> str | None:
    """What the person ``user`` of ``team`` is called in Slack (their profile's
    ``display_name``, else their ``real_name``, else their user name), from ``users.info``
    (https://api.slack.com/methods/users.info, which needs the ``users:read`` scope), as a
    speaker's name (``speaker``). Kept in ``hooks.names`` for an hour. None when Slack will
    not say (the persona's ``user_name`` is used then); why is logged, never raised."""
    key = f"{PLATFORM}:{team}:{user}"
    if key in hooks.names:
        return hooks.names[key]
    name: object = None
    try:
        response = await _client(hooks).call("GET", "users.info", params={"user": user})
        try:
            answer = fields(response.json())
        except ValueError:
            answer = {}
        if answer.get("ok"):
            found = fields(answer.get("user"))
            profile = fields(found.get("profile"))
            name = (profile.get("display_name") or profile.get("real_name")
                    or found.get("real_name") or found.get("name"))
        else:
            error = answer.get("error", f"HTTP {response.status_code}")
            hint = " (the app needs the users:read scope)" if error == "missing_scope" else ""
            log.warning("slack: users.info for %s: %s%s; the persona's user_name is used",
                        user, error, hint)
    except PlatformError as e:
        log.warning("slack: users.info for %s: %s; the persona's user_name is used", user, e)
    hooks.names[key] = found_name = speaker(name)
    return found_name


async def _post(hooks: Hooks, channel: str, thread: str | None, reply: str) -> None:
    """Post ``reply`` in ``channel`` (in ``thread`` when given) with ``chat.postMessage``.

    Raises:
        PlatformError: Slack did not take it (``"ok": false`` and its ``error``, or HTTP).
    """
    client = _client(hooks)
    for piece in split_text(reply, LIMIT):
        message: dict[str, Any] = {"channel": channel, "text": escape(piece)}
        if thread:
            message["thread_ts"] = thread
        response = await client.call("POST", "chat.postMessage", message)
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code != 200 or not answer.get("ok"):
            raise PlatformError(f"chat.postMessage: HTTP {response.status_code}, "
                                f"{answer.get('error', 'no ok')}")
