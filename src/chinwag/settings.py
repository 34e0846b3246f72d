"""One settings schema for chinwag: command-line flags, environment variables and a config file.

Precedence, highest first: values passed in (CLI flags), environment variables, the YAML config
file (``--config FILE`` or ``CHINWAG_CONFIG``), the defaults below. pydantic-settings does the
merging: every field reads ``CHINWAG_<FIELD>`` (``env_prefix``); a few also read the variables
llama.cpp services commonly use (``LLM_MODEL_FILE``, ``LLM_CONTEXT_WINDOW``, ``LLM_GPU_LAYERS``,
``LLM_CPU_THREADS``, ``LLM_HUGGINGFACE_REPO``, ``LLM_HUGGINGFACE_FILE``) or a shorter name
(``CHINWAG_LLMS``, ``CHINWAG_PERSONAS``), listed in their ``validation_alias``. The config file
is one more source (``ConfigFileSource``), read through ``chinwag.yaml_files`` so that a bad
value in it names its file and line; ``Settings()`` reads it too when ``CHINWAG_CONFIG`` is set.
``load_settings`` is what the commands call: it also words a bad flag or variable as a
``ConfigError``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from chinwag.errors import ConfigError
from chinwag.yaml_files import located, read_yaml

ENV_PREFIX = "CHINWAG_"


def _env(field: str, *more: str) -> AliasChoices:
    """Environment variables of a field that has more than ``CHINWAG_<FIELD>``.

    ``CHINWAG_<FIELD>`` stays first, so every source hands pydantic the value under the same
    key and precedence holds whichever variable was set.
    """
    return AliasChoices(ENV_PREFIX + field.upper(), *more)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/chinwag``, else ``~/.cache/chinwag``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chinwag"


def default_config_dir() -> Path:
    """``$XDG_CONFIG_HOME/chinwag``, else ``~/.config/chinwag`` (user personas live below it)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "chinwag"


