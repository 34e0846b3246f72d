"""LLM configs: one YAML file per LLM, naming its backend and that backend's own fields.

::

    # ~/.config/chinwag/llms/vllm-llama3.yaml
    backend: openai
    model_id: meta-llama/Meta-Llama-3-8B-Instruct
    base_url: http://gpu-box:8000/v1
    context_length: 8192

Every file has ``backend`` (``llamacpp``, ``transformers``, ``openai``, ``http``, ``human``,
``scripted``), and may have ``model_id``, ``context_length``, ``chat_format`` and
``description``; the rest depends on the backend (the classes below). An unknown field or a
wrong type is a ``ConfigError`` naming the file, the line, the field and the problem.

An LLM is named by its file's stem. ``chinwag chat --llm NAME_OR_FILE`` and ``chinwag serve
--llm ...`` take either; names are looked up in the user's folder (``llms_dir``, default
``~/.config/chinwag/llms``), then among the built-in ones shipped in ``chinwag/llms/``.
Relative paths inside a file (a GGUF ``model``) are relative to the file's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from chinwag.errors import ConfigError

if TYPE_CHECKING:
    from chinwag.backends.base import LanguageBackend
    from chinwag.models import Progress
    from chinwag.settings import Settings


class _LLM(BaseModel):
    """Fields every LLM config may have."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_id: str | None = Field(None, description="The model's name (sent to remote servers).")
    context_length: int | None = Field(None, ge=16, description="Context window, tokens.")
    chat_format: str | None = Field(None, description="Force a named chat format.")
    description: str = Field("", description="Shown by `chinwag llms`.")


class LlamaCppLLM(_LLM):
    """A GGUF model run in-process by chinwag's engine (the default)."""

    backend: Literal["llamacpp"]
    model: str | None = Field(None, description="GGUF file; default: the embedded model.")
    hf_repo: str | None = None
    hf_file: str | None = None
    n_threads: int | None = Field(None, ge=1)
    n_batch: int | None = Field(None, ge=1)
    n_gpu_layers: int | None = Field(None, ge=-1)
    parallel: int | None = Field(None, ge=1, le=64)


class TransformersLLM(_LLM):
    """A Hugging Face model through transformers on the CPU (``pip install
    'chinwag[transformers]'``). ``model_id`` is a local folder or a hub id in the local cache."""

    backend: Literal["transformers"]
    model_id: str
    gguf_file: str | None = Field(None, description="Load this GGUF from model_id's folder.")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    n_threads: int | None = Field(None, ge=1)


class OpenAILLM(_LLM):
    """Any OpenAI-compatible server: OpenAI, vLLM, FastChat, Ollama, llama.cpp, chinwag."""

    backend: Literal["openai"]
    model_id: str
    base_url: str = Field(pattern=r"^https?://", description="Including /v1.")
    api_key: str | None = None
    api_key_env: str | None = Field(None, description="Read the API key from this variable.")
    api: Literal["chat", "completions"] = "chat"
    max_parallel: int = Field(4, ge=1, le=256)
    timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0, le=20)
    backoff: float = Field(0.5, ge=0)
    tokenize: Literal["auto", "server", "estimate"] = "auto"
    choose: Literal["auto", "logprobs", "enum"] = "auto"
    headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)


class HttpLLM(_LLM):
    """A raw HTTP completion API with its own shapes (see ``chinwag.backends.raw_http``)."""

    backend: Literal["http"]
    host: str = Field(pattern=r"^https?://")
    path: str = Field(pattern=r"^/")
    prompt_key: str = "prompt"
    text_path: str = "results.0.text"
    body: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    schema_key: str | None = None
    tokenize_path: str | None = None
    prompt_tokens_path: str | None = None
    completion_tokens_path: str | None = None
    timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0, le=20)
    backoff: float = Field(0.5, ge=0)


class HumanLLM(_LLM):
    """A person typing each reply on stdin."""

    backend: Literal["human"]


class ScriptedLLM(_LLM):
    """Queued replies, for tests and demos without a model."""

    backend: Literal["scripted"]
    replies: list[str] = Field(default_factory=list)
    default_reply: str = "..."


