"""chinwag: a local-first engine and service for LLM chatbots.

The public API, re-exported here (``tests/test_public_api.py`` pins ``__all__``: the sorted
public names, every exception class of ``chinwag.errors`` among them)::

    from chinwag import Chatbot, get_persona, load_backend, load_settings

    backend = load_backend(load_settings())          # the embedded model by default
    bot = Chatbot(backend, get_persona("villager"))
    for piece in bot.send("Hello!"):
        print(piece, end="", flush=True)

The backends other than ``ScriptedBackend`` are imported on first use (``chinwag.LlamaCppBackend``
loads llama.cpp, ``chinwag.TransformersBackend`` loads torch), so ``import chinwag`` stays light
and never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from chinwag.backends import Capabilities, LanguageBackend, ModelInfo, ScriptedBackend, load_backend
from chinwag.chat import Chatbot, Example, Persona, get_persona, load_persona_file, load_personas
from chinwag.errors import (
    BackendAuthError,
    BackendError,
    BackendRateLimited,
    BackendRejected,
    BackendServerError,
    BackendUnreachable,
    BadExport,
    BadSignature,
    BatchFinished,
    BatchNotFound,
    Cancelled,
    ChinwagError,
    ConfigError,
    ContextOverflow,
    ConversationNotFound,
    DefinitionError,
    DocumentNotFound,
    EmbeddingsUnavailable,
    FetchError,
    FileNotFound,
    FileTooLarge,
    FormatError,
    InvalidParams,
    ModelError,
    ModelLoadError,
    ModelLoadFailed,
    ModelNotFound,
    NPCBusy,
    OutputInvalid,
    Overloaded,
    PersonaError,
    PlatformError,
    RemoteError,
    SchemaError,
    SourceError,
    StoreCorrupt,
    StoreError,
    StoreVersionError,
    UnknownModel,
    UnknownPersona,
    UnknownSource,
    UpstreamIgnoredTools,
)
from chinwag.models import resolve_model
from chinwag.prompting import Prompt, Speakers
from chinwag.settings import Settings, load_settings
from chinwag.store import Conversation, Store
from chinwag.tools import Reply, Tool, ToolRequest
from chinwag.types import (
    Choice,
    Done,
    Message,
    SamplingParams,
    TokenEvent,
    ToolArguments,
    ToolCall,
    ToolCallStart,
    ToolDecision,
    Usage,
    collect,
)

if TYPE_CHECKING:
    from chinwag.backends.human import HumanBackend
    from chinwag.backends.llamacpp import LlamaCppBackend
    from chinwag.backends.openai_http import OpenAIBackend
    from chinwag.backends.raw_http import HttpBackend
    from chinwag.backends.transformers import TransformersBackend

__version__ = "0.1.0"

_LAZY = {
    "HttpBackend": "chinwag.backends.raw_http",
    "HumanBackend": "chinwag.backends.human",
    "LlamaCppBackend": "chinwag.backends.llamacpp",
    "OpenAIBackend": "chinwag.backends.openai_http",
    "TransformersBackend": "chinwag.backends.transformers",
}


def __getattr__(name: str) -> Any:
    """The backends in ``_LAZY``, imported the first time they are asked for (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chinwag' has no attribute {name!r}")


__all__ = [
    "BackendAuthError",
    "BackendError",
    "BackendRateLimited",
    "BackendRejected",
    "BackendServerError",
    "BackendUnreachable",
    "BadExport",
    "BadSignature",
    "BatchFinished",
    "BatchNotFound",
    "Cancelled",
    "Capabilities",
    "Chatbot",
    "ChinwagError",
    "Choice",
    "ConfigError",
    "ContextOverflow",
    "Conversation",
    "ConversationNotFound",
    "DefinitionError",
    "DocumentNotFound",
    "Done",
    "EmbeddingsUnavailable",
    "Example",
    "FetchError",
    "FileNotFound",
    "FileTooLarge",
    "FormatError",
    "HttpBackend",
    "HumanBackend",
    "InvalidParams",
    "LanguageBackend",
    "LlamaCppBackend",
    "Message",
    "ModelError",
    "ModelInfo",
    "ModelLoadError",
    "ModelLoadFailed",
    "ModelNotFound",
    "NPCBusy",
    "OpenAIBackend",
    "OutputInvalid",
    "Overloaded",
    "Persona",
    "PersonaError",
    "PlatformError",
    "Prompt",
    "RemoteError",
    "Reply",
    "SamplingParams",
    "SchemaError",
    "ScriptedBackend",
    "Settings",
    "SourceError",
    "Speakers",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreVersionError",
    "TokenEvent",
    "Tool",
    "ToolArguments",
    "ToolCall",
    "ToolCallStart",
    "ToolDecision",
    "ToolRequest",
    "TransformersBackend",
    "UnknownModel",
    "UnknownPersona",
    "UnknownSource",
    "UpstreamIgnoredTools",
    "Usage",
    "collect",
    "get_persona",
    "load_backend",
    "load_persona_file",
    "load_personas",
    "load_settings",
    "resolve_model",
]
