"""Platform hooks: personas answering in Slack, Discord and Teams.

Each platform calls one endpoint of the server with a signed request
(``signatures.py``); its route (``slack.py``, ``discord.py``, ``teams.py``) checks the
signature on the raw body, acknowledges or answers as its platform expects, and turns the
message into a normal chat turn of the platform's persona (``turns.py``). Answers that come
later are posted through the platform's API (``platform.py``: httpx, retries honouring
``Retry-After``).

A route exists only when its secret is set (``slack_signing_secret``,
``discord_public_key``, ``teams_hmac_secret``); ``routers`` lists them and ``start`` checks
the settings that go with them.
"""

from __future__ import annotations

from fastapi import APIRouter

from chinwag.errors import ConfigError
from chinwag.server.hooks import discord, slack, teams
from chinwag.server.hooks.turns import Hooks
from chinwag.server.state import ServerState
from chinwag.settings import Settings

__all__ = ["Hooks", "routers", "start"]


def routers(settings: Settings) -> list[APIRouter]:
    """The routes of the platforms whose secret is set."""
    return ([slack.router] if settings.slack_signing_secret is not None else []) \
        + ([discord.router] if settings.discord_public_key is not None else []) \
        + ([teams.router] if settings.teams_hmac_secret is not None else [])


def start(state: ServerState) -> Hooks:
    """The hooks of a server that is starting, once their settings are checked.

    Raises:
        ConfigError: a platform's secret without what its answers need
            (``slack_bot_token``, ``discord_application_id``).
        UnknownPersona: ``slack_persona``, ``discord_persona``, ``teams_persona`` (or the
            server's ``persona``, for a platform that names none) names no persona.
    """
    settings = state.settings
    if settings.slack_signing_secret is not None and settings.slack_bot_token is None:
        raise ConfigError("slack_signing_secret is set but slack_bot_token is not: answers are "
                          "posted with the bot token (CHINWAG_SLACK_BOT_TOKEN)")
    if settings.discord_public_key is not None and not settings.discord_application_id:
        raise ConfigError("discord_public_key is set but discord_application_id is not: "
                          "answers edit the interaction through the application's webhook "
                          "(CHINWAG_DISCORD_APPLICATION_ID)")
    hooks = Hooks(state)
    for secret, persona in ((settings.slack_signing_secret, settings.slack_persona),
                            (settings.discord_public_key, settings.discord_persona),
                            (settings.teams_hmac_secret, settings.teams_persona)):
        if secret is not None:
            hooks.persona(persona)
    return hooks
