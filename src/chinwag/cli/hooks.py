"""``chinwag hooks``: the platforms' side of the Slack, Discord and Teams hooks.

- ``discord register``: register (or update) the application's ``/ask`` command with
  Discord (``POST /applications/{id}/commands`` against ``discord_api_url``, with
  ``discord_bot_token``, which only this command needs).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from chinwag.cli.common import ConfigOpt, friendly_errors, setting_option, settings_from
from chinwag.server.hooks import discord

console = Console(highlight=False)
app = typer.Typer(name="hooks", add_completion=False, no_args_is_help=True,
                  help="Set up the platforms' side of the Slack, Discord and Teams hooks.")
discord_app = typer.Typer(name="discord", add_completion=False, no_args_is_help=True,
                          help="Discord: the /ask command.")
app.add_typer(discord_app, name="discord")


@discord_app.command("register")
@friendly_errors
def register(
    application_id: Annotated[str | None, setting_option("discord_application_id",
                                                         "--application-id")] = None,
    persona: Annotated[str | None, setting_option("discord_persona", "--persona")] = None,
    api_url: Annotated[str | None, setting_option("discord_api_url", "--api-url")] = None,
    config: ConfigOpt = None,
) -> None:
    """Register the /ask command of the Discord application (the bot token comes from
    CHINWAG_DISCORD_BOT_TOKEN, DISCORD_BOT_TOKEN or the config file, never a flag)."""
    settings = settings_from(config, discord_application_id=application_id,
                             discord_persona=persona, discord_api_url=api_url)
    command = asyncio.run(discord.register(settings))
    console.print(f"Registered /{command.get('name', discord.COMMAND)} (command "
                  f"{command.get('id', '?')}) for application {settings.discord_application_id}"
                  f" at {settings.discord_api_url}.")

