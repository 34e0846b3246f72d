"""LLM configs: one YAML file per LLM, naming its backend and that backend's own fields.

::

    # ~/.config/chinwag/llms/vllm-llama3.yaml
    backend: openai
    model_id: meta-llama/Meta-Llama-3-8B-Instruct
    base_url: http://gpu-box:8000/v1
    context_length: 8192

Every file has ``backend`` (``llamacpp``, ``transformers``, ``openai``, ``http``, ``human``,
``scripted``), and may have ``model_id``, ``context_length``, ``chat_format`` and
``description``; the rest depends on the backend: each backend module owns its config class
(``LlamaCppLLM`` in ``llamacpp.py``, ``OpenAILLM`` in ``openai_http.py``...), whose ``build``
makes the backend. An unknown field or a wrong type is a ``ConfigError`` naming the file, the
line, the field and the problem.

An LLM is named by its file's stem. ``chinwag chat --llm NAME_OR_FILE`` and ``chinwag serve
--llm ...`` take either; names are looked up in the user's folder (``llms_dir``, default
``~/.config/chinwag/llms``), then among the built-in ones shipped in ``chinwag/llms/``.
Relative paths inside a file (a GGUF ``model``) are relative to the file's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, get_args

from pydantic import Field, TypeAdapter

from chinwag.backends.base import BackendConfig
from chinwag.backends.human import HumanLLM
from chinwag.backends.llamacpp import LlamaCppLLM
from chinwag.backends.openai_http import OpenAILLM
from chinwag.backends.raw_http import HttpLLM
from chinwag.backends.scripted import ScriptedLLM
from chinwag.backends.transformers import TransformersLLM
from chinwag.errors import ConfigError
from chinwag.yaml_files import located, read_yaml

if TYPE_CHECKING:
    from chinwag.backends.base import LanguageBackend
    from chinwag.models import Progress
    from chinwag.settings import Settings

__all__ = ["BACKENDS", "LLM_ADAPTER", "REGISTRY", "HttpLLM", "HumanLLM", "LLMConfig",
           "LlamaCppLLM", "OpenAILLM", "ScriptedLLM", "TransformersLLM", "builtin_llms_dir",
           "find_llm_config", "llm_config_files", "llm_dirs", "load_llm_config", "open_llm"]


LLMConfig = Annotated[LlamaCppLLM | TransformersLLM | OpenAILLM | HttpLLM | HumanLLM |
                      ScriptedLLM, Field(discriminator="backend")]
"""Any LLM config file's content, told apart by its ``backend`` field."""
LLM_ADAPTER: TypeAdapter[Any] = TypeAdapter(LLMConfig)


def _name_of(config_class: type[BackendConfig]) -> str:
    """The ``backend`` value a config class answers to (its ``Literal``)."""
    return str(get_args(config_class.model_fields["backend"].annotation)[0])


REGISTRY = MappingProxyType({_name_of(c): c for c in get_args(get_args(LLMConfig)[0])})
"""Backend name -> its config class, in the union's order (read-only)."""
BACKENDS = tuple(REGISTRY)


def builtin_llms_dir() -> Path:
    """The LLM configs shipped with chinwag (``default``: the embedded model)."""
    return Path(__file__).resolve().parent.parent / "llms"


def load_llm_config(path: Path) -> LLMConfig:
    """Read and validate one LLM config file.

    Raises:
        ConfigError: the file is missing or unreadable, not YAML, not a mapping, or has an
            unknown field, a missing one or a wrong type; the message starts with
            ``FILE[:LINE]:`` (the line of the key at fault, however deeply nested) and names
            the field.
    """
    fail = located(ConfigError, path)
    document = read_yaml(path, fail, "LLM config")
    if not isinstance(document.data, dict):
        raise fail("an LLM config must be a mapping with at least 'backend' "
                   f"(one of {', '.join(BACKENDS)})", None)
    if "backend" not in document.data:
        raise fail(f"'backend' is missing (one of {', '.join(BACKENDS)})", None)
    return document.validate(LLM_ADAPTER.validate_python, fail, tag="backend")


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


def open_llm(ref: str, settings: Settings, progress: Progress | None = None
             ) -> LanguageBackend:
    """The backend of the LLM ``ref`` names (a file or a configured name).

    Raises:
        ConfigError, ModelNotFound, ModelLoadError, BackendError: as ``find_llm_config``,
            ``load_llm_config`` and the config's ``build``.
    """
    path = find_llm_config(ref, settings)
    config: BackendConfig = load_llm_config(path)
    return config.build(settings, base_dir=path.parent, progress=progress)