class SettingsFields(BaseModel):
    """The settings themselves, as a plain model: what a config file is checked against
    (``Settings`` adds where values come from)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", validate_default=True)

    model: str | None = Field(
        None, validation_alias=_env("model", "LLM_MODEL_FILE"),
        description="Path to a GGUF file. Default: the embedded Gemma 3 270M model.")
    hf_repo: str | None = Field(
        None, validation_alias=_env("hf_repo", "LLM_HUGGINGFACE_REPO"),
        description="Hugging Face repo id holding the GGUF (read from the local cache).")
    hf_file: str | None = Field(
        None, validation_alias=_env("hf_file", "LLM_HUGGINGFACE_FILE"),
        description="File name or wildcard in hf_repo, e.g. '*Q4_K_M.gguf'.")
    n_ctx: int = Field(
        4096, ge=16, validation_alias=_env("n_ctx", "LLM_CONTEXT_WINDOW"),
        description="Context window in tokens (prompt plus reply).")
    n_gpu_layers: Annotated[int, Field(ge=-1)] | Literal["auto"] = Field(
        "auto", validation_alias=_env("n_gpu_layers", "LLM_GPU_LAYERS"),
        description="Layers to offload to a GPU: 'auto' = all when llama.cpp was built with "
        "GPU offload support, else 0; -1 = all; a number wins.")
    n_threads: int | None = Field(
        None, ge=1, validation_alias=_env("n_threads", "LLM_CPU_THREADS"),
        description="CPU threads for decoding. Default: the number of CPU cores.")
    n_batch: int = Field(
        512, ge=1, description="Most prompt tokens processed in one decode call.")
    llm: str | None = Field(
        None, description="An LLM config: a YAML file, or the name of one in llms_dir "
        "(`chinwag llms`). Default: the GGUF model the settings above describe.")
    more_llms: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More LLMs chinwag serve offers beside the default one (`llm`), each a "
        "YAML file or a configured name, comma-separated; clients pick one by its id in "
        "`model`. Each loads on first use.")
    models_max: int = Field(
        2, ge=1, description="Most LLMs chinwag serve keeps loaded at once; loading one more "
        "unloads the least recently used one that has no request running.")
    models_memory: ByteSize | None = Field(
        None, ge=1, description="Most bytes of memory the loaded LLMs may take together "
        "('6GiB'; weights plus KV cache, estimated). Default: no limit but models_max.")
    models_idle: float | None = Field(
        None, ge=0, description="Seconds an LLM may stay loaded with no request before it is "
        "unloaded (a request's keep_alive overrides it). Default: never.")
    models_wait: float = Field(
        30.0, ge=0, description="Seconds a request waits for room to load its LLM when every "
        "loaded one is busy, before the server answers 503.")
    llms_dir: Path | None = Field(
        None, validation_alias=_env("llms_dir", "CHINWAG_LLMS"),
        description="Folder of LLM config files. Default: ~/.config/chinwag/llms.")
    chat_format: str | None = Field(
        None, description="Force a named chat format (llama-3, chatml, gemma, ..., transcript).")
    persona: str = Field("assistant", description="Persona to chat with.")
    personas_dir: Path | None = Field(
        None, validation_alias=_env("personas_dir", "CHINWAG_PERSONAS"),
        description="Folder of persona YAML files. Default: ~/.config/chinwag/personas.")
    sources_dir: Path | None = Field(
        None, validation_alias=_env("sources_dir", "CHINWAG_SOURCES"),
        description="Folder of knowledge source YAML files. Default: ~/.config/chinwag/sources.")
    host: str = Field("127.0.0.1", description="Address chinwag serve listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port chinwag serve listens on.")
    api_key: str | None = Field(
        None, description="API key(s) the server requires, comma-separated. Default: none (open).")
    max_queue: int = Field(
        16, ge=0,
        description="Requests that may wait for the model; beyond it the server answers 503.")
    max_body_bytes: int = Field(
        1_000_000, ge=1024,
        description="Largest request body the server accepts, bytes (413 beyond).")
    cache_dir: Path = Field(
        default_factory=default_cache_dir, description="Where the embedded model is assembled.")
    parallel: int = Field(
        8, ge=1, le=64,
        description="Sequences generated at once, batched into one decode per step "
        "(chinwag serve; each has n_ctx tokens of KV cache).")
    batch_places: int | None = Field(
        None, ge=1, le=64,
        description="Places of parallel that a server batch's lines (/v1/batches) may hold at "
        "once; live requests always keep at least one. More: faster batches, and a slower "
        "first token for people chatting meanwhile. Default: half of parallel.")
    kv_cache_ram: ByteSize = Field(
        ByteSize(1 << 30), ge=0,
        description="RAM for idle conversations' KV state, bytes ('512MiB', '2GB'; 0: off). "
        "A returning conversation restored from it skips recomputing its history.")
    kv_cache_dir: Path | None = Field(
        None, description="Folder to keep idle conversations' KV state in as well, so it survives "
        "a restart. Default: none (RAM only).")
    kv_cache_disk: ByteSize = Field(
        ByteSize(4 << 30), ge=0,
        description="Most bytes of KV state files in kv_cache_dir; oldest go first.")
    prefill_chunk: int = Field(
        128, ge=1,
        description="Most prompt tokens of one request per decode step while others are "
        "streaming (a long prompt is computed in chunks between their tokens).")
    db: Path | None = Field(
        None, description="The conversation database (SQLite). Default: "
        "~/.local/share/chinwag/chinwag.db.")
    files_dir: Path | None = Field(
        None, description="Where the server keeps uploaded files and batch results (/v1/files, "
        "/v1/batches). Default: a 'files' folder next to the database.")
    max_file_bytes: ByteSize = Field(
        ByteSize(200_000_000), ge=1,
        description="Largest file /v1/files accepts, bytes ('200MB', OpenAI's batch input "
        "limit; 413 beyond).")
    fetch_allow_private: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Address ranges (CIDRs, comma-separated) that fetching pages and feeds may "
        "reach although they are not global, e.g. an intranet '10.1.0.0/16'. Default: none "
        "(loopback, private, link-local and shared addresses are refused).")
    fetch_max_bytes: ByteSize = Field(
        ByteSize(2 << 20), ge=1,
        description="Largest page or feed fetched, bytes after decompression ('2MiB').")

    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=_env("slack_signing_secret", "SLACK_SIGNING_SECRET"),
        description="The Slack app's signing secret: set, POST /hooks/slack takes the app's "
        "events (Basic Information > App Credentials). Default: none (the route is off).")
    slack_bot_token: SecretStr | None = Field(
        None, validation_alias=_env("slack_bot_token", "SLACK_BOT_TOKEN"),
        description="The Slack bot token (xoxb-...) the answers are posted with "
        "(chat.postMessage); needed with slack_signing_secret.")
    slack_persona: str | None = Field(
        None, description="The persona that answers in Slack. Default: persona.")
    slack_api_url: str = Field(
        "https://slack.com/api", description="Slack's Web API, where chat.postMessage is sent.")
    slack_hooks_url: str = Field(
        "https://hooks.slack.com", description="Where a slash command's response_url must "
        "point for the answer to be sent there (Slack's own; tests point it at a local fake).")
    discord_public_key: str | None = Field(
        None, validation_alias=_env("discord_public_key", "DISCORD_PUBLIC_KEY"),
        description="The Discord application's public key (64 hex digits): set, POST "
        "/hooks/discord takes its interactions (the /ask command). Default: none (off).")
    discord_application_id: str | None = Field(
        None, validation_alias=_env("discord_application_id", "DISCORD_APPLICATION_ID"),
        description="The Discord application's id; needed with discord_public_key (answers "
        "edit the interaction's message through /webhooks/{id}/{token}).")
    discord_bot_token: SecretStr | None = Field(
        None, validation_alias=_env("discord_bot_token", "DISCORD_BOT_TOKEN"),
        description="The Discord bot token, for `chinwag hooks discord register` only "
        "(registering /ask); answering needs none.")
    discord_persona: str | None = Field(
        None, description="The persona that answers /ask in Discord. Default: persona.")
    discord_api_url: str = Field(
        "https://discord.com/api/v10", description="Discord's HTTP API.")
    discord_edit_seconds: float = Field(
        1.5, ge=0, description="Seconds between the edits that show a Discord answer while it "
        "is written (Discord allows about 5 edits in 5 s); 0: shown once, when done.")
    teams_hmac_secret: SecretStr | None = Field(
        None, validation_alias=_env("teams_hmac_secret", "TEAMS_HMAC_SECRET"),
        description="The security token Teams gave the outgoing webhook (base64): set, POST "
        "/hooks/teams answers its messages. Default: none (off).")
    teams_persona: str | None = Field(
        None, description="The persona that answers in Teams. Default: persona.")
    teams_max_seconds: float = Field(
        4.0, gt=0, le=30,
        description="Seconds a Teams answer may take (Teams gives up after 5): what was "
        "generated by then is sent, marked as cut.")

    @field_validator("fetch_allow_private", "more_llms", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        """Accept ``"10.0.0.0/8, 127.0.0.1/32"`` (a flag, an environment variable) as well as
        a list (a config file)."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("fetch_allow_private")
    @classmethod
    def _check_cidrs(cls, value: list[str]) -> list[str]:
        """Each range a CIDR (a bare address is one host), written back in its normal form
        (host bits cleared: ``10.1.2.3/8`` is ``10.0.0.0/8``).

        Raises:
            ValueError: a range that is not an IPv4 or IPv6 network.
        """
        try:
            return [str(ipaddress.ip_network(cidr, strict=False)) for cidr in value]
        except ValueError as e:
            raise ValueError(f"not an address range (CIDR): {e}") from None


    @field_validator("discord_public_key")
    @classmethod
    def _check_public_key(cls, value: str | None) -> str | None:
        """An Ed25519 public key as Discord shows it: 32 bytes in hex.

        Raises:
            ValueError: anything else.
        """
        if value is not None:
            value = value.strip().lower()
            if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                raise ValueError("not an Ed25519 public key: expected 64 hex digits")
        return value

    @field_validator("teams_hmac_secret")
    @classmethod
    def _check_teams_secret(cls, value: SecretStr | None) -> SecretStr | None:
        """The security token Teams shows when the outgoing webhook is made: base64.

        Raises:
            ValueError: not base64.
        """
        if value is not None:
            try:
                base64.b64decode(value.get_secret_value(), validate=True)
            except ValueError:
                raise ValueError("not base64: paste the security token Teams showed when "
                                 "the outgoing webhook was created") from None
        return value