LLMConfig = Annotated[LlamaCppLLM | TransformersLLM | OpenAILLM | HttpLLM | HumanLLM |
                      ScriptedLLM, Field(discriminator="backend")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(LLMConfig)
BACKENDS = ("llamacpp", "transformers", "openai", "http", "human", "scripted")


def builtin_llms_dir() -> Path:
    """The LLM configs shipped with chinwag (``default``: the embedded model)."""
    return Path(__file__).resolve().parent.parent / "llms"


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(f"{key}:"):
            return number
    return None


def load_llm_config(path: Path) -> LLMConfig:
    """Read and validate one LLM config file.

    Raises:
        ConfigError: the file is missing or unreadable, not YAML, not a mapping, or has an
            unknown field, a missing one or a wrong type; the message starts with
            ``FILE[:LINE]:`` and names the field.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read LLM config: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an LLM config must be a mapping with at least 'backend' "
                          f"(one of {', '.join(BACKENDS)})")
    if "backend" not in data:
        raise ConfigError(f"{path}: 'backend' is missing (one of {', '.join(BACKENDS)})")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(p) for p in err["loc"]]
        if loc and loc[0] == str(data.get("backend")):
            loc = loc[1:]  # pydantic puts the union's tag first
        field = ".".join(loc) or "backend"
        line = _line_of(text, loc[0]) if loc else _line_of(text, "backend")
        where = f"{path}:{line}" if line else str(path)
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise ConfigError(f"{where}: {field}: {err['msg']}{more}") from None


def llm_dirs(settings: Settings) -> list[Path]:
    """Where named LLM configs are looked up, first match wins: the user's folder, then the
    built-in one."""
    from chinwag.settings import default_config_dir

    return [settings.llms_dir or default_config_dir() / "llms", builtin_llms_dir()]


def llm_config_files(settings: Settings) -> dict[str, Path]:
    """Every named LLM config, by name (file stem); a user's file hides a built-in one of the
    same name."""
    found: dict[str, Path] = {}
    for folder in llm_dirs(settings):
        if folder.is_dir():
            for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
                found.setdefault(path.stem, path)
    return found


def find_llm_config(ref: str, settings: Settings) -> Path:
    """The file ``ref`` names: a path to a YAML file, or the name of a configured LLM.

    Raises:
        ConfigError: neither a file nor a known name (the message lists the known names).
    """
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    if path.suffix in {".yaml", ".yml"} or os.sep in ref:
        raise ConfigError(f"LLM config file not found: {ref}")
    known = llm_config_files(settings)
    if ref in known:
        return known[ref]
    raise ConfigError(f"unknown LLM {ref!r}: not a file, and not among the configured LLMs "
                      f"({', '.join(sorted(known)) or 'none'}; see `chinwag llms`)")


def backend_from_config(config: LLMConfig, settings: Settings, *, base_dir: Path | None = None,
                        progress: Progress | None = None) -> LanguageBackend:
    """Build the backend ``config`` describes. Settings fill what the config leaves out
    (threads, context window, parallel slots, KV cache for ``llamacpp``).

    Raises:
        ConfigError: a missing API key variable, transformers not installed...
        ModelNotFound, ModelLoadError, BackendError: as the backend's constructor.
    """
    n_ctx = config.context_length
    if isinstance(config, LlamaCppLLM):
        from chinwag.backends import load_backend

        model = config.model
        if model and base_dir is not None and not Path(model).expanduser().is_absolute():
            model = str(base_dir / model)
        changes = {"model": model, "hf_repo": config.hf_repo, "hf_file": config.hf_file,
                   "n_ctx": n_ctx, "n_threads": config.n_threads, "n_batch": config.n_batch,
                   "n_gpu_layers": config.n_gpu_layers, "parallel": config.parallel,
                   "chat_format": config.chat_format, "llm": None}
        local = settings.model_copy(update={k: v for k, v in changes.items()
                                            if v is not None or k == "llm"})
        return load_backend(local, progress)
    if isinstance(config, TransformersLLM):
        from chinwag.backends.transformers import TransformersBackend

        return TransformersBackend(config.model_id, gguf_file=config.gguf_file,
                                   context_length=n_ctx, chat_format=config.chat_format,
                                   n_threads=config.n_threads or settings.n_threads,
                                   dtype=config.dtype)
    if isinstance(config, OpenAILLM):
        from chinwag.backends.openai_http import OpenAIBackend

        key = config.api_key
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise ConfigError(f"the LLM config asks for the API key in "
                                  f"${config.api_key_env}, which is not set")
        return OpenAIBackend(config.base_url, model_id=config.model_id, api_key=key,
                             api=config.api, context_length=n_ctx or 4096,
                             chat_format=config.chat_format, max_parallel=config.max_parallel,
                             timeout=config.timeout, max_retries=config.max_retries,
                             backoff=config.backoff, tokenize=config.tokenize,
                             choose=config.choose, headers=config.headers,
                             extra_body=config.extra_body)
    if isinstance(config, HttpLLM):
        from chinwag.backends.raw_http import HttpBackend

        return HttpBackend(config.host, config.path, prompt_key=config.prompt_key,
                           text_path=config.text_path, body=config.body,
                           headers=config.headers, context_length=n_ctx or 4096,
                           schema_key=config.schema_key, tokenize_path=config.tokenize_path,
                           prompt_tokens_path=config.prompt_tokens_path,
                           completion_tokens_path=config.completion_tokens_path,
                           chat_format=config.chat_format, model_id=config.model_id or "http",
                           timeout=config.timeout, max_retries=config.max_retries,
                           backoff=config.backoff)
    if isinstance(config, HumanLLM):
        from chinwag.backends.human import HumanBackend

        return HumanBackend(context_length=n_ctx or 32768, chat_format=config.chat_format,
                            name=config.model_id or "human")
    from chinwag.backends.scripted import ScriptedBackend
    from chinwag.prompting import resolve_chat_format

    return ScriptedBackend(config.replies, context_length=n_ctx or 2048,
                           default_reply=config.default_reply,
                           chat_format=resolve_chat_format(model_template=None,
                                                           requested=config.chat_format))


def open_llm(ref: str, settings: Settings, progress: Progress | None = None
             ) -> LanguageBackend:
    """The backend of the LLM ``ref`` names (a file or a configured name).

    Raises:
        ConfigError, ModelNotFound, ModelLoadError, BackendError: as ``find_llm_config``,
            ``load_llm_config`` and ``backend_from_config``.
    """
    path = find_llm_config(ref, settings)
    return backend_from_config(load_llm_config(path), settings, base_dir=path.parent,
                               progress=progress)
