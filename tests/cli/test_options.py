"""Command-line options built from the schemas: their help text, and that each flag reaches
the settings (in-process, with typer's CliRunner)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import ByteSize, TypeAdapter
from typer.testing import CliRunner

from chinwag.cli import info, serve
from chinwag.cli.app import app
from chinwag.cli.complete import MAX_TOKENS
from chinwag.settings import Settings
from chinwag.types import SamplingParams

NEW_SERVE_FLAGS = {"n_batch": "--n-batch", "prefill_chunk": "--prefill-chunk",
                   "kv_cache_disk": "--kv-cache-disk", "max_body_bytes": "--max-body-bytes"}


def help_text(*command: str) -> str:
    """``chinwag COMMAND --help`` as one line of words (no table borders, no wrapping)."""
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


def shown_default(text: str, flag: str) -> str:
    """The ``default: X`` the help of ``flag`` gives."""
    found = re.search(rf"{re.escape(flag)} .*?default: (\S+?)\)", text)
    assert found, f"no default shown for {flag}"
    return found.group(1)


@pytest.mark.parametrize(("name", "flag"), [*NEW_SERVE_FLAGS.items(), ("n_ctx", "--n-ctx"),
                                            ("kv_cache_ram", "--kv-cache-ram"),
                                            ("parallel", "--parallel")])
def test_serve_help_gives_each_setting_its_schema_default_and_variables(
        name: str, flag: str) -> None:
    text = help_text("serve")
    field = Settings.model_fields[name]
    assert flag in text
    assert str(field.description) in text
    for variable in Settings.env_names(name):
        assert variable in text
    default = shown_default(text, flag)
    if field.annotation is ByteSize:
        assert TypeAdapter(ByteSize).validate_python(default) == field.default
        assert default.endswith("iB")  # readable, not a count of bytes
    else:
        assert default == str(field.default)


def test_every_command_sharing_model_options_has_n_batch() -> None:
    for command in ("chat", "complete", "models", "serve"):
        assert "--n-batch" in help_text(command), command


def test_sampling_help_comes_from_sampling_params() -> None:
    text = help_text("chat")
    specs = {f.name: f for f in fields(SamplingParams)}
    for name, flag in (("temperature", "--temperature"), ("top_k", "--top-k"),
                       ("repeat_penalty", "--repeat-penalty"), ("max_tokens", "--max-tokens")):
        assert specs[name].metadata["description"] in text
        assert shown_default(text, flag) == str(specs[name].default)
    assert specs["seed"].metadata["description"] in text


def test_complete_shows_its_own_max_tokens_default() -> None:
    assert shown_default(help_text("complete"), "--max-tokens") == str(MAX_TOKENS)


def capture_settings(monkeypatch: pytest.MonkeyPatch, module: Any,
                     args: list[str]) -> Settings:
    """Run ``chinwag ARGS`` until it would load the model, and return its settings."""
    seen: list[Settings] = []

    def opened(settings: Settings) -> None:
        seen.append(settings)
        raise typer.Exit(0)

    monkeypatch.setattr(module, "open_backend", opened)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(seen) == 1
    return seen[0]


def test_new_serve_flags_reach_the_settings(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    settings = capture_settings(monkeypatch, serve, [
        "serve", "--db", str(tmp_path / "c.db"), "--n-batch", "64", "--prefill-chunk", "32",
        "--kv-cache-disk", "2GiB", "--max-body-bytes", "4096", "--kv-cache-ram", "512MiB"])
    assert (settings.n_batch, settings.prefill_chunk) == (64, 32)
    assert (settings.kv_cache_disk, settings.max_body_bytes) == (2 << 30, 4096)
    assert settings.kv_cache_ram == 512 << 20


def test_flags_beat_the_config_file_they_come_with(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("n_batch: 16\nprefill_chunk: 8\n")
    settings = capture_settings(monkeypatch, info, [
        "models", "--config", str(config), "--n-batch", "256"])
    assert (settings.n_batch, settings.prefill_chunk) == (256, 8)


def test_a_bad_new_flag_value_is_one_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--db", str(tmp_path / "c.db"),
                                      "--kv-cache-disk", "lots"])
    assert result.exit_code == 1
    assert "kv_cache_disk" in result.output


def test_fetch_allow_private_flag_has_schema_help_and_reaches_the_settings(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = help_text("serve")
    assert "--fetch-allow-private" in text
    assert str(Settings.model_fields["fetch_allow_private"].description) in text
    assert "CHINWAG_FETCH_ALLOW_PRIVATE" in text
    settings = capture_settings(monkeypatch, serve, [
        "serve", "--db", str(tmp_path / "c.db"),
        "--fetch-allow-private", "127.0.0.1/32,10.1.0.0/16"])
    assert settings.fetch_allow_private == ["127.0.0.1/32", "10.1.0.0/16"]
