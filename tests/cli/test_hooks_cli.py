"""``chinwag hooks discord register`` in-process with typer's CliRunner, against a fake
Discord API on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from chinwag.cli.app import app
from support.platforms import FakeAPI, fake_api

APP_ID = "1100000000000000001"


@pytest.fixture
def discord() -> Iterator[FakeAPI]:
    with fake_api(default=(201, {}, {"id": "7001", "name": "ask", "type": 1})) as api:
        yield api


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["hooks", "discord", "register", *args],
                              env={"COLUMNS": "200", **(env or {})})


def test_register_posts_the_ask_command_with_the_bot_token(discord: FakeAPI) -> None:
    result = run("--application-id", APP_ID, "--api-url", discord.url, "--persona", "villager",
                 env={"CHINWAG_DISCORD_BOT_TOKEN": "bot-token-1"})
    assert result.exit_code == 0, result.output
    assert "Registered /ask (command 7001)" in result.output
    [call] = discord.calls
    assert (call.method, call.path) == ("POST", f"/applications/{APP_ID}/commands")
    assert call.headers["authorization"] == "Bot bot-token-1"
    assert call.body["name"] == "ask" and call.body["description"] == "Ask villager"
    assert call.body["options"] == [{"type": 3, "name": "prompt", "description": "What to ask",
                                     "required": True}]


def test_register_without_a_token_says_what_is_missing(discord: FakeAPI) -> None:
    result = run("--application-id", APP_ID, "--api-url", discord.url)
    assert result.exit_code == 1
    assert "discord_bot_token" in result.output
    assert discord.calls == []


def test_a_refusal_by_discord_is_shown(discord: FakeAPI) -> None:
    discord.default = (401, {}, {"message": "401: Unauthorized", "code": 0})
    result = run("--application-id", APP_ID, "--api-url", discord.url,
                 env={"DISCORD_BOT_TOKEN": "wrong"})
    assert result.exit_code == 1
    assert "HTTP 401: 401: Unauthorized" in result.output


def test_a_refusal_that_is_not_discords_usual_json_is_shown_as_sent(discord: FakeAPI) -> None:
    discord.default = (400, {}, ["not", "an", "object"])
    result = run("--application-id", APP_ID, "--api-url", discord.url,
                 env={"DISCORD_BOT_TOKEN": "t"})
    assert result.exit_code == 1
    assert 'HTTP 400: ["not", "an", "object"]' in result.output
