"""One settings schema for chinwag: command-line flags, environment variables and a config file.

Precedence, highest first: values passed in (CLI flags), environment variables, the YAML config
file (``--config FILE`` or ``CHINWAG_CONFIG``), the defaults below. Every field reads
``CHINWAG_<FIELD>``; model fields also read the variables llama.cpp services commonly use
(``LLM_MODEL_FILE``, ``LLM_CONTEXT_WINDOW``, ``LLM_GPU_LAYERS``, ``LLM_CPU_THREADS``,
``LLM_HUGGINGFACE_REPO``, ``LLM_HUGGINGFACE_FILE``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, ByteSize, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from chinwag.errors import ConfigError


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/chinwag``, else ``~/.cache/chinwag``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chinwag"


def default_config_dir() -> Path:
    """``$XDG_CONFIG_HOME/chinwag``, else ``~/.config/chinwag`` (user personas live below it)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "chinwag"


class Settings(BaseSettings):
    """Everything that configures chinwag, from one schema (see the module docstring)."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="forbid",
                                      validate_default=True)

    model: str | None = Field(
        None, validation_alias=_env("model", "CHINWAG_MODEL", "LLM_MODEL_FILE"),
        description="Path to a GGUF file. Default: the embedded Gemma 3 270M model.")
    hf_repo: str | None = Field(
        None, validation_alias=_env("hf_repo", "CHINWAG_HF_REPO", "LLM_HUGGINGFACE_REPO"),
        description="Hugging Face repo id holding the GGUF (read from the local cache).")
    hf_file: str | None = Field(
        None, validation_alias=_env("hf_file", "CHINWAG_HF_FILE", "LLM_HUGGINGFACE_FILE"),
        description="File name or wildcard in hf_repo, e.g. '*Q4_K_M.gguf'.")
    n_ctx: int = Field(
        4096, ge=16, validation_alias=_env("n_ctx", "CHINWAG_N_CTX", "LLM_CONTEXT_WINDOW"),
        description="Context window in tokens (prompt plus reply).")
    n_gpu_layers: int = Field(
        0, ge=-1, validation_alias=_env("n_gpu_layers", "CHINWAG_N_GPU_LAYERS", "LLM_GPU_LAYERS"),
        description="Layers to offload to a GPU (-1 = all; ignored on a CPU build).")
    n_threads: int | None = Field(
        None, ge=1, validation_alias=_env("n_threads", "CHINWAG_N_THREADS", "LLM_CPU_THREADS"),
        description="CPU threads for decoding. Default: the number of CPU cores.")
    n_batch: int = Field(
        512, ge=1, validation_alias=_env("n_batch", "CHINWAG_N_BATCH"),
        description="Most prompt tokens processed in one decode call.")
    llm: str | None = Field(
        None, validation_alias=_env("llm", "CHINWAG_LLM"),
        description="An LLM config: a YAML file, or the name of one in llms_dir "
        "(`chinwag llms`). Default: the GGUF model the settings above describe.")
    llms_dir: Path | None = Field(
        None, validation_alias=_env("llms_dir", "CHINWAG_LLMS"),
        description="Folder of LLM config files. Default: ~/.config/chinwag/llms.")
    chat_format: str | None = Field(
        None, validation_alias=_env("chat_format", "CHINWAG_CHAT_FORMAT"),
        description="Force a named chat format (llama-3, chatml, gemma, ..., transcript).")
    persona: str = Field(
        "assistant", validation_alias=_env("persona", "CHINWAG_PERSONA"),
        description="Persona to chat with.")
    personas_dir: Path | None = Field(
        None, validation_alias=_env("personas_dir", "CHINWAG_PERSONAS"),
        description="Folder of persona YAML files. Default: ~/.config/chinwag/personas.")
    host: str = Field("127.0.0.1", validation_alias=_env("host", "CHINWAG_HOST"),
                      description="Address chinwag serve listens on.")
    port: int = Field(8000, ge=0, le=65535, validation_alias=_env("port", "CHINWAG_PORT"),
                      description="Port chinwag serve listens on.")
    api_key: str | None = Field(
        None, validation_alias=_env("api_key", "CHINWAG_API_KEY"),
        description="API key(s) the server requires, comma-separated. Default: none (open).")
    max_queue: int = Field(
        16, ge=0, validation_alias=_env("max_queue", "CHINWAG_MAX_QUEUE"),
        description="Requests that may wait for the model; beyond it the server answers 503.")
    max_body_bytes: int = Field(
        1_000_000, ge=1024, validation_alias=_env("max_body_bytes", "CHINWAG_MAX_BODY_BYTES"),
        description="Largest request body the server accepts, bytes (413 beyond).")
    cache_dir: Path = Field(
        default_factory=default_cache_dir, validation_alias=_env("cache_dir", "CHINWAG_CACHE_DIR"),
        description="Where the embedded model is assembled.")
    parallel: int = Field(
        8, ge=1, le=64, validation_alias=_env("parallel", "CHINWAG_PARALLEL"),
        description="Sequences generated at once, batched into one decode per step "
        "(chinwag serve; each has n_ctx tokens of KV cache).")
    kv_cache_ram: ByteSize = Field(
        ByteSize(1 << 30), ge=0, validation_alias=_env("kv_cache_ram", "CHINWAG_KV_CACHE_RAM"),
        description="RAM for idle conversations' KV state, bytes ('512MiB', '2GB'; 0: off). "
        "A returning conversation restored from it skips recomputing its history.")
    kv_cache_dir: Path | None = Field(
        None, validation_alias=_env("kv_cache_dir", "CHINWAG_KV_CACHE_DIR"),
        description="Folder to keep idle conversations' KV state in as well, so it survives "
        "a restart. Default: none (RAM only).")
    kv_cache_disk: ByteSize = Field(
        ByteSize(4 << 30), ge=0,
        validation_alias=_env("kv_cache_disk", "CHINWAG_KV_CACHE_DISK"),
        description="Most bytes of KV state files in kv_cache_dir; oldest go first.")
    prefill_chunk: int = Field(
        128, ge=1, validation_alias=_env("prefill_chunk", "CHINWAG_PREFILL_CHUNK"),
        description="Most prompt tokens of one request per decode step while others are "
        "streaming (a long prompt is computed in chunks between their tokens).")
    db: Path | None = Field(
        None, validation_alias=_env("db", "CHINWAG_DB"),
        description="The conversation database (SQLite). Default: "
        "~/.local/share/chinwag/chinwag.db.")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    def api_keys(self) -> list[str]:
        """The API keys the server accepts (empty: no key needed)."""
        return [k.strip() for k in (self.api_key or "").split(",") if k.strip()]

    def user_personas_dir(self) -> Path:
        """The folder user persona files are read from."""
        return self.personas_dir or default_config_dir() / "personas"

    def db_path(self) -> Path:
        """The conversation database file: ``db``, else ``$XDG_DATA_HOME/chinwag/chinwag.db``
        (``~/.local/share/chinwag/chinwag.db``)."""
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return self.db or Path(base) / "chinwag" / "chinwag.db"


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of setting: value")
    return data


def load_settings(overrides: dict[str, Any] | None = None,
                  config_file: Path | None = None) -> Settings:
    """Build the settings from flags, environment and an optional YAML config file.

    Args:
        overrides: values from command-line flags; None values are ignored (flag not given).
        config_file: a YAML mapping of setting names to values; default ``$CHINWAG_CONFIG``.

    Raises:
        ConfigError: a missing or broken config file, or a value of the wrong type or range
            (the message names the setting).
    """
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    path = config_file or (Path(os.environ["CHINWAG_CONFIG"]) if os.environ.get("CHINWAG_CONFIG")
                           else None)
    from_file = _read_config_file(path) if path else {}
    unknown = set(from_file) - set(Settings.model_fields)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    try:
        env_only = Settings(**flags)
        explicit_env = {k for k in Settings.model_fields if _set_in_env(k)}
        merged = {**from_file, **{k: getattr(env_only, k) for k in explicit_env}, **flags}
        return Settings(**merged)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in e.errors())
        raise ConfigError(f"invalid settings: {problems}") from None


def _set_in_env(field: str) -> bool:
    alias = Settings.model_fields[field].validation_alias
    names = alias.choices if isinstance(alias, AliasChoices) else [field]
    return any(isinstance(n, str) and n.upper() in {k.upper() for k in os.environ}
               and n != field for n in names)
