"""The public API changes only on purpose (as httpx's test_exported_members)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types

import chinwag
from chinwag import errors

EXPECTED = {
    "BackendAuthError", "BackendError", "BackendRateLimited", "BackendRejected",
    "BackendServerError", "BackendUnreachable", "BadExport", "BadSignature", "BatchFinished",
    "BatchNotFound",
    "Cancelled", "Capabilities",
    "Chatbot", "ChinwagError", "Choice", "ConfigError", "ContextOverflow", "Conversation",
    "ConversationNotFound", "DefinitionError", "DocumentNotFound", "Done",
    "EmbeddingsUnavailable", "Example",
    "FetchError", "FileNotFound", "FileTooLarge", "FormatError", "HttpBackend", "HumanBackend",
    "InvalidParams",
    "LanguageBackend", "LlamaCppBackend", "Message", "ModelError", "ModelInfo", "ModelLoadError",
    "ModelLoadFailed",
    "ModelNotFound", "NPCBusy", "OpenAIBackend", "OutputInvalid", "Overloaded", "Persona",
    "PersonaError", "PlatformError", "Prompt", "Reply", "Tool", "ToolArguments", "ToolCall",
    "ToolCallStart",
    "ToolDecision", "ToolRequest", "UpstreamIgnoredTools",
    "RemoteError", "SamplingParams", "SchemaError", "ScriptedBackend", "Settings", "SourceError",
    "Speakers", "Store", "StoreCorrupt", "StoreError", "StoreVersionError", "TokenEvent",
    "TransformersBackend", "UnknownModel", "UnknownPersona", "UnknownSource", "Usage", "collect",
    "get_persona",
    "load_backend", "load_persona_file", "load_personas", "load_settings", "resolve_model",
}


def test_all_is_pinned_and_sorted() -> None:
    assert set(chinwag.__all__) == EXPECTED
    assert chinwag.__all__ == sorted(chinwag.__all__)


def test_all_is_every_public_name_of_the_package() -> None:
    public = {name for name, value in vars(chinwag).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)
              and name not in {"annotations", "TYPE_CHECKING", "Any", "importlib"}}
    assert public <= set(chinwag.__all__)


def test_every_exception_of_chinwag_errors_is_exported() -> None:
    classes = {name for name, value in vars(errors).items()
               if inspect.isclass(value) and issubclass(value, Exception)}
    assert classes <= set(chinwag.__all__)
    for name in classes:
        assert issubclass(getattr(chinwag, name), chinwag.ChinwagError), name


def test_every_exported_name_exists() -> None:
    for name in chinwag.__all__:
        assert getattr(chinwag, name) is not None, name


def test_every_backend_class_is_a_language_backend() -> None:
    for name in [n for n in chinwag.__all__ if n.endswith("Backend") and n != "load_backend"]:
        assert issubclass(getattr(chinwag, name), chinwag.LanguageBackend), name


def test_importing_chinwag_imports_neither_torch_nor_llama_cpp() -> None:
    code = ("import sys, chinwag; "
            "print(sorted(m for m in ('torch', 'transformers', 'llama_cpp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