class Settings(SettingsFields, BaseSettings):
    """Everything that configures chinwag, from one schema (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, populate_by_name=True,
                                      extra="forbid", validate_default=True)

    config: Path | None = Field(
        None, description="YAML file of settings (setting: value), read below flags and "
        "environment variables.")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest first: flags (init values), environment variables, the config file; the
        defaults come last (pydantic-settings adds them). No ``.env`` or secrets files."""
        return (init_settings, env_settings, ConfigFileSource(settings_cls))

    @classmethod
    def env_names(cls, name: str) -> tuple[str, ...]:
        """The environment variables that set the setting ``name``; when several are set,
        the first of them wins.

        Raises:
            KeyError: no such setting.
        """
        alias = cls.model_fields[name].validation_alias
        if isinstance(alias, AliasChoices):
            return tuple(c for c in alias.choices if isinstance(c, str))
        return (ENV_PREFIX + name.upper(),)

    def api_keys(self) -> list[str]:
        """The API keys the server accepts (empty: no key needed)."""
        return [k.strip() for k in (self.api_key or "").split(",") if k.strip()]

    def user_personas_dir(self) -> Path:
        """The folder user persona files are read from."""
        return self.personas_dir or default_config_dir() / "personas"

    def user_sources_dir(self) -> Path:
        """The folder knowledge source files are read from (and ``PUT /sources`` writes to)."""
        return self.sources_dir or default_config_dir() / "sources"

    def db_path(self) -> Path:
        """The conversation database file: ``db``, else ``$XDG_DATA_HOME/chinwag/chinwag.db``
        (``~/.local/share/chinwag/chinwag.db``)."""
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return self.db or Path(base) / "chinwag" / "chinwag.db"

    def files_path(self) -> Path:
        """The folder of uploaded files and batch results: ``files_dir``, else ``files`` next
        to the database."""
        return self.files_dir or self.db_path().parent / "files"


