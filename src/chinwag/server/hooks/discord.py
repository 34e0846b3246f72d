"""``POST /hooks/discord``: a Discord application's interactions endpoint (on when
``discord_public_key`` is set), and registering its ``/ask`` command.

Discord (https://discord.com/developers/docs/interactions/receiving-and-responding) POSTs each
interaction signed with Ed25519 and wants an answer within 3 seconds:

- a PING (type 1) is answered with a PONG (``{"type": 1}``);
- ``/ask prompt:...`` (an application command, type 2) is answered at once with a deferred
  response (type 5: Discord shows "thinking..."); the persona's answer then replaces that
  message (``PATCH /webhooks/{application}/{token}/messages/@original``), cut at Discord's
  2,000 characters, the rest sent as follow-up messages (``POST /webhooks/{application}/
  {token}``). While it is written, the message shows the answer so far, followed by "…",
  edited every ``discord_edit_seconds``. Mentions in the answer never ping anyone
  (``allowed_mentions`` empty);
- any other command or interaction gets a short message that only its caller sees.

The person is ``discord:{guild}:{user}`` (``discord:@me:{user}`` in a direct message); the
conversation is theirs in the channel (a thread is a channel of its own).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from chinwag.errors import ConfigError, InvalidParams, PlatformError
from chinwag.server.hooks.platform import PlatformClient
from chinwag.server.hooks.signatures import verify_discord
from chinwag.server.hooks.turns import Hooks, fields, hooks_of, split_text
from chinwag.settings import Settings

router = APIRouter()
PLATFORM = "discord"
COMMAND = "ask"
LIMIT = 2000
"""Characters in one Discord message."""
PING, APPLICATION_COMMAND = 1, 2
PONG, MESSAGE, DEFERRED = 1, 4, 5
EPHEMERAL = 1 << 6
NO_PINGS: dict[str, list[str]] = {"parse": []}


def _prompt(data: dict[str, Any]) -> str:
    options = data.get("options")
    for option in options if isinstance(options, list) else []:
        if isinstance(option, dict) and option.get("name") == "prompt":
            return str(option.get("value", "")).strip()
    return ""


def _only_you(text: str) -> JSONResponse:
    return JSONResponse({"type": MESSAGE, "data": {"content": text, "flags": EPHEMERAL,
                                                   "allowed_mentions": NO_PINGS}})


@router.post("/hooks/discord", include_in_schema=False)
async def discord_interactions(request: Request) -> JSONResponse:
    """Discord's interactions, answered as the module docstring says (401 when the signature
    or its timestamp is wrong, 400 for a body that is not a JSON object)."""
    hooks = hooks_of(request)
    settings = hooks.state.settings
    public_key = settings.discord_public_key
    assert public_key is not None  # the route exists only when it is set
    interaction = await hooks.signed_json(request, PLATFORM, lambda headers, body: verify_discord(
        public_key, headers, body, time.time()))
    if not isinstance(interaction, dict):
        raise InvalidParams("the interaction is not a JSON object")
    kind, data = interaction.get("type"), fields(interaction.get("data"))
    if kind == PING:
        return JSONResponse({"type": PONG})
    prompt = _prompt(data) if kind == APPLICATION_COMMAND else ""
    if kind != APPLICATION_COMMAND or data.get("name") != COMMAND:
        hooks.count(PLATFORM, "ignored")
        return _only_you(f"I answer /{COMMAND} only.")
    if not prompt:
        hooks.count(PLATFORM, "ignored")
        return _only_you(f"Ask me something: /{COMMAND} prompt:...")
    person = fields(fields(interaction.get("member")).get("user") or interaction.get("user"))
    guild = interaction.get("guild_id") or "@me"
    user = f"{PLATFORM}:{guild}:{person.get('id', '?')}"
    scope = f"{PLATFORM}:{interaction.get('channel_id') or guild}"
    token = str(interaction.get("token", ""))
    persona = hooks.persona(settings.discord_persona)

    async def post(reply: str) -> None:
        await _edit(hooks, token, reply)

    async def so_far(reply: str) -> None:
        await _edit(hooks, token, f"{split_text(reply, LIMIT - 2)[0]} …")  # one message

    hooks.background(hooks.answer(PLATFORM, persona, user, scope, prompt, post,
                                  name=person.get("global_name") or person.get("username"),
                                  progress=so_far, every=settings.discord_edit_seconds))
    return JSONResponse({"type": DEFERRED})


async def _edit(hooks: Hooks, token: str, reply: str) -> None:
    """Put ``reply`` in place of the deferred message, the rest beyond 2,000 characters in
    follow-up messages.

    Raises:
        PlatformError: Discord refused a message (its status), or never answered.
    """
    settings = hooks.state.settings
    client = hooks.client(PLATFORM, settings.discord_api_url, {})
    hook = f"webhooks/{settings.discord_application_id}/{quote(token, safe='')}"
    for i, piece in enumerate(split_text(reply, LIMIT)):
        message = {"content": piece, "allowed_mentions": NO_PINGS}
        response = await (client.call("PATCH", f"{hook}/messages/@original", message) if i == 0
                          else client.call("POST", hook, message))
        if not response.is_success:
            raise PlatformError(f"{'editing' if i == 0 else 'following up'} the interaction: "
                                f"HTTP {response.status_code}")


def ask_command(persona: str) -> dict[str, Any]:
    """The ``/ask`` command as Discord's API takes it (a chat input command with one
    required string option, ``prompt``)."""
    return {"name": COMMAND, "type": 1, "description": f"Ask {persona}"[:100],
            "options": [{"type": 3, "name": "prompt", "description": "What to ask",
                         "required": True}]}


async def register(settings: Settings) -> dict[str, Any]:
    """Register (or update) the application's global ``/ask`` command
    (``POST /applications/{id}/commands`` with the bot token; Discord overwrites a command of
    the same name).

    Returns:
        the command as Discord stored it (with its ``id``).

    Raises:
        ConfigError: ``discord_application_id`` or ``discord_bot_token`` is not set.
        PlatformError: Discord refused it (its status and message) or never answered.
    """
    if not settings.discord_application_id or settings.discord_bot_token is None:
        raise ConfigError("registering /ask needs discord_application_id and discord_bot_token "
                          "(CHINWAG_DISCORD_APPLICATION_ID, CHINWAG_DISCORD_BOT_TOKEN)")
    client = PlatformClient(settings.discord_api_url, {
        "Authorization": f"Bot {settings.discord_bot_token.get_secret_value()}"})
    try:
        response = await client.call(
            "POST", f"applications/{settings.discord_application_id}/commands",
            ask_command(settings.discord_persona or settings.persona))
    finally:
        await client.close()
    if not response.is_success:
        raise PlatformError(f"Discord refused the command: HTTP {response.status_code}: "
                            f"{_message(response)}")
    found: dict[str, Any] = response.json()
    return found


def _message(response: httpx.Response) -> str:
    """Discord's error message (``{"message": ...}``), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    return str(body["message"]) if isinstance(body, dict) and "message" in body \
        else response.text[:200]