class ConfigFileSource(PydanticBaseSettingsSource):
    """The YAML file the ``config`` setting names (``--config``, ``CHINWAG_CONFIG``), as a
    pydantic-settings source: it runs after the flags and the environment, whose merged
    values (``current_state``) say which file to read."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: the whole file is read at once in ``__call__``."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """The file's settings, keyed as pydantic-settings keys init values (empty with no
        file).

        Raises:
            ConfigError: as ``read_config_file``.
        """
        path = self.current_state.get("config")
        if not path:
            return {}
        data = read_config_file(Path(path))
        return InitSettingsSource(self.settings_cls, init_kwargs=data)()


def read_config_file(path: Path) -> dict[str, Any]:
    """Read and check a YAML config file: a mapping of setting names to values.

    Returns:
        The settings the file sets (empty for an empty file), each value valid for its setting.

    Raises:
        ConfigError: a missing file (``config file not found: PATH``); or, with a message
            starting ``PATH[:LINE]:`` (the line of the setting at fault), an unreadable file,
            not YAML, not a mapping, an unknown setting or a bad value.
    """
    fail = located(ConfigError, path)
    try:
        document = read_yaml(path, fail)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror or e}") from None
    data = document.data
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise fail("a config file must be a mapping of setting: value", None)
    unknown = [str(k) for k in data if k not in SettingsFields.model_fields]
    if unknown:
        raise fail(f"unknown setting(s) {', '.join(sorted(unknown))}",
                   document.line_of([unknown[0]]))
    document.validate(SettingsFields.model_validate, fail)
    return data


def load_settings(overrides: dict[str, Any] | None = None,
                  config_file: Path | None = None) -> Settings:
    """Build the settings from flags, environment and an optional YAML config file.

    Args:
        overrides: values from command-line flags; None values are ignored (flag not given).
        config_file: a YAML mapping of setting names to values; default ``$CHINWAG_CONFIG``.

    Raises:
        ConfigError: a missing or broken config file (see ``read_config_file``), or a flag or
            environment variable of the wrong type or range (the message names the setting).
    """
    values = {k: v for k, v in (overrides or {}).items() if v is not None}
    if config_file is not None:
        values["config"] = config_file
    try:
        return Settings(**values)
    except ValidationError as e:
        problems = "; ".join(f"{_setting_of(err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid settings: {problems}") from None


def _setting_of(loc: tuple[int | str, ...]) -> str:
    """The setting an error location points at, by its name rather than the environment
    variable pydantic-settings handed the value in under."""
    names = {env: name for name in Settings.model_fields for env in Settings.env_names(name)}
    parts = [str(p) for p in loc]
    if parts:
        parts[0] = names.get(parts[0], parts[0])
    return ".".join(parts) or "settings"
